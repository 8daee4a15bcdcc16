//! Opening a log directory: find segments, validate or rebuild indexes, and cut a torn
//! or corrupt tail off the last segment.
//!
//! Only the last segment is scanned batch by batch with CRC checks: earlier segments
//! were complete when the log rolled past them. A sealed segment is opened cheaply from
//! its indexes, checked by scanning from its last index entries to its end; if that
//! disagrees with the file it gets the full treatment, and if it then loses bytes every
//! later segment is deleted too, since the log must stay a contiguous prefix.

use std::fs;
use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use shadowlink_protocol::batch::RecordBatch;

use crate::clean::CleanClose;
use crate::config::LogConfig;
use crate::durability::{Durability, FsyncFault};
use crate::epoch::LeaderEpochCache;
use crate::error::{Result, StorageError};
use crate::files::FileCache;
use crate::log::{PartitionLog, LOG_START_FILE};
use crate::meta::{read_meta, sync_dir};
use crate::segment::{Segment, LOG_EXT, SWAP_EXT};

impl Segment {
    /// Rebuilds indexes and metadata from the file, stopping at the first batch that
    /// is cut off, malformed, below `min_offset` or out of order, or (with `check_crc`)
    /// fails its CRC. Returns the length of the valid prefix.
    pub(crate) fn scan_rebuild(
        &mut self,
        min_offset: i64,
        interval: u32,
        check_crc: bool,
    ) -> Result<u64> {
        let file_len = self.size;
        let data = self.mapped()?;
        self.reset_metadata();
        let mut position = 0u64;
        let mut expected = min_offset.max(self.base_offset);
        while position < file_len {
            let Some(batch) = valid_batch_at(self, &data, position, expected, check_crc) else {
                break;
            };
            self.track(&batch, position, interval)?;
            expected = batch.next_offset();
            position += batch.len() as u64;
        }
        self.size = file_len;
        Ok(position)
    }

    /// Full recovery: rebuild from a CRC-checked scan, cut off everything after the last
    /// valid batch, and write the rebuilt indexes. Returns how many bytes were dropped.
    pub(crate) fn recover(&mut self, min_offset: i64, interval: u32) -> Result<u64> {
        let dropped = self.recover_active(min_offset, interval)?;
        self.rewrite_indexes()?;
        Ok(dropped)
    }

    /// [`Segment::recover`] of the active segment, whose index files are left as they
    /// are: an open that scans it rebuilds its indexes, so files written now would never
    /// be read. They are written whole when it is sealed, or by a clean close.
    pub(crate) fn recover_active(&mut self, min_offset: i64, interval: u32) -> Result<u64> {
        let file_len = self.size;
        let valid = self.scan_rebuild(min_offset, interval, true)?;
        let dropped = file_len - valid;
        if dropped > 0 {
            tracing::warn!(
                segment = %self.log_path.display(),
                valid_bytes = valid,
                dropped_bytes = dropped,
                kept_up_to_offset = self.next_offset,
                "truncating a torn or corrupt tail found during recovery"
            );
            self.shrink_file(valid)?;
        }
        self.size = valid;
        self.indexes_loaded = true;
        Ok(dropped)
    }

    /// Cheap open of a sealed segment from its indexes. Scans only from the last index
    /// entries to the end, checking that they point at the batches they claim to and
    /// that the batch chain ends exactly at the end of the file. Returns `false` if
    /// anything disagrees, in which case the caller runs [`Segment::recover`].
    pub(crate) fn load_sealed(&mut self, min_offset: i64) -> Result<bool> {
        self.load_indexed(min_offset, false)
    }

    /// Loads the segment from its indexes with the map's read-ahead off: the few
    /// headers checked are all it reads.
    fn load_indexed(&mut self, min_offset: i64, indexes_durable: bool) -> Result<bool> {
        if !self.indexes_loaded {
            return Ok(false);
        }
        let data = self.mapped()?;
        self.read_ahead(false);
        let loaded = self.load_from_indexes(&data, min_offset, indexes_durable);
        self.read_ahead(true);
        loaded
    }

