//! A cluster node's copy of an owned partition (see `cluster::replica`): every replica
//! holds the topic as owned, so its link no longer writes it, but only the leader the
//! assignment names takes producers' writes; the others append what they fetch from it,
//! byte for byte, at its offsets.

use std::collections::BTreeMap;

use shadowlink_storage::{AppendInfo, CheckedRecordSet};

use super::owned::OwnedState;
use super::{
    AbortedTransaction, MirrorError, MirrorPartition, MirrorTopic, Ownership, TopicRecord,
};

impl MirrorTopic {
    /// Makes this shadow owned without making any partition writable: each waits for
    /// [`MirrorPartition::lead`] in the epoch its leader was given, or copies its leader.
    /// The ownership is persisted first, so the link stops writing it for good.
    /// Idempotent.
    pub fn make_replica(&self) -> Result<(), MirrorError> {
        let mut record = self.record();
        if record.owned.is_some() {
            return Ok(());
        }
        if let Some((p, reason)) = self.offline.iter().next() {
            return Err(MirrorError::PartitionOffline {
                topic: self.name.clone(),
                partition: *p,
                reason: reason.clone(),
            });
        }
        // No epochs recorded: the assignment holds them, and a follower must not begin
        // an epoch at its own log end, which may lie below where its leader began it.
        let ownership = Ownership {
            from_link: Some(record.meta.link.clone()),
            leader_epochs: BTreeMap::new(),
            writable_from: (self.partitions().iter())
                .map(|p| (p.partition, p.log().log_end_offset()))
                .collect(),
        };
        let updated = TopicRecord {
            meta: record.meta.clone(),
            owned: Some(ownership),
        };
        self.write_record(&updated)?;
        *record = updated;
        drop(record);
        for p in self.partitions() {
            let mut owned = p.owned_state();
            if owned.is_none() {
                *owned = Some(OwnedState {
                    leader_epoch: -1,
                    producers: Default::default(),
                    refusal: None,
                });
            }
        }
        tracing::info!(topic = %self.name, "topic owned by the cluster: its link stops");
        Ok(())
    }
}

impl MirrorPartition {
    /// Appends batches fetched from the partition's leader, exactly as fetched, on a
    /// replica that does not lead it. Blocking, as [`MirrorPartition::append`].
    pub fn replicate(&self, set: &CheckedRecordSet) -> Result<AppendInfo, MirrorError> {
        let (info, sync) = self.log().append_checked(set)?;
        self.count_append(info.bytes, set.holds_control());
        if let Some(sync) = sync {
            sync.wait()?;
        }
        Ok(info)
    }

    /// Takes producers' writes in `epoch` from the log end on, with producer state
    /// rebuilt from the log (a follower kept none). When no batch was written yet in an
    /// epoch above the source's, this is the failover's first leader: transactions the
    /// source left open are aborted, as a single node's failover does.
    pub fn lead(&self, epoch: i32) -> Result<Vec<AbortedTransaction>, MirrorError> {
        if self.owned_epoch() == Some(epoch) {
            return Ok(Vec::new());
        }
        let written = self.log().latest_epoch().unwrap_or(-1);
        let source = self.source_floor.load(std::sync::atomic::Ordering::Relaxed);
        self.own(epoch)?;
        if written > source {
            return Ok(Vec::new());
        }
        self.abort_open_transactions(crate::txn::now_ms())
    }

    /// Stops taking producers' writes: another replica leads now.
    pub fn follow(&self) {
        if let Some(owned) = self.owned_state().as_mut() {
            owned.leader_epoch = -1;
            owned.producers = Default::default();
        }
    }
}
