//! A topic: its `topic.json` record and its partitions.

use std::collections::BTreeMap;
use std::sync::{Arc, MutexGuard};

use shadowlink_storage::StorageError;

use super::{MirrorPartition, MirrorTopic, TopicMeta, TopicRecord, TopicState};

impl MirrorTopic {
    pub fn meta(&self) -> TopicMeta {
        self.record().meta.clone()
    }

    pub(super) fn record(&self) -> MutexGuard<'_, TopicRecord> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn write_record(&self, record: &TopicRecord) -> Result<(), StorageError> {
        shadowlink_storage::write_meta(&self.dir.join("topic.json"), record)
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