    /// A time index fsynced whole (a clean close's) holds in its last entry the newest
    /// timestamp up to the last offset entry, so only that entry's batch and the ones
    /// after the last offset entry are read. One written at a roll and synced later may
    /// have lost its tail to a power loss, and is trusted no further than a walk from its
    /// last entry confirms.
    fn load_from_indexes(
        &mut self,
        data: &Bytes,
        min_offset: i64,
        indexes_durable: bool,
    ) -> Result<bool> {
        let (last_index, last_time) = (self.index.last(), self.time_index.last());
        if last_index.is_some_and(|e| u64::from(e.position) >= self.size) {
            return Ok(false);
        }
        let first = min_offset.max(self.base_offset);
        self.max = None;
        let mut from = last_index.map_or(0, |e| e.relative_offset);
        let mut time_seen = last_time.is_none();
        match last_time {
            Some(t) if indexes_durable => match self.batch_of(data, t.relative_offset, first) {
                Some(b) if b.max_timestamp() == t.timestamp => {
                    self.observe_max(&b, t.relative_offset);
                    time_seen = true;
                }
                _ => return Ok(false),
            },
            Some(t) => from = from.min(t.relative_offset),
            None => {}
        }
        let mut position = u64::from(self.index.lookup(from));
        if self.size.saturating_sub(position) > LONG_WALK_BYTES {
            // A walk this long reads most pages anyway: one read per header would cost
            // more than the read-ahead it saves.
            self.read_ahead(true);
        }
        let (mut expected, mut index_seen) = (first, last_index.is_none());
        while position < self.size {
            let Some(batch) = valid_batch_at(self, data, position, expected, false) else {
                return Ok(false);
            };
            let relative = self.relative(batch.base_offset());
            index_seen |= last_index.is_some_and(|e| {
                e.relative_offset == relative && u64::from(e.position) == position
            });
            time_seen |= last_time.is_some_and(|e| {
                e.relative_offset == relative && e.timestamp == batch.max_timestamp()
            });
            self.observe_max(&batch, relative);
            expected = batch.next_offset();
            position += batch.len() as u64;
        }
        self.next_offset = expected;
        Ok(index_seen && time_seen)
    }

