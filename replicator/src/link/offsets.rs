//! ListOffsets against a source partition leader.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::TopicPartition;
use crate::source::metadata::SourceCluster;
use crate::source::SourceError;

/// ListOffsets timestamp sentinel: the log end (high watermark, or LSO when committed).
pub const LATEST: i64 = -1;
/// ListOffsets timestamp sentinel: the log start.
pub const EARLIEST: i64 = -2;

/// Asks broker `leader` for the `timestamp` offset of each partition, read_committed.
pub async fn list_offsets(
    cluster: &mut SourceCluster,
    leader: i32,
    keys: &[TopicPartition],
    timestamp: i64,
) -> Vec<(TopicPartition, Result<i64, SourceError>)> {
    // read_committed: a mirror starts at or below the source's last stable offset, so it
    // holds the first batch of every transaction still open there.
    list_offsets_isolated(cluster, leader, keys, timestamp, READ_COMMITTED).await
}

/// ListOffsets isolation level of the high watermark as [`LATEST`].
pub const READ_UNCOMMITTED: i8 = 0;
/// ListOffsets isolation level of the last stable offset as [`LATEST`].
pub const READ_COMMITTED: i8 = 1;

/// [`list_offsets`] at `isolation`.
pub async fn list_offsets_isolated(
    cluster: &mut SourceCluster,
    leader: i32,
    keys: &[TopicPartition],
    timestamp: i64,
    isolation: i8,
) -> Vec<(TopicPartition, Result<i64, SourceError>)> {
    let client = match cluster.broker(leader).await {
        Ok(c) => c,
        Err(e) => return keys.iter().map(|k| (k.clone(), Err(e.clone()))).collect(),
    };
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for key in keys {
        by_topic.entry(&key.topic).or_default().push(key.partition);
    }
    let topics = by_topic
        .iter()
        .map(|(name, partitions)| {
            ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.to_string())))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(*p)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                )
        })
        .collect();
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_isolation_level(isolation)
        .with_topics(topics);
    let response: ListOffsetsResponse = match client.send(ApiKey::ListOffsets, &request).await {
        Ok(r) => r,
        Err(e) => return keys.iter().map(|k| (k.clone(), Err(e.clone()))).collect(),
    };
    let mut out = Vec::new();
    for topic in response.topics {
        for p in topic.partitions {
            let key = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
            let result = if p.error_code == 0 {
                Ok(p.offset)
            } else {
                Err(SourceError::Broker {
                    addr: client.addr().to_string(),
                    api: ApiKey::ListOffsets,
                    code: p.error_code,
                })
            };
            out.push((key, result));
        }
    }
    out
}
