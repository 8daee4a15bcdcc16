//! `PartitionLog`: an offset-preserving, append-only log of v2 record batches.
//!
//! Batches are stored exactly as received, at the offsets they carry: a mirror never
//! assigns offsets. Offsets may have gaps (compacted or transactional sources), so the
//! log end offset (LEO) is the last batch's `baseOffset + lastOffsetDelta + 1`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use shadowlink_protocol::batch::{BatchWalker, RecordBatch};

use crate::config::{LogConfig, PersistMode};
use crate::durability::{Durability, PendingSync, Poison};
use crate::epoch::LeaderEpochCache;
use crate::error::{Result, StorageError};
use crate::meta::{sync_dir, write_meta};
use crate::recovery::Recovered;
use crate::segment::Segment;
use crate::txn::TxnIndex;

/// Holds the logical log start offset, which may lie inside the first segment.
pub(crate) const LOG_START_FILE: &str = "log-start-offset";

/// What an append stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: i64,
    pub last_offset: i64,
    /// The new log end offset.
    pub next_offset: i64,
    pub batches: usize,
    pub bytes: usize,
    pub max_timestamp: i64,
}

/// Whole stored batches, as zero-copy slices of memory-mapped segment files.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    /// Contiguous runs of whole batches, in offset order (one per segment touched).
    pub chunks: Vec<Bytes>,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

impl ReadResult {
    /// Total bytes across chunks.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.iter().all(Bytes::is_empty)
    }
}

/// One partition's log in one directory. Single writer: mutations take `&mut self`,
/// reads take `&self` (the type is `Sync`, so readers may share it behind a `RwLock`).
#[derive(Debug)]
pub struct PartitionLog {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    /// Sorted by base offset; never empty; the last one is active.
    pub(crate) segments: Vec<Segment>,
    pub(crate) log_start_offset: i64,
    pub(crate) epochs: LeaderEpochCache,
    /// What is written but not yet fsynced, and whether a failed write or fsync poisoned
    /// the log: what is on disk is then unknown, so further writes are refused until the
    /// log is reopened (and recovered).
    pub(crate) durability: Arc<Durability>,
    /// When the last sync was handed out (`Interval` mode counts from here).
    pub(crate) last_sync: Instant,
    /// A segment was sealed since the last sync was handed out; outside `Os` mode it is
    /// synced at the end of the append that rolled.
    pub(crate) sealed_unsynced: bool,
    /// The write count covered by the last sync handed out: writes numbered above it
    /// are what an `Interval` timer still owes.
    pub(crate) sync_handed: u64,
    /// Upper bound of the producer ids stored (see `producers.rs`).
    pub(crate) max_producer_id: i64,
    /// Open and aborted transactions of the stored batches (see `txn.rs`).
    pub(crate) txns: TxnIndex,
    /// What opening the log cut off.
    pub(crate) recovered: Recovered,
}

impl PartitionLog {
    /// Opens the log in `dir`, creating the directory if needed, and recovers it: a torn
    /// or corrupt tail of the last segment is truncated (logged with `tracing::warn!`),
    /// and missing or damaged indexes are rebuilt.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Self> {
        crate::recovery::open_log(dir, config)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    /// For a mirror every stored batch is committed on the source, so HW = LEO.
    pub fn high_watermark(&self) -> i64 {
        self.log_end_offset()
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// What recovery cut off when this log was opened (also logged as a warning).
    pub fn recovered(&self) -> Recovered {
        self.recovered
    }

    /// Whether a failed write or fsync has made the log refuse writes.
    pub fn is_poisoned(&self) -> bool {
        self.durability.is_poisoned()
    }

    pub(crate) fn active(&self) -> &Segment {
        self.segments.last().expect("a log always has a segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a log always has a segment")
    }

    /// Fails with why the log refuses writes, if it does.
    pub fn check_writable(&self) -> Result<()> {
        if self.durability.is_poisoned() {
            Err(self.durability.refusal())
        } else {
            Ok(())
        }
    }

    /// Why the log refuses writes, if it does.
    pub fn poisoned(&self) -> Option<Poison> {
        self.durability.poisoned()
    }

    /// Makes a log that a failed write poisoned writable again by reopening it from
    /// disk: recovery cuts off whatever tail the failed write left. Refused after a
    /// failed fsync ([`StorageError::FsyncFailed`]), which only a restart may clear.
    /// On error the log stays as it was, poisoned.
    pub fn reopen(&mut self) -> Result<()> {
        match self.durability.poisoned() {
            None => return Ok(()),
            Some(Poison::Fsync) => return Err(StorageError::FsyncFailed),
            Some(Poison::Write) => {}
        }
        let reopened = PartitionLog::open(&self.dir, self.config.clone())?;
        *self = reopened;
        Ok(())
    }

    /// Runs a mutation; any failure poisons the log, since disk state is then unknown.
    pub(crate) fn guarded<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.check_writable()?;
        let result = f(self);
        if result.is_err() {
            self.durability.poison();
        }
        result
    }

