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
pub mod appends;
pub mod change_feed;
mod create;
mod demote;
mod error;
mod flushes;
mod open;
pub mod owned;
mod ownership;
mod partition;
pub mod producer_ids;
pub mod producer_state;
mod replica;
mod topic;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use shadowlink_storage::{EpochFloor, LogConfig, PartitionLog, StorageError};

use appends::{Appends, Waiters};
use change_feed::ChangeFeed;

pub use abandoned::AbortedTransaction;
pub use create::validate_topic_name;
pub use error::{MirrorError, OwnTopicError};
pub use flushes::FlushQueue;
pub use open::Offline;
use owned::OwnedState;
pub use partition::{EpochMismatch, LogGuard};
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
    appended: Arc<Appends>,
    /// Fetches waiting for an append to this partition (see [`Self::watch`]).
    waiters: Waiters,
    /// This partition's count of changes to what a Fetch of it would answer.
    version: AtomicU64,
    /// The node's changes to what a Fetch of any partition would answer (see
    /// [`Store::changes`]).
    changes: Arc<ChangeFeed>,
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

/// All topics of the node.
pub struct Store {
    root: PathBuf,
    log_config: LogConfig,
    topics: DashMap<String, Arc<MirrorTopic>>,
    /// Topic directories that could not be opened, and why. The name stays taken: a
    /// link or CreateTopics must not write over what an operator may still recover.
    offline_topics: DashMap<String, String>,
    /// Woken after every append, for fetches waiting on new data.
    appended: Arc<Appends>,
    /// Takes a change whenever a partition's log is changed or its source epoch floor
    /// moves.
    changes: Arc<ChangeFeed>,
    /// Bumped whenever a topic or a partition is added (see [`Store::topology`]).
    topology: AtomicU64,
    /// Partitions owing an interval sync, for the node's flush timer.
    flushes: Arc<FlushQueue>,
    producer_ids: ProducerIdAllocator,
    /// Serialises topic creation, so two creators of one name cannot both succeed.
    creating: Mutex<()>,
}

impl Store {
    /// Notified after every append to any partition.
    pub fn appended(&self) -> Arc<Appends> {
        self.appended.clone()
    }

    /// How many times any partition changed in a way a Fetch could see: its records,
    /// log start, last stable offset or leader epoch. While it stays the same, a read of
    /// any partition answers as before (topics are never removed, so only a partition
    /// that was missing, and so answered with an error, can appear).
    pub fn changes(&self) -> u64 {
        self.changes.count()
    }

    /// Which partitions the latest changes counted by [`Store::changes`] were.
    pub fn change_feed(&self) -> &ChangeFeed {
        &self.changes
    }

    /// How many times a topic or a partition was added since the node started. While it
    /// stays the same, a partition held from an earlier lookup is still the one a
    /// lookup would return.
    pub fn topology(&self) -> u64 {
        self.topology.load(Ordering::Acquire)
    }

    fn added(&self) {
        self.topology.fetch_add(1, Ordering::AcqRel);
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
