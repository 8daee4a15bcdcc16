//! OffsetForLeaderEpoch (KIP-320): where each leader epoch ends in a mirror, from the
//! epochs carried by the mirrored batches.

use crate::mirror::MirrorPartition;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;
use shadowlink_storage::PartitionLog;

use super::{Reply, RequestContext};
use crate::authz::Operation;
use crate::errors::epoch_error_code;

pub fn handle(
    ctx: &RequestContext,
    header: &RequestHeader,
    request: OffsetForLeaderEpochRequest,
) -> Result<Reply, EncodeError> {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let mirror = ctx.store.partition(topic.topic.as_str(), p.partition);
                    let answer = EpochEndOffset::default().with_partition(p.partition);
                    // Kafka asks a consumer for describe, which read implies.
                    if let Err(denied) = ctx.topic(Operation::Describe, topic.topic.as_str()) {
                        return answer
                            .with_error_code(denied.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1);
                    }
                    match mirror {
                        Some(m) => end_of_epoch(&m, p.current_leader_epoch, p.leader_epoch, answer),
                        None => answer
                            .with_error_code(super::offline::partition_code(
                                &ctx.store,
                                topic.topic.as_str(),
                                p.partition,
                            ))
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    let response = OffsetForLeaderEpochResponse::default().with_topics(topics);
    Reply::encode(header, &response)
}

fn end_of_epoch(
    partition: &MirrorPartition,
    current: i32,
    requested: i32,
    answer: EpochEndOffset,
) -> EpochEndOffset {
    if let Err(e) = partition.check_leader_epoch(current) {
        return answer
            .with_error_code(epoch_error_code(&e))
            .with_leader_epoch(-1)
            .with_end_offset(-1);
    }
    let ours = partition.leader_epoch();
    match epoch_end(&partition.log(), ours, requested) {
        Some((epoch, end)) => answer.with_leader_epoch(epoch).with_end_offset(end),
        None => answer.with_leader_epoch(-1).with_end_offset(-1),
    }
}

/// `(largest epoch <= requested, its end offset)` in `log`, whose partition advertises
/// epoch `ours`; `None` when undefined.
pub(super) fn epoch_end(log: &PartitionLog, ours: i32, requested: i32) -> Option<(i32, i64)> {
    match log.end_offset_for_epoch(requested) {
        Some(found) => Some(found),
        // The advertised epoch may be above every stored one (the source changed leader
        // with nothing written since): it begins at the log end, as a new Kafka leader's
        // epoch does, so the epochs between end there too.
        None if (0..=ours).contains(&requested) => {
            let epoch = match requested == ours {
                true => ours,
                false => log.latest_epoch().unwrap_or(requested),
            };
            Some((epoch, log.log_end_offset()))
        }
        None => None,
    }
}