    /// Appends one or more complete batches, stored byte for byte.
    ///
    /// The whole record set is validated first (framing, magic, CRC-32C, offsets `>=`
    /// the LEO and increasing), so an invalid one writes nothing. Durability on return
    /// depends on [`PersistMode`]. Holding the log across the fsync, this suits a log
    /// with no concurrent readers; otherwise use [`PartitionLog::append_deferred`].
    pub fn append(&mut self, record_set: Bytes) -> Result<AppendInfo> {
        let (info, sync) = self.append_deferred(record_set)?;
        if let Some(sync) = sync {
            sync.wait()?;
        }
        Ok(info)
    }

    /// Like [`PartitionLog::append`], but the fsync the persist mode owes is returned
    /// instead of run: wait on it after releasing the log, and acknowledge the write only
    /// then. Readers may see the batches before they are durable, as Kafka consumers see
    /// a leader's batches before any fsync.
    pub fn append_deferred(
        &mut self,
        record_set: Bytes,
    ) -> Result<(AppendInfo, Option<PendingSync>)> {
        self.check_writable()?;
        let batches = self.validate(record_set.clone())?;
        self.write_batches(&record_set, &batches)
    }

    /// Writes `batches`, the whole of `record_set`, already validated, and updates the
    /// indexes and the epoch, transaction and producer bookkeeping.
    pub(crate) fn write_batches(
        &mut self,
        record_set: &Bytes,
        batches: &[RecordBatch],
    ) -> Result<(AppendInfo, Option<PendingSync>)> {
        let written = self.guarded(|log| {
            log.raise_max_producer_id(batches)?;
            let mut epochs_changed = false;
            let (mut from, mut position) = (0, 0);
            while from < batches.len() {
                let run = log.append_run(record_set, position, &batches[from..])?;
                for batch in run {
                    log.txns.observe(batch);
                    // A batch straddling the log start begins its epoch at the log start.
                    let start = batch.base_offset().max(log.log_start_offset);
                    epochs_changed |= log.epochs.assign(batch.partition_leader_epoch(), start);
                    position += batch.len();
                }
                from += run.len();
            }
            if epochs_changed {
                log.epochs.persist()?;
            }
            Ok(())
        });
        self.durability.finish_write();
        written?;
        Ok((append_info(batches), self.sync_after_append()))
    }

    /// Checks that `batches` start at or above the log end offset and increase.
    pub(crate) fn check_order(&self, batches: &[RecordBatch]) -> Result<()> {
        let mut expected = self.log_end_offset();
        let mut may_straddle = self.log_start_offset == expected;
        for batch in batches {
            check_offsets(batch, expected, may_straddle)?;
            may_straddle = false;
            expected = batch.next_offset();
        }
        Ok(())
    }

