//! Transaction state derived from the stored batches: each producer's open transaction
//! and the index of aborted transactions, which give the last stable offset (LSO) and
//! the aborted ranges a `read_committed` fetch must name.
//!
//! A mirror never trusts what its source says about transactions: like a Kafka
//! follower, it derives them from the batches themselves. A transactional data batch
//! opens a transaction for its producer id if none is open; a control batch ends it,
//! and an ABORT marker closing a transaction that has data here adds the range
//! `(producer id, first offset, marker offset)` to the index (Kafka's `.txnindex`). A
//! marker without data (the mirror started mid-transaction, or compaction) adds none.
//!
//! The state is persisted in one file per partition, `txn-index` (JSON, atomically
//! replaced), as of an offset `end_offset` at which a batch ended. It is written when a
//! segment rolls, after truncation or retention, and on close; opening the log replays
//! the batches from `end_offset` to the log end, so at most the active segment is
//! re-read. A missing, unreadable or inconsistent file (one ahead of the recovered log)
//! is rebuilt from every stored batch header.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use shadowlink_protocol::batch::{BatchWalker, ControlType};

use crate::error::{Result, StorageError};
use crate::log::{PartitionLog, ReadResult};
use crate::meta::{read_meta, write_meta};
use crate::segment::Segment;
use crate::stamp::StoredBatch;

pub(crate) const TXN_FILE: &str = "txn-index";

/// A transaction that was aborted after writing data at `first_offset`; its ABORT
/// marker is at `last_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AbortedTxn {
    producer_id: i64,
    first_offset: i64,
    last_offset: i64,
}

/// A `read_committed` read: whole batches below the last stable offset, and the aborted
/// transactions overlapping them.
#[derive(Debug, Clone, Default)]
pub struct CommittedRead {
    pub read: ReadResult,
    pub last_stable_offset: i64,
    /// `(producer id, first offset)` of every aborted transaction overlapping the
    /// returned batches; empty when none were returned.
    pub aborted_transactions: Vec<(i64, i64)>,
}

/// What the file holds: the state after every batch below `end_offset`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Snapshot {
    end_offset: i64,
    /// `(producer id, first offset)` of every open transaction.
    open: Vec<(i64, i64)>,
    /// Ordered by strictly increasing `last_offset`.
    aborted: Vec<AbortedTxn>,
}

#[derive(Debug)]
pub(crate) struct TxnIndex {
    path: PathBuf,
    end_offset: i64,
    open: BTreeMap<i64, i64>,
    aborted: Vec<AbortedTxn>,
    /// The `end_offset` last written to the file, to skip needless rewrites.
    persisted_end: Option<i64>,
}

impl TxnIndex {
    pub(crate) fn empty(dir: &Path, end_offset: i64) -> Self {
        TxnIndex {
            path: dir.join(TXN_FILE),
            end_offset,
            open: BTreeMap::new(),
            aborted: Vec::new(),
            persisted_end: None,
        }
    }

    /// Loads the file and replays the batches after it, or rebuilds from every batch
    /// when the file is missing, unreadable or does not describe a prefix of the log.
    pub(crate) fn load(dir: &Path, segments: &[Segment], log_start: i64) -> Result<Self> {
        let log_end = segments.last().map_or(log_start, |s| s.next_offset);
        let first_base = segments.first().map_or(log_start, |s| s.base_offset);
        let read = read_meta::<Snapshot>(&dir.join(TXN_FILE));
        let snapshot = match read {
            Ok(Some(s)) if s.is_consistent(first_base, log_end) => Some(s),
            Ok(_) | Err(StorageError::Meta { .. }) => None,
            Err(e) => return Err(e),
        };
        let mut index = match snapshot {
            Some(s) => Self::from_snapshot(dir, s),
            None => Self::empty(dir, first_base),
        };
        let from = index.end_offset;
        // The file spares this replay the sealed segments, and after a clean close the
        // active one too. It is written when the replay read sealed segments, not for
        // the active one alone.
        let active_base = segments.last().map_or(log_start, |s| s.base_offset);
        let covers_sealed = from >= active_base;
        if !covers_sealed {
            tracing::info!(dir = %dir.display(), "rebuilding the transaction index");
        }
        for segment in segments.iter().filter(|s| s.next_offset > from) {
            segment.for_each_batch(|b| {
                if b.next_offset() > from {
                    index.observe(b);
                }
            })?;
        }
        index.end_offset = index.end_offset.max(log_end);
        index.truncate_start(log_start);
        if !covers_sealed {
            index.persist()?;
        }
        Ok(index)
    }