    /// The batch at relative offset `relative`, found from the offset index entry at or
    /// before it: a walk of at most one index interval.
    fn batch_of(&self, data: &Bytes, relative: u32, expected: i64) -> Option<RecordBatch> {
        let mut position = u64::from(self.index.lookup(relative));
        while position < self.size {
            let batch = valid_batch_at(self, data, position, expected, false)?;
            match self.relative(batch.base_offset()).cmp(&relative) {
                std::cmp::Ordering::Less => position += batch.len() as u64,
                std::cmp::Ordering::Equal => return Some(batch),
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }

    /// Loads an active segment a clean close left with durable indexes as a sealed one
    /// is loaded, also restoring what its next appends build on: the first batch's
    /// timestamp (time-based rolls) and the bytes since the last index entry.
    pub(crate) fn load_active(&mut self, min_offset: i64, clean: CleanClose) -> Result<bool> {
        if !self.load_indexed(min_offset, true)? {
            return Ok(false);
        }
        self.first_timestamp = clean.first_timestamp;
        let last_entry = self.index.last().map_or(0, |e| u64::from(e.position));
        self.bytes_since_index = self.size - last_entry;
        Ok(true)
    }

    fn observe_max(&mut self, batch: &RecordBatch, relative: u32) {
        if self.max.is_none_or(|m| batch.max_timestamp() > m.timestamp) {
            self.max = Some(crate::segment::MaxTimestamp {
                timestamp: batch.max_timestamp(),
                offset: batch.last_offset(),
                relative_offset: relative,
            });
        }
    }
}

/// How far past its last index entry a load walks a segment with read-ahead off.
const LONG_WALK_BYTES: u64 = 1 << 20;

/// The batch at `position` if it is complete, well-formed, starts at or after
/// `expected`, fits the segment's relative offsets and (optionally) passes its CRC.
fn valid_batch_at(
    segment: &Segment,
    data: &Bytes,
    position: u64,
    expected: i64,
    check_crc: bool,
) -> Option<RecordBatch> {
    #[cfg(test)]
    (segment.headers_checked).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let batch = segment.batch_at(data, position).ok()?;
    let offsets_ok = batch.base_offset() >= expected
        && batch.last_offset_delta() >= 0
        && segment.can_hold_offsets(&batch)
        && position + batch.len() as u64 <= u64::from(u32::MAX);
    if !offsets_ok || (check_crc && batch.validate_crc().is_err()) {
        return None;
    }
    Some(batch)
}

/// Base offsets of the segments in `dir`, sorted; removes leftovers of interrupted
/// truncations and metadata writes.
fn list_segments(dir: &Path) -> Result<Vec<i64>> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir).map_err(StorageError::io("listing", dir))? {
        let path = entry.map_err(StorageError::io("listing", dir))?.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext == SWAP_EXT || ext == "tmp" {
            tracing::warn!(file = %path.display(), "removing leftover of an interrupted write");
            fs::remove_file(&path).map_err(StorageError::io("removing", &path))?;
            continue;
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if ext == LOG_EXT {
            if let Ok(base) = stem.parse::<i64>() {
                bases.push(base);
            }
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// What recovery cut off when a log was opened: nothing, after a clean shutdown or a
/// crash that tore no write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Bytes of torn or corrupt tail cut off segments.
    pub dropped_bytes: u64,
    /// Whole segments deleted because one before them lost bytes.
    pub dropped_segments: usize,
}

impl Recovered {
    pub fn dropped_anything(&self) -> bool {
        self.dropped_bytes > 0 || self.dropped_segments > 0
    }
}

/// Opens every segment, recovering where needed, and says whether the active one was
/// loaded as `clean` left it. Never returns an empty list.
fn open_segments(
    dir: &Path,
    bases: &[i64],
    config: &LogConfig,
    log_start: i64,
    clean: Option<CleanClose>,
) -> Result<(Vec<Segment>, Recovered, bool)> {
    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
    let mut recovered = Recovered::default();
    let mut loaded_clean = false;
    for (i, &base) in bases.iter().enumerate() {
        let mut segment = Segment::open(dir, base, &config.open_files)?;
        let min_offset = segments.last().map_or(base, |s| s.next_offset);
        let is_last = i + 1 == bases.len();
        let interval = config.index_interval_bytes;
        let left_clean = clean.filter(|c| c.segment == base && c.size == segment.size);
        let dropped = if is_last {
            loaded_clean = match left_clean {
                Some(clean) => segment.load_active(min_offset, clean)?,
                None => false,
            };
            if loaded_clean {
                0
            } else {
                segment.recover_active(min_offset, interval)?
            }
        } else if segment.load_sealed(min_offset)? {
            0
        } else {
            segment.recover(min_offset, interval)?
        };
        recovered.dropped_bytes += dropped;
        segments.push(segment);
        if dropped > 0 && !is_last {
            delete_after_corruption(dir, &bases[i + 1..], &config.open_files)?;
            recovered.dropped_segments = bases.len() - i - 1;
            break;
        }
    }
    if segments.is_empty() {
        segments.push(Segment::create(dir, log_start, &config.open_files)?);
    }
    Ok((segments, recovered, loaded_clean))
}

fn delete_after_corruption(dir: &Path, bases: &[i64], files: &FileCache) -> Result<()> {
    tracing::warn!(
        segments = bases.len(),
        "deleting segments after a corrupt one so the log stays contiguous"
    );
    for &base in bases {
        Segment::open(dir, base, files)?.delete()?;
    }
    sync_dir(dir)
}

/// Opens (creating if needed) the log in `dir` and runs recovery.
pub(crate) fn open_log(dir: &Path, config: LogConfig) -> Result<PartitionLog> {
    if make_dir(dir)? {
        return create_log(dir, config);
    }
    let clean = crate::clean::take(dir)?;
    crate::cleaner::finish_interrupted(dir)?;
    let bases = list_segments(dir)?;
    let persisted_start = read_log_start(dir)?;
    let (mut segments, recovered, clean) =
        open_segments(dir, &bases, &config, persisted_start.unwrap_or(0), clean)?;
    // Drop segments that a crash during delete_before left wholly below the log start.
    let start = persisted_start.unwrap_or(i64::MIN);
    while segments.len() > 1 && segments[0].next_offset <= start && segments[1].base_offset <= start
    {
        segments.remove(0).delete()?;
    }
    // A log restarted past its end (truncate_fully_and_start_at) persists the new start
    // before it deletes the old segments: finish the restart.
    if start > segments[segments.len() - 1].next_offset {
        for segment in segments.drain(..) {
            segment.delete()?;
        }
        segments.push(Segment::create(dir, start, &config.open_files)?);
        sync_dir(dir)?;
    }
    let first_base = segments[0].base_offset;
    let log_end = segments.last().map_or(first_base, |s| s.next_offset);
    let log_start = persisted_start
        .unwrap_or(first_base)
        .max(first_base)
        .min(log_end);
    // A clean close left the files below holding all the active segment carries.
    let rescan = if clean {
        &[][..]
    } else {
        &segments[segments.len() - 1..]
    };
    let epochs = load_epochs(dir, &segments, rescan, log_start, log_end)?;
    let (max_producer_id, persisted) =
        crate::producers::load_max_producer_id(dir, &segments, rescan)?;
    let txns = crate::txn::TxnIndex::load(dir, &segments, log_start)?;
    let mut log = empty_log(dir, config, segments, log_start);
    log.epochs = epochs;
    log.max_producer_id = max_producer_id;
    log.persisted_max_producer_id = persisted;
    log.txns = txns;
    log.recovered = recovered;
    Ok(log)
}

/// Creates `dir`; true when it is new, false when it was there already.
fn make_dir(dir: &Path) -> Result<bool> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(_) => {
            fs::create_dir_all(dir).map_err(StorageError::io("creating", dir))?;
            Ok(true)
        }
    }
}

/// A new log in the new directory `dir`: one empty segment, and nothing to read back.
/// Nothing is fsynced here. An empty log needs no fsync to recover: opening recreates a
/// missing directory or segment as this does. The directory entries are noted as written
/// instead, so the first sync of appended data makes them durable before it returns.
fn create_log(dir: &Path, config: LogConfig) -> Result<PartitionLog> {
    let segment = Segment::create_unsynced(dir, 0, &config.open_files)?;
    let log = empty_log(dir, config, vec![segment], 0);
    log.durability.wrote_path(dir);
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        log.durability.wrote_path(parent);
    }
    Ok(log)
}

