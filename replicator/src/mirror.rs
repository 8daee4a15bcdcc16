//! The node's local partitions and their logs on disk.
//!
//! A topic is either a read-only *shadow* of a link (written only by that link, at the
//! source's offsets) or *owned* by this node (written by Kafka producers, offsets assigned
//! here). An owned topic is declared in the config or created with CreateTopics; a shadow
//! becomes owned, one way, with [`MirrorTopic::make_writable`] (failover).
//!
//! Layout under `data_dir`: `topics/{topic}/topic.json` holds what must survive a restart
//! (the link, the source topic id, the state, and for owned topics their ownership), and
//! `topics/{topic}/{partition}/` holds the partition log. `producer-ids.json` holds the
//! producer-id allocator's state.

mod abandoned;
mod demote;
mod error;
mod flushes;
mod open;
pub mod owned;
pub mod producer_ids;
pub mod producer_state;
mod replica;

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use shadowlink_storage::{
    AppendInfo, CheckedRecordSet, EpochFloor, LogConfig, PartitionLog, PendingSync, Poison,
    StorageError,
};
use tokio::sync::Notify;

pub use abandoned::AbortedTransaction;
pub use error::{MirrorError, OwnTopicError};
pub use flushes::FlushQueue;
pub use open::Offline;
use owned::OwnedState;
use producer_ids::{ProducerIdAllocator, ProducerIdError};

/// Lifecycle of a mirror topic. Failures are sticky: a topic whose source changed under
/// it stays untouched until an operator acts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TopicState {
    Active,
    Failed {
        reason: String,
    },
    /// Failover started: the link no longer writes it; not yet writable here.
    FailingOver,
    /// Failover done: writable on this node until demoted (see `mirror::demote`).
    FailedOver,
    /// Owned here, but the link's source took it over (its epoch is above ours): writes
    /// are refused until fail-back makes it a shadow of the link.
    FencedByFailover {
        peer: String,
    },
    /// Owned here and handing ownership to the link's source (switchover): writes are
    /// refused as retriable until the source owns it and this node demotes its copy.
    SwitchingOut,
    /// Once owned here, now a read-only shadow of the link again, fetched whether or not
    /// the link's `include` names it.
    Demoted,
}

/// That this node writes a topic, and the epochs its partitions write in. Stored in
/// `topic.json` next to [`TopicMeta`] (under `owned`); files without it are shadows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ownership {
    /// The link the topic shadowed before it was made writable; `None` when created owned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_link: Option<String>,
    /// Per partition, the leader epoch of every batch produced here: one above every
    /// epoch mirrored into it, so KIP-320 consumers see a new leader, never a rewind.
    pub leader_epochs: BTreeMap<i32, i32>,
    /// Per partition, the log end offset when it became writable: the first offset a
    /// producer got here (everything below was mirrored).
    pub writable_from: BTreeMap<i32, i64>,
}

/// `topic.json`: the shadow fields as before, plus the ownership of owned topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct TopicRecord {
    #[serde(flatten)]
    meta: TopicMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owned: Option<Ownership>,
}

/// What `topic.json` records about a mirror topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub link: String,
    /// The source topic id as 32 hex digits; all zeroes when the source reports none.
    pub source_topic_id: String,
    pub partitions: i32,
    #[serde(flatten)]
    pub state: TopicState,
    /// Topic configs synced from the source (see `link::configs::SYNCED_CONFIGS`).
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

/// One mirror partition. The log sits behind a mutex because appends come from a writer
/// task while readers serve clients; both hold it only for the duration of one call, and
/// never across an fsync: writers wait for the disk after releasing it.
pub struct MirrorPartition {
    pub topic: String,
    pub partition: i32,
    log: Mutex<PartitionLog>,
    /// The log's latest leader epoch (-1 for none), refreshed whenever the log's guard
    /// is released, so Metadata reads it without queueing behind a write.
    stored_epoch: AtomicI32,
    appended: Arc<Notify>,
    /// The node's count of changes to what a Fetch of any partition would answer
    /// (see [`Store::changes`]).
    changes: Arc<AtomicU64>,
    /// The node's partitions owing an interval sync; this one is in it while
    /// `flush_queued` is set.
    flushes: Arc<FlushQueue>,
    flush_queued: AtomicBool,
    /// Set when the partition stopped on an error; replication of it does not resume.
    failure: Mutex<Option<String>>,
    /// `Some` once the partition is owned: producers write it, links no longer do.
    owned: Mutex<Option<OwnedState>>,
    /// The highest source leader epoch its link saw in Metadata (-1 before), kept on
    /// disk so the epoch clients see never goes backwards across a restart.
    source_epoch: Mutex<EpochFloor>,
    /// `source_epoch` once durable, readable without a lock (Metadata, fencing checks).
    source_floor: AtomicI32,
    /// When a log a failed write poisoned may next be reopened (see [`Self::heal`]).
    next_heal: Mutex<Option<Instant>>,
}

