//! Length-prefixed framing: every Kafka request and response is an `i32` size followed by
//! that many bytes.
//!
//! The size is checked against a cap before a single byte is reserved, because a peer
//! controls the prefix and `BytesMut::reserve(size)` on an unchecked `i32` lets one 4-byte
//! write pin 2 GiB per connection.

use bytes::{Buf, Bytes, BytesMut};

/// Kafka's own default for `socket.request.max.bytes`.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 100 * 1024 * 1024;

/// Length of the big-endian `i32` size prefix in front of every frame.
pub const SIZE_PREFIX_LEN: usize = 4;

/// A size prefix that can never start a valid frame. Once seen, the stream is out of sync
/// and the connection must be dropped.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The declared frame is larger than the configured cap.
    #[error("the peer declared a {size}-byte frame, more than the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    /// The declared frame size is negative.
    #[error("the peer declared a negative frame size ({0})")]
    Negative(i32),
}

/// The length of the frame at the front of `buf`, size prefix included, once the prefix
/// has arrived. Reserves nothing: a server that must not allocate what a peer merely
/// claims grows its buffer as bytes arrive, and calls [`split_frame`] once this many are in.
pub fn frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..SIZE_PREFIX_LEN) else {
        return Ok(None);
    };
    let declared = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let size = usize::try_from(declared).map_err(|_| FrameError::Negative(declared))?;
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    Ok(Some(SIZE_PREFIX_LEN + size))
}

/// Splits one complete frame off the front of `buf`.
///
/// Returns `Ok(None)` while the frame is incomplete; in that case `buf` may have reserved
/// room for the rest of the declared frame (never more). The returned frame is the body
/// without its size prefix and shares `buf`'s allocation (no copy).
pub fn split_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(total) = frame_len(buf, max)? else {
        return Ok(None);
    };
    let size = total - SIZE_PREFIX_LEN;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    buf.advance(SIZE_PREFIX_LEN);
    Ok(Some(buf.split_to(size).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_len_reads_the_prefix_and_checks_it_without_reserving() {
        assert_eq!(frame_len(&[0, 0, 0], 16), Ok(None));
        assert_eq!(frame_len(&[0, 0, 0, 10, 1], 16), Ok(Some(14)));
        assert_eq!(
            frame_len(&[0, 0, 0, 17], 16),
            Err(FrameError::TooLarge { size: 17, max: 16 })
        );
        assert_eq!(
            frame_len(&[255, 255, 255, 255], 16),
            Err(FrameError::Negative(-1))
        );
    }

    #[test]
    fn incomplete_prefix_needs_more_bytes() {
        let mut buf = BytesMut::from(&[0u8, 0, 0][..]);
        assert_eq!(split_frame(&mut buf, 16), Ok(None));
        assert_eq!(buf.len(), 3);
    }

    #[test]
    fn incomplete_body_reserves_at_most_the_declared_size() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0, 0, 0, 10, 1, 2]);
        assert_eq!(split_frame(&mut buf, 16), Ok(None));
        assert!(buf.capacity() >= 14);
        assert_eq!(&buf[..], &[0, 0, 0, 10, 1, 2]);
    }

    #[test]
    fn complete_frames_are_split_in_order_without_copying() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0, 0, 0, 2, 7, 8, 0, 0, 0, 0, 0, 0, 0, 1]);
        let base = buf.as_ptr() as usize;
        let first = split_frame(&mut buf, 16).unwrap().unwrap();
        assert_eq!(&first[..], &[7, 8]);
        assert_eq!(first.as_ptr() as usize, base + 4);
        let empty = split_frame(&mut buf, 16).unwrap().unwrap();
        assert!(empty.is_empty());
        assert_eq!(split_frame(&mut buf, 16), Ok(None));
        assert_eq!(&buf[..], &[0, 0, 0, 1]);
    }

    #[test]
    fn oversized_and_negative_prefixes_are_rejected_before_reserving() {
        let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        let cap_before = buf.capacity();
        let err = split_frame(&mut buf, DEFAULT_MAX_FRAME_BYTES).unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                size: i32::MAX as usize,
                max: DEFAULT_MAX_FRAME_BYTES
            }
        );
        assert_eq!(buf.capacity(), cap_before);
        let mut neg = BytesMut::from(&[0xff, 0xff, 0xff, 0xfe][..]);
        assert_eq!(split_frame(&mut neg, 16), Err(FrameError::Negative(-2)));
    }

    #[test]
    fn frame_of_exactly_max_is_accepted() {
        let mut buf = BytesMut::from(&[0, 0, 0, 3, 1, 2, 3][..]);
        assert_eq!(split_frame(&mut buf, 3).unwrap().unwrap().len(), 3);
    }
}
