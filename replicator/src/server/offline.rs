//! How handlers answer for topics and partitions that are on disk but offline (their
//! metadata could not be read at start): as Kafka does for a partition whose log
//! directory failed, KAFKA_STORAGE_ERROR, never UNKNOWN_TOPIC_OR_PARTITION, so clients
//! see a failure instead of a topic that silently vanished.

use kafka_protocol::messages::metadata_response::{
    MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

use crate::errors::Unserved;
use crate::mirror::{MirrorTopic, Store};

/// The code for a partition the store does not serve.
pub fn partition_code(store: &Store, topic: &str, partition: i32) -> i16 {
    crate::errors::unserved(store, topic, Some(partition)).code()
}

/// Metadata for a whole topic that is offline, if `name` is one.
pub fn metadata_topic(store: &Store, name: &str) -> Option<MetadataResponseTopic> {
    store.offline_reason(name, None)?;
    Some(
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
            .with_error_code(Unserved::Offline.code()),
    )
}

/// Metadata for every whole topic that is offline.
pub fn metadata_topics(store: &Store) -> Vec<MetadataResponseTopic> {
    store
        .offline()
        .iter()
        .filter(|o| o.partition.is_none())
        .filter_map(|o| metadata_topic(store, &o.topic))
        .collect()
}

/// Metadata for `topic`'s offline partitions: no leader, this node's replica offline.
pub fn metadata_partitions(
    topic: &MirrorTopic,
    version: i16,
    node_id: i32,
) -> Vec<MetadataResponsePartition> {
    topic
        .offline_partitions()
        .keys()
        .map(|&index| {
            let partition = MetadataResponsePartition::default()
                .with_error_code(Unserved::Offline.code())
                .with_partition_index(index)
                .with_leader_id((-1).into())
                .with_replica_nodes(vec![node_id.into()]);
            if version >= 5 {
                partition.with_offline_replicas(vec![node_id.into()])
            } else {
                partition
            }
        })
        .collect()
}
