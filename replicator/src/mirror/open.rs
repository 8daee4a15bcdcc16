//! Opening the store at start. A topic or partition whose metadata cannot be read goes
//! offline, with the file and what is wrong with it, instead of stopping the node: it is
//! neither served nor written (its name stays taken) until an operator repairs it and
//! restarts. What a topic creation cut short by a crash leaves is removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use shadowlink_storage::{EpochFloor, LogConfig, PartitionLog, StorageError};

use super::producer_ids::ProducerIdAllocator;
use super::{
    dir_name, io_error, validate_topic_name, MirrorPartition, MirrorTopic, Store, TopicRecord,
};

/// Why a topic directory found at start cannot be opened.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error("{} is corrupt: it records {partitions} partitions", path.display())]
    PartitionCount { path: PathBuf, partitions: i32 },
    #[error("{} is missing", path.display())]
    Missing { path: PathBuf },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A topic or partition the node holds on disk but cannot serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offline {
    pub topic: String,
    /// `None` when the whole topic is offline (its `topic.json` is unusable).
    pub partition: Option<i32>,
    /// The file at fault and what is wrong with it.
    pub reason: String,
}

/// Threads that open the topics found at start, a topic at a time: each partition's open
/// is a few small reads and a scan of its active segment, which keep more than one core
/// busy on a node with many topics.
const OPEN_THREADS: usize = 4;

impl Store {
    /// Opens every topic under `data_dir`, recovering each partition log. A topic or
    /// partition whose metadata cannot be read is set aside as offline, with the reason,
    /// so one damaged file never keeps the node from serving everything else.
    pub fn open(data_dir: &Path, log_config: LogConfig) -> Result<Store, StorageError> {
        let root = data_dir.join("topics");
        std::fs::create_dir_all(&root).map_err(|e| io_error(&root, e))?;
        let store = Store {
            root: root.clone(),
            log_config,
            topics: DashMap::new(),
            offline_topics: DashMap::new(),
            appended: Arc::default(),
            changes: Arc::default(),
            topology: Default::default(),
            flushes: Arc::default(),
            producer_ids: ProducerIdAllocator::open(data_dir),
            creating: Mutex::new(()),
        };
        let mut dirs = Vec::new();
        for entry in std::fs::read_dir(&root).map_err(|e| io_error(&root, e))? {
            let dir = entry.map_err(|e| io_error(&root, e))?.path();
            if dir.is_dir() {
                dirs.push(dir);
            }
        }
        let next = AtomicUsize::new(0);
        let worker = || {
            while let Some(dir) = dirs.get(next.fetch_add(1, Ordering::Relaxed)) {
                store.open_found(dir.clone());
            }
        };
        std::thread::scope(|scope| {
            for _ in 0..OPEN_THREADS.min(dirs.len()) {
                scope.spawn(worker);
            }
        });
        Ok(store)
    }

    /// Opens a topic directory found at start, or sets it aside as offline.
    fn open_found(&self, dir: PathBuf) {
        let name = dir_name(&dir);
        match self.open_existing(&name, dir) {
            Ok(Some(topic)) => {
                self.topics.insert(name, topic);
            }
            Ok(None) => {}
            Err(reason) => {
                tracing::error!(topic = %name, %reason, "topic offline: it cannot be opened");
                self.offline_topics.insert(name, reason.to_string());
            }
        }
    }

    /// Opens a topic directory found at start. `Ok(None)` for the leftover of a creation
    /// cut short, which is removed: `topic.json` missing or unreadable and no partition
    /// directory (`topic.json` is in place before any partition is made, so no record
    /// was ever stored there). With partition data, the same is damage: `Err(why)`.
    fn open_existing(
        &self,
        name: &str,
        dir: PathBuf,
    ) -> Result<Option<Arc<MirrorTopic>>, OpenError> {
        let path = dir.join("topic.json");
        let read = shadowlink_storage::read_meta::<TopicRecord>(&path);
        let unusable = match read {
            Ok(Some(record)) if record.meta.partitions >= 1 => {
                return Ok(Some(self.open_topic(
                    name.to_string(),
                    dir,
                    record,
                    true,
                )?));
            }
            Ok(Some(record)) => OpenError::PartitionCount {
                path,
                partitions: record.meta.partitions,
            },
            Ok(None) => OpenError::Missing { path },
            Err(e) => OpenError::Storage(e),
        };
        if validate_topic_name(name).is_err() {
            tracing::warn!(dir = %dir.display(), "ignoring a directory that is not a topic");
            return Ok(None);
        }
        if holds_partitions(&dir)? {
            return Err(unusable);
        }
        tracing::warn!(dir = %dir.display(), %unusable, "removing the leftover of an interrupted topic creation");
        std::fs::remove_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        Ok(None)
    }

