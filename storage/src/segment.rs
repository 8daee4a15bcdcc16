//! One segment: `{base_offset:020}.log` plus its `.index` and `.timeindex`.
//!
//! Reads go through a read-only memory map (see `mmap.rs`). The map is cached and
//! replaced by a larger one when a read needs bytes appended since it was made, so the
//! active segment costs one `mmap` per read that follows new appends, and a sealed one is
//! mapped once. We chose mapping over an in-memory tail because it keeps one read path
//! for every segment and holds no record bytes on the heap.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use memmap2::{Advice, MmapRaw};
use shadowlink_protocol::batch::{
    peek_last_offset, BatchWalker, Compression, RecordBatch, LOG_OVERHEAD, MIN_ENTRY_LENGTH,
};

use crate::error::{Result, StorageError};
use crate::files::{CachedFile, FileCache};
use crate::index::{OffsetEntry, OffsetIndex};
use crate::meta::sync_dir;
use crate::mmap;
use crate::record_time;
use crate::stamp::StoredBatch;
use crate::time_index::TimeIndex;

pub(crate) const LOG_EXT: &str = "log";
pub(crate) const INDEX_EXT: &str = "index";
pub(crate) const TIME_INDEX_EXT: &str = "timeindex";
/// Suffix of a truncated copy being written before it is renamed over a segment.
pub(crate) const SWAP_EXT: &str = "swap";

pub(crate) fn segment_path(dir: &Path, base_offset: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}"))
}

/// Where to start a new segment for `batch`: its base offset, except for a legacy entry,
/// whose base offset is its last (see `shadowlink_protocol::batch`). That one starts at the
/// log end offset, so the segment's base stays at or below every offset it holds, as
/// Kafka does; but no lower than relative offsets allow.
pub(crate) fn roll_offset(batch: &impl StoredBatch, log_end_offset: i64) -> i64 {
    if !batch.is_legacy() {
        return batch.base_offset();
    }
    let lowest = batch.base_offset().saturating_sub(i64::from(u32::MAX));
    log_end_offset.clamp(lowest, batch.base_offset())
}

/// The batch with the largest max timestamp in a segment (first one on ties).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MaxTimestamp {
    pub(crate) timestamp: i64,
    /// Last offset of that batch, which finds it again.
    pub(crate) offset: i64,
    pub(crate) relative_offset: u32,
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    pub(crate) log_path: PathBuf,
    /// Opened through the node's cache when used; shared with pending syncs, which
    /// fsync it without the log's lock.
    file: Arc<CachedFile>,
    /// Bytes of whole, validated batches. The file is never read past this.
    pub(crate) size: u64,
    /// Last offset + 1 of the last batch, or `base_offset` when empty.
    pub(crate) next_offset: i64,
    pub(crate) index: OffsetIndex,
    pub(crate) time_index: TimeIndex,
    pub(crate) bytes_since_index: u64,
    pub(crate) max: Option<MaxTimestamp>,
    /// Max timestamp of the first batch, the reference point for time-based rolling.
    pub(crate) first_timestamp: Option<i64>,
    pub(crate) created: Instant,
    /// Whether both index files loaded and passed format checks on open.
    pub(crate) indexes_loaded: bool,
    /// The file mapped past its written end: reads share it until the file outgrows it.
    map: Mutex<Option<Arc<MmapRaw>>>,
    /// Cloned into every `Bytes` handed out; a count above one means readers still hold
    /// maps of the current file, so it must not be shrunk in place.
    readers: Arc<()>,
    /// Writes of batch data, for tests of write coalescing.
    #[cfg(test)]
    pub(crate) data_writes: u64,
    /// Maps made by reads, for tests of map reuse.
    #[cfg(test)]
    pub(crate) maps_made: std::sync::atomic::AtomicU64,
    /// Batch headers checked by an open, for tests of how much of the file it reads.
    #[cfg(test)]
    pub(crate) headers_checked: std::sync::atomic::AtomicU64,
}