/// A log of `segments` starting at `log_start`, with no epochs, producers or
/// transactions yet.
fn empty_log(
    dir: &Path,
    config: LogConfig,
    segments: Vec<Segment>,
    log_start: i64,
) -> PartitionLog {
    let first_base = segments[0].base_offset;
    PartitionLog {
        dir: dir.to_path_buf(),
        durability: Durability::new(FsyncFault::new(config.fsync_delay, config.fsync_fail_after)),
        config,
        segments,
        log_start_offset: log_start,
        epochs: LeaderEpochCache::empty(dir),
        last_sync: Instant::now(),
        sealed_unsynced: false,
        sync_handed: 0,
        max_producer_id: -1,
        persisted_max_producer_id: -1,
        txns: crate::txn::TxnIndex::empty(dir, first_base),
        recovered: Recovered::default(),
    }
}

/// The persisted log start offset. A missing file means nothing was ever deleted from
/// the front, so the first segment's base is the start. An unreadable or negative one is
/// an error: guessing could expose deleted records, or hide live ones.
fn read_log_start(dir: &Path) -> Result<Option<i64>> {
    let path = dir.join(LOG_START_FILE);
    match read_meta::<i64>(&path)? {
        Some(start) if start < 0 => Err(StorageError::Corrupt {
            path,
            position: 0,
            reason: format!("the log start offset {start} is negative"),
        }),
        start => Ok(start),
    }
}

/// Loads the epoch cache and reconciles it with the recovered log, or rebuilds it from
/// every batch header if the file is unusable.
fn load_epochs(
    dir: &Path,
    segments: &[Segment],
    active: &[Segment],
    log_start: i64,
    log_end: i64,
) -> Result<LeaderEpochCache> {
    let (mut cache, rescan) = match LeaderEpochCache::load(dir)? {
        Some(cache) => (cache, active),
        None => (LeaderEpochCache::empty(dir), segments),
    };
    let mut changed = cache.truncate_from_end(log_end);
    for segment in rescan {
        segment.for_each_batch(|b| {
            changed |= cache.assign(b.partition_leader_epoch(), b.base_offset())
        })?;
    }
    changed |= cache.truncate_from_start(log_start);
    // An open rescans the active segment unless a clean close wrote the file for it; the
    // file spares it the sealed ones (each roll writes what they carry). So only a cache rebuilt from sealed segments is
    // written now: a log of one segment writes none until its first roll.
    let sealed = segments.len() > 1;
    if sealed && changed && !cache.is_on_disk() {
        cache.persist()?;
    }
    Ok(cache)
}

#[cfg(test)]
mod tests {
    use crate::epoch::EPOCH_FILE;
    use crate::{LogConfig, PartitionLog, PersistMode, StorageError};
    use shadowlink_protocol::batch::testing::{build_batch, BatchBuilder};

