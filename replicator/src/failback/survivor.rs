//! Asking the survivor where this node's history ends in its log: OffsetForLeaderEpoch
//! for the last epoch this node wrote in, as a Kafka follower does before it truncates
//! (KIP-101, KIP-279).

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::config::Link;
use crate::source::metadata::SourceCluster;

use super::FailbackError;

/// The survivor's answer for one partition: the largest epoch it holds that is at most
/// the one asked for, and where that epoch ends in its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEnd {
    pub leader_epoch: i32,
    pub end_offset: i64,
}

/// Asks `link`'s source, per partition of `topic`, where `epochs[partition]` ends.
pub async fn epoch_ends(
    link: &Link,
    topic: &str,
    epochs: &BTreeMap<i32, i32>,
) -> Result<BTreeMap<i32, EpochEnd>, FailbackError> {
    let mut cluster = SourceCluster::for_link(link);
    let unreachable = |e: crate::source::SourceError| FailbackError::Survivor {
        link: link.config.name.clone(),
        reason: e.to_string(),
    };
    let view = cluster.refresh().await.map_err(unreachable)?.clone();
    let source = view
        .topics
        .get(topic)
        .ok_or_else(|| FailbackError::NotAtSurvivor {
            topic: topic.to_string(),
            link: link.config.name.clone(),
        })?;
    let mut by_leader: BTreeMap<i32, Vec<(i32, i32)>> = BTreeMap::new();
    for (partition, epoch) in epochs {
        let leader = source.partitions.get(partition).map_or(-1, |p| p.leader);
        by_leader
            .entry(leader)
            .or_default()
            .push((*partition, *epoch));
    }
    let mut out = BTreeMap::new();
    for (leader, partitions) in by_leader {
        let client = cluster.broker(leader).await.map_err(unreachable)?;
        let request = OffsetForLeaderEpochRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![OffsetForLeaderTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|(p, epoch)| {
                            OffsetForLeaderPartition::default()
                                .with_partition(*p)
                                .with_current_leader_epoch(-1)
                                .with_leader_epoch(*epoch)
                        })
                        .collect(),
                )]);
        let response: OffsetForLeaderEpochResponse = client
            .send(ApiKey::OffsetForLeaderEpoch, &request)
            .await
            .map_err(unreachable)?;
        for answer in response.topics.iter().flat_map(|t| &t.partitions) {
            if answer.error_code != 0 || answer.end_offset < 0 {
                return Err(FailbackError::EpochUnknown {
                    topic: topic.to_string(),
                    partition: answer.partition,
                    error: answer.error_code,
                });
            }
            let end = EpochEnd {
                leader_epoch: answer.leader_epoch,
                end_offset: answer.end_offset,
            };
            out.insert(answer.partition, end);
        }
    }
    Ok(out)
}
