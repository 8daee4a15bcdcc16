//! `PartitionLog`: an offset-preserving, append-only log of v2 record batches.
//!
//! Batches are stored exactly as received, at the offsets they carry: a mirror never
//! assigns offsets. Offsets may have gaps (compacted or transactional sources), so the
//! log end offset (LEO) is the last batch's `baseOffset + lastOffsetDelta + 1`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::config::LogConfig;
use crate::durability::{Durability, Poison};
use crate::epoch::LeaderEpochCache;
use crate::error::{Result, StorageError};
use crate::meta::{sync_dir, write_meta};
use crate::recovery::Recovered;
use crate::segment::Segment;
use crate::txn::TxnIndex;

mod append;
mod persist;
mod read;

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
    /// The bound the `max-producer-id` file holds.
    pub(crate) persisted_max_producer_id: i64,
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

    /// Where this log's `epoch` ends, as a follower measures it against its leader
    /// (KIP-320): the start of its first later epoch, or its end when it holds none.
    pub fn own_end_of_epoch(&self, epoch: i32) -> i64 {
        (self.end_offset_for_epoch(epoch)).map_or(self.log_end_offset(), |(_, end)| end)
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

impl Drop for PartitionLog {
    /// Best effort: writes the index entries of sealed segments not yet on disk, and,
    /// for a large active segment, what spares the next open a read of it (`clean.rs`).
    /// Nothing else is written: an open scans a small active segment, and the transaction
    /// index, leader epochs and largest producer id already hold what the sealed segments
    /// carry (written at each roll). A node stopping with many partitions would otherwise
    /// create files for each that no open needs.
    fn drop(&mut self) {
        if self.durability.is_poisoned() {
            return;
        }
        let sealed = self.segments.len().saturating_sub(1);
        for segment in &mut self.segments[..sealed] {
            if let Err(e) = segment.rewrite_indexes() {
                tracing::warn!(error = %e, "failed to write index entries on close");
            }
        }
        if self.worth_a_clean_close() {
            if let Err(e) = self.close_cleanly() {
                tracing::warn!(error = %e, "cannot close cleanly: the next open reads the active segment");
            }
        }
    }
}