impl Segment {
    fn with_file(dir: &Path, base_offset: i64, file: Arc<CachedFile>, size: u64) -> Self {
        Segment {
            base_offset,
            log_path: segment_path(dir, base_offset, LOG_EXT),
            file,
            size,
            next_offset: base_offset,
            index: OffsetIndex::empty(segment_path(dir, base_offset, INDEX_EXT)),
            time_index: TimeIndex::empty(segment_path(dir, base_offset, TIME_INDEX_EXT)),
            bytes_since_index: 0,
            max: None,
            first_timestamp: None,
            created: Instant::now(),
            indexes_loaded: false,
            map: Mutex::new(None),
            readers: Arc::new(()),
            #[cfg(test)]
            data_writes: 0,
            #[cfg(test)]
            maps_made: Default::default(),
            #[cfg(test)]
            headers_checked: Default::default(),
        }
    }

    /// Creates an empty segment and its index files, then fsyncs the directory so the
    /// new entries survive power loss.
    pub(crate) fn create(dir: &Path, base_offset: i64, files: &FileCache) -> Result<Self> {
        let segment = Self::create_unsynced(dir, base_offset, files)?;
        sync_dir(dir)?;
        Ok(segment)
    }

    /// Creates an empty segment; the caller owes `dir` an fsync. Its index files are
    /// written with their first entries or when it is sealed: until then the segment is
    /// the active one, whose indexes the full scan on open rebuilds anyway, so a new
    /// partition costs the file system one file, not three.
    pub(crate) fn create_unsynced(dir: &Path, base_offset: i64, files: &FileCache) -> Result<Self> {
        let path = segment_path(dir, base_offset, LOG_EXT);
        let file = files
            .create(path.clone())
            .map_err(StorageError::io("creating", &path))?;
        let mut segment = Self::with_file(dir, base_offset, file, 0);
        segment.indexes_loaded = true;
        Ok(segment)
    }

    /// Opens an existing segment as-is: `size` is the file length and the indexes are
    /// loaded if well-formed. Callers must then run `load_sealed` or `recover`.
    pub(crate) fn open(dir: &Path, base_offset: i64, files: &FileCache) -> Result<Self> {
        let path = segment_path(dir, base_offset, LOG_EXT);
        let size = fs::metadata(&path)
            .map_err(StorageError::io("reading metadata of", &path))?
            .len();
        let mut segment = Self::with_file(dir, base_offset, files.register(path), size);
        let index = OffsetIndex::load(segment.index.path().to_path_buf())?;
        let time_index = TimeIndex::load(segment.time_index.path().to_path_buf())?;
        if let (Some(index), Some(time_index)) = (index, time_index) {
            segment.index = index;
            segment.time_index = time_index;
            segment.indexes_loaded = true;
        }
        Ok(segment)
    }

