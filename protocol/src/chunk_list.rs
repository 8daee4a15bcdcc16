//! A queue of `Bytes` read as one buffer, so a response can be written with one vectored
//! write without copying stored record data into a contiguous buffer.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// An ordered list of byte chunks that implements [`Buf`], including
/// [`Buf::chunks_vectored`] so `tokio::io::AsyncWriteExt::write_all_buf` issues `writev`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkList {
    chunks: VecDeque<Bytes>,
    remaining: usize,
}

impl ChunkList {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a chunk. Empty chunks are dropped so `chunk()` is only empty at the end.
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.remaining += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// The number of chunks not yet fully consumed.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// The chunks not yet consumed, in order (the first may be partly advanced).
    pub fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.chunks.iter()
    }

    /// Copies every remaining byte into one buffer. For tests and the rare caller that
    /// needs contiguous bytes; the serving path should write the chunks directly.
    pub fn to_contiguous(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.remaining);
        for chunk in &self.chunks {
            out.extend_from_slice(chunk);
        }
        out.freeze()
    }
}

impl FromIterator<Bytes> for ChunkList {
    fn from_iter<I: IntoIterator<Item = Bytes>>(iter: I) -> Self {
        let mut chunks = ChunkList::new();
        iter.into_iter().for_each(|s| chunks.push(s));
        chunks
    }
}

impl Buf for ChunkList {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.chunks.front().map_or(&[], |s| s.as_ref())
    }

    /// Panics when `cnt > remaining()`, as the `Buf` contract allows and `Bytes` does.
    fn advance(&mut self, mut cnt: usize) {
        assert!(
            cnt <= self.remaining,
            "cannot advance {cnt} bytes past the {} remaining",
            self.remaining
        );
        self.remaining -= cnt;
        while cnt > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if cnt < front.len() {
                front.advance(cnt);
                break;
            }
            cnt -= front.len();
            self.chunks.pop_front();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        for (slot, chunk) in dst.iter_mut().zip(&self.chunks) {
            *slot = IoSlice::new(chunk);
            filled += 1;
        }
        filled
    }

    /// Zero-copy when the request lies within the first chunk (the common case when a
    /// caller takes a whole record chunk).
    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        match self.chunks.front_mut() {
            Some(front) if len <= front.len() => {
                let out = front.split_to(len);
                if front.is_empty() {
                    self.chunks.pop_front();
                }
                self.remaining -= len;
                out
            }
            _ => {
                let mut out = BytesMut::with_capacity(len);
                out.put((&mut *self).take(len));
                out.freeze()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ChunkList {
        [&b"ab"[..], b"", b"cde", b"f"]
            .into_iter()
            .map(Bytes::from_static)
            .collect()
    }

    #[test]
    fn empty_chunks_are_skipped_and_remaining_is_the_sum() {
        let s = sample();
        assert_eq!(s.chunk_count(), 3);
        assert_eq!(s.remaining(), 6);
        assert_eq!(s.chunk(), b"ab");
    }

    #[test]
    fn advance_crosses_chunk_boundaries() {
        let mut s = sample();
        s.advance(3);
        assert_eq!(s.chunk(), b"de");
        assert_eq!(s.remaining(), 3);
        s.advance(3);
        assert_eq!(s.remaining(), 0);
        assert!(s.chunk().is_empty());
    }

    #[test]
    fn chunks_vectored_fills_at_most_dst_len() {
        let s = sample();
        let mut two = [IoSlice::new(&[]), IoSlice::new(&[])];
        assert_eq!(s.chunks_vectored(&mut two), 2);
        assert_eq!(&*two[1], b"cde");
        let mut many = [IoSlice::new(&[]); 8];
        assert_eq!(s.chunks_vectored(&mut many), 3);
    }

    #[test]
    fn copy_to_bytes_within_and_across_chunks() {
        let mut s = sample();
        let first = s.copy_to_bytes(2);
        assert_eq!(&first[..], b"ab");
        let across = s.copy_to_bytes(4);
        assert_eq!(&across[..], b"cdef");
        assert_eq!(s.remaining(), 0);
        assert_eq!(sample().to_contiguous(), Bytes::from_static(b"abcdef"));
    }

    /// What `write_all_buf` does with a vectored writer that accepts a few bytes at a time.
    #[test]
    fn partial_vectored_writes_deliver_every_byte_in_order() {
        let payload: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut chunks: ChunkList = payload.chunks(37).map(Bytes::copy_from_slice).collect();
        let mut written = Vec::new();
        let mut step = 1;
        while chunks.has_remaining() {
            let mut slices = [IoSlice::new(&[]); 4];
            let n = chunks.chunks_vectored(&mut slices);
            let budget = step % 97 + 1;
            let mut taken = 0;
            for slice in &slices[..n] {
                let take = slice.len().min(budget - taken);
                written.extend_from_slice(&slice[..take]);
                taken += take;
                if taken == budget {
                    break;
                }
            }
            chunks.advance(taken);
            step += 13;
        }
        assert_eq!(written, payload);
    }
}