    fn from_snapshot(dir: &Path, s: Snapshot) -> Self {
        TxnIndex {
            path: dir.join(TXN_FILE),
            end_offset: s.end_offset,
            open: s.open.into_iter().collect(),
            aborted: s.aborted,
            persisted_end: Some(s.end_offset),
        }
    }

    /// Writes the state unless the file already holds it.
    pub(crate) fn persist(&mut self) -> Result<()> {
        if self.persisted_end == Some(self.end_offset) {
            return Ok(());
        }
        let snapshot = Snapshot {
            end_offset: self.end_offset,
            open: self.open.iter().map(|(&p, &f)| (p, f)).collect(),
            aborted: self.aborted.clone(),
        };
        write_meta(&self.path, &snapshot)?;
        self.persisted_end = Some(self.end_offset);
        Ok(())
    }

    /// Updates the state with the next stored batch.
    pub(crate) fn observe(&mut self, batch: &impl StoredBatch) {
        self.end_offset = batch.next_offset();
        let producer_id = batch.producer_id();
        if !batch.is_transactional() || producer_id < 0 {
            return;
        }
        if !batch.is_control() {
            self.open.entry(producer_id).or_insert(batch.base_offset());
            return;
        }
        // Any control batch ends the transaction: COMMIT, ABORT, or an empty batch whose
        // marker compaction removed. Only an abort of data stored here needs an entry.
        let first = self.open.remove(&producer_id);
        if let (Some(first_offset), Some(ControlType::Abort)) = (first, batch.control_type()) {
            self.aborted.push(AbortedTxn {
                producer_id,
                first_offset,
                last_offset: batch.last_offset(),
            });
        }
    }

    /// The first offset of the oldest open transaction, else `high_watermark`; never
    /// below `log_start`.
    pub(crate) fn last_stable_offset(&self, log_start: i64, high_watermark: i64) -> i64 {
        let oldest_open = self.open.values().min().copied();
        oldest_open
            .map_or(high_watermark, |first| first.min(high_watermark))
            .max(log_start)
    }

    /// Kafka's rule: every aborted transaction with `last_offset >= from` and
    /// `first_offset < upper`, ordered by marker offset.
    pub(crate) fn overlapping(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted[start..]
            .iter()
            .filter(|a| a.first_offset < upper)
            .copied()
            .collect()
    }

    /// `(producer id, first offset, marker offset)` of every aborted transaction.
    pub(crate) fn aborted_ranges(&self) -> Vec<(i64, i64, i64)> {
        self.aborted
            .iter()
            .map(|a| (a.producer_id, a.first_offset, a.last_offset))
            .collect()
    }

    /// Whether any aborted transaction has its marker at or above `from`.
    pub(crate) fn aborted_from(&self, from: i64) -> bool {
        self.aborted.last().is_some_and(|a| a.last_offset >= from)
    }

    /// Forgets aborted transactions whose markers fell below the new log start.
    pub(crate) fn truncate_start(&mut self, log_start: i64) {
        let drop = self.aborted.partition_point(|a| a.last_offset < log_start);
        if drop > 0 {
            self.aborted.drain(..drop);
            self.persisted_end = None;
        }
    }

    /// Starts over, empty, at `offset` (the log was emptied and restarted there).
    pub(crate) fn reset(&mut self, offset: i64) {
        self.end_offset = offset;
        self.open.clear();
        self.aborted.clear();
        self.persisted_end = None;
    }
}