    /// Offset relative to the base, clamped to the u32 range used by the indexes.
    pub(crate) fn relative(&self, offset: i64) -> u32 {
        (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32
    }

    /// Whether `batch` can be indexed here: relative offsets must fit the index.
    pub(crate) fn can_hold_offsets(&self, batch: &impl StoredBatch) -> bool {
        batch.base_offset() >= self.base_offset
            && batch.last_offset() - self.base_offset <= i64::from(u32::MAX)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Appends `batches` to the file with `write`, which writes their bytes at its end,
    /// then indexes each batch. Nothing is tracked unless the whole write succeeded, so
    /// the file is never read past what it holds.
    pub(crate) fn append_run<B: StoredBatch>(
        &mut self,
        write: impl FnOnce(&File) -> std::io::Result<()>,
        batches: &[B],
        index_interval: u32,
    ) -> Result<()> {
        let file = self.file.open()?;
        let written = write(&file);
        // Counted even when it failed: part of it may be in the page cache.
        self.file.wrote();
        written.map_err(StorageError::io("appending to", &self.log_path))?;
        #[cfg(test)]
        {
            self.data_writes += 1;
        }
        let mut position = self.size;
        for batch in batches {
            self.track(batch, position, index_interval)?;
            position += batch.len() as u64;
        }
        Ok(())
    }

    /// Updates indexes and metadata for a batch now stored at `position`. Shared by
    /// append and by recovery, so a rebuilt index is identical to the original.
    pub(crate) fn track(
        &mut self,
        batch: &impl StoredBatch,
        position: u64,
        interval: u32,
    ) -> Result<()> {
        let relative = self.relative(batch.base_offset());
        if position == 0 {
            self.first_timestamp = Some(batch.max_timestamp());
        }
        if self.max.is_none_or(|m| batch.max_timestamp() > m.timestamp) {
            self.max = Some(MaxTimestamp {
                timestamp: batch.max_timestamp(),
                offset: batch.last_offset(),
                relative_offset: relative,
            });
        }
        if self.bytes_since_index >= u64::from(interval) {
            self.index.push(OffsetEntry {
                relative_offset: relative,
                position: position as u32,
            })?;
            self.push_time_entry()?;
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += batch.len() as u64;
        self.size = position + batch.len() as u64;
        self.next_offset = batch.next_offset();
        Ok(())
    }

    fn push_time_entry(&mut self) -> Result<()> {
        match self.max {
            Some(m) => self.time_index.maybe_push(m.timestamp, m.relative_offset),
            None => Ok(()),
        }
    }

    /// Forgets all batches (before a rescan); the file itself is untouched.
    pub(crate) fn reset_metadata(&mut self) {
        self.index.clear();
        self.time_index.clear();
        self.bytes_since_index = 0;
        self.max = None;
        self.first_timestamp = None;
        self.next_offset = self.base_offset;
        self.size = 0;
    }

    /// Called when the segment stops being the active one: record its final maximum
    /// timestamp in the time index and write the indexes out.
    pub(crate) fn seal(&mut self) -> Result<()> {
        self.push_time_entry()?;
        self.index.write_pending()?;
        self.time_index.write_pending()
    }

    /// Writes both indexes whole and durably, for an open that loads them instead of
    /// scanning the segment.
    pub(crate) fn write_indexes_durably(&mut self) -> Result<()> {
        self.index.write_durably()?;
        self.time_index.write_durably()
    }

    /// The file appends write through, for fsyncs run without the log's lock.
    pub(crate) fn file(&self) -> &Arc<CachedFile> {
        &self.file
    }

    /// The first `size` bytes of the file as zero-copy `Bytes` over a memory map.
    pub(crate) fn mapped(&self) -> Result<Bytes> {
        let size = self.size as usize;
        if size == 0 {
            return Ok(Bytes::new());
        }
        let mut cache = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let map = match cache.as_ref() {
            Some(map) if map.len() >= size => Arc::clone(map),
            _ => {
                let map = mmap::map(&*self.file.open()?, mmap::map_len(size))
                    .map_err(StorageError::io("mapping", &self.log_path))?;
                *cache = Some(Arc::clone(&map));
                #[cfg(test)]
                self.maps_made
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                map
            }
        };
        Ok(mmap::to_bytes(map, size, Arc::clone(&self.readers)))
    }

    /// Sets the first batch's timestamp if unknown: a segment loaded from its indexes
    /// does not read its first batch, and needs it once it becomes the active one again.
    pub(crate) fn read_first_timestamp(&mut self) -> Result<()> {
        if self.first_timestamp.is_none() && self.size > 0 {
            let data = self.mapped()?;
            self.first_timestamp = Some(self.batch_at(&data, 0)?.max_timestamp());
        }
        Ok(())
    }

    /// Fsyncs the segment's data whoever wrote it: this log, or an earlier one whose
    /// writes it inherited when it opened the file.
    pub(crate) fn sync_all_data(&self) -> Result<()> {
        (self.file.open()?.sync_data()).map_err(StorageError::io("syncing", &self.log_path))
    }

    /// Turns the read-ahead of the cached map off or back on. An open that checks a few
    /// batch headers of a file not in the page cache then reads those pages alone, not
    /// the device's whole read-ahead window around each (8 MiB on some virtual disks).
    pub(crate) fn read_ahead(&self, on: bool) {
        let advice = if on { Advice::Normal } else { Advice::Random };
        let cache = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(map) = cache.as_ref() {
            // Only a hint: a failure leaves the default read-ahead.
            let _ = map.advise(advice);
        }
    }

    pub(crate) fn corrupt(&self, position: u64, reason: impl Into<String>) -> StorageError {
        StorageError::Corrupt {
            path: self.log_path.clone(),
            position,
            reason: reason.into(),
        }
    }

    /// The batch starting at `position` in `data` (from [`Segment::mapped`]).
    pub(crate) fn batch_at(&self, data: &Bytes, position: u64) -> Result<RecordBatch> {
        let rest = data.slice((position as usize).min(data.len())..);
        match BatchWalker::new(rest).next() {
            Some(Ok(batch)) => Ok(batch),
            Some(Err(e)) => Err(self.corrupt(position, e.to_string())),
            None => Err(self.corrupt(position, "a batch is cut off by the end of the segment")),
        }
    }

    /// Length of the batch at `position`, reading only its length field. The bound is the
    /// smallest of any format (a v0 message), so legacy entries are taken too; each was
    /// checked against its own format's minimum when it was appended or recovered.
    fn batch_len_at(&self, data: &Bytes, position: u64) -> Result<u64> {
        let at = position as usize;
        let header = data
            .get(at..at + LOG_OVERHEAD)
            .ok_or_else(|| self.corrupt(position, "a batch header is cut off"))?;
        let length = i32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        let total = LOG_OVERHEAD as u64 + u64::try_from(length).unwrap_or(0);
        if length < MIN_ENTRY_LENGTH || position + total > self.size {
            return Err(self.corrupt(position, format!("impossible batchLength {length}")));
        }
        Ok(total)
    }

    /// Position and view of the first batch whose last offset is `>= offset`.
    ///
    /// The batches before it are stepped over on their length and last offset alone: a
    /// read at the tail of a partition written in small batches (a consumer or a mirror
    /// keeping up) steps over up to an index interval of them on every fetch.
    pub(crate) fn locate(&self, data: &Bytes, offset: i64) -> Result<Option<(u64, RecordBatch)>> {
        let mut position = u64::from(self.index.lookup(self.relative(offset)));
        while position < self.size {
            let last = match data.get(position as usize..).and_then(peek_last_offset) {
                Some(last) => last,
                // A header too short or of no known format: the full view names why.
                None => self.batch_at(data, position)?.last_offset(),
            };
            if last >= offset {
                return Ok(Some((position, self.batch_at(data, position)?)));
            }
            position += self.batch_len_at(data, position)?;
        }
        Ok(None)
    }

    /// End position of the run of whole batches starting at `from` that fits in
    /// `budget` bytes; the first batch is always taken if `at_least_one` (KIP-74).
    pub(crate) fn take_batches(
        &self,
        data: &Bytes,
        from: u64,
        budget: usize,
        at_least_one: bool,
    ) -> Result<u64> {
        let mut end = from;
        while end < self.size {
            let len = self.batch_len_at(data, end)?;
            let taken = end - from + len;
            if taken > budget as u64 && !(at_least_one && end == from) {
                break;
            }
            end += len;
        }
        Ok(end)
    }

    /// `(offset, timestamp)` of the first record at offset `>= min_offset` whose timestamp
    /// is `>= target`, as Kafka's `LogSegment.findOffsetByTimestamp`: the time index skips
    /// batches whose max timestamp is too old, then the records of each remaining batch
    /// are checked in order (usually only the first one's).
    pub(crate) fn find_timestamp(
        &self,
        target: i64,
        min_offset: i64,
    ) -> Result<Option<(i64, i64)>> {
        let data = self.mapped()?;
        let from_time = self.time_index.scan_start(target).unwrap_or(0);
        let from = from_time.max(self.relative(min_offset));
        let mut position = u64::from(self.index.lookup(from));
        // Where the entry being scanned may begin: the end of the one before it, or the
        // segment base (a lower bound) for the first one scanned.
        let mut floor = self.base_offset;
        while position < self.size {
            let batch = self.batch_at(&data, position)?;
            if batch.max_timestamp() >= target && batch.last_offset() >= min_offset {
                let found = if batch.is_legacy() && batch.compression() != Compression::None {
                    // A compressed legacy wrapper's first inner offset is unknown without
                    // decompressing: a fetch from the lower bound returns the whole
                    // wrapper, and the client skips nothing it wants.
                    Some((floor.max(min_offset), batch.max_timestamp()))
                } else {
                    record_time::first_at_or_after(&batch, target, min_offset)
                        .map_err(|e| self.corrupt(position, e))?
                };
                if found.is_some() {
                    return Ok(found);
                }
            }
            floor = batch.next_offset();
            position += batch.len() as u64;
        }
        Ok(None)
    }

    /// `(timestamp, position)` of the batch holding the largest record timestamp at
    /// offsets `>= min_offset`, the first on ties. A segment wholly above `min_offset`
    /// answers from its tracked maximum; one straddling it is scanned, and the batch
    /// holding `min_offset` counts only its records from there.
    pub(crate) fn max_timestamp_from(&self, min_offset: i64) -> Result<Option<(i64, u64)>> {
        let Some(max) = self.max else {
            return Ok(None);
        };
        let data = self.mapped()?;
        if self.base_offset >= min_offset {
            let found = self.locate(&data, max.offset)?;
            return Ok(found.map(|(pos, _)| (max.timestamp, pos)));
        }
        let mut best: Option<(i64, u64)> = None;
        let mut next = self.locate(&data, min_offset)?;
        while let Some((position, batch)) = next {
            let timestamp = if batch.base_offset() < min_offset {
                record_time::max_record(&batch, min_offset)
                    .map_err(|e| self.corrupt(position, e))?
                    .map(|(_, ts)| ts)
            } else {
                Some(batch.max_timestamp())
            };
            if let Some(ts) = timestamp.filter(|&ts| best.is_none_or(|(b, _)| ts > b)) {
                best = Some((ts, position));
            }
            let after = position + batch.len() as u64;
            next = (after < self.size)
                .then(|| self.batch_at(&data, after).map(|b| (after, b)))
                .transpose()?;
        }
        Ok(best)
    }

    /// `(offset, timestamp)` of the record with the largest timestamp at offset
    /// `>= min_offset` in the batch at `position`, the earliest on ties.
    pub(crate) fn max_record_at(
        &self,
        position: u64,
        min_offset: i64,
    ) -> Result<Option<(i64, i64)>> {
        let batch = self.batch_at(&self.mapped()?, position)?;
        record_time::max_record(&batch, min_offset).map_err(|e| self.corrupt(position, e))
    }

    /// Calls `f` for every batch, in order.
    pub(crate) fn for_each_batch(&self, mut f: impl FnMut(&RecordBatch)) -> Result<()> {
        let data = self.mapped()?;
        let mut position = 0;
        while position < self.size {
            let batch = self.batch_at(&data, position)?;
            f(&batch);
            position += batch.len() as u64;
        }
        Ok(())
    }

    /// Shrinks the file to `len` bytes without invalidating maps held by readers: if
    /// any `Bytes` from this file is alive, the prefix is copied to a new file that is
    /// renamed over this one (the old inode stays valid for the readers).
    pub(crate) fn shrink_file(&mut self, len: u64) -> Result<()> {
        drop(
            self.map
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        if Arc::strong_count(&self.readers) > 1 {
            self.replace_with_prefix(len)?;
        } else {
            self.file
                .open()?
                .set_len(len)
                .map_err(StorageError::io("truncating", &self.log_path))?;
        }
        self.size = self.size.min(len);
        Ok(())
    }

    fn replace_with_prefix(&mut self, len: u64) -> Result<()> {
        let swap = self.log_path.with_extension(SWAP_EXT);
        let copy = || -> io::Result<()> {
            let mut out = File::create(&swap)?;
            io::copy(
                &mut io::Read::take(File::open(&self.log_path)?, len),
                &mut out,
            )?;
            out.sync_all()
        };
        copy().map_err(StorageError::io("writing truncated copy", &swap))?;
        fs::rename(&swap, &self.log_path).map_err(StorageError::io("renaming", &swap))?;
        self.file.reopen_later();
        self.readers = Arc::new(());
        sync_dir(self.log_path.parent().unwrap_or(Path::new(".")))
    }

    /// Rewrites the indexes so they match the current metadata.
    pub(crate) fn rewrite_indexes(&mut self) -> Result<()> {
        // An empty segment's indexes hold nothing and need no file: a missing index is
        // rebuilt on open, and an empty segment's rebuild reads nothing. Any file left
        // from before it was emptied points past its end, which opening detects; the
        // first entries written after replace it whole.
        if self.size == 0 {
            return Ok(());
        }
        self.index.write_pending()?;
        self.time_index.write_pending()
    }

    /// Removes the segment's files. Readers holding maps keep their data.
    pub(crate) fn delete(self) -> Result<()> {
        for path in [
            self.log_path.clone(),
            self.index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
        ] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io("deleting", &path)(e)),
            }
        }
        Ok(())
    }

    /// Newest data timestamp for retention; the file's mtime when batches carry none.
    pub(crate) fn retention_timestamp(&self) -> i64 {
        match self.max {
            Some(m) if m.timestamp >= 0 => m.timestamp,
            _ => fs::metadata(&self.log_path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(i64::MAX, |d| d.as_millis() as i64),
        }
    }
}
