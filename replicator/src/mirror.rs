//! The node's local partitions: mirror topics and their logs on disk.
//!
//! Layout under `data_dir`: `topics/{topic}/topic.json` holds what must survive a restart
//! (the link, the source topic id, the state), and `topics/{topic}/{partition}/` holds the
//! partition log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use shadowlink_storage::{AppendInfo, LogConfig, PartitionLog, StorageError};
use tokio::sync::Notify;

/// Lifecycle of a mirror topic. Failures are sticky: a topic whose source changed under
/// it stays untouched until an operator acts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TopicState {
    Active,
    Failed { reason: String },
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
/// task while readers serve clients; both hold it only for the duration of one call.
pub struct MirrorPartition {
    pub topic: String,
    pub partition: i32,
    log: Mutex<PartitionLog>,
    appended: Arc<Notify>,
    /// Set when the partition stopped on an error; replication of it does not resume.
    failure: Mutex<Option<String>>,
}

impl MirrorPartition {
    /// The log, recovering the guard if a writer panicked while holding it.
    pub fn log(&self) -> MutexGuard<'_, PartitionLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends complete batches exactly as fetched.
    pub fn append(&self, record_set: Bytes) -> Result<AppendInfo, StorageError> {
        let info = self.log().append(record_set)?;
        self.appended.notify_waiters();
        Ok(info)
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
    meta: Mutex<TopicMeta>,
    partitions: Mutex<BTreeMap<i32, Arc<MirrorPartition>>>,
}

impl MirrorTopic {
    pub fn meta(&self) -> TopicMeta {
        self.meta.lock().unwrap_or_else(|p| p.into_inner()).clone()
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

    /// Replaces the persisted metadata (atomically on disk).
    pub fn set_meta(&self, meta: TopicMeta) -> Result<(), StorageError> {
        shadowlink_storage::write_meta(&self.dir.join("topic.json"), &meta)?;
        *self.meta.lock().unwrap_or_else(|p| p.into_inner()) = meta;
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

/// All topics of the node.
pub struct Store {
    root: PathBuf,
    log_config: LogConfig,
    topics: DashMap<String, Arc<MirrorTopic>>,
    /// Woken after every append, for fetches waiting on new data.
    appended: Arc<Notify>,
}

impl Store {
    /// Opens every topic under `data_dir`, recovering each partition log.
    pub fn open(data_dir: &Path, log_config: LogConfig) -> Result<Store, StorageError> {
        let root = data_dir.join("topics");
        std::fs::create_dir_all(&root).map_err(|e| io_error(&root, e))?;
        let store = Store {
            root: root.clone(),
            log_config,
            topics: DashMap::new(),
            appended: Arc::new(Notify::new()),
        };
        let entries = std::fs::read_dir(&root).map_err(|e| io_error(&root, e))?;
        for entry in entries {
            let dir = entry.map_err(|e| io_error(&root, e))?.path();
            let Some(meta) = shadowlink_storage::read_meta::<TopicMeta>(&dir.join("topic.json"))?
            else {
                continue;
            };
            let name = dir_name(&dir);
            let topic = store.open_topic(name, dir, meta)?;
            store.topics.insert(topic.name.clone(), topic);
        }
        Ok(store)
    }

    fn open_topic(
        &self,
        name: String,
        dir: PathBuf,
        meta: TopicMeta,
    ) -> Result<Arc<MirrorTopic>, StorageError> {
        let mut partitions = BTreeMap::new();
        for index in 0..meta.partitions {
            partitions.insert(index, self.open_partition(&name, &dir, index)?);
        }
        Ok(Arc::new(MirrorTopic {
            name,
            dir,
            meta: Mutex::new(meta),
            partitions: Mutex::new(partitions),
        }))
    }

    fn open_partition(
        &self,
        topic: &str,
        dir: &Path,
        index: i32,
    ) -> Result<Arc<MirrorPartition>, StorageError> {
        let log = PartitionLog::open(&dir.join(index.to_string()), self.log_config.clone())?;
        Ok(Arc::new(MirrorPartition {
            topic: topic.to_string(),
            partition: index,
            log: Mutex::new(log),
            appended: self.appended.clone(),
            failure: Mutex::new(None),
        }))
    }

    /// Notified after every append to any partition.
    pub fn appended(&self) -> Arc<Notify> {
        self.appended.clone()
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
    ) -> Result<Arc<MirrorTopic>, StorageError> {
        if let Some(topic) = self.topic(name) {
            self.grow(&topic, meta.partitions)?;
            return Ok(topic);
        }
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        shadowlink_storage::write_meta(&dir.join("topic.json"), &meta)?;
        let topic = self.open_topic(name.to_string(), dir, meta)?;
        self.topics.insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, "mirror topic created");
        Ok(topic)
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
        tracing::info!(topic = %topic.name, from = meta.partitions, to = partitions, "mirror topic grew");
        meta.partitions = partitions;
        topic.set_meta(meta)
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
