//! Removing old data from the front of the log: `delete_before` and retention.
//!
//! Only whole segments are ever deleted, never the active one, and never a byte inside
//! a batch. The logical log start offset is persisted before any file is removed, so a
//! crash in between leaves segments that the next open deletes.

use crate::error::{Result, StorageError};
use crate::log::PartitionLog;

impl PartitionLog {
    /// Raises the log start offset to `offset` (which may lie inside a batch: reads at
    /// it return that whole batch) and deletes segments wholly below it. If that is the
    /// whole log (`offset == LEO`), a new empty segment is rolled at the LEO first.
    pub fn delete_before(&mut self, offset: i64) -> Result<()> {
        let log_end = self.log_end_offset();
        if offset > log_end {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                log_start: self.log_start_offset,
                log_end,
            });
        }
        if offset <= self.log_start_offset {
            return self.check_writable();
        }
        self.guarded(|log| {
            if !log.active().is_empty() && log.active().next_offset <= offset {
                log.roll(log_end)?;
            }
            log.set_log_start(offset)?;
            let mut deleted = 0;
            while log.segments.len() > 1 && log.segments[0].next_offset <= offset {
                log.delete_oldest()?;
                deleted += 1;
            }
            if deleted > 0 {
                log.sync_dir()?;
            }
            Ok(())
        })
    }

    /// Replaces the retention limits, e.g. when a topic's configs change. `None` keeps
    /// data forever; the change takes effect on the next [`Self::apply_retention`].
    pub fn set_retention(&mut self, retention_ms: Option<i64>, retention_bytes: Option<u64>) {
        self.config.retention_ms = retention_ms;
        self.config.retention_bytes = retention_bytes;
    }

    /// Deletes sealed segments past `retention_ms` (by their newest batch timestamp,
    /// relative to `now_ms`) and then, oldest first, while dropping one more still
    /// leaves at least `retention_bytes`. Returns how many segments were deleted.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<u64> {
        let (retention_ms, retention_bytes) =
            (self.config.retention_ms, self.config.retention_bytes);
        self.guarded(|log| {
            let mut deleted = 0u64;
            if let Some(ms) = retention_ms {
                while log.oldest_expired(now_ms, ms) {
                    log.delete_front_segment()?;
                    deleted += 1;
                }
            }
            if let Some(limit) = retention_bytes {
                while log.oldest_beyond(limit) {
                    log.delete_front_segment()?;
                    deleted += 1;
                }
            }
            if deleted > 0 {
                log.sync_dir()?;
            }
            Ok(deleted)
        })
    }

    /// Whether [`Self::apply_retention`] under these limits would delete a segment at
    /// `now_ms`. It only reads, so a node can leave a log with nothing to delete
    /// untouched: changing a log, even to the same limits, is what wakes its readers.
    pub fn retention_due(
        &self,
        now_ms: i64,
        retention_ms: Option<i64>,
        retention_bytes: Option<u64>,
    ) -> bool {
        retention_ms.is_some_and(|ms| self.oldest_expired(now_ms, ms))
            || retention_bytes.is_some_and(|limit| self.oldest_beyond(limit))
    }

    /// The oldest segment is sealed and its newest batch is older than `ms` at `now_ms`.
    fn oldest_expired(&self, now_ms: i64, ms: i64) -> bool {
        self.segments.len() > 1
            && now_ms.saturating_sub(self.segments[0].retention_timestamp()) > ms
    }

    /// The oldest segment is sealed and the log holds `limit` bytes without it.
    fn oldest_beyond(&self, limit: u64) -> bool {
        self.segments.len() > 1 && self.size_bytes() - self.segments[0].size >= limit
    }

    /// Moves the log start past the oldest segment, then deletes it.
    fn delete_front_segment(&mut self) -> Result<()> {
        let new_start = self.segments[1].base_offset.max(self.log_start_offset);
        self.set_log_start(new_start)?;
        self.delete_oldest()
    }
}
