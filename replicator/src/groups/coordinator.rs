//! The node's group coordinator: every group's membership state, a timer task per busy
//! group, and the committed-offset store.
//!
//! Locks are plain mutexes held for one state transition, never across an await. Parked
//! JoinGroup/SyncGroup requests wait on oneshot channels, so a long poll costs its own
//! connection task only; timeouts are driven by a per-group task that sleeps until the
//! group's next deadline (tokio time, so tests can pause it).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::SystemTime;

use shadowlink_storage::StorageError;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::error::{GroupError, SyncCommitError};
use super::group::{
    GroupConfig, GroupState, GroupSummary, JoinOutcome, JoinRequest, Phase, Step, SyncOutcome,
    SyncRequest,
};
use super::offsets::{Committed, OffsetStore, TopicPartition};
use super::shared::{SharedGroups, SharedOffsets};

/// One group's state plus the bell that wakes its timer task.
struct Group {
    state: Mutex<GroupState>,
    wake: Notify,
}

impl Group {
    fn lock(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Group membership and committed offsets of this node.
pub struct Coordinator {
    groups: Mutex<HashMap<String, Arc<Group>>>,
    offsets: Arc<OffsetStore>,
    config: GroupConfig,
    /// On a cluster node: where committed offsets are made durable, and which groups
    /// this node coordinates. Unset on a node on its own, which coordinates every group.
    shared: OnceLock<SharedGroups>,
}

/// A ListGroups row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
}

impl Coordinator {
    /// Opens the coordinator, loading committed offsets persisted under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Coordinator, StorageError> {
        Coordinator::open_with(data_dir, GroupConfig::default())
    }

    /// [`Coordinator::open`] with explicit timings (tests use a short initial delay).
    pub fn open_with(data_dir: &Path, config: GroupConfig) -> Result<Coordinator, StorageError> {
        Ok(Coordinator {
            groups: Mutex::new(HashMap::new()),
            offsets: Arc::new(OffsetStore::open(data_dir)?),
            config,
            shared: OnceLock::new(),
        })
    }

    /// Makes this coordinator one of a cluster's: it acts only for the groups `store`
    /// says it coordinates, and commits offsets there before acknowledging them.
    pub fn share(&self, store: Arc<dyn SharedOffsets>) {
        if self.shared.set(SharedGroups::new(store)).is_err() {
            tracing::warn!("the shared offset store is already set");
        }
    }

    /// `Ok` when this node acts for `group`: always on a node on its own; on a cluster
    /// node, NotCoordinator unless it is the group's coordinator, so clients rediscover.
    pub fn check_coordinator(&self, group_id: &str) -> Result<(), GroupError> {
        match self.shared.get() {
            Some(shared) => shared.check(group_id),
            None => Ok(()),
        }
    }

