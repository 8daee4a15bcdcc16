//! One transactional id's state and its transitions, as Kafka's `TransactionMetadata`
//! has them for transaction version 1. Pure: the coordinator persists and writes markers.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::TxnError;
use crate::groups::Committed;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnState {
    /// No transaction since the last InitProducerId.
    Empty,
    Ongoing,
    /// Decided; markers and offsets are being written.
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

/// A transactional id: its producer, and the transaction in progress if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// When the ongoing transaction enlisted its first partition or group (ms since the
    /// Unix epoch): its timeout counts from there.
    pub started_ms: i64,
    /// `(topic, partition)` enlisted by AddPartitionsToTxn.
    pub partitions: BTreeSet<(String, i32)>,
    /// Groups enlisted by AddOffsetsToTxn.
    pub groups: BTreeSet<String>,
    /// TxnOffsetCommit offsets per group as `(topic, partition, offset)`, one entry per
    /// partition, applied at COMMIT and dropped at ABORT.
    pub pending_offsets: BTreeMap<String, Vec<(String, i32, Committed)>>,
}

/// The highest epoch handed out before a new producer id is needed (Kafka keeps
/// `Short.MAX_VALUE` free for the bump that fences at overflow).
pub const MAX_EPOCH: i16 = i16::MAX - 1;

impl Transaction {
    pub fn new(producer_id: i64, timeout_ms: i32) -> Transaction {
        Transaction {
            producer_id,
            producer_epoch: 0,
            timeout_ms,
            state: TxnState::Empty,
            started_ms: 0,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            pending_offsets: BTreeMap::new(),
        }
    }

    /// Checks that a coordinator request comes from the id's current producer.
    pub fn check_producer(&self, id: &str, producer_id: i64, epoch: i16) -> Result<(), TxnError> {
        if producer_id != self.producer_id {
            return Err(TxnError::ProducerIdMapping {
                transactional_id: id.to_string(),
                producer_id,
            });
        }
        if epoch != self.producer_epoch {
            return Err(TxnError::Fenced {
                transactional_id: id.to_string(),
                producer_id,
                epoch,
                current: self.producer_epoch,
            });
        }
        Ok(())
    }

    /// Whether a decision is still being written.
    pub fn is_preparing(&self) -> bool {
        matches!(self.state, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }

    /// Enlists partitions and groups; the first enlistment starts the transaction and
    /// its timeout.
    pub fn enlist(
        &mut self,
        id: &str,
        partitions: impl IntoIterator<Item = (String, i32)>,
        group: Option<String>,
        now_ms: i64,
    ) -> Result<(), TxnError> {
        if self.is_preparing() {
            return Err(TxnError::Concurrent(id.to_string()));
        }
        if self.state != TxnState::Ongoing {
            self.state = TxnState::Ongoing;
            self.started_ms = now_ms;
            self.partitions.clear();
            self.groups.clear();
            self.pending_offsets.clear();
        }
        self.partitions.extend(partitions);
        self.groups.extend(group);
        Ok(())
    }

    /// Keeps TxnOffsetCommit offsets until the transaction ends; a later offset for a
    /// partition replaces the earlier one. The group must have been enlisted.
    pub fn stage_offsets(
        &mut self,
        id: &str,
        group: &str,
        offsets: Vec<(String, i32, Committed)>,
    ) -> Result<(), TxnError> {
        if self.is_preparing() {
            return Err(TxnError::Concurrent(id.to_string()));
        }
        if self.state != TxnState::Ongoing || !self.groups.contains(group) {
            return Err(TxnError::InvalidState {
                transactional_id: id.to_string(),
                state: self.state,
                wanted: "offsets of a group not added to the transaction",
            });
        }
        let staged = self.pending_offsets.entry(group.to_string()).or_default();
        for (topic, partition, committed) in offsets {
            staged.retain(|(t, p, _)| (t, *p) != (&topic, partition));
            staged.push((topic, partition, committed));
        }
        Ok(())
    }

    /// Whether the ongoing transaction has outlived its timeout at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.state == TxnState::Ongoing
            && now_ms.saturating_sub(self.started_ms) > i64::from(self.timeout_ms)
    }

    /// Moves an ongoing transaction to its decision. `Ok(false)` when the same decision
    /// was already taken (a retried EndTxn), which needs no new work once complete.
    pub fn prepare(&mut self, id: &str, commit: bool) -> Result<bool, TxnError> {
        let (prepare, complete) = match commit {
            true => (TxnState::PrepareCommit, TxnState::CompleteCommit),
            false => (TxnState::PrepareAbort, TxnState::CompleteAbort),
        };
        match self.state {
            TxnState::Ongoing => {
                self.state = prepare;
                Ok(true)
            }
            s if s == prepare || s == complete => Ok(false),
            state => Err(TxnError::InvalidState {
                transactional_id: id.to_string(),
                state,
                wanted: if commit { "a commit" } else { "an abort" },
            }),
        }
    }

    /// The decision is written: the transaction is over.
    pub fn finish(&mut self) {
        self.state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            other => other,
        };
        self.partitions.clear();
        self.groups.clear();
        self.pending_offsets.clear();
    }

    /// InitProducerId on a settled id: the next epoch, or `false` when the epoch is
    /// exhausted and a new producer id is needed.
    pub fn bump_epoch(&mut self) -> bool {
        if self.producer_epoch >= MAX_EPOCH {
            return false;
        }
        self.producer_epoch += 1;
        true
    }
}
