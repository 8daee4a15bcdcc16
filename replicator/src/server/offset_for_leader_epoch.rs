//! OffsetForLeaderEpoch (KIP-320): where each leader epoch ends in a mirror, from the
//! epochs carried by the mirrored batches.

use crate::mirror::MirrorPartition;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::{encode_response, EncodeError};

use super::{Reply, ServerContext};

pub fn handle(
    ctx: &ServerContext,
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
    let frame = encode_response(
        ApiKey::OffsetForLeaderEpoch,
        header.api_version,
        header.correlation_id,
        &response,
    )?;
    Ok(Reply::Frame(frame))
}

fn end_of_epoch(
    partition: &MirrorPartition,
    current: i32,
    requested: i32,
    answer: EpochEndOffset,
) -> EpochEndOffset {
    let ours = partition.leader_epoch();
    // The client's view of the leader epoch must match ours (KIP-320 fencing): an older
    // one means stale metadata, a newer one means ours has not caught up.
    if current >= 0 && current < ours {
        return answer.with_error_code(ResponseError::FencedLeaderEpoch.code());
    }
    if current > ours {
        return answer.with_error_code(ResponseError::UnknownLeaderEpoch.code());
    }
    match partition.log().end_offset_for_epoch(requested) {
        Some((epoch, end)) => answer.with_leader_epoch(epoch).with_end_offset(end),
        None => answer.with_leader_epoch(-1).with_end_offset(-1),
    }
}
