//! Committed offsets kept in a store shared by a cluster's nodes (etcd, in
//! `cluster::groups`), so they outlive the node that coordinated the group.
//!
//! One node at a time coordinates a group. It answers an OffsetCommit only once the
//! group's offsets are durable in the shared store, and before it answers an OffsetFetch
//! for a group it has not read in its current coordination term, it reads the group from
//! the store: while another node coordinated, that node may have committed. The node's
//! own offsets directory then holds a copy of what the store holds, which every reader
//! of committed offsets (OffsetFetch, DescribeGroups, ListGroups) uses unchanged.
//!
//! Each write is guarded by the revision the writer last read, so a node that still
//! believes it coordinates a group after another took over cannot overwrite the newer
//! node's commits: its write fails, it reads the group again and retries once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use super::error::GroupError;
use super::offsets::{Committed, OffsetStore, TopicPartition};

/// A group's committed offsets, keyed by partition.
pub type GroupOffsets = BTreeMap<TopicPartition, Committed>;

/// A group's committed offsets as the shared store holds them, and the revision the next
/// write must name (0 while the store holds nothing for the group).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stored {
    pub offsets: GroupOffsets,
    pub revision: i64,
}

/// Why the shared store did not answer as asked.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("the shared offset store is unavailable: {0}")]
    Unavailable(String),
    #[error("the group's offsets changed since they were read")]
    Conflict,
}

/// Where a cluster node's committed offsets are made durable, and which node coordinates
/// each group.
pub trait SharedOffsets: Send + Sync {
    /// The coordination term in which this node coordinates `group`: a new term means
    /// another node may have coordinated it meanwhile. NotCoordinator when another node
    /// coordinates it, CoordinatorNotAvailable while no node is known to.
    fn term(&self, group: &str) -> Result<u64, GroupError>;

    fn read<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<Stored, SharedError>>;

    /// Replaces the group's offsets with `offsets` if the stored revision is still
    /// `revision`; the new revision.
    fn write<'a>(
        &'a self,
        group: &'a str,
        offsets: &'a GroupOffsets,
        revision: i64,
    ) -> BoxFuture<'a, Result<i64, SharedError>>;
}

/// What this node last read or wrote of a group, in which term.
struct Loaded {
    term: u64,
    stored: Stored,
}

/// Per group, the last state read from the shared store. A group's slot is locked for a
/// whole load or commit, so the same node never races itself on one group.
type Slot = Arc<tokio::sync::Mutex<Option<Loaded>>>;

/// The shared store and what this node has loaded from it.
pub struct SharedGroups {
    store: Arc<dyn SharedOffsets>,
    loaded: Mutex<HashMap<String, Slot>>,
}

