//! Sparse per-segment index files, and the offset index built on them.
//!
//! Entries live in memory (one per `index_interval_bytes`, so a 1 GiB segment holds
//! about 256 Ki entries) and are written to disk lazily: on roll, flush, truncation and
//! every [`WRITE_BATCH`] entries. An index is only an accelerator: one that is missing,
//! short or inconsistent is detected on open and rebuilt from the log.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};

/// Pending entries are appended to the file once this many accumulate. Each time opens
/// the file by path, so fewer and larger writes keep it off the append path; the active
/// segment's index is rebuilt by recovery's rescan anyway, and a sealed one is written
/// whole when it is sealed.
const WRITE_BATCH: usize = 1024;

/// One fixed-size, big-endian index entry.
pub(crate) trait Entry: Copy {
    const SIZE: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(bytes: &[u8]) -> Self;
    /// Entries must be strictly increasing in every field; anything else means damage.
    fn follows(&self, previous: &Self) -> bool;
    fn relative_offset(&self) -> u32;
}

/// An index: in-memory entries mirrored to a file.
#[derive(Debug)]
pub(crate) struct IndexFile<E> {
    path: PathBuf,
    entries: Vec<E>,
    /// How many leading entries are already in the file.
    written: usize,
    /// Set when entries were removed, so the file must be rewritten rather than appended.
    rewrite: bool,
}

impl<E: Entry> IndexFile<E> {
    /// A new, empty index; truncates any existing file at `path`.
    #[cfg(test)]
    pub(crate) fn create(path: PathBuf) -> Result<Self> {
        File::create(&path).map_err(StorageError::io("creating", &path))?;
        Ok(Self::empty(path))
    }

    /// An empty in-memory index whose file is rewritten on the next write.
    pub(crate) fn empty(path: PathBuf) -> Self {
        IndexFile {
            path,
            entries: Vec::new(),
            written: 0,
            rewrite: true,
        }
    }