    /// Opens a topic's partitions. With `tolerate`, a partition that cannot be opened is
    /// set aside as offline; without it (a topic being created or grown) it is an error.
    pub(super) fn open_topic(
        &self,
        name: String,
        dir: PathBuf,
        record: TopicRecord,
        tolerate: bool,
    ) -> Result<Arc<MirrorTopic>, StorageError> {
        let mut partitions = BTreeMap::new();
        let mut offline = BTreeMap::new();
        for index in 0..record.meta.partitions {
            let epoch = record
                .owned
                .as_ref()
                .map(|o| o.leader_epochs.get(&index).copied().unwrap_or(0));
            let opened = self.open_partition(&name, &dir, index).and_then(|p| {
                if let Some(epoch) = epoch {
                    p.own(epoch)?;
                }
                Ok(p)
            });
            match opened {
                Ok(p) => {
                    partitions.insert(index, p);
                }
                Err(e) if tolerate => {
                    tracing::error!(topic = %name, partition = index, error = %e, "partition offline: it cannot be opened");
                    offline.insert(index, e.to_string());
                }
                Err(e) => return Err(e),
            }
        }
        let topic = Arc::new(MirrorTopic {
            name,
            dir,
            record: Mutex::new(record),
            partitions: Mutex::new(partitions),
            offline,
        });
        topic.apply_write_stop();
        Ok(topic)
    }

    pub(super) fn open_partition(
        &self,
        topic: &str,
        dir: &Path,
        index: i32,
    ) -> Result<Arc<MirrorPartition>, StorageError> {
        let log = PartitionLog::open(&dir.join(index.to_string()), self.log_config.clone())?;
        let source_epoch = EpochFloor::open(log.dir())?;
        Ok(Arc::new(MirrorPartition::new(
            topic,
            index,
            log,
            source_epoch,
            self.appended.clone(),
            self.changes.clone(),
            self.flushes.clone(),
        )))
    }

    /// Every topic and partition on disk that could not be opened, sorted.
    pub fn offline(&self) -> Vec<Offline> {
        let mut all: Vec<Offline> = self
            .offline_topics
            .iter()
            .map(|e| Offline {
                topic: e.key().clone(),
                partition: None,
                reason: e.value().clone(),
            })
            .collect();
        for topic in self.topics() {
            all.extend(topic.offline.iter().map(|(&p, reason)| Offline {
                topic: topic.name.clone(),
                partition: Some(p),
                reason: reason.clone(),
            }));
        }
        all.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        all
    }

    /// Why InitProducerId is refused, when the allocator's state could not be read.
    pub fn producer_ids_failure(&self) -> Option<String> {
        self.producer_ids.failure()
    }

    /// Why `topic`, or its partition `partition`, is on disk but not served; `None` when
    /// it is served or unknown.
    pub fn offline_reason(&self, topic: &str, partition: Option<i32>) -> Option<String> {
        if let Some(reason) = self.offline_topics.get(topic) {
            return Some(reason.clone());
        }
        let partition = partition?;
        self.topic(topic)?.offline.get(&partition).cloned()
    }
}

/// Whether a topic directory holds any partition directory.
fn holds_partitions(dir: &Path) -> Result<bool, StorageError> {
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        if entry.map_err(|e| io_error(dir, e))?.path().is_dir() {
            return Ok(true);
        }
    }
    Ok(false)
}