impl SharedGroups {
    pub fn new(store: Arc<dyn SharedOffsets>) -> SharedGroups {
        SharedGroups {
            store,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` while this node coordinates `group`.
    pub fn check(&self, group: &str) -> Result<(), GroupError> {
        self.store.term(group).map(|_| ())
    }

    fn slot(&self, group: &str) -> Slot {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        loaded.entry(group.to_string()).or_default().clone()
    }

    /// Makes the local copy of `group`'s offsets the shared store's, unless it already
    /// is for this term. Until it is, committed offsets of the group are not served.
    pub async fn load(&self, local: &Arc<OffsetStore>, group: &str) -> Result<(), GroupError> {
        let term = self.store.term(group)?;
        let slot = self.slot(group);
        let mut loaded = slot.lock().await;
        if loaded.as_ref().is_some_and(|l| l.term == term) {
            return Ok(());
        }
        *loaded = Some(self.read(local, group, term).await?);
        Ok(())
    }

    /// Reads `group` from the store and replaces the local copy with it.
    async fn read(
        &self,
        local: &Arc<OffsetStore>,
        group: &str,
        term: u64,
    ) -> Result<Loaded, GroupError> {
        let stored = self.store.read(group).await.map_err(|error| {
            tracing::warn!(group, %error, "cannot load the group's committed offsets");
            GroupError::CoordinatorNotAvailable
        })?;
        replace_local(local, group, stored.offsets.clone()).await?;
        tracing::debug!(
            group,
            revision = stored.revision,
            "committed offsets loaded"
        );
        Ok(Loaded { term, stored })
    }

    /// Adds `entries` to the group's offsets in the shared store, then to the local copy.
    /// Answers `Ok` only once the store has them: a commit the store did not take is
    /// CoordinatorNotAvailable, which clients retry.
    pub async fn commit(
        &self,
        local: &Arc<OffsetStore>,
        group: &str,
        entries: Vec<(TopicPartition, Committed)>,
    ) -> Result<(), GroupError> {
        let term = self.store.term(group)?;
        let slot = self.slot(group);
        let mut loaded = slot.lock().await;
        // The second attempt follows a conflict, with the group just read again.
        for _ in 0..2 {
            let current = match loaded.take() {
                Some(l) if l.term == term => l,
                _ => self.read(local, group, term).await?,
            };
            let mut next = current.stored.offsets.clone();
            next.extend(entries.iter().cloned());
            let revision = current.stored.revision;
            match self.store.write(group, &next, revision).await {
                Ok(revision) => {
                    let stored = Stored {
                        offsets: next.clone(),
                        revision,
                    };
                    // Durable from here on: a local copy that cannot be written is read
                    // again from the store before it is served.
                    if replace_local(local, group, next).await.is_ok() {
                        *loaded = Some(Loaded { term, stored });
                    }
                    return Ok(());
                }
                Err(SharedError::Conflict) => {
                    tracing::info!(
                        group,
                        revision,
                        "group offsets changed elsewhere; reading again"
                    );
                }
                Err(error @ SharedError::Unavailable(_)) => {
                    *loaded = Some(current);
                    tracing::warn!(group, %error, "offset commit refused: not durable");
                    return Err(GroupError::CoordinatorNotAvailable);
                }
            }
        }
        Err(GroupError::CoordinatorNotAvailable)
    }
}

/// Makes the node's own copy of `group` exactly `offsets`, off the async threads.
async fn replace_local(
    local: &Arc<OffsetStore>,
    group: &str,
    offsets: GroupOffsets,
) -> Result<(), GroupError> {
    let (local, name) = (local.clone(), group.to_string());
    let replaced = tokio::task::spawn_blocking(move || local.replace(&name, offsets)).await;
    match replaced {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => {
            tracing::error!(group, %error, "cannot write the local copy of committed offsets");
            Err(GroupError::CoordinatorNotAvailable)
        }
        Err(error) => {
            tracing::error!(group, %error, "offset copy task failed");
            Err(GroupError::CoordinatorNotAvailable)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::*;
    use crate::groups::Coordinator;

    /// An in-memory shared store, standing in for etcd and the cluster's placement.
    #[derive(Default)]
    struct FakeShared {
        stored: Mutex<HashMap<String, Stored>>,
        revision: AtomicU64,
        /// This node's term, or 0 while another node coordinates every group.
        term: AtomicU64,
        down: AtomicBool,
    }

    impl FakeShared {
        fn new() -> Arc<FakeShared> {
            let fake = FakeShared::default();
            fake.term.store(1, Ordering::SeqCst);
            Arc::new(fake)
        }

        /// Another node commits `offset` for partition `p` of topic `t`.
        fn commit_elsewhere(&self, group: &str, p: i32, offset: i64) {
            let mut stored = self.stored.lock().unwrap();
            let entry = stored.entry(group.to_string()).or_default();
            entry
                .offsets
                .insert(TopicPartition::new("t", p), at(offset));
            entry.revision =
                i64::try_from(self.revision.fetch_add(1, Ordering::SeqCst)).unwrap() + 1;
        }

        fn offset(&self, group: &str, p: i32) -> Option<i64> {
            let stored = self.stored.lock().unwrap();
            let offsets = &stored.get(group)?.offsets;
            offsets.get(&TopicPartition::new("t", p)).map(|c| c.offset)
        }
    }

    impl SharedOffsets for FakeShared {
        fn term(&self, _group: &str) -> Result<u64, GroupError> {
            match self.term.load(Ordering::SeqCst) {
                0 => Err(GroupError::NotCoordinator),
                term => Ok(term),
            }
        }

        fn read<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<Stored, SharedError>> {
            Box::pin(async move {
                if self.down.load(Ordering::SeqCst) {
                    return Err(SharedError::Unavailable("down".into()));
                }
                Ok(self
                    .stored
                    .lock()
                    .unwrap()
                    .get(group)
                    .cloned()
                    .unwrap_or_default())
            })
        }

        fn write<'a>(
            &'a self,
            group: &'a str,
            offsets: &'a GroupOffsets,
            revision: i64,
        ) -> BoxFuture<'a, Result<i64, SharedError>> {
            Box::pin(async move {
                if self.down.load(Ordering::SeqCst) {
                    return Err(SharedError::Unavailable("down".into()));
                }
                let mut stored = self.stored.lock().unwrap();
                let current = stored.entry(group.to_string()).or_default();
                if current.revision != revision {
                    return Err(SharedError::Conflict);
                }
                let next = i64::try_from(self.revision.fetch_add(1, Ordering::SeqCst)).unwrap() + 1;
                *current = Stored {
                    offsets: offsets.clone(),
                    revision: next,
                };
                Ok(next)
            })
        }
    }

    fn at(offset: i64) -> Committed {
        Committed {
            offset,
            leader_epoch: -1,
            metadata: None,
        }
    }

    fn shared_coordinator(dir: &std::path::Path) -> (Arc<Coordinator>, Arc<FakeShared>) {
        let coordinator = Arc::new(Coordinator::open(dir).unwrap());
        let fake = FakeShared::new();
        coordinator.share(fake.clone());
        (coordinator, fake)
    }

    async fn commit(coordinator: &Coordinator, p: i32, offset: i64) -> Result<(), GroupError> {
        let entries = vec![(TopicPartition::new("t", p), at(offset))];
        coordinator.commit("g", "", None, -1, entries).await
    }

    async fn fetched(coordinator: &Coordinator, p: i32) -> Result<Option<i64>, GroupError> {
        coordinator.load("g").await?;
        Ok(coordinator.fetch_offset("g", "t", p).map(|c| c.offset))
    }

    #[tokio::test]
    async fn a_commit_is_acknowledged_only_once_the_shared_store_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let (coordinator, fake) = shared_coordinator(dir.path());
        commit(&coordinator, 0, 5).await.unwrap();
        assert_eq!(fake.offset("g", 0), Some(5));
        fake.down.store(true, Ordering::SeqCst);
        let refused = commit(&coordinator, 0, 9).await;
        assert_eq!(refused, Err(GroupError::CoordinatorNotAvailable));
        // Loaded in this term: served from the node's copy, which the refusal left alone.
        assert_eq!(fetched(&coordinator, 0).await, Ok(Some(5)));
        fake.down.store(false, Ordering::SeqCst);
        commit(&coordinator, 0, 9).await.unwrap();
        assert_eq!(fake.offset("g", 0), Some(9));
        assert_eq!(fetched(&coordinator, 0).await, Ok(Some(9)));
    }

    #[tokio::test]
    async fn a_new_term_reads_the_group_again_before_serving_it() {
        let dir = tempfile::tempdir().unwrap();
        let (coordinator, fake) = shared_coordinator(dir.path());
        commit(&coordinator, 0, 5).await.unwrap();
        fake.commit_elsewhere("g", 0, 12);
        assert_eq!(fetched(&coordinator, 0).await, Ok(Some(5)));
        fake.term.store(2, Ordering::SeqCst);
        assert_eq!(fetched(&coordinator, 0).await, Ok(Some(12)));
        // A node that never saw the group reads it from the store too.
        let other = tempfile::tempdir().unwrap();
        let fresh = Coordinator::open(other.path()).unwrap();
        fresh.share(fake.clone());
        assert_eq!(fetched(&fresh, 0).await, Ok(Some(12)));
        fake.down.store(true, Ordering::SeqCst);
        fake.term.store(3, Ordering::SeqCst);
        let unloaded = fetched(&fresh, 0).await;
        assert_eq!(unloaded, Err(GroupError::CoordinatorNotAvailable));
    }

    #[tokio::test]
    async fn a_commit_racing_another_node_keeps_both() {
        let dir = tempfile::tempdir().unwrap();
        let (coordinator, fake) = shared_coordinator(dir.path());
        commit(&coordinator, 0, 5).await.unwrap();
        fake.commit_elsewhere("g", 1, 30);
        commit(&coordinator, 0, 7).await.unwrap();
        assert_eq!(fake.offset("g", 0), Some(7));
        assert_eq!(fake.offset("g", 1), Some(30));
        assert_eq!(fetched(&coordinator, 1).await, Ok(Some(30)));
    }

    #[tokio::test]
    async fn offset_sync_writes_through_the_shared_store_while_the_group_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (coordinator, fake) = shared_coordinator(dir.path());
        let synced = coordinator
            .sync_offsets("g", vec![("t".into(), 0, 3)])
            .await;
        assert!(synced.is_ok(), "{synced:?}");
        assert_eq!(fake.offset("g", 0), Some(3));
        assert_eq!(fetched(&coordinator, 0).await, Ok(Some(3)));
    }

    #[tokio::test]
    async fn a_node_that_does_not_coordinate_the_group_refuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let (coordinator, fake) = shared_coordinator(dir.path());
        fake.term.store(0, Ordering::SeqCst);
        let not = GroupError::NotCoordinator;
        assert_eq!(commit(&coordinator, 0, 5).await, Err(not));
        assert_eq!(fetched(&coordinator, 0).await, Err(not));
        assert_eq!(coordinator.heartbeat("g", "m", None, 1), Err(not));
        let synced = coordinator.sync_offsets("g", vec![("t".into(), 0, 3)]);
        assert!(matches!(
            synced.await,
            Err(crate::groups::SyncCommitError::NotCommitted {
                reason: GroupError::NotCoordinator,
                ..
            })
        ));
        assert_eq!(fake.offset("g", 0), None);
    }
}
