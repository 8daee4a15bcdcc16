//! The append path: validating a record set, writing it to the active segment in runs,
//! and rolling segments.

use bytes::Bytes;
use shadowlink_protocol::batch::{BatchWalker, RecordBatch};

use super::{AppendInfo, PartitionLog};
use crate::durability::PendingSync;
use crate::error::{Result, StorageError};
use crate::segment::Segment;
use crate::stamp::{Arrived, StoredBatch, StoredSet};

impl PartitionLog {
    /// Appends one or more complete batches, stored byte for byte.
    ///
    /// The whole record set is validated first (framing, magic, CRC-32C, offsets `>=`
    /// the LEO and increasing), so an invalid one writes nothing. Durability on return
    /// depends on [`PersistMode`](crate::PersistMode). Holding the log across the fsync,
    /// this suits a log with no concurrent readers; otherwise use
    /// [`PartitionLog::append_deferred`].
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
        let set = Arrived {
            bytes: record_set,
            batches,
        };
        let info = self.write_batches_unsynced(&set)?;
        Ok((info, self.sync_after_append()))
    }

    /// [`PartitionLog::write_batches`] without handing out the sync the persist mode owes.
    pub(crate) fn write_batches_unsynced<S: StoredSet + ?Sized>(
        &mut self,
        set: &S,
    ) -> Result<AppendInfo> {
        let batches = set.batches();
        let written = self.guarded(|log| {
            log.raise_max_producer_id(batches);
            let (mut from, mut position) = (0, 0);
            while from < batches.len() {
                let run = log.append_run(set, from, position)?;
                for batch in run {
                    log.txns.observe(batch);
                    // A batch straddling the log start begins its epoch at the log start.
                    let start = batch.base_offset().max(log.log_start_offset);
                    // Written by the roll that seals this segment at the latest: until
                    // then recovery finds the epoch in the active segment.
                    log.epochs.assign(batch.partition_leader_epoch(), start);
                    position += batch.len();
                }
                from += run.len();
            }
            Ok(())
        });
        self.durability.finish_write();
        written?;
        Ok(append_info(batches))
    }

    /// Checks that `batches` start at or above the log end offset and increase.
    pub(crate) fn check_order(&self, batches: &[impl StoredBatch]) -> Result<()> {
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
    fn append_run<'s, S: StoredSet + ?Sized>(
        &mut self,
        set: &'s S,
        from: usize,
        position: usize,
    ) -> Result<&'s [S::Batch]> {
        let batches = &set.batches()[from..];
        self.maybe_roll(&batches[0])?;
        let run = &batches[..self.run_fitting(batches)];
        let len = run.iter().map(StoredBatch::len).sum::<usize>();
        let interval = self.config.index_interval_bytes;
        let active = self.active_mut();
        let write = |file: &_| set.write(file, from..from + run.len(), position, len);
        let written = active.append_run(write, run, interval);
        let active = self.active();
        self.durability.wrote_data(&active.log_path, active.file());
        written.map(|()| run)
    }

    /// How many of `batches` the active segment takes, the first included, before one
    /// would roll it: the decision [`PartitionLog::maybe_roll`] makes for each batch once
    /// the ones before it are written.
    fn run_fitting(&self, batches: &[impl StoredBatch]) -> usize {
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

    fn maybe_roll(&mut self, batch: &impl StoredBatch) -> Result<()> {
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

    fn should_roll(&self, batch: &impl StoredBatch) -> bool {
        let active = self.active();
        self.rolls_at(batch, active.size, active.first_timestamp)
    }

    /// Whether `batch` rolls an active segment of `size` bytes whose first batch has
    /// `first_timestamp`.
    fn rolls_at(&self, batch: &impl StoredBatch, size: u64, first_timestamp: Option<i64>) -> bool {
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
        // Bounds the replay on open to the new active segment; recovery reads epochs and
        // producer ids back from that segment alone, so the files must hold every one
        // seen in the segment being sealed before another is created.
        self.txns.persist()?;
        if !self.epochs.is_persisted() {
            self.epochs.persist()?;
        }
        self.persist_max_producer_id()?;
        let created = Segment::create_unsynced(&self.dir, base_offset, &self.config.open_files);
        self.durability.wrote_path(&self.dir);
        self.segments.push(created?);
        Ok(())
    }
}

/// Checks that `batch` starts at or after `expected`, or, with `may_straddle`, that it at
/// least ends there.
fn check_offsets(batch: &impl StoredBatch, expected: i64, may_straddle: bool) -> Result<()> {
    let (base, delta) = (batch.base_offset(), batch.arrived().last_offset_delta());
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

fn append_info<B: StoredBatch>(batches: &[B]) -> AppendInfo {
    AppendInfo {
        first_offset: batches[0].base_offset(),
        last_offset: batches[batches.len() - 1].last_offset(),
        next_offset: batches[batches.len() - 1].next_offset(),
        batches: batches.len(),
        bytes: batches.iter().map(StoredBatch::len).sum(),
        max_timestamp: batches
            .iter()
            .map(StoredBatch::max_timestamp)
            .max()
            .unwrap_or(-1),
    }
}
