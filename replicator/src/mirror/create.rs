//! Creating topics: shadows for a link, owned ones from the config or CreateTopics,
//! growing either, and the names Kafka allows.

use std::collections::BTreeMap;
use std::sync::Arc;

use shadowlink_storage::StorageError;

use super::{
    io_error, topic_id_hex, MirrorError, MirrorTopic, OwnTopicError, Ownership, Store, TopicMeta,
    TopicRecord, TopicState,
};

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

impl Store {
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
        self.added();
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
            self.added();
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