    fn validate(&self, record_set: Bytes) -> Result<Vec<RecordBatch>> {
        if record_set.is_empty() {
            return Err(StorageError::EmptyRecordSet);
        }
        let mut walker = BatchWalker::new(record_set);
        let mut batches = Vec::new();
        let (mut position, mut expected) = (0, self.log_end_offset());
        // A log restarted at an offset inside a source batch (the source's log start
        // lies mid-batch) takes that whole batch first: reads at the log start return it.
        let mut may_straddle = self.log_start_offset == self.log_end_offset();
        for item in walker.by_ref() {
            let batch_error = |source| StorageError::Batch { position, source };
            let batch = item.map_err(batch_error)?;
            batch.validate_crc().map_err(batch_error)?;
            check_offsets(&batch, expected, may_straddle)?;
            may_straddle = false;
            expected = batch.next_offset();
            position += batch.len();
            batches.push(batch);
        }
        let rest = walker.into_remainder();
        if !rest.is_empty() {
            let source =
                RecordBatch::parse(rest).expect_err("the walker leaves only partial batches");
            return Err(StorageError::Batch { position, source });
        }
        Ok(batches)
    }

    /// Writes the longest run of `batches` (at `position` in `record_set`) that the active
    /// segment takes without rolling, rolling first if the first batch needs it, with one
    /// write: a record set costs one copy into the page cache per segment it touches,
    /// however many batches it holds. Returns the batches written.
    fn append_run<'b>(
        &mut self,
        record_set: &Bytes,
        position: usize,
        batches: &'b [RecordBatch],
    ) -> Result<&'b [RecordBatch]> {
        self.maybe_roll(&batches[0])?;
        let run = &batches[..self.run_fitting(batches)];
        let len = run.iter().map(RecordBatch::len).sum::<usize>();
        let interval = self.config.index_interval_bytes;
        let active = self.active_mut();
        let written = active.append_run(&record_set[position..position + len], run, interval);
        let active = self.active();
        self.durability.wrote_data(&active.log_path, active.file());
        written.map(|()| run)
    }

    /// How many of `batches` the active segment takes, the first included, before one
    /// would roll it: the decision [`PartitionLog::maybe_roll`] makes for each batch once
    /// the ones before it are written.
    fn run_fitting(&self, batches: &[RecordBatch]) -> usize {
        let active = self.active();
        let first_timestamp = match active.is_empty() {
            true => Some(batches[0].max_timestamp()),
            false => active.first_timestamp,
        };
        let mut size = active.size + batches[0].len() as u64;
        for (n, batch) in batches.iter().enumerate().skip(1) {
            if !active.can_hold_offsets(batch) || self.rolls_at(batch, size, first_timestamp) {
                return n;
            }
            size += batch.len() as u64;
        }
        batches.len()
    }

    fn maybe_roll(&mut self, batch: &RecordBatch) -> Result<()> {
        let active = self.active();
        if !active.can_hold_offsets(batch) && active.is_empty() {
            // An empty segment whose base is too far below the batch: replace it.
            let empty = self.segments.pop().expect("a log always has a segment");
            empty.delete()?;
            let created =
                Segment::create_unsynced(&self.dir, batch.base_offset(), &self.config.open_files);
            self.durability.wrote_path(&self.dir);
            self.segments.push(created?);
            return Ok(());
        }
        if !active.is_empty() && (!active.can_hold_offsets(batch) || self.should_roll(batch)) {
            self.roll(crate::segment::roll_offset(batch, self.log_end_offset()))?;
        }
        Ok(())
    }

    fn should_roll(&self, batch: &RecordBatch) -> bool {
        let active = self.active();
        self.rolls_at(batch, active.size, active.first_timestamp)
    }

    /// Whether `batch` rolls an active segment of `size` bytes whose first batch has
    /// `first_timestamp`.
    fn rolls_at(&self, batch: &RecordBatch, size: u64, first_timestamp: Option<i64>) -> bool {
        let new_size = size + batch.len() as u64;
        if new_size > self.config.segment_bytes || new_size > u64::from(u32::MAX) {
            return true;
        }
        let Some(segment_ms) = self.config.segment_ms else {
            return false;
        };
        match first_timestamp {
            // Kafka semantics: data time since the segment's first batch.
            Some(first) if first >= 0 && batch.max_timestamp() >= 0 => {
                batch.max_timestamp().saturating_sub(first) > segment_ms as i64
            }
            _ => self.active().created.elapsed().as_millis() > u128::from(segment_ms),
        }
    }

    /// Seals the active segment and starts a new one at `base_offset`. The sealed
    /// segment's files and the directory entry of the new one are synced by the next
    /// sync handed out (outside `Os` mode, the one of the append that rolled).
    pub(crate) fn roll(&mut self, base_offset: i64) -> Result<()> {
        let active = self.active_mut();
        active.seal()?;
        let sealed = [
            active.log_path.clone(),
            active.index.path().to_path_buf(),
            active.time_index.path().to_path_buf(),
        ];
        for path in &sealed {
            self.durability.wrote_path(path);
        }
        self.sealed_unsynced = true;
        // Bounds the replay on open to the new active segment.
        self.txns.persist()?;
        if !self.epochs.is_on_disk() {
            self.epochs.persist()?;
        }
        let created = Segment::create_unsynced(&self.dir, base_offset, &self.config.open_files);
        self.durability.wrote_path(&self.dir);
        self.segments.push(created?);
        Ok(())
    }

    fn sync_after_append(&mut self) -> Option<PendingSync> {
        let due = match self.config.persist {
            PersistMode::Always => true,
            PersistMode::Interval(interval) => {
                self.sealed_unsynced || self.last_sync.elapsed() >= interval
            }
            PersistMode::Os => false,
        };
        due.then(|| self.pending_sync())
    }

    /// A sync of everything written so far, to wait on after releasing the log. The
    /// active segment's index is not synced: recovery rescans the last segment anyway.
    pub fn pending_sync(&mut self) -> PendingSync {
        self.last_sync = Instant::now();
        self.sealed_unsynced = false;
        let sync = self.durability.pending();
        self.sync_handed = sync.target();
        sync
    }

    /// When a timer must call [`PartitionLog::due_sync`] to keep `Interval` mode's bound:
    /// the interval after the last sync, if something was written since and the log can
    /// still sync. `None` otherwise, so a log nobody writes needs no timer at all; in
    /// `Always` and `Os` mode it is always `None`.
    pub fn sync_due_at(&self) -> Option<Instant> {
        let PersistMode::Interval(interval) = self.config.persist else {
            return None;
        };
        let owed = self.sealed_unsynced || self.durability.written() > self.sync_handed;
        (owed && !self.durability.is_poisoned()).then(|| self.last_sync + interval)
    }

    /// Fsyncs everything appended so far, in any persist mode.
    pub fn flush(&mut self) -> Result<()> {
        self.check_writable()?;
        self.pending_sync().wait()
    }

    /// In `Interval` mode, the sync owed once the interval has passed since the last one;
    /// call it from a timer so a quiet log still becomes durable. `None` in other modes.
    pub fn due_sync(&mut self) -> Result<Option<PendingSync>> {
        self.check_writable()?;
        Ok(match self.config.persist {
            PersistMode::Interval(interval) if self.last_sync.elapsed() >= interval => {
                Some(self.pending_sync())
            }
            _ => None,
        })
    }

    /// [`PartitionLog::due_sync`], waited on while holding the log.
    pub fn flush_if_due(&mut self) -> Result<()> {
        match self.due_sync()? {
            Some(sync) => sync.wait(),
            None => Ok(()),
        }
    }

    /// Reads whole batches starting with the one containing `offset`, up to `max_bytes`
    /// but always at least one batch (KIP-74). `offset == LEO` returns no chunks.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        let (log_start, log_end) = (self.log_start_offset, self.log_end_offset());
        if offset < log_start || offset > log_end {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                log_start,
                log_end,
            });
        }
        let mut result = ReadResult {
            chunks: Vec::new(),
            log_start_offset: log_start,
            log_end_offset: log_end,
        };
        let mut budget = max_bytes;
        let mut started = false;
        for segment in &self.segments[self.segment_index_for(offset)..] {
            let data = segment.mapped()?;
            let from = if started {
                0
            } else {
                match segment.locate(&data, offset)? {
                    Some((position, _)) => position,
                    None => continue, // offset falls in a gap after this segment's data
                }
            };
            let end = segment.take_batches(&data, from, budget, !started)?;
            if end > from {
                let chunk = data.slice(from as usize..end as usize);
                budget = budget.saturating_sub(chunk.len());
                result.chunks.push(chunk);
                started = true;
            }
            if end < segment.size || (started && budget == 0) {
                break;
            }
        }
        Ok(result)
    }

    /// Index of the segment that would contain `offset`: greatest base `<= offset`.
    pub(crate) fn segment_index_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }

    /// ListOffsets by time: `(offset, timestamp)` of the first record at or above the log
    /// start whose timestamp is `>= ts`. The time index finds the batch by its header's
    /// max timestamp; the exact record is then read from that batch.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>> {
        let start = self.log_start_offset;
        let from = self.segment_index_for(start);
        for segment in &self.segments[from..] {
            if segment.max.is_none_or(|m| m.timestamp < ts) {
                continue;
            }
            if let Some(found) = segment.find_timestamp(ts, start)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// KIP-734 ListOffsets `-3`: `(timestamp, offset)` of the record at or above the log
    /// start with the largest timestamp, the earliest on ties.
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>> {
        let start = self.log_start_offset;
        let mut best: Option<(i64, usize, u64)> = None;
        for (i, segment) in self.segments.iter().enumerate() {
            if segment.next_offset <= start {
                continue;
            }
            if let Some((ts, position)) = segment.max_timestamp_from(start)? {
                if best.is_none_or(|(b, _, _)| ts > b) {
                    best = Some((ts, i, position));
                }
            }
        }
        let Some((_, i, position)) = best else {
            return Ok(None);
        };
        let record = self.segments[i].max_record_at(position, start)?;
        Ok(record.map(|(offset, ts)| (ts, offset)))
    }

    /// The leader epoch of the batch holding `offset`, from the epoch cache.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.epochs.epoch_at(offset)
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// KIP-320 OffsetsForLeaderEpoch: `(largest epoch <= epoch, its end offset)`, where
    /// the end offset is the next higher epoch's start offset, or the LEO for the latest
    /// epoch. `None` when the cache is empty or `epoch` is above the latest (undefined).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// `(epoch, start_offset)` pairs, oldest first.
    pub fn epoch_entries(&self) -> Vec<(i32, i64)> {
        self.epochs.entries().to_vec()
    }

    /// Persists a new log start offset.
    pub(crate) fn set_log_start(&mut self, offset: i64) -> Result<()> {
        write_meta(&self.dir.join(LOG_START_FILE), &offset)?;
        self.log_start_offset = offset;
        if self.epochs.truncate_from_start(offset) {
            self.epochs.persist()?;
        }
        self.txns.truncate_start(offset);
        self.txns.persist()
    }

    /// Removes the oldest segment's files (never the active one).
    pub(crate) fn delete_oldest(&mut self) -> Result<()> {
        debug_assert!(self.segments.len() > 1);
        self.segments.remove(0).delete()
    }

    /// Finishes a batch of segment deletions: fsync the directory so they are durable.
    pub(crate) fn sync_dir(&self) -> Result<()> {
        sync_dir(&self.dir)
    }
}

