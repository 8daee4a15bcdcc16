//! Log compaction (`cleanup.policy=compact`), following Kafka's `LogCleaner`.
//!
//! A pass builds a map of the latest offset of every key in the *dirty* section (the
//! sealed segments not cleaned yet, up to the first uncleanable offset: the active
//! segment, the first open transaction, or data younger than `min.compaction.lag.ms`),
//! then rewrites every sealed segment from the start of the log to the end of that
//! section, keeping of each key only its latest record:
//! - offsets never change: removed records leave gaps, and a batch keeps its base and
//!   last offset;
//! - a batch whose records all survive is copied byte for byte; one that loses records
//!   is rebuilt with the survivors' unchanged bytes under its own header (see
//!   `records.rs`); one that loses them all is dropped, except the last data batch of
//!   each producer id, kept with zero records so the producer's epoch and sequence
//!   survive, as Kafka does;
//! - records without a key are dropped, as Kafka does for compacted topics;
//! - a tombstone (null value) is kept until `delete.retention.ms` after the segment
//!   holding it was first cleaned, then removed with the rest of its key;
//! - data of aborted transactions is removed; a transaction marker stays while any of
//!   its transaction's data does, and otherwise until `delete.retention.ms` after its
//!   segment was first cleaned;
//! - legacy (v0/v1) entries are copied unchanged and do not take part.
//!
//! Consecutive cleaned segments are merged while their input fits one segment, and the
//! result replaces them atomically (see `swap.rs`). The offset, time and transaction
//! indexes stay valid because offsets do not move (the first two are rebuilt from the
//! new file; aborted ranges may now cover missing offsets, which readers skip), and the
//! leader-epoch cache is unchanged.
//!
//! The work is split so a caller never holds the log for long: [`PartitionLog::compaction_plan`]
//! snapshots the segments (zero-copy), [`CleanJob::run`] does the reading and writing
//! without the log, and [`PartitionLog::commit_clean`] swaps the files in if the
//! segments it read are unchanged.

mod checkpoint;
mod job;
mod records;
mod replace;
mod swap;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::{Result, StorageError};
use crate::log::PartitionLog;
use crate::segment::Segment;
use checkpoint::{Checkpoint, CleanedMark};

pub use replace::SealedSegment;
pub(crate) use swap::finish_interrupted;

/// A compacted topic's settings, Kafka's topic configs of the same names.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactionConfig {
    /// `min.cleanable.dirty.ratio`: clean once dirty bytes are this share of the log.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: data younger than this is never cleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: dirty data older than this is cleaned whatever the ratio.
    pub max_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long tombstones and empty markers outlive a cleaning.
    pub delete_retention_ms: i64,
    /// `segment.ms`: the active segment is rolled once this old, so it can be cleaned.
    pub segment_ms: i64,
    /// Keys the offset map of one pass may hold (Kafka's dedupe buffer).
    pub max_map_keys: usize,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: 86_400_000,
            segment_ms: 604_800_000,
            max_map_keys: 4_000_000,
        }
    }
}

/// Where a log stands: what is clean, what could be cleaned now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DirtyState {
    pub clean_bytes: u64,
    pub dirty_bytes: u64,
    /// `dirty / (clean + dirty)`, 0 for a log with nothing cleanable.
    pub dirty_ratio: f64,
}

/// What a committed pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanStats {
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub segments_before: usize,
    pub segments_after: usize,
    /// Every batch below this offset is now clean.
    pub cleaned_to: i64,
}

impl CleanStats {
    pub fn bytes_reclaimed(&self) -> u64 {
        self.bytes_before.saturating_sub(self.bytes_after)
    }
}

/// An I/O budget for cleaning, in bytes read plus written per second (Kafka's
/// `log.cleaner.io.max.bytes.per.second`); sleeps the calling thread when ahead of it.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_second: Option<u64>,
    started: Instant,
    spent: u64,
}

impl Throttle {
    pub fn new(bytes_per_second: Option<u64>) -> Self {
        Throttle {
            bytes_per_second: bytes_per_second.filter(|&b| b > 0),
            started: Instant::now(),
            spent: 0,
        }
    }

    pub fn unlimited() -> Self {
        Throttle::new(None)
    }

