//! Removing data from the end of the log, e.g. after the source truncated (KIP-320).

use crate::error::Result;
use crate::log::{PartitionLog, LOG_START_FILE};
use crate::meta::write_meta;
use crate::segment::Segment;

impl PartitionLog {
    /// Removes every batch containing an offset `>= offset`.
    ///
    /// If `offset` falls inside a batch, that whole batch goes too, so the new LEO is the
    /// batch's base offset (logged with a warning; read it from `log_end_offset`). If it
    /// falls in an offset gap the LEO becomes the end of the last kept batch. `offset >=
    /// LEO` is a no-op; `offset` below the log start empties the log and restarts it at
    /// `offset`, as Kafka does. Indexes and the epoch cache are cut to match.
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        self.check_writable()?;
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        if offset < self.log_start_offset {
            return self.truncate_fully_and_start_at(offset);
        }
        self.guarded(|log| {
            // The bound never falls, though the batches that raised it go.
            log.persist_max_producer_id()?;
            let keep = log.segment_index_for(offset);
            while log.segments.len() > keep + 1 {
                let segment = log.segments.pop().expect("checked above");
                segment.delete()?;
            }
            log.truncate_active_at(offset)?;
            // Emptying the first segment can leave an LEO outside [log start, offset]
            // (its base may lie on either side); restart the log at its start instead.
            let log_end = log.log_end_offset();
            if log_end < log.log_start_offset || log_end > offset {
                let start = log.log_start_offset;
                return log.truncate_fully_and_start_at(start);
            }
            if log.epochs.truncate_from_end(log.log_end_offset()) {
                log.epochs.persist()?;
            }
            log.reload_txns()?;
            log.sync_dir()
        })
    }

    /// Cuts the active segment before its first batch whose last offset is `>= offset`.
    fn truncate_active_at(&mut self, offset: i64) -> Result<()> {
        let interval = self.config.index_interval_bytes;
        let active = self
            .segments
            .last_mut()
            .expect("a log always has a segment");
        let found = {
            let data = active.mapped()?;
            active
                .locate(&data, offset)?
                .map(|(pos, b)| (pos, b.base_offset()))
        };
        let Some((position, base)) = found else {
            // Nothing to cut: a sealed segment may have become the active one. Without its
            // first timestamp, time-based rolls count from when it was opened.
            if let Err(e) = active.read_first_timestamp() {
                tracing::warn!(error = %e, "cannot read the first timestamp of the active segment");
            }
            return Ok(());
        };
        if base < offset {
            tracing::warn!(
                requested = offset,
                new_log_end_offset = base,
                "truncation offset is inside a batch; truncating from the batch start"
            );
        }
        active.shrink_file(position)?;
        active.scan_rebuild(active.base_offset, interval, false)?;
        active.size = position;
        active.rewrite_indexes()
    }

    /// Deletes every segment and restarts the log, empty, at `offset` (which becomes both
    /// the log start and end offset). For a mirror whose source's log start moved past
    /// the local LEO.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        self.guarded(|log| {
            // Persist the new start first: a crash then leaves old segments that the next
            // open deletes as wholly below the log start (when `offset` is above them).
            write_meta(&log.dir.join(LOG_START_FILE), &offset)?;
            log.persist_max_producer_id()?;
            for segment in log.segments.drain(..) {
                segment.delete()?;
            }
            log.segments
                .push(Segment::create(&log.dir, offset, &log.config.open_files)?);
            log.log_start_offset = offset;
            if log.epochs.clear() {
                log.epochs.persist()?;
            }
            log.txns.reset(offset);
            log.txns.persist()?;
            log.sync_dir()
        })
    }
}