    fn log_with_records(dir: &std::path::Path) {
        let mut log = PartitionLog::open(dir, LogConfig::default()).unwrap();
        for base in 0..3 {
            let batch = BatchBuilder::new(base)
                .records(&[(None, Some(b"v"))])
                .build();
            log.append(batch).unwrap();
        }
        log.flush().unwrap();
    }

    #[test]
    fn a_new_log_fsyncs_nothing_until_its_first_sync_makes_its_directories_durable() {
        let root = tempfile::tempdir().unwrap();
        let (topic, dir) = (root.path().join("t"), root.path().join("t").join("0"));
        let config = LogConfig {
            persist: PersistMode::Always,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(&dir, config.clone()).unwrap();
        for path in [&dir, &topic] {
            assert!(log.durability.is_unsynced(path), "{}", path.display());
        }
        assert_eq!(log.sync_due_at(), None, "an empty log owes no timer");
        // A crash before any sync may lose the new directory: it opens empty again.
        drop(log);
        std::fs::remove_dir_all(&topic).unwrap();
        let mut log = PartitionLog::open(&dir, config).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
        log.append(build_batch(0, 0, &[(None, Some(b"v"))], 1))
            .unwrap();
        for path in [&dir, &topic] {
            assert!(!log.durability.is_unsynced(path), "{}", path.display());
        }
    }

    fn file_names(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_new_log_is_one_file_until_its_segment_is_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 1,
            ..LogConfig::default()
        };
        let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        assert_eq!(file_names(dir.path()), ["00000000000000000000.log"]);
        log.append(build_batch(0, 0, &[(None, Some(b"v"))], 1))
            .unwrap();
        log.append(build_batch(1, 0, &[(None, Some(b"v"))], 1))
            .unwrap();
        let sealed = [
            "00000000000000000000.index",
            "00000000000000000000.timeindex",
        ];
        assert!(sealed
            .iter()
            .all(|f| file_names(dir.path()).contains(&f.to_string())));
        drop(log);
        let log = PartitionLog::open(dir.path(), config).unwrap();
        assert_eq!((log.segment_count(), log.log_end_offset()), (2, 2));
    }

    #[test]
    fn a_log_of_one_segment_is_closed_and_reopened_without_writing_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let only_the_segment = ["00000000000000000000.log"];
        drop(PartitionLog::open(dir.path(), LogConfig::default()).unwrap());
        assert_eq!(file_names(dir.path()), only_the_segment);
        let mut log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(file_names(dir.path()), only_the_segment, "written on open");
        assert_eq!(log.log_end_offset(), 0);

