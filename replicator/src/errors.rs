//! The one place where internal errors become Kafka error codes.

use kafka_protocol::ResponseError;
use shadowlink_storage::StorageError;

use crate::mirror::Store;

/// The Kafka error code a client sees for a storage failure.
pub fn storage_error_code(error: &StorageError) -> i16 {
    match error {
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.code(),
        _ => ResponseError::KafkaStorageError.code(),
    }
}

/// Why a write to a topic (Produce, DeleteRecords, CreatePartitions, DeleteTopics,
/// config changes) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "topic {topic} is a read-only shadow of link {link}; to make it writable, fail it over: \
         shadowlink failover --link {link} --topic {topic}"
    )]
    Shadow { topic: String, link: String },
    #[error("unknown topic {topic}")]
    Unknown { topic: String },
}

impl Refusal {
    /// POLICY_VIOLATION for shadow topics, as Redpanda answers: the write is not a
    /// transient failure, and clients must not retry it.
    pub fn code(&self) -> i16 {
        match self {
            Refusal::Shadow { .. } => ResponseError::PolicyViolation.code(),
            Refusal::Unknown { .. } => ResponseError::UnknownTopicOrPartition.code(),
        }
    }
}

/// Whether, and why, a client may not write `topic` on this node.
pub fn topic_write_refusal(store: &Store, topic: &str) -> Refusal {
    match store.topic(topic) {
        Some(t) => Refusal::Shadow {
            topic: topic.to_string(),
            link: t.meta().link,
        },
        None => Refusal::Unknown {
            topic: topic.to_string(),
        },
    }
}

/// ConfigResource type of a topic.
const TOPIC_RESOURCE: i8 = 2;

/// The error code and message answered to a config change of `resource_name`.
pub fn config_change_refusal(
    store: &Store,
    resource_type: i8,
    resource_name: &str,
) -> (i16, String) {
    if resource_type == TOPIC_RESOURCE {
        let refusal = topic_write_refusal(store, resource_name);
        let message = match &refusal {
            Refusal::Shadow { .. } => format!("{refusal}; its configs follow the source topic"),
            Refusal::Unknown { .. } => refusal.to_string(),
        };
        return (refusal.code(), message);
    }
    (
        ResponseError::InvalidRequest.code(),
        "shadowlink has no dynamic configs besides those synced to shadow topics".to_string(),
    )
}