/// The prefix of `chunk` made of whole batches that end below `limit`, and the offset
/// after its last batch (`None` when the prefix is empty).
fn below_offset(chunk: Bytes, limit: i64) -> (Bytes, Option<i64>) {
    let mut walker = BatchWalker::new(chunk.clone());
    let (mut end, mut next) = (0, None);
    for batch in walker.by_ref() {
        let Ok(batch) = batch else { break };
        if batch.last_offset() >= limit {
            break;
        }
        end += batch.len();
        next = Some(batch.next_offset());
    }
    (chunk.slice(..end), next)
}

impl Snapshot {
    /// Whether the snapshot can describe a prefix of a log spanning
    /// `[first_base, log_end)`: a truncated tail leaves it ahead of the log.
    fn is_consistent(&self, first_base: i64, log_end: i64) -> bool {
        let ordered = self
            .aborted
            .windows(2)
            .all(|w| w[0].last_offset < w[1].last_offset);
        let below_end = self
            .aborted
            .iter()
            .all(|a| a.first_offset <= a.last_offset && a.last_offset < self.end_offset)
            && self.open.iter().all(|&(_, first)| first < self.end_offset);
        ordered && below_end && self.end_offset >= first_base && self.end_offset <= log_end
    }
}

impl PartitionLog {
    /// The last stable offset: the first offset of the oldest transaction still open in
    /// the stored batches, else the high watermark. `read_committed` consumers read
    /// only below it.
    pub fn last_stable_offset(&self) -> i64 {
        self.txns
            .last_stable_offset(self.log_start_offset, self.high_watermark())
    }

    /// Every transaction still open in the stored batches, as `(producer id, first
    /// offset)`, oldest first: those whose marker has not been stored (yet).
    pub fn open_transactions(&self) -> Vec<(i64, i64)> {
        let mut open: Vec<(i64, i64)> = self.txns.open.iter().map(|(&p, &f)| (p, f)).collect();
        open.sort_by_key(|&(producer_id, first)| (first, producer_id));
        open
    }

    /// The aborted transactions a `read_committed` reader of `[from, upper)` must skip:
    /// those whose ABORT marker is at or above `from` and whose first offset is below
    /// `upper`, as `(producer id, first offset)` pairs.
    pub fn aborted_transactions(&self, from: i64, upper: i64) -> Vec<(i64, i64)> {
        self.txns
            .overlapping(from, upper)
            .into_iter()
            .map(|a| (a.producer_id, a.first_offset))
            .collect()
    }

    /// Like [`PartitionLog::read`], but stops before the first batch that reaches the
    /// last stable offset, so only decided data is returned, together with the aborted
    /// transactions a consumer must skip in it. A read at or above the LSO (and within
    /// the log) returns no batches.
    pub fn read_committed(&self, offset: i64, max_bytes: usize) -> Result<CommittedRead> {
        let last_stable_offset = self.last_stable_offset();
        let mut read = self.read(offset, max_bytes)?;
        // Common case, no transactions here: nothing to cut and no aborts to name, so
        // the batches need not be walked.
        if last_stable_offset >= read.log_end_offset && !self.txns.aborted_from(offset) {
            return Ok(CommittedRead {
                read,
                last_stable_offset,
                aborted_transactions: Vec::new(),
            });
        }
        let mut upper = offset;
        let mut kept = Vec::with_capacity(read.chunks.len());
        for chunk in read.chunks.drain(..) {
            let len = chunk.len();
            let (below, next) = below_offset(chunk, last_stable_offset);
            let reached_lso = below.len() < len;
            if let Some(next) = next {
                upper = next;
                kept.push(below);
            }
            if reached_lso {
                break;
            }
        }
        read.chunks = kept;
        let aborted_transactions = match upper > offset {
            true => self.aborted_transactions(offset, upper),
            false => Vec::new(),
        };
        Ok(CommittedRead {
            read,
            last_stable_offset,
            aborted_transactions,
        })
    }

    /// Reloads the transaction state after the tail was cut: the file still describes
    /// a prefix of the log unless the cut went below it, in which case it is rebuilt.
    pub(crate) fn reload_txns(&mut self) -> Result<()> {
        self.txns = TxnIndex::load(&self.dir, &self.segments, self.log_start_offset)?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "txn_tests.rs"]
mod tests;