        // Every open scans the active segment: what it holds needs no other file.
        let transactional = BatchBuilder::new(0)
            .leader_epoch(3)
            .producer(77, 0, 0)
            .transactional()
            .records(&[(None, Some(b"v"))])
            .build();
        log.append(transactional).unwrap();
        log.append(build_batch(1, 4, &[(None, Some(b"v"))], 1))
            .unwrap();
        for round in 0..2 {
            drop(log);
            assert_eq!(file_names(dir.path()), only_the_segment, "round {round}");
            log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
            assert_eq!(log.epochs.entries(), [(3, 0), (4, 1)]);
            assert_eq!(log.max_producer_id(), 77);
            assert_eq!((log.log_end_offset(), log.last_stable_offset()), (2, 0));
        }
    }

    #[test]
    fn unreadable_metadata_files_are_rebuilt_from_the_batches() {
        let dir = tempfile::tempdir().unwrap();
        let batch = |base, epoch| build_batch(base, epoch, &[(None, Some(b"v"))], 1);
        let mut log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        log.append(batch(0, 4)).unwrap();
        log.append(batch(1, 5)).unwrap();
        drop(log);
        for file in [EPOCH_FILE, "txn-index"] {
            std::fs::write(dir.path().join(file), b"").unwrap();
        }
        let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(log.epochs.entries(), [(4, 0), (5, 1)]);
        assert_eq!((log.log_end_offset(), log.last_stable_offset()), (2, 2));
    }

    #[test]
    fn a_log_emptied_by_truncation_reopens_empty_and_indexes_what_comes_after() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            index_interval_bytes: 1,
            ..LogConfig::default()
        };
        let batch = |base| build_batch(base, 0, &[(None, Some(&[7u8; 64][..]))], 1);
        let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        // Enough entries that the active segment's index went to its file as it grew.
        for base in 0..1100 {
            log.append(batch(base)).unwrap();
        }
        let index = dir.path().join("00000000000000000000.index");
        assert!(std::fs::metadata(&index).unwrap().len() > 0);
        log.truncate_to(0).unwrap();
        drop(log);
        // The index file still holds the entries of the batches cut off.
        assert!(std::fs::metadata(&index).unwrap().len() > 0);
        let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        assert_eq!(log.log_end_offset(), 0);
        assert!(log.read(0, 1 << 20).unwrap().chunks.is_empty());
        for base in 0..2 {
            log.append(batch(base)).unwrap();
        }
        drop(log);
        let log = PartitionLog::open(dir.path(), config).unwrap();
        assert_eq!(log.log_end_offset(), 2);
        let read = log.read(1, 1 << 20).unwrap();
        let first = shadowlink_protocol::batch::BatchWalker::new(read.chunks[0].clone())
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(first.base_offset(), 1);
    }

    #[test]
    fn a_new_owned_log_writes_its_epoch_file_at_the_first_roll_and_reopens_right() {
        let config = LogConfig {
            segment_bytes: 1,
            ..LogConfig::default()
        };
        for roll in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join(EPOCH_FILE);
            let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
            assert!(log.begin_epoch(3).unwrap());
            assert!(!file.exists(), "an empty log rebuilds its epochs on open");
            log.append(build_batch(0, 3, &[(None, Some(b"v"))], 1))
                .unwrap();
            assert!(!file.exists());
            if roll {
                log.append(build_batch(1, 3, &[(None, Some(b"v"))], 1))
                    .unwrap();
                assert_eq!(log.segment_count(), 2);
                assert!(
                    file.exists(),
                    "written at the roll, before a second segment"
                );
            }
            drop(log);
            let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
            assert_eq!(log.epoch_entries(), vec![(3, 0)], "roll: {roll}");
        }
    }

    #[test]
    fn a_sealed_segment_whose_time_index_lost_its_tail_still_finds_its_newest_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            index_interval_bytes: 256,
            ..LogConfig::default()
        };
        let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        for base in 0..100 {
            let timestamp = if base == 50 { 1_000_000 } else { base };
            log.append(build_batch(base, 0, &[(None, Some(b"v"))], timestamp))
                .unwrap();
        }
        log.roll(100).unwrap();
        log.append(build_batch(100, 0, &[(None, Some(b"v"))], 100))
            .unwrap();
        drop(log);
        // As a power loss may leave a time index written at the roll and not yet synced:
        // whole entries, but none from the newest timestamp on.
        let path = dir.path().join(format!("{:020}.timeindex", 0));
        let entries = std::fs::read(&path).unwrap();
        let kept: Vec<u8> = (entries.chunks_exact(12))
            .take_while(|e| u32::from_be_bytes(e[8..12].try_into().unwrap()) < 50)
            .flatten()
            .copied()
            .collect();
        assert!(!kept.is_empty() && kept.len() < entries.len());
        std::fs::write(&path, kept).unwrap();
        let log = PartitionLog::open(dir.path(), config).unwrap();
        let sealed = &log.segments[0];
        assert_eq!(sealed.next_offset, 100);
        assert_eq!(
            sealed.max.map(|m| (m.timestamp, m.offset)),
            Some((1_000_000, 50))
        );
    }

    #[test]
    fn a_missing_log_start_offset_is_the_first_segment_base() {
        let dir = tempfile::tempdir().unwrap();
        log_with_records(dir.path());
        let _ = std::fs::remove_file(dir.path().join(super::LOG_START_FILE));
        let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 3));
    }

    #[test]
    fn an_unreadable_or_negative_log_start_offset_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        log_with_records(dir.path());
        let path = dir.path().join(super::LOG_START_FILE);
        std::fs::write(&path, b"1x").unwrap();
        let e = PartitionLog::open(dir.path(), LogConfig::default()).unwrap_err();
        assert!(matches!(e, StorageError::Meta { .. }), "{e}");
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        std::fs::write(&path, b"-5").unwrap();
        let e = PartitionLog::open(dir.path(), LogConfig::default()).unwrap_err();
        assert!(matches!(e, StorageError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("-5 is negative"), "{e}");
    }
}
