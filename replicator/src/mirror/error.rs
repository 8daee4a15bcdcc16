//! Why the node refuses or fails a change to one of its topics.

use shadowlink_storage::StorageError;

use super::owned::ProduceError;

/// Why a change to a mirror topic or partition did not happen: a rule of this node
/// refused it, or the log failed.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// Failed over: from then on only producers write the partition, at offsets this
    /// node assigns.
    #[error("{topic}-{partition} is writable on this node; its link no longer writes it")]
    NotMirrored { topic: String, partition: i32 },
    /// An offline partition's epochs are unknown, so no safe epoch can be chosen for it.
    #[error("{topic}-{partition} is offline, so the topic cannot be made writable: {reason}")]
    PartitionOffline {
        topic: String,
        partition: i32,
        reason: String,
    },
    #[error("topic {topic} exists on disk but cannot be opened: {reason}")]
    TopicOffline { topic: String, reason: String },
    /// Only a topic this node owns can be demoted to a shadow.
    #[error("topic {topic} is not owned here: it is a shadow of link {link:?}")]
    NotOwned { topic: String, link: String },
    /// Failover could not end a transaction the shadow holds open.
    #[error(
        "{topic}-{partition}: the open transaction of producer {producer_id} cannot be \
         aborted: {source}"
    )]
    Abort {
        topic: String,
        partition: i32,
        producer_id: i64,
        source: ProduceError,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why an owned topic cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum OwnTopicError {
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("a topic needs at least one partition, not {0}")]
    InvalidPartitions(i32),
    #[error("topic {0} already exists")]
    Exists(String),
    #[error(
        "topic {topic} is a read-only shadow of link {link}; a node cannot also own it \
         (fail it over to make it writable)"
    )]
    Shadow { topic: String, link: String },
    /// Kafka refuses names that differ only in '.' versus '_': metric names conflate them.
    #[error(
        "topic {name} collides with existing topic {existing}: \
         names that differ only in '.' and '_' are not allowed"
    )]
    Collides { name: String, existing: String },
    #[error("topic {topic} exists on disk but cannot be opened: {reason}")]
    Offline { topic: String, reason: String },
    #[error(
        "the node holds {held} partitions and allows at most {max} \
         (storage.max_partitions); {requested} more would exceed that"
    )]
    TooManyPartitions { requested: i32, held: i64, max: i64 },
    #[error(transparent)]
    Storage(#[from] StorageError),
}