    /// Loads the index if its file exists and its entries are well-formed (whole
    /// entries, strictly increasing). Returns `None` when it must be rebuilt.
    pub(crate) fn load(path: PathBuf) -> Result<Option<Self>> {
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io("reading", &path)(e)),
        };
        if bytes.len() % E::SIZE != 0 {
            return Ok(None);
        }
        let entries: Vec<E> = bytes.chunks_exact(E::SIZE).map(E::decode).collect();
        if entries.windows(2).any(|w| !w[1].follows(&w[0])) {
            return Ok(None);
        }
        Ok(Some(IndexFile {
            path,
            written: entries.len(),
            entries,
            rewrite: false,
        }))
    }

    pub(crate) fn entries(&self) -> &[E] {
        &self.entries
    }

    pub(crate) fn last(&self) -> Option<E> {
        self.entries.last().copied()
    }

    /// Adds an entry; callers guarantee it follows the last one.
    pub(crate) fn push(&mut self, entry: E) -> Result<()> {
        debug_assert!(self.last().is_none_or(|last| entry.follows(&last)));
        self.entries.push(entry);
        if self.entries.len() - self.written >= WRITE_BATCH {
            self.write_pending()?;
        }
        Ok(())
    }

    /// The entry with the greatest relative offset `<= relative`.
    pub(crate) fn floor(&self, relative: u32) -> Option<E> {
        let n = self
            .entries
            .partition_point(|e| e.relative_offset() <= relative);
        n.checked_sub(1).map(|i| self.entries[i])
    }

    /// Keeps only the entries for which `keep` holds (a prefix, given monotonicity).
    pub(crate) fn retain_prefix(&mut self, keep: impl Fn(&E) -> bool) {
        let n = self.entries.partition_point(keep);
        if n < self.entries.len() {
            self.entries.truncate(n);
            self.written = self.written.min(n);
            self.rewrite = true;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.retain_prefix(|_| false);
        self.rewrite = true;
    }

    /// Writes entries not yet on disk (or the whole file after a removal).
    pub(crate) fn write_pending(&mut self) -> Result<()> {
        if !self.rewrite && self.written == self.entries.len() {
            return Ok(());
        }
        let from = if self.rewrite { 0 } else { self.written };
        let mut buf = Vec::with_capacity((self.entries.len() - from) * E::SIZE);
        for e in &self.entries[from..] {
            e.encode(&mut buf);
        }
        let mut file = if self.rewrite {
            File::create(&self.path)
        } else {
            OpenOptions::new().append(true).open(&self.path)
        }
        .map_err(StorageError::io("opening", &self.path))?;
        file.write_all(&buf)
            .map_err(StorageError::io("writing", &self.path))?;
        self.written = self.entries.len();
        self.rewrite = false;
        Ok(())
    }

    /// Writes the pending entries and fsyncs the file, creating it even when it holds
    /// no entry, so an open finds the index whole.
    pub(crate) fn write_durably(&mut self) -> Result<()> {
        self.write_pending()?;
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .and_then(|file| file.sync_all())
            .map_err(StorageError::io("syncing", &self.path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Offset index entry: batch base offset relative to the segment, and its byte position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
}

impl Entry for OffsetEntry {
    const SIZE: usize = 8;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }

    fn decode(b: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    fn follows(&self, previous: &Self) -> bool {
        self.relative_offset > previous.relative_offset && self.position > previous.position
    }

    fn relative_offset(&self) -> u32 {
        self.relative_offset
    }
}

pub(crate) type OffsetIndex = IndexFile<OffsetEntry>;

impl OffsetIndex {
    /// Byte position to start scanning from for `relative`: the greatest indexed batch
    /// starting at or before it, or the segment start.
    pub(crate) fn lookup(&self, relative: u32) -> u32 {
        self.floor(relative).map_or(0, |e| e.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(relative_offset: u32, position: u32) -> OffsetEntry {
        OffsetEntry {
            relative_offset,
            position,
        }
    }

    #[test]
    fn lookup_finds_greatest_entry_at_or_below() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = OffsetIndex::create(dir.path().join("0.index")).unwrap();
        assert_eq!(index.lookup(5), 0);
        for (rel, pos) in [(10, 100), (20, 200), (35, 300)] {
            index.push(entry(rel, pos)).unwrap();
        }
        assert_eq!(index.lookup(9), 0);
        assert_eq!(index.lookup(10), 100);
        assert_eq!(index.lookup(34), 200);
        assert_eq!(index.lookup(u32::MAX), 300);
    }

    #[test]
    fn persists_appends_and_rewrites_after_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut index = OffsetIndex::create(path.clone()).unwrap();
        for i in 1..=300u32 {
            index.push(entry(i, i * 10)).unwrap();
        }
        index.write_pending().unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), 300 * 8);
        index.retain_prefix(|e| e.position < 1000);
        index.write_pending().unwrap();
        let loaded = OffsetIndex::load(path).unwrap().unwrap();
        assert_eq!(loaded.entries().len(), 99);
        assert_eq!(loaded.last(), Some(entry(99, 990)));
    }

    #[test]
    fn damaged_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        assert!(OffsetIndex::load(path.clone()).unwrap().is_none());
        fs::write(&path, [0u8; 12]).unwrap(); // not a whole number of entries
        assert!(OffsetIndex::load(path.clone()).unwrap().is_none());
        fs::write(&path, [0u8; 16]).unwrap(); // two identical (zero-filled) entries
        assert!(OffsetIndex::load(path.clone()).unwrap().is_none());
        let mut ok = Vec::new();
        entry(1, 10).encode(&mut ok);
        entry(2, 20).encode(&mut ok);
        fs::write(&path, &ok).unwrap();
        assert_eq!(OffsetIndex::load(path).unwrap().unwrap().entries().len(), 2);
    }
}
