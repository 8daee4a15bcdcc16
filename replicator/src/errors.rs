//! The one place where internal errors become Kafka error codes.

use kafka_protocol::ResponseError;
use shadowlink_storage::StorageError;

use crate::mirror::owned::ProduceError;
use crate::mirror::producer_state::SequenceError;
use crate::mirror::{EpochMismatch, Store};

/// The Kafka error code a client sees for a storage failure.
pub fn storage_error_code(error: &StorageError) -> i16 {
    match error {
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.code(),
        _ => ResponseError::KafkaStorageError.code(),
    }
}

/// The Kafka error code for a request whose `current_leader_epoch` is not the
/// partition's (KIP-320): clients refresh metadata on either and retry.
pub fn epoch_error_code(error: &EpochMismatch) -> i16 {
    match error {
        EpochMismatch::Fenced { .. } => ResponseError::FencedLeaderEpoch.code(),
        EpochMismatch::Unknown { .. } => ResponseError::UnknownLeaderEpoch.code(),
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
    #[error("topic {topic} is owned by this node, which does not support this change to it")]
    Unsupported { topic: String },
    #[error("topic {topic} is offline on this node: {reason}")]
    Offline { topic: String, reason: String },
}

impl Refusal {
    /// POLICY_VIOLATION for shadow topics, as Redpanda answers: the write is not a
    /// transient failure, and clients must not retry it.
    pub fn code(&self) -> i16 {
        match self {
            Refusal::Shadow { .. } | Refusal::Unsupported { .. } => {
                ResponseError::PolicyViolation.code()
            }
            Refusal::Unknown { .. } => ResponseError::UnknownTopicOrPartition.code(),
            Refusal::Offline { .. } => ResponseError::KafkaStorageError.code(),
        }
    }
}

/// Why a client may not change `topic` on this node with an admin request (DeleteRecords,
/// CreatePartitions, DeleteTopics, config changes), or produce to it. Owned topics accept
/// Produce (the caller checks ownership first) but none of those admin changes yet.
pub fn topic_write_refusal(store: &Store, topic: &str) -> Refusal {
    match store.topic(topic) {
        Some(t) if t.is_owned() => Refusal::Unsupported {
            topic: topic.to_string(),
        },
        Some(t) => Refusal::Shadow {
            topic: topic.to_string(),
            link: t.meta().link,
        },
        None => match store.offline_reason(topic, None) {
            Some(reason) => Refusal::Offline {
                topic: topic.to_string(),
                reason,
            },
            None => Refusal::Unknown {
                topic: topic.to_string(),
            },
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
            Refusal::Unknown { .. } | Refusal::Unsupported { .. } | Refusal::Offline { .. } => {
                refusal.to_string()
            }
        };
        return (refusal.code(), message);
    }
    (
        ResponseError::InvalidRequest.code(),
        "shadowlink has no dynamic configs besides those synced to shadow topics".to_string(),
    )
}

/// The Kafka error code a producer sees for a batch that was not written.
pub fn produce_error_code(error: &ProduceError) -> i16 {
    match error {
        ProduceError::NotOwned => ResponseError::PolicyViolation.code(),
        ProduceError::Corrupt(_) => ResponseError::CorruptMessage.code(),
        ProduceError::InvalidRecord(_) => ResponseError::InvalidRecord.code(),
        ProduceError::UnsupportedCompression(_) => ResponseError::UnsupportedCompressionType.code(),
        ProduceError::TooLarge { .. } => ResponseError::MessageTooLarge.code(),
        // Kafka 2.7+ answers a stale epoch on Produce with INVALID_PRODUCER_EPOCH, which
        // clients recover from (by bumping their epoch), rather than the fatal PRODUCER_FENCED.
        ProduceError::Sequence(SequenceError::StaleEpoch { .. }) => {
            ResponseError::InvalidProducerEpoch.code()
        }
        ProduceError::Sequence(SequenceError::OutOfOrder { .. }) => {
            ResponseError::OutOfOrderSequenceNumber.code()
        }
        ProduceError::Storage(e) => storage_error_code(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowlink_protocol::batch::BatchError;

    #[test]
    fn produce_errors_map_to_kafka_codes() {
        let stale = SequenceError::StaleEpoch {
            producer_id: 1,
            epoch: 0,
            current: 1,
        };
        let gap = SequenceError::OutOfOrder {
            producer_id: 1,
            first_seq: 5,
            expected: 3,
        };
        let crc = BatchError::CrcMismatch {
            base_offset: 0,
            stored: 1,
            computed: 2,
        };
        let cases = [
            (ProduceError::Corrupt(crc), 2),
            (ProduceError::TooLarge { size: 2, max: 1 }, 10),
            (ProduceError::Sequence(gap), 45),
            (ProduceError::Sequence(stale), 47),
            (ProduceError::InvalidRecord(String::new()), 87),
            (ProduceError::NotOwned, 44),
            (ProduceError::Storage(StorageError::Poisoned), 56),
        ];
        for (error, code) in cases {
            assert_eq!(produce_error_code(&error), code, "{error}");
        }
    }
}