    /// Before committed offsets of `group` are read: on a cluster node, makes sure they
    /// are the shared store's, as this node last read or wrote them in its current term.
    pub async fn load(&self, group_id: &str) -> Result<(), GroupError> {
        match self.shared.get() {
            Some(shared) => shared.load(&self.offsets, group_id).await,
            None => Ok(()),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Group>>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn existing(&self, group_id: &str) -> Option<Arc<Group>> {
        self.map().get(group_id).cloned()
    }

    fn get_or_create(&self, group_id: &str) -> Arc<Group> {
        let mut map = self.map();
        map.entry(group_id.to_string())
            .or_insert_with(|| {
                Arc::new(Group {
                    state: Mutex::new(GroupState::default()),
                    wake: Notify::new(),
                })
            })
            .clone()
    }

    /// Runs one transition on `group`, then makes sure its timer task sees the result.
    fn update<T>(
        &self,
        group: &Arc<Group>,
        change: impl FnOnce(&mut GroupState, Instant) -> T,
    ) -> T {
        let (result, start_driver) = {
            let mut state = group.lock();
            let result = change(&mut state, Instant::now());
            let start = !state.driver_running && state.next_deadline().is_some();
            // Outside a runtime (a synchronous caller) nobody is parked, and the next
            // request ticks the group anyway.
            let start = start && tokio::runtime::Handle::try_current().is_ok();
            if start {
                state.driver_running = true;
            }
            (result, start)
        };
        if start_driver {
            tokio::spawn(drive(group.clone(), self.config.clone()));
        } else {
            group.wake.notify_one();
        }
        result
    }

    /// JoinGroup: returns once the member is in a new generation or refused.
    pub async fn join(&self, group_id: &str, request: JoinRequest) -> JoinOutcome {
        let member_id = request.member_id.clone();
        if let Err(error) = self.check_coordinator(group_id) {
            return JoinOutcome::failed(error, member_id);
        }
        let group = self.get_or_create(group_id);
        let step = self.update(&group, |state, now| state.join(request, now, &self.config));
        match step {
            Step::Done(outcome) => outcome,
            // The sender is dropped only when a newer JoinGroup of the same member replaced
            // this one; the client rejoins.
            Step::Wait(rx) => rx.await.unwrap_or_else(|_| {
                JoinOutcome::failed(GroupError::RebalanceInProgress, member_id)
            }),
        }
    }

    /// SyncGroup: returns the member's assignment once the leader has sent it.
    pub async fn sync(&self, group_id: &str, request: SyncRequest) -> SyncOutcome {
        if let Err(error) = self.check_coordinator(group_id) {
            return SyncOutcome::failed(error);
        }
        let Some(group) = self.existing(group_id) else {
            return SyncOutcome::failed(GroupError::UnknownMemberId);
        };
        let step = self.update(&group, |state, now| state.sync(request, now, &self.config));
        match step {
            Step::Done(outcome) => outcome,
            Step::Wait(rx) => rx
                .await
                .unwrap_or_else(|_| SyncOutcome::failed(GroupError::RebalanceInProgress)),
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        self.check_coordinator(group_id)?;
        let group = self.existing(group_id).ok_or(GroupError::UnknownMemberId)?;
        self.update(&group, |state, now| {
            state.heartbeat(member_id, instance, generation, now, &self.config)
        })
    }

    /// LeaveGroup: one result per `(member id, instance id)`.
    pub fn leave(
        &self,
        group_id: &str,
        leaving: &[(String, Option<String>)],
    ) -> Vec<Result<(), GroupError>> {
        if let Err(error) = self.check_coordinator(group_id) {
            return leaving.iter().map(|_| Err(error)).collect();
        }
        let Some(group) = self.existing(group_id) else {
            return leaving
                .iter()
                .map(|_| Err(GroupError::UnknownMemberId))
                .collect();
        };
        self.update(&group, |state, now| state.leave(leaving, now, &self.config))
    }

    /// DescribeGroups: `None` for a group this node has never seen.
    pub fn describe(&self, group_id: &str) -> Option<GroupSummary> {
        match self.existing(group_id) {
            Some(group) => Some(self.update(&group, |state, now| {
                state.tick(now, &self.config);
                state.summary()
            })),
            // A group known only by its committed offsets is an empty classic group.
            None => (!self.offsets.all(group_id).is_empty()).then(|| GroupSummary {
                phase: Phase::Empty,
                protocol_type: String::new(),
                protocol_name: String::new(),
                members: Vec::new(),
            }),
        }
    }

    /// ListGroups: groups with members or committed offsets, sorted by id.
    pub fn overview(&self) -> Vec<ListedGroup> {
        let groups: Vec<(String, Arc<Group>)> = self
            .map()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut listed: HashMap<String, ListedGroup> = HashMap::new();
        for (group_id, group) in groups {
            let state = group.lock();
            listed.insert(
                group_id.clone(),
                ListedGroup {
                    group_id,
                    protocol_type: state.protocol_type().to_string(),
                    state: state.phase().name(),
                },
            );
        }
        for group_id in self.offsets.groups() {
            listed.entry(group_id.clone()).or_insert(ListedGroup {
                group_id,
                protocol_type: String::new(),
                state: Phase::Empty.name(),
            });
        }
        let mut listed: Vec<ListedGroup> = listed.into_values().collect();
        listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        listed
    }

    /// OffsetCommit: checks the committer against the group, then persists off the async
    /// threads. The caller has already dropped partitions this node does not mirror.
    pub async fn commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        entries: Vec<(TopicPartition, Committed)>,
    ) -> Result<(), GroupError> {
        self.check_coordinator(group_id)?;
        self.validate_commit(group_id, member_id, instance, generation)?;
        if entries.is_empty() {
            return Ok(());
        }
        if let Some(shared) = self.shared.get() {
            return shared.commit(&self.offsets, group_id, entries).await;
        }
        let offsets = self.offsets.clone();
        let group = group_id.to_string();
        let written = tokio::task::spawn_blocking(move || offsets.commit(&group, entries)).await;
        match written {
            Ok(Ok(())) => Ok(()),
            // Kafka answers a failed offsets append with COORDINATOR_NOT_AVAILABLE: the
            // client retries, and the commit is not acknowledged.
            Ok(Err(error)) => {
                tracing::error!(group = group_id, %error, "cannot persist committed offsets");
                Err(GroupError::CoordinatorNotAvailable)
            }
            Err(error) => {
                tracing::error!(group = group_id, %error, "offset commit task failed");
                Err(GroupError::CoordinatorNotAvailable)
            }
        }
    }

    /// Checks that a committer (OffsetCommit, or TxnOffsetCommit under KIP-447) is a
    /// current member of the group; a negative generation is a commit from outside any
    /// generation and needs no membership when the group has none.
    pub fn validate_commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        match self.existing(group_id) {
            Some(group) => self.update(&group, |state, now| {
                state.validate_commit(member_id, instance, generation, now, &self.config)
            }),
            // No membership: a manual commit is fine; a member commit comes from a
            // generation this node does not know (e.g. from before a restart), so the
            // member must rejoin.
            None if generation < 0 => Ok(()),
            None => Err(GroupError::IllegalGeneration),
        }
    }

    /// The committed position of one partition.
    pub fn fetch_offset(&self, group_id: &str, topic: &str, partition: i32) -> Option<Committed> {
        self.offsets.get(group_id, topic, partition)
    }

    /// Every committed position of a group.
    pub fn fetch_all(&self, group_id: &str) -> Vec<(TopicPartition, Committed)> {
        self.offsets.all(group_id)
    }

    /// `(topic, partition, offset)` for everything `group` has committed.
    pub fn committed(&self, group: &str) -> Vec<(String, i32, i64)> {
        self.offsets
            .all(group)
            .into_iter()
            .map(|(tp, c)| (tp.topic, tp.partition, c.offset))
            .collect()
    }

    /// Writes offsets on behalf of the node (offset sync), blocking on disk. Refused while
    /// the group has members: their commits own the positions then.
    ///
    /// The check and the write are not atomic; a member joining in between may see its
    /// first committed position come from here, which is what it would have read anyway.
    pub fn commit_offsets(
        &self,
        group: &str,
        offsets: &[(String, i32, i64)],
    ) -> Result<(), SyncCommitError> {
        if self.has_active_members(group) {
            return Err(SyncCommitError::ActiveMembers(group.to_string()));
        }
        Ok(self.offsets.commit(group, synced(offsets))?)
    }

    /// Offset sync's write: on a node on its own, [`Coordinator::commit_offsets`] off the
    /// async threads; on a cluster node, only by the group's coordinator and through the
    /// shared store, as a member's commit would be. Refused while the group has members.
    pub async fn sync_offsets(
        self: &Arc<Self>,
        group: &str,
        offsets: Vec<(String, i32, i64)>,
    ) -> Result<(), SyncCommitError> {
        let not_committed = |reason| SyncCommitError::NotCommitted {
            group: group.to_string(),
            reason,
        };
        let Some(shared) = self.shared.get() else {
            let (coordinator, name) = (self.clone(), group.to_string());
            let written =
                tokio::task::spawn_blocking(move || coordinator.commit_offsets(&name, &offsets));
            return written.await.unwrap_or_else(|error| {
                tracing::warn!(group, %error, "offset sync task failed");
                Err(not_committed(GroupError::CoordinatorNotAvailable))
            });
        };
        shared.check(group).map_err(not_committed)?;
        if self.has_active_members(group) {
            return Err(SyncCommitError::ActiveMembers(group.to_string()));
        }
        let entries = synced(&offsets);
        let committed = shared.commit(&self.offsets, group, entries).await;
        committed.map_err(not_committed)
    }

    /// Applies the offsets a committed transaction staged (TxnOffsetCommit), blocking on
    /// disk. The group's members were checked when the offsets were staged.
    pub fn commit_transactional(
        &self,
        group: &str,
        entries: Vec<(TopicPartition, Committed)>,
    ) -> Result<(), StorageError> {
        self.offsets.commit(group, entries)
    }

    pub fn has_active_members(&self, group: &str) -> bool {
        self.existing(group).is_some_and(|g| {
            let mut state = g.lock();
            state.tick(Instant::now(), &self.config);
            state.has_members()
        })
    }

    /// Expires every group with no members whose offsets have not changed for
    /// `offsets_retention` (Kafka's `offsets.retention.minutes`, as KIP-211 counts it for
    /// empty groups): its offsets file is deleted and it is no longer listed. Returns the
    /// expired group ids. Blocks on disk.
    ///
    /// A cluster node expires nothing: its offsets directory is a copy of the shared
    /// store, which keeps a group until it is expired there.
    pub fn expire(&self, now: SystemTime) -> Result<Vec<String>, StorageError> {
        let cutoff = now.checked_sub(self.config.offsets_retention);
        let Some(cutoff) = cutoff.filter(|_| self.shared.get().is_none()) else {
            return Ok(Vec::new());
        };
        let mut expired = Vec::new();
        for group in self.offsets.unchanged_since(cutoff) {
            if self.has_active_members(&group) || !self.offsets.remove_unchanged(&group, cutoff)? {
                continue;
            }
            self.forget_if_empty(&group);
            expired.push(group);
        }
        expired.sort();
        Ok(expired)
    }

    /// Drops a group's membership state while it has no members, so ListGroups and
    /// DescribeGroups no longer know it.
    fn forget_if_empty(&self, group_id: &str) {
        let mut map = self.map();
        let empty = map.get(group_id).is_some_and(|g| {
            let state = g.lock();
            !state.has_members() && state.phase() == Phase::Empty
        });
        if empty {
            map.remove(group_id);
        }
    }

    /// Every group id with members or committed offsets, sorted.
    pub fn list_groups(&self) -> Vec<String> {
        let mut ids: BTreeSet<String> = self.map().keys().cloned().collect();
        ids.extend(self.offsets.groups());
        ids.into_iter().collect()
    }
}

/// A group's timer: applies deadlines (rebalance timeout, initial delay, sessions,
/// pending member ids) as they fall due, sleeping in between, and ends when the group has
/// no deadline left. Transitions ring `wake`, so a new, earlier deadline is never missed.
async fn drive(group: Arc<Group>, config: GroupConfig) {
    loop {
        let deadline = {
            let mut state = group.lock();
            state.tick(Instant::now(), &config);
            match state.next_deadline() {
                Some(deadline) => deadline,
                None => {
                    state.driver_running = false;
                    return;
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            _ = group.wake.notified() => {}
        }
    }
}

/// Offsets copied from a source group: no leader epoch, no metadata.
fn synced(offsets: &[(String, i32, i64)]) -> Vec<(TopicPartition, Committed)> {
    let entry = |(topic, partition, offset): &(String, i32, i64)| {
        let committed = Committed {
            offset: *offset,
            leader_epoch: -1,
            metadata: None,
        };
        (TopicPartition::new(topic.clone(), *partition), committed)
    };
    offsets.iter().map(entry).collect()
}
