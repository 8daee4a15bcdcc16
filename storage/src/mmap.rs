//! The crate's only `unsafe`: read-only memory maps of segment files.
//!
//! Serving reads from a map lets `read` return `Bytes` that point straight into the page
//! cache, so a fetch never copies record data in user space.
//!
//! Safety invariant: a mapped range must never shrink underneath a live map, or touching
//! it raises SIGBUS. This crate upholds it as follows:
//! * segment files are only ever appended to while mapped, and a map covers at most the
//!   bytes already written, so its pages never change;
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
use memmap2::{Mmap, MmapOptions};

/// Maps the first `len` bytes of `file` read-only. `len` must not exceed the file size.
pub(crate) fn map(file: &File, len: usize) -> io::Result<Arc<Mmap>> {
    // SAFETY: see the module comment; the mapped prefix is never truncated while mapped.
    let map = unsafe { MmapOptions::new().len(len).map(file)? };
    Ok(Arc::new(map))
}

/// Owner handed to `Bytes::from_owner`. It keeps the map alive, and holds the segment's
/// reader token so truncation can tell that some map of the file is still in use.
struct MapOwner {
    map: Arc<Mmap>,
    _reader: Arc<()>,
}

impl AsRef<[u8]> for MapOwner {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

/// A `Bytes` over the whole map, keeping it alive as long as any slice of it is.
pub(crate) fn to_bytes(map: Arc<Mmap>, reader: Arc<()>) -> Bytes {
    Bytes::from_owner(MapOwner {
        map,
        _reader: reader,
    })
}
