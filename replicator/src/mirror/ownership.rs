//! Which topics and partitions this node writes, and the one-way turn of a shadow into
//! an owned topic (failover).

use std::collections::BTreeMap;
use std::sync::MutexGuard;

use shadowlink_storage::StorageError;

use super::owned::{self, OwnedState};
use super::{MirrorError, MirrorPartition, MirrorTopic, Ownership, TopicRecord};

impl MirrorPartition {
    pub fn is_owned(&self) -> bool {
        self.owned_state().is_some()
    }

    /// The leader epoch producers write in, for owned partitions.
    pub fn owned_epoch(&self) -> Option<i32> {
        self.owned_state().as_ref().map(|o| o.leader_epoch)
    }

    pub(super) fn owned_state(&self) -> MutexGuard<'_, Option<OwnedState>> {
        self.owned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the partition writable in `epoch`: starts the epoch at the log end (so
    /// Metadata and OffsetsForLeaderEpoch report it before anything is produced) and
    /// rebuilds producer state from the log's tail.
    pub(super) fn own(&self, epoch: i32) -> Result<(), StorageError> {
        let mut owned = self.owned_state();
        let log = &mut *self.log();
        log.begin_epoch(epoch)?;
        let producers = owned::rebuild_producer_states(log)?;
        *owned = Some(OwnedState {
            leader_epoch: epoch,
            producers,
            refusal: None,
        });
        Ok(())
    }
}

impl MirrorTopic {
    /// `Some` for topics this node writes.
    pub fn ownership(&self) -> Option<Ownership> {
        self.record().owned.clone()
    }

    pub fn is_owned(&self) -> bool {
        self.record().owned.is_some()
    }

    /// Turns this shadow into an owned topic, for good: each partition continues at its
    /// mirrored log end offset in a leader epoch one above every epoch it advertised. The
    /// ownership is persisted before any partition accepts a write, and re-applied on
    /// every open.
    /// Idempotent: an owned topic returns its ownership unchanged.
    ///
    /// The caller must have stopped the link's fetching first (failover); mirrored
    /// appends are refused from here on.
    pub fn make_writable(&self) -> Result<Ownership, MirrorError> {
        let mut record = self.record();
        if let Some(owned) = &record.owned {
            return Ok(owned.clone());
        }
        if let Some((p, reason)) = self.offline.iter().next() {
            return Err(MirrorError::PartitionOffline {
                topic: self.name.clone(),
                partition: *p,
                reason: reason.clone(),
            });
        }
        let mut ownership = Ownership {
            from_link: Some(record.meta.link.clone()),
            leader_epochs: BTreeMap::new(),
            writable_from: BTreeMap::new(),
        };
        for p in self.partitions() {
            // Above every epoch this node ever advertised for the partition, the source's
            // included, so every KIP-320 client sees a new leader.
            let epoch = p.leader_epoch().saturating_add(1);
            ownership.leader_epochs.insert(p.partition, epoch);
            ownership
                .writable_from
                .insert(p.partition, p.log().log_end_offset());
        }
        let updated = TopicRecord {
            meta: record.meta.clone(),
            owned: Some(ownership.clone()),
        };
        self.write_record(&updated)?;
        *record = updated;
        drop(record);
        self.own_partitions(&ownership)?;
        tracing::info!(topic = %self.name, epochs = ?ownership.leader_epochs, "topic made writable");
        Ok(ownership)
    }

    /// Installs the persisted ownership into the partitions (on open and after changes).
    pub(super) fn own_partitions(&self, ownership: &Ownership) -> Result<(), StorageError> {
        for p in self.partitions().iter().filter(|p| !p.is_owned()) {
            let epoch = ownership.leader_epochs.get(&p.partition).copied();
            p.own(epoch.unwrap_or(0))?;
        }
        Ok(())
    }
}