/// How often a partition that a failed write (a full disk) stopped tries to reopen its
/// log: recovery rescans the active segment, too much work for every produce request.
pub const HEAL_INTERVAL: Duration = Duration::from_secs(1);

/// How a client's `current_leader_epoch` disagrees with the partition's (KIP-320).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EpochMismatch {
    #[error("the client's leader epoch {client} is older than the partition's {ours}")]
    Fenced { client: i32, ours: i32 },
    #[error("the client's leader epoch {client} is newer than the partition's {ours}")]
    Unknown { client: i32, ours: i32 },
}

/// The locked log of a partition. Releasing it publishes the log's latest epoch to
/// [`MirrorPartition::leader_epoch`] and queues the sync an `Interval` log owes,
/// whatever the holder changed; a holder that had the log mutably counts as a change
/// in [`Store::changes`].
pub struct LogGuard<'a> {
    log: MutexGuard<'a, PartitionLog>,
    partition: &'a MirrorPartition,
    /// Every mutation of a log takes `&mut PartitionLog`, so a guard never dereferenced
    /// mutably changed nothing a reader can see.
    mutated: bool,
}

impl Deref for LogGuard<'_> {
    type Target = PartitionLog;

    fn deref(&self) -> &PartitionLog {
        &self.log
    }
}

impl DerefMut for LogGuard<'_> {
    fn deref_mut(&mut self) -> &mut PartitionLog {
        self.mutated = true;
        &mut self.log
    }
}

impl Drop for LogGuard<'_> {
    fn drop(&mut self) {
        let epoch = self.log.latest_epoch().unwrap_or(-1);
        self.partition.stored_epoch.store(epoch, Ordering::Relaxed);
        if let Some(at) = self.log.sync_due_at() {
            let p = self.partition;
            if !p.flush_queued.swap(true, Ordering::AcqRel) {
                p.flushes.schedule(at, &p.topic, p.partition);
            }
        }
        if self.mutated {
            // Counted while the log is still locked: a reader that sees the old count
            // before reading will find the change and read again next time.
            self.partition.changed();
        }
    }
}

impl MirrorPartition {
    fn new(
        topic: &str,
        partition: i32,
        log: PartitionLog,
        source_epoch: EpochFloor,
        appended: Arc<Notify>,
        changes: Arc<AtomicU64>,
        flushes: Arc<FlushQueue>,
    ) -> Self {
        MirrorPartition {
            topic: topic.to_string(),
            partition,
            stored_epoch: AtomicI32::new(log.latest_epoch().unwrap_or(-1)),
            log: Mutex::new(log),
            appended,
            changes,
            flushes,
            flush_queued: AtomicBool::new(false),
            failure: Mutex::new(None),
            owned: Mutex::new(None),
            source_floor: AtomicI32::new(source_epoch.epoch()),
            source_epoch: Mutex::new(source_epoch),
            next_heal: Mutex::new(None),
        }
    }