/// Checks that `batch` starts at or after `expected`, or, with `may_straddle`, that it at
/// least ends there.
fn check_offsets(batch: &RecordBatch, expected: i64, may_straddle: bool) -> Result<()> {
    let (base, delta) = (batch.base_offset(), batch.last_offset_delta());
    if base < 0 || delta < 0 || base.checked_add(i64::from(delta) + 1).is_none() {
        return Err(StorageError::InvalidOffsets {
            base_offset: base,
            last_offset_delta: delta,
        });
    }
    let first_kept = if may_straddle {
        batch.last_offset()
    } else {
        base
    };
    if first_kept < expected {
        return Err(StorageError::OffsetRegression {
            base_offset: base,
            log_end_offset: expected,
        });
    }
    Ok(())
}

fn append_info(batches: &[RecordBatch]) -> AppendInfo {
    AppendInfo {
        first_offset: batches[0].base_offset(),
        last_offset: batches[batches.len() - 1].last_offset(),
        next_offset: batches[batches.len() - 1].next_offset(),
        batches: batches.len(),
        bytes: batches.iter().map(RecordBatch::len).sum(),
        max_timestamp: batches
            .iter()
            .map(RecordBatch::max_timestamp)
            .max()
            .unwrap_or(-1),
    }
}

impl Drop for PartitionLog {
    /// Best effort: write pending index entries so a clean restart need not rebuild.
    fn drop(&mut self) {
        if self.durability.is_poisoned() {
            return;
        }
        if let Err(e) = self.txns.persist() {
            tracing::warn!(error = %e, "failed to write the transaction index on close");
        }
        let holds_batches = self.segments.iter().any(|s| !s.is_empty());
        if holds_batches && !self.epochs.is_on_disk() {
            if let Err(e) = self.epochs.persist() {
                tracing::warn!(error = %e, "failed to write the leader epochs on close");
            }
        }
        for segment in &mut self.segments {
            if let Err(e) = segment.rewrite_indexes() {
                tracing::warn!(error = %e, "failed to write index entries on close");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowlink_protocol::batch::testing::build_batch;
    use std::time::Duration;

    fn unsynced(log: &PartitionLog, segment: usize) -> bool {
        log.durability.is_unsynced(&log.segments[segment].log_path)
    }

    fn open(persist: PersistMode, segment_bytes: u64) -> (PartitionLog, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            persist,
            segment_bytes,
            ..LogConfig::default()
        };
        (PartitionLog::open(dir.path(), config).unwrap(), dir)
    }

    fn dirty_after_append(persist: PersistMode) -> (bool, PartitionLog, tempfile::TempDir) {
        let (mut log, dir) = open(persist, 1 << 30);
        log.append(build_batch(0, 0, &[(None, Some(b"v"))], 1))
            .unwrap();
        (unsynced(&log, 0), log, dir)
    }

    #[test]
    fn persist_modes_sync_when_documented() {
        assert!(!dirty_after_append(PersistMode::Always).0);
        assert!(!dirty_after_append(PersistMode::Interval(Duration::ZERO)).0);
        let (dirty, mut log, _dir) =
            dirty_after_append(PersistMode::Interval(Duration::from_secs(3600)));
        assert!(dirty);
        log.flush_if_due().unwrap();
        assert!(unsynced(&log, 0), "not due yet");
        log.last_sync -= Duration::from_secs(3601);
        log.flush_if_due().unwrap();
        assert!(!unsynced(&log, 0));
        let (dirty, mut log, _dir) = dirty_after_append(PersistMode::Os);
        assert!(dirty);
        log.flush_if_due().unwrap();
        assert!(unsynced(&log, 0), "Os mode leaves syncing to the OS");
        log.flush().unwrap();
        assert!(!unsynced(&log, 0));
    }

    #[test]
    fn only_an_unsynced_append_asks_for_a_timer_which_makes_it_durable_when_due() {
        let interval = Duration::from_millis(50);
        let (mut log, _dir) = open(PersistMode::Interval(interval), 1 << 30);
        assert_eq!(log.sync_due_at(), None, "an idle log owes nothing");
        let before = Instant::now();
        let sync = log
            .append_deferred(build_batch(0, 0, &[(None, Some(b"v"))], 1))
            .unwrap()
            .1;
        assert!(sync.is_none(), "the interval has not passed yet");
        let due = log
            .sync_due_at()
            .expect("an unsynced append schedules a sync");
        assert!(due > before && due <= Instant::now() + interval);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        log.due_sync()
            .unwrap()
            .expect("due by then")
            .wait()
            .unwrap();
        assert!(!unsynced(&log, 0));
        assert_eq!(log.sync_due_at(), None, "nothing owed after the sync");
        for persist in [PersistMode::Always, PersistMode::Os] {
            let (_, log, _dir) = dirty_after_append(persist);
            assert_eq!(log.sync_due_at(), None, "{persist:?} needs no timer");
        }
    }

    #[test]
    fn rolling_syncs_the_sealed_segment_unless_os_mode() {
        for (persist, expect_dirty) in [
            (PersistMode::Interval(Duration::from_secs(3600)), false),
            (PersistMode::Os, true),
        ] {
            let (mut log, _dir) = open(persist, 1);
            log.append(build_batch(0, 0, &[(None, None)], 1)).unwrap();
            log.append(build_batch(1, 0, &[(None, None)], 1)).unwrap();
            assert_eq!(log.segments.len(), 2);
            assert_eq!(unsynced(&log, 0), expect_dirty, "{persist:?}");
            assert_eq!(log.durability.is_unsynced(&log.dir), expect_dirty);
        }
    }

    #[test]
    fn a_deferred_append_is_readable_before_its_sync_and_durable_after() {
        let (mut log, _dir) = open(PersistMode::Always, 1 << 30);
        let (info, sync) = log
            .append_deferred(build_batch(0, 0, &[(None, Some(b"v"))], 1))
            .unwrap();
        let sync = sync.expect("always mode owes a sync");
        assert!(unsynced(&log, 0));
        assert_eq!(
            log.read(0, 1 << 20).unwrap().log_end_offset,
            info.next_offset
        );
        sync.wait().unwrap();
        assert!(!unsynced(&log, 0));
        let (_, os_sync) = open(PersistMode::Os, 1 << 30)
            .0
            .append_deferred(build_batch(0, 0, &[(None, None)], 1))
            .unwrap();
        assert!(os_sync.is_none());
    }

    #[test]
    fn a_sync_after_a_poisoned_log_fails() {
        let (mut log, _dir) = open(PersistMode::Always, 1 << 30);
        let (_, sync) = log
            .append_deferred(build_batch(0, 0, &[(None, None)], 1))
            .unwrap();
        log.durability.poison();
        assert!(matches!(sync.unwrap().wait(), Err(StorageError::Poisoned)));
        assert!(matches!(
            log.append(build_batch(1, 0, &[(None, None)], 1)),
            Err(StorageError::Poisoned)
        ));
    }

    #[test]
    fn a_log_poisoned_by_a_write_reopens_writable_but_not_after_a_failed_fsync() {
        let (mut log, _dir) = open(PersistMode::Always, 1 << 30);
        log.append(build_batch(0, 0, &[(None, None)], 1)).unwrap();
        log.durability.poison();
        assert_eq!(log.poisoned(), Some(Poison::Write));
        log.reopen().unwrap();
        assert_eq!(log.poisoned(), None);
        log.append(build_batch(1, 0, &[(None, None)], 1)).unwrap();
        assert_eq!(log.log_end_offset(), 2);

        log.durability.poison_fsync();
        assert!(matches!(log.reopen(), Err(StorageError::FsyncFailed)));
        assert!(matches!(
            log.append(build_batch(2, 0, &[(None, None)], 1)),
            Err(StorageError::FsyncFailed)
        ));
    }

    #[test]
    fn a_new_segments_directory_entry_is_synced_by_the_append_that_made_it() {
        let (mut log, _dir) = open(PersistMode::Always, 1 << 30);
        // Too far above the empty first segment's base for its index: replaced.
        let far = i64::from(u32::MAX) + 10;
        let (_, sync) = log
            .append_deferred(build_batch(far, 0, &[(None, None)], 1))
            .unwrap();
        assert_eq!(log.segments[0].base_offset, far);
        assert!(log.durability.is_unsynced(&log.dir));
        sync.expect("always mode owes a sync").wait().unwrap();
        assert!(!log.durability.is_unsynced(&log.dir));
    }

    #[test]
    fn log_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PartitionLog>();
        assert_send_sync::<PendingSync>();
    }
}
