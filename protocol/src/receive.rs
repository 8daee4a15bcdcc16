//! Receive buffers that are reused, so a large response lands in memory the process has
//! already touched instead of freshly allocated pages the kernel must zero first.
//!
//! Frames are read into slabs. A frame handed out shares its slab (no copy) and keeps it
//! alive while any slice of it is held, such as a record set waiting to be written. Once
//! every slice of a slab is dropped, the slab takes a later frame. A read stops at the end
//! of the frame being received, so the next frame never starts in a slab too full to hold
//! it; only a read-ahead made while the next size prefix is unknown (at most
//! [`READ_AHEAD`] bytes) may have to move to another slab.

use bytes::buf::Limit;
use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::frame::{frame_len, FrameError, SIZE_PREFIX_LEN};

/// Most bytes read while the next frame's size is unknown: small frames arrive in one
/// read, and a large one moves at most this much when it needs a bigger slab.
pub const READ_AHEAD: usize = 16 * 1024;
/// Smallest slab allocated.
pub const MIN_SLAB: usize = 64 * 1024;
/// Slabs kept for reuse besides the one being read into. Each is as large as the
/// largest frame seen, so this bounds what a connection keeps after a burst.
pub const SPARE_SLABS: usize = 4;

/// What receiving has cost in allocations and copies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveStats {
    /// Slabs allocated (each one's pages are zeroed by the kernel on first touch).
    pub slabs_allocated: u64,
    /// Bytes of partly received frames copied to the front of a slab or to another one.
    pub bytes_moved: u64,
}

/// Turns a byte stream into frames (the body after the size prefix) in reused slabs.
#[derive(Debug)]
pub struct ReceiveBuffer {
    /// The slab being read into; the partly received frame sits at its front.
    current: BytesMut,
    /// Slabs whose frames may still be held, oldest first.
    spare: Vec<BytesMut>,
    max_frame: usize,
    /// Capacity of a new slab: the largest frame seen, so that one slab holds any frame.
    slab_bytes: usize,
    stats: ReceiveStats,
}

impl ReceiveBuffer {
    /// Frames declaring more than `max_frame` bytes are refused before anything is
    /// reserved for them.
    pub fn new(max_frame: usize) -> Self {
        ReceiveBuffer {
            current: BytesMut::new(),
            spare: Vec::new(),
            max_frame,
            slab_bytes: MIN_SLAB,
            stats: ReceiveStats::default(),
        }
    }

    pub fn stats(&self) -> ReceiveStats {
        self.stats
    }

    /// Splits off the next frame once it is whole. It shares the slab: no copy.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        let Some(total) = frame_len(&self.current, self.max_frame)? else {
            return Ok(None);
        };
        if self.current.len() < total {
            return Ok(None);
        }
        let mut frame = self.current.split_to(total);
        frame.advance(SIZE_PREFIX_LEN);
        Ok(Some(frame.freeze()))
    }

    /// Where the next read goes: room for the rest of the frame being received and no
    /// more, or for a read-ahead while its size is unknown. Never empty, so a read into
    /// it that returns no bytes means the stream ended.
    pub fn read_buf(&mut self) -> Result<Limit<&mut BytesMut>, FrameError> {
        let len = self.current.len();
        let end = match frame_len(&self.current, self.max_frame)? {
            Some(total) if total > len => {
                self.slab_bytes = self.slab_bytes.max(total);
                total
            }
            _ => len + READ_AHEAD,
        };
        self.make_room(end);
        Ok((&mut self.current).limit(end - len))
    }

    /// Makes the current slab hold `end` bytes from the start of the partial frame,
    /// reusing a slab whose frames were all dropped before allocating one.
    fn make_room(&mut self, end: usize) {
        if self.current.capacity() >= end {
            return;
        }
        let partial = self.current.len();
        if self.current.try_reclaim(end - partial) {
            self.stats.bytes_moved += partial as u64;
            return;
        }
        let reusable = self.spare.iter_mut().position(|s| s.try_reclaim(end));
        let mut slab = match reusable {
            Some(i) => self.spare.remove(i),
            None => {
                self.stats.slabs_allocated += 1;
                BytesMut::with_capacity(end.max(self.slab_bytes))
            }
        };
        slab.put_slice(&self.current);
        self.stats.bytes_moved += partial as u64;
        let mut old = std::mem::replace(&mut self.current, slab);
        old.clear();
        self.spare.push(old);
        if self.spare.len() > SPARE_SLABS {
            self.spare.remove(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    /// Feeds `wire` in reads of at most `chunk` bytes (as a socket hands them over) and
    /// passes each frame to `got`.
    fn receive(rx: &mut ReceiveBuffer, wire: &[u8], chunk: usize, mut got: impl FnMut(Bytes)) {
        let mut sent = 0;
        while sent < wire.len() {
            while let Some(frame) = rx.next_frame().unwrap() {
                got(frame);
            }
            let mut target = rx.read_buf().unwrap();
            let n = target.remaining_mut().min(chunk).min(wire.len() - sent);
            assert!(n > 0 || sent == wire.len());
            target.put_slice(&wire[sent..sent + n]);
            sent += n;
        }
        while let Some(frame) = rx.next_frame().unwrap() {
            got(frame);
        }
    }

    proptest! {
        #[test]
        fn frames_come_out_byte_for_byte_whatever_the_read_sizes(
            sizes in proptest::collection::vec(0usize..200_000, 1..12),
            chunk in 1usize..300_000,
            hold in any::<bool>(),
        ) {
            let bodies: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| (0..n).map(|j| (i * 31 + j) as u8).collect())
                .collect();
            let wire: Vec<u8> = bodies.iter().flat_map(|b| frame(b)).collect();
            let mut rx = ReceiveBuffer::new(1 << 20);
            let mut frames = Vec::new();
            receive(&mut rx, &wire, chunk, |f| {
                if hold {
                    frames.push(f);
                } else {
                    frames.push(Bytes::copy_from_slice(&f));
                }
            });
            prop_assert_eq!(frames.len(), bodies.len());
            for (frame, body) in frames.iter().zip(&bodies) {
                prop_assert_eq!(&frame[..], &body[..]);
            }
        }
    }

    #[test]
    fn dropped_frames_free_their_slab_for_later_frames() {
        let body = vec![7u8; 1 << 20];
        let wire: Vec<u8> = (0..50).flat_map(|_| frame(&body)).collect();
        let mut rx = ReceiveBuffer::new(4 << 20);
        let mut frames = 0;
        receive(&mut rx, &wire, 256 * 1024, |f| {
            assert_eq!(f.len(), body.len());
            frames += 1;
        });
        assert_eq!(frames, 50);
        let stats = rx.stats();
        // The read-ahead slab, then one that fits a frame; every later frame reuses them.
        assert!(stats.slabs_allocated <= 3, "{stats:?}");
        assert!(stats.bytes_moved <= 50 * (READ_AHEAD + SIZE_PREFIX_LEN) as u64);
    }

    #[test]
    fn an_oversized_prefix_is_refused_before_reserving() {
        let mut rx = ReceiveBuffer::new(16);
        rx.read_buf().unwrap().put_slice(&[0, 0, 0, 17]);
        let capacity = rx.current.capacity();
        assert_eq!(
            rx.next_frame(),
            Err(FrameError::TooLarge { size: 17, max: 16 })
        );
        assert!(rx.read_buf().is_err());
        assert_eq!(rx.current.capacity(), capacity);
    }
}