    pub(crate) fn spend(&mut self, bytes: u64) {
        let Some(rate) = self.bytes_per_second else {
            return;
        };
        self.spent += bytes;
        let due = Duration::from_secs_f64(self.spent as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

/// A sealed segment as the plan saw it.
#[derive(Debug)]
struct SegmentSnap {
    base: i64,
    next_offset: i64,
    size: u64,
    data: Bytes,
    path: PathBuf,
    cleaned: Option<CleanedMark>,
}

/// A pass to run without the log (see [`CleanJob::run`]).
#[derive(Debug)]
pub struct CleanJob {
    dir: PathBuf,
    config: CompactionConfig,
    now_ms: i64,
    segment_bytes: u64,
    /// Every sealed segment from the first to the last dirty one.
    segments: Vec<SegmentSnap>,
    /// Index in `segments` of the first dirty segment.
    dirty_from: usize,
    /// The data of the later segments, which only name producers' last batches.
    later: Vec<Bytes>,
    /// `(producer id, first offset, marker offset)` of aborted transactions.
    aborted: Vec<(i64, i64, i64)>,
}

/// The cleaned copy of some segments, written but not yet swapped in.
#[derive(Debug)]
pub struct Cleaned {
    dir: PathBuf,
    groups: Vec<CleanedGroup>,
    cleaned_to: i64,
    committed: bool,
}

#[derive(Debug)]
struct CleanedGroup {
    /// `(base offset, size)` of each segment it replaces.
    members: Vec<(i64, u64)>,
    mark: CleanedMark,
}

impl Drop for Cleaned {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for group in &self.groups {
            let _ = std::fs::remove_file(swap::cleaned_path(&self.dir, group.members[0].0));
        }
    }
}

impl PartitionLog {
    /// The log's dirty section, and a pass over it if one is due: when the dirty ratio
    /// reaches `min.cleanable.dirty.ratio`, when dirty data is older than
    /// `max.compaction.lag.ms`, or when a cleaned segment's tombstones have expired.
    pub fn compaction_plan(
        &self,
        config: &CompactionConfig,
        now_ms: i64,
    ) -> Result<(DirtyState, Option<CleanJob>)> {
        let checkpoint = Checkpoint::load(&self.dir)?;
        let (dirty_from, dirty_end) = self.dirty_section(&checkpoint, config, now_ms);
        let size = |range: std::ops::Range<usize>| -> u64 {
            self.segments[range].iter().map(|s| s.size).sum()
        };
        let (clean_bytes, dirty_bytes) = (size(0..dirty_from), size(dirty_from..dirty_end));
        let total = clean_bytes + dirty_bytes;
        let state = DirtyState {
            clean_bytes,
            dirty_bytes,
            dirty_ratio: if total == 0 {
                0.0
            } else {
                dirty_bytes as f64 / total as f64
            },
        };
        let overdue = self.segments[dirty_from..dirty_end]
            .first()
            .is_some_and(|s| {
                let first = s.first_timestamp.filter(|&t| t >= 0);
                let first = first.unwrap_or_else(|| s.retention_timestamp());
                now_ms.saturating_sub(first) >= config.max_compaction_lag_ms
            });
        let dirty_due =
            dirty_bytes > 0 && (state.dirty_ratio >= config.min_cleanable_dirty_ratio || overdue);
        let expired = checkpoint.segments.iter().any(|(base, mark)| {
            mark.deletes
                && mark.at_ms.saturating_add(config.delete_retention_ms) <= now_ms
                && self.segments[..dirty_from]
                    .iter()
                    .any(|s| s.base_offset == *base)
        });
        if !dirty_due && !expired {
            return Ok((state, None));
        }
        let end = if dirty_due { dirty_end } else { dirty_from };
        let job = self.snapshot(&checkpoint, config, now_ms, dirty_from, end)?;
        Ok((state, Some(job)))
    }

    /// `(first dirty, end of the cleanable section)` as segment indexes.
    fn dirty_section(
        &self,
        checkpoint: &Checkpoint,
        config: &CompactionConfig,
        now_ms: i64,
    ) -> (usize, usize) {
        let sealed = &self.segments[..self.segments.len() - 1];
        let dirty_from = sealed
            .iter()
            .take_while(|s| s.next_offset <= checkpoint.cleaned_to)
            .count();
        let stable = self
            .txns
            .last_stable_offset(self.log_start_offset, self.high_watermark());
        let young = now_ms.saturating_sub(config.min_compaction_lag_ms);
        let cleanable = sealed[dirty_from..]
            .iter()
            .take_while(|s| s.next_offset <= stable && s.retention_timestamp() <= young)
            .count();
        (dirty_from, dirty_from + cleanable)
    }

    fn snapshot(
        &self,
        checkpoint: &Checkpoint,
        config: &CompactionConfig,
        now_ms: i64,
        dirty_from: usize,
        end: usize,
    ) -> Result<CleanJob> {
        let mut segments = Vec::with_capacity(end);
        for segment in &self.segments[..end] {
            segments.push(SegmentSnap {
                base: segment.base_offset,
                next_offset: segment.next_offset,
                size: segment.size,
                data: segment.mapped()?,
                path: segment.log_path.clone(),
                cleaned: checkpoint.segments.get(&segment.base_offset).copied(),
            });
        }
        let later = self.segments[end..]
            .iter()
            .map(Segment::mapped)
            .collect::<Result<_>>()?;
        Ok(CleanJob {
            dir: self.dir.clone(),
            config: config.clone(),
            now_ms,
            segment_bytes: self.config.segment_bytes,
            segments,
            dirty_from,
            later,
            aborted: self.txns.aborted_ranges(),
        })
    }

    /// Swaps the cleaned segments in. Fails with [`StorageError::CleanedStale`] (and
    /// changes nothing) if a segment the pass read was since deleted or changed.
    pub fn commit_clean(&mut self, mut cleaned: Cleaned) -> Result<CleanStats> {
        self.check_writable()?;
        let mut positions = Vec::with_capacity(cleaned.groups.len());
        for group in &cleaned.groups {
            positions.push(self.find_members(&group.members)?);
        }
        let stats = CleanStats {
            bytes_before: self.size_bytes(),
            segments_before: self.segments.len(),
            cleaned_to: cleaned.cleaned_to,
            ..CleanStats::default()
        };
        let dir = self.dir.clone();
        let groups = std::mem::take(&mut cleaned.groups);
        cleaned.committed = true;
        self.guarded(|log| {
            let mut checkpoint = Checkpoint::load(&dir)?;
            // Groups are in offset order: replace from the last so earlier positions hold.
            for (group, at) in groups.iter().zip(positions).rev() {
                let bases: Vec<i64> = group.members.iter().map(|m| m.0).collect();
                swap::install(&dir, &bases)?;
                let mut segment = Segment::open(&dir, bases[0], &log.config.open_files)?;
                segment.recover(bases[0], log.config.index_interval_bytes)?;
                for old in log.segments.splice(at..at + bases.len(), [segment]) {
                    drop(old);
                }
                for base in &bases {
                    checkpoint.segments.remove(base);
                }
                checkpoint.segments.insert(bases[0], group.mark);
            }
            checkpoint.cleaned_to = checkpoint.cleaned_to.max(cleaned.cleaned_to);
            let live: Vec<i64> = log.segments.iter().map(|s| s.base_offset).collect();
            checkpoint.segments.retain(|base, _| live.contains(base));
            checkpoint.store(&dir)
        })?;
        Ok(CleanStats {
            bytes_after: self.size_bytes(),
            segments_after: self.segments.len(),
            ..stats
        })
    }

    /// Index of the first of `members` among the sealed segments, if they are all
    /// still there, consecutive and unchanged.
    fn find_members(&self, members: &[(i64, u64)]) -> Result<usize> {
        let sealed = &self.segments[..self.segments.len() - 1];
        let at = sealed.iter().position(|s| s.base_offset == members[0].0);
        let unchanged = at.is_some_and(|at| {
            sealed.len() >= at + members.len()
                && sealed[at..at + members.len()]
                    .iter()
                    .zip(members)
                    .all(|(s, &(base, size))| s.base_offset == base && s.size == size)
        });
        match (at, unchanged) {
            (Some(at), true) => Ok(at),
            _ => Err(StorageError::CleanedStale {
                base_offset: members[0].0,
            }),
        }
    }

    /// Plans, runs and commits one pass while holding the log, if one is due.
    pub fn compact(
        &mut self,
        config: &CompactionConfig,
        now_ms: i64,
    ) -> Result<Option<CleanStats>> {
        let Some(job) = self.compaction_plan(config, now_ms)?.1 else {
            return Ok(None);
        };
        let cleaned = job.run(&mut Throttle::unlimited())?;
        self.commit_clean(cleaned).map(Some)
    }

    /// Rolls the active segment once it is `max_age` old by the wall clock and holds
    /// data, so a quiet compacted log's newest records become cleanable (Kafka rolls
    /// at `min(segment.ms, max.compaction.lag.ms)`). Returns whether it rolled.
    pub fn roll_if_older_than(&mut self, max_age: Duration) -> Result<bool> {
        let active = self.active();
        if active.is_empty() || active.created.elapsed() < max_age {
            return Ok(false);
        }
        let log_end = self.log_end_offset();
        self.guarded(|log| log.roll(log_end))?;
        self.flush()?;
        Ok(true)
    }
}
