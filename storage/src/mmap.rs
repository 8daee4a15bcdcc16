//! The crate's only `unsafe`: read-only memory maps of segment files.
//!
//! Serving reads from a map lets `read` return `Bytes` that point straight into the page
//! cache, so a fetch never copies record data in user space.
//!
//! A segment still being appended to is mapped past its written end (with headroom), so
//! that reads after each append share one map instead of each making a new one: a map
//! per read cost an `mmap`, an `munmap` with its TLB shootdown, and a page fault per page
//! read, on every fetch of a partition being written.
//!
//! Safety invariant: no byte past the file's end is ever read through a map, and a
//! mapped range holding written bytes never shrinks underneath a live map; either would
//! raise SIGBUS. This crate upholds it as follows:
//! * maps are [`MmapRaw`], which hands out no reference to its whole length; the only
//!   slices made of one ([`to_bytes`]) end at the segment's written size when they are
//!   made, and segment files are only ever appended to while mapped, so those bytes
//!   never change; the headroom past the end is never touched until appends fill it;
//! * truncation (`Segment::truncate_at`) first drops the segment's cached map and then,
//!   if any `Bytes` handed out earlier still holds a map of the file (every one holds
//!   the segment's reader token, an `Arc<()>`), writes the kept prefix to a new file and renames it over
//!   the old one instead of shrinking the old inode;
//! * deleting a segment unlinks it; the inode lives until the last map is dropped;
//! * recovery shrinks files only while nothing is mapped (during `open`).
//!   Another process truncating the files behind our back is outside this contract.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{MmapOptions, MmapRaw};

/// Maps the first `len` bytes of `file` read-only. `len` may exceed the file's size: the
/// pages past its end are address space only, and nothing reads them (see the module
/// comment).
pub(crate) fn map(file: &File, len: usize) -> io::Result<Arc<MmapRaw>> {
    let map = MmapOptions::new().len(len).map_raw_read_only(file)?;
    Ok(Arc::new(map))
}

/// Owner handed to `Bytes::from_owner`. It keeps the map alive, and holds the segment's
/// reader token so truncation can tell that some map of the file is still in use.
struct MapOwner {
    map: Arc<MmapRaw>,
    /// Written bytes of the file when the owner was made: all it ever exposes.
    len: usize,
    _reader: Arc<()>,
}

impl AsRef<[u8]> for MapOwner {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `len` is at most the map's length and at most the bytes written to the
        // file when this owner was made; those bytes are never truncated while any map
        // of the file lives (module comment), the map stays alive as long as `self`, and
        // it is read-only, so nothing mutates them through it.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.len) }
    }
}

/// A `Bytes` over the first `len` bytes of `map`, which must all be written bytes of the
/// file, keeping the map alive as long as any slice of it is.
pub(crate) fn to_bytes(map: Arc<MmapRaw>, len: usize, reader: Arc<()>) -> Bytes {
    let len = len.min(map.len());
    Bytes::from_owner(MapOwner {
        map,
        len,
        _reader: reader,
    })
}

/// How far past `size` written bytes a segment is mapped: as much again, between 1 MiB
/// and 64 MiB. A partition being written is mapped again once per that many bytes rather
/// than once per read, and its address space stays within about twice its data.
pub(crate) fn map_len(size: usize) -> usize {
    const MIN_HEADROOM: usize = 1 << 20;
    const MAX_HEADROOM: usize = 64 << 20;
    size.saturating_add(size.clamp(MIN_HEADROOM, MAX_HEADROOM))
}