    /// The log, recovering the guard if a writer panicked while holding it. Never hold
    /// it across an fsync: take the sync out (`append_deferred`, `pending_sync`) and wait
    /// on it after the guard is dropped.
    pub fn log(&self) -> LogGuard<'_> {
        LogGuard {
            log: self.log.lock().unwrap_or_else(|p| p.into_inner()),
            partition: self,
            mutated: false,
        }
    }

    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    /// Appends complete batches exactly as fetched. Refused once the partition is owned:
    /// from then on only producers write it, at offsets this node assigns. Blocking: the
    /// fsync the persist mode owes runs after the log is released, before this returns.
    pub fn append(&self, record_set: Bytes) -> Result<AppendInfo, MirrorError> {
        self.append_with(|log| log.append_deferred(record_set))
    }

    /// [`MirrorPartition::append`] of batches whose CRCs the link checked on arrival.
    pub fn append_checked(&self, set: &CheckedRecordSet) -> Result<AppendInfo, MirrorError> {
        self.append_with(|log| log.append_checked(set))
    }

    fn append_with(
        &self,
        append: impl FnOnce(
            &mut PartitionLog,
        ) -> Result<(AppendInfo, Option<PendingSync>), StorageError>,
    ) -> Result<AppendInfo, MirrorError> {
        if self.is_owned() {
            return Err(MirrorError::NotMirrored {
                topic: self.topic.clone(),
                partition: self.partition,
            });
        }
        let (info, sync) = append(&mut self.log())?;
        self.appended.notify_waiters();
        if let Some(sync) = sync {
            sync.wait()?;
        }
        Ok(info)
    }

    /// Fsyncs everything appended so far, without holding the log during the fsync.
    pub fn flush(&self) -> Result<(), StorageError> {
        let sync = {
            let mut log = self.log();
            log.check_writable()?;
            log.pending_sync()
        };
        sync.wait()
    }

    /// In `Interval` mode, fsyncs if the interval has passed since the last sync, without
    /// holding the log during the fsync. Called for a partition the node's
    /// [`FlushQueue`] handed out; releasing the log queues it again if it still owes one.
    pub fn flush_if_due(&self) -> Result<(), StorageError> {
        self.flush_queued.store(false, Ordering::Release);
        let due = self.log().due_sync()?;
        match due {
            Some(sync) => sync.wait(),
            None => Ok(()),
        }
    }

    pub fn is_owned(&self) -> bool {
        self.owned_state().is_some()
    }

    /// Records the source partition's current leader epoch, which may run ahead of the
    /// newest mirrored batch (a leader change with nothing written since). It is made
    /// durable before clients see it; if that fails it is not advertised, the next
    /// observation tries again, and this returns false.
    pub fn observe_source_epoch(&self, epoch: i32) -> bool {
        let mut floor = self.source_epoch();
        let raised = floor.raise(epoch);
        if self.source_floor.swap(floor.epoch(), Ordering::AcqRel) != floor.epoch() {
            // The epoch Fetch checks clients against moved.
            self.changed();
        }
        if let Err(e) = &raised {
            tracing::warn!(
                topic = %self.topic,
                partition = self.partition,
                epoch,
                error = %e,
                "cannot record the source leader epoch"
            );
        }
        raised.is_ok()
    }

    fn source_epoch(&self) -> MutexGuard<'_, EpochFloor> {
        self.source_epoch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The leader epoch clients see: never below the source's (KIP-320, so a consumer
    /// holding an epoch from the source is not told it is ahead), nor below any batch
    /// the partition holds.
    pub fn leader_epoch(&self) -> i32 {
        let stored = self.stored_epoch.load(Ordering::Relaxed);
        stored.max(self.source_floor.load(Ordering::Relaxed)).max(0)
    }

    /// Checks a request's `current_leader_epoch` as a Kafka leader does (KIP-320): -1
    /// skips the check, an older epoch is fenced, a newer one is not known here yet.
    pub fn check_leader_epoch(&self, current: i32) -> Result<(), EpochMismatch> {
        if current < 0 {
            return Ok(());
        }
        let ours = self.leader_epoch();
        match current.cmp(&ours) {
            std::cmp::Ordering::Less => Err(EpochMismatch::Fenced {
                client: current,
                ours,
            }),
            std::cmp::Ordering::Greater => Err(EpochMismatch::Unknown {
                client: current,
                ours,
            }),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    /// The leader epoch producers write in, for owned partitions.
    pub fn owned_epoch(&self) -> Option<i32> {
        self.owned_state().as_ref().map(|o| o.leader_epoch)
    }

    fn owned_state(&self) -> MutexGuard<'_, Option<OwnedState>> {
        self.owned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the partition writable in `epoch`: starts the epoch at the log end (so
    /// Metadata and OffsetsForLeaderEpoch report it before anything is produced) and
    /// rebuilds producer state from the log's tail.
    fn own(&self, epoch: i32) -> Result<(), StorageError> {
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

    /// Makes a log that a failed write left refusing writes writable again, when
    /// [`HEAL_INTERVAL`] has passed since the last attempt: the log is reopened, and
    /// recovery cuts off whatever the failed write left. Returns whether the log takes
    /// writes now. A failed fsync is never healed: only a restart clears it.
    pub fn heal(&self) -> bool {
        let mut log = self.log();
        self.heal_log(&mut log)
    }

    pub(crate) fn heal_log(&self, log: &mut PartitionLog) -> bool {
        match log.poisoned() {
            None => return true,
            Some(Poison::Fsync) => return false,
            Some(Poison::Write) => {}
        }
        let now = Instant::now();
        {
            let mut next = self.next_heal.lock().unwrap_or_else(|p| p.into_inner());
            if next.is_some_and(|at| now < at) {
                return false;
            }
            *next = Some(now + HEAL_INTERVAL);
        }
        match log.reopen() {
            Ok(()) => {
                tracing::info!(topic = %self.topic, partition = self.partition, recovered = ?log.recovered(), "partition log reopened after a failed write: it takes writes again");
                true
            }
            Err(e) => {
                tracing::debug!(topic = %self.topic, partition = self.partition, error = %e, "partition log still cannot be reopened");
                false
            }
        }
    }

    /// Clears the failure of a partition that recovered by itself.
    pub fn clear_failure(&self) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub fn fail(&self, reason: String) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A mirror topic and its partitions.
pub struct MirrorTopic {
    pub name: String,
    dir: PathBuf,
    record: Mutex<TopicRecord>,
    partitions: Mutex<BTreeMap<i32, Arc<MirrorPartition>>>,
    /// Partitions on disk that could not be opened, and why. They are neither served
    /// nor written until an operator repairs them and restarts the node.
    offline: BTreeMap<i32, String>,
}

impl MirrorTopic {
    pub fn meta(&self) -> TopicMeta {
        self.record().meta.clone()
    }

    /// `Some` for topics this node writes.
    pub fn ownership(&self) -> Option<Ownership> {
        self.record().owned.clone()
    }

    pub fn is_owned(&self) -> bool {
        self.record().owned.is_some()
    }

    fn record(&self) -> MutexGuard<'_, TopicRecord> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_record(&self, record: &TopicRecord) -> Result<(), StorageError> {
        shadowlink_storage::write_meta(&self.dir.join("topic.json"), record)
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
    fn own_partitions(&self, ownership: &Ownership) -> Result<(), StorageError> {
        for p in self.partitions().iter().filter(|p| !p.is_owned()) {
            let epoch = ownership.leader_epochs.get(&p.partition).copied();
            p.own(epoch.unwrap_or(0))?;
        }
        Ok(())
    }

    pub fn partition(&self, index: i32) -> Option<Arc<MirrorPartition>> {
        self.partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&index)
            .cloned()
    }

    pub fn partitions(&self) -> Vec<Arc<MirrorPartition>> {
        self.partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Partitions that could not be opened, with the reason (the file and what is wrong).
    pub fn offline_partitions(&self) -> &BTreeMap<i32, String> {
        &self.offline
    }

    /// Replaces the persisted metadata (atomically on disk); ownership is kept.
    pub fn set_meta(&self, meta: TopicMeta) -> Result<(), StorageError> {
        let mut record = self.record();
        let updated = TopicRecord {
            meta,
            owned: record.owned.clone(),
        };
        self.write_record(&updated)?;
        *record = updated;
        Ok(())
    }

    /// Marks the topic failed, keeping its data untouched.
    pub fn mark_failed(&self, reason: String) -> Result<(), StorageError> {
        let mut meta = self.meta();
        if meta.state
            == (TopicState::Failed {
                reason: reason.clone(),
            })
        {
            return Ok(());
        }
        tracing::error!(topic = %self.name, %reason, "mirror topic failed");
        meta.state = TopicState::Failed { reason };
        self.set_meta(meta)
    }
}

/// Kafka's topic name rules; they also keep names safe as directory names.
pub fn validate_topic_name(name: &str) -> Result<(), OwnTopicError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name == "." || name == ".." {
        Some("it cannot be \".\" or \"..\"")
    } else if name.len() > 249 {
        Some("it is longer than 249 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("only ASCII letters, digits, '.', '_' and '-' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(OwnTopicError::InvalidName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// All topics of the node.
pub struct Store {
    root: PathBuf,
    log_config: LogConfig,
    topics: DashMap<String, Arc<MirrorTopic>>,
    /// Topic directories that could not be opened, and why. The name stays taken: a
    /// link or CreateTopics must not write over what an operator may still recover.
    offline_topics: DashMap<String, String>,
    /// Woken after every append, for fetches waiting on new data.
    appended: Arc<Notify>,
    /// Bumped whenever a partition's log is changed or its source epoch floor moves.
    changes: Arc<AtomicU64>,
    /// Partitions owing an interval sync, for the node's flush timer.
    flushes: Arc<FlushQueue>,
    producer_ids: ProducerIdAllocator,
    /// Serialises topic creation, so two creators of one name cannot both succeed.
    creating: Mutex<()>,
}

impl Store {
    /// Notified after every append to any partition.
    pub fn appended(&self) -> Arc<Notify> {
        self.appended.clone()
    }

    /// How many times any partition changed in a way a Fetch could see: its records,
    /// log start, last stable offset or leader epoch. While it stays the same, a read of
    /// any partition answers as before (topics are never removed, so only a partition
    /// that was missing, and so answered with an error, can appear).
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// Partitions owing an interval sync, by when it falls due.
    pub fn flushes(&self) -> Arc<FlushQueue> {
        self.flushes.clone()
    }

    /// Partition `index` of `topic`, if the node holds it.
    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<MirrorPartition>> {
        self.topic(topic).and_then(|t| t.partition(index))
    }

    pub fn topic(&self, name: &str) -> Option<Arc<MirrorTopic>> {
        self.topics.get(name).map(|t| t.clone())
    }

    pub fn topics(&self) -> Vec<Arc<MirrorTopic>> {
        let mut all: Vec<_> = self.topics.iter().map(|t| t.clone()).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Creates a mirror topic, or grows an existing one to `partitions`.
    pub fn ensure_topic(
        &self,
        name: &str,
        meta: TopicMeta,
    ) -> Result<Arc<MirrorTopic>, MirrorError> {
        if let Some(topic) = self.topic(name) {
            self.grow(&topic, meta.partitions)?;
            return Ok(topic);
        }
        if let Some(reason) = self.offline_topics.get(name) {
            return Err(MirrorError::TopicOffline {
                topic: name.to_string(),
                reason: reason.value().clone(),
            });
        }
        let topic = self.create(name, TopicRecord { meta, owned: None })?;
        tracing::info!(topic = name, "mirror topic created");
        Ok(topic)
    }

    /// Creates the topic's directory and `topic.json`, then its partitions. `topic.json`
    /// is replaced atomically and written before any partition directory, so a crash
    /// leaves either a directory without it (removed at the next start) or a whole topic
    /// whose missing partition directories are created when it is opened.
    ///
    /// The caller has made sure no offline topic holds the name.
    fn create(&self, name: &str, record: TopicRecord) -> Result<Arc<MirrorTopic>, StorageError> {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        // The new directory's entry in topics/ must survive a power loss as well.
        shadowlink_storage::sync_dir(&self.root)?;
        shadowlink_storage::write_meta(&dir.join("topic.json"), &record)?;
        let topic = self.open_topic(name.to_string(), dir, record, false)?;
        self.topics.insert(name.to_string(), topic.clone());
        Ok(topic)
    }

    /// Creates an owned topic; fails if any topic of that name exists, or if the node
    /// would then hold more than `max_partitions` partitions.
    pub fn create_owned_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        max_partitions: i64,
    ) -> Result<Arc<MirrorTopic>, OwnTopicError> {
        validate_topic_name(name)?;
        if partitions < 1 {
            return Err(OwnTopicError::InvalidPartitions(partitions));
        }
        let _creating = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        self.check_new_name(name)?;
        let held = self.partition_count();
        if held + i64::from(partitions) > max_partitions {
            return Err(OwnTopicError::TooManyPartitions {
                requested: partitions,
                held,
                max: max_partitions,
            });
        }
        let meta = TopicMeta {
            link: String::new(),
            source_topic_id: topic_id_hex(&[0; 16]),
            partitions,
            state: TopicState::Active,
            configs,
        };
        let ownership = Ownership {
            from_link: None,
            leader_epochs: (0..partitions).map(|p| (p, 0)).collect(),
            writable_from: (0..partitions).map(|p| (p, 0)).collect(),
        };
        let record = TopicRecord {
            meta,
            owned: Some(ownership),
        };
        let topic = self.create(name, record)?;
        tracing::info!(topic = name, partitions, "owned topic created");
        Ok(topic)
    }

    /// Partitions the node holds, shadows and offline ones included (an offline topic,
    /// whose count is unknown, as one).
    pub fn partition_count(&self) -> i64 {
        let held: i64 = self
            .topics
            .iter()
            .map(|t| i64::from(t.meta().partitions))
            .sum();
        held + self.offline_topics.len() as i64
    }

    /// Refuses a name that is taken, on disk or by a topic that collides with it.
    pub fn check_new_name(&self, name: &str) -> Result<(), OwnTopicError> {
        if self.topic(name).is_some() {
            return Err(OwnTopicError::Exists(name.to_string()));
        }
        if let Some(reason) = self.offline_topics.get(name) {
            return Err(OwnTopicError::Offline {
                topic: name.to_string(),
                reason: reason.value().clone(),
            });
        }
        let key = collision_key(name);
        let taken = self
            .topics
            .iter()
            .map(|t| t.key().clone())
            .chain(self.offline_topics.iter().map(|t| t.key().clone()))
            .find(|existing| collision_key(existing) == key);
        match taken {
            Some(existing) => Err(OwnTopicError::Collides {
                name: name.to_string(),
                existing,
            }),
            None => Ok(()),
        }
    }

    /// For `[[topics]]` in the config: creates the owned topic if missing, or grows it to
    /// `partitions`. A shadow topic of that name is an error (only failover makes one
    /// writable), unless it was demoted: then it follows the peer it was handed to.
    pub fn ensure_owned_topic(
        &self,
        name: &str,
        partitions: i32,
    ) -> Result<Arc<MirrorTopic>, OwnTopicError> {
        let Some(topic) = self.topic(name) else {
            return match self.create_owned_topic(name, partitions, BTreeMap::new(), i64::MAX) {
                Err(OwnTopicError::Exists(_)) => self.ensure_owned_topic(name, partitions),
                other => other,
            };
        };
        if topic.meta().state == TopicState::Demoted {
            // Fail-back or a switchover handed it to the peer; a switchover brings it back.
            tracing::warn!(topic = name, link = %topic.meta().link, "topic declared owned follows the peer: it was handed over");
            return Ok(topic);
        }
        if !topic.is_owned() {
            return Err(OwnTopicError::Shadow {
                topic: name.to_string(),
                link: topic.meta().link,
            });
        }
        self.grow(&topic, partitions)?;
        Ok(topic)
    }

    /// A new producer id (InitProducerId), above every producer id stored in any log
    /// (mirrored ones included) and every id handed out or observed before.
    pub fn allocate_producer_id(&self) -> Result<i64, ProducerIdError> {
        let stored_max = self
            .topics()
            .iter()
            .flat_map(|t| t.partitions())
            .map(|p| p.log().max_producer_id())
            .max()
            .unwrap_or(-1);
        self.producer_ids.allocate(stored_max)
    }

    /// Keeps future producer ids above `producer_id`. The mirror write path may call it
    /// for ids it stores; allocation also consults every log, so this is belt and braces.
    pub fn observe_producer_id(&self, producer_id: i64) {
        self.producer_ids.observe(producer_id);
    }

    fn grow(&self, topic: &MirrorTopic, partitions: i32) -> Result<(), StorageError> {
        let mut meta = topic.meta();
        if partitions <= meta.partitions {
            return Ok(());
        }
        for index in meta.partitions..partitions {
            let p = self.open_partition(&topic.name, &topic.dir, index)?;
            topic
                .partitions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(index, p);
        }
        tracing::info!(topic = %topic.name, from = meta.partitions, to = partitions, "topic grew");
        let Some(mut ownership) = topic.ownership() else {
            meta.partitions = partitions;
            return topic.set_meta(meta);
        };
        // New partitions of an owned topic start empty, in epoch 0.
        for index in meta.partitions..partitions {
            ownership.leader_epochs.insert(index, 0);
            ownership.writable_from.insert(index, 0);
        }
        meta.partitions = partitions;
        let record = TopicRecord {
            meta,
            owned: Some(ownership.clone()),
        };
        topic.write_record(&record)?;
        *topic.record() = record;
        topic.own_partitions(&ownership)
    }
}

/// Kafka's collision rule: '.' and '_' are the same character in metric names.
fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn io_error(path: &Path, source: std::io::Error) -> StorageError {
    StorageError::Io {
        action: "opening",
        path: path.to_path_buf(),
        source,
    }
}

/// Formats a topic id as 32 lowercase hex digits.
pub fn topic_id_hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
