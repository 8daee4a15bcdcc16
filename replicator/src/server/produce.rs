//! Produce: appends to topics this node owns; refused on shadow topics, which only their
//! link may write.
//!
//! Each partition's single batch is validated, checked against its producer's sequence
//! state (KIP-98 idempotence) and appended with offsets assigned here; see
//! `mirror::owned`. The disk work runs on the blocking pool so a slow fsync never stalls
//! the runtime. acks=0 writes and answers nothing; acks=1 and acks=all answer after the
//! append, and acks=all after an fsync too when the persist mode is `always` (the
//! guarantee per mode is spelled out on `MirrorPartition::produce`).

use std::sync::Arc;

use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::{Reply, ServerContext};
use crate::errors::{
    produce_error_code, task_failed_code, topic_write_refusal, Declined, Refusal, Unserved,
};
use crate::mirror::owned::{self, DEFAULT_MAX_MESSAGE_BYTES};
use crate::mirror::MirrorTopic;

pub async fn handle(
    ctx: &ServerContext,
    header: &RequestHeader,
    request: ProduceRequest,
) -> Result<Reply, EncodeError> {
    let version = header.api_version;
    let acks = request.acks;
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data {
        let name = topic.name.clone();
        let partitions = match ctx.store.topic(name.as_str()).filter(|t| t.is_owned()) {
            Some(owned) => {
                let mut answers = Vec::with_capacity(topic.partition_data.len());
                for data in topic.partition_data {
                    answers.push(produce_partition(&owned, data, version, acks).await);
                }
                answers
            }
            None => refused_topic(ctx, name.as_str(), &topic.partition_data, version),
        };
        responses.push(
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(partitions),
        );
    }
    // acks=0: the client expects no answer.
    if acks == 0 {
        return Ok(Reply::None);
    }
    let response = ProduceResponse::default().with_responses(responses);
    Reply::encode(header, &response)
}

fn refused_topic(
    ctx: &ServerContext,
    topic: &str,
    partitions: &[PartitionProduceData],
    version: i16,
) -> Vec<PartitionProduceResponse> {
    let refusal = topic_write_refusal(&ctx.store, topic);
    if let Refusal::Shadow { .. } = &refusal {
        tracing::info!(topic, "produce to a shadow topic refused");
    }
    partitions
        .iter()
        .map(|p| failed(version, p.index, refusal.code(), refusal.to_string()))
        .collect()
}

async fn produce_partition(
    topic: &Arc<MirrorTopic>,
    data: PartitionProduceData,
    version: i16,
    acks: i16,
) -> PartitionProduceResponse {
    let index = data.index;
    let Some(partition) = topic.partition(index) else {
        if let Some(reason) = topic.offline_partitions().get(&index) {
            let code = Unserved::Offline.code();
            let message = format!("{}-{index} is offline: {reason}", topic.name);
            return failed(version, index, code, message);
        }
        let code = Unserved::Unknown.code();
        return failed(
            version,
            index,
            code,
            format!("{} has no partition {index}", topic.name),
        );
    };
    let Some(records) = data.records else {
        let code = Declined::NullRecords.code();
        return failed(version, index, code, "the record set is null".into());
    };
    let request = owned::ProduceRequest {
        acks,
        api_version: version,
        max_message_bytes: max_message_bytes(topic),
    };
    let written = tokio::task::spawn_blocking(move || partition.produce(records, &request)).await;
    match written {
        Ok(Ok(produced)) => {
            let mut response = PartitionProduceResponse::default()
                .with_index(index)
                .with_base_offset(produced.base_offset)
                .with_log_append_time_ms(-1);
            if version >= 5 {
                response = response.with_log_start_offset(produced.log_start_offset);
            }
            response
        }
        Ok(Err(e)) => {
            tracing::debug!(topic = %topic.name, partition = index, error = %e, "produce refused");
            failed(version, index, produce_error_code(&e), e.to_string())
        }
        Err(e) => {
            tracing::error!(topic = %topic.name, partition = index, error = %e, "produce task failed");
            let code = task_failed_code(&e);
            failed(version, index, code, "the write failed on the node".into())
        }
    }
}

/// The topic's `max.message.bytes`, or Kafka's default when unset or unreadable.
fn max_message_bytes(topic: &MirrorTopic) -> usize {
    topic
        .meta()
        .configs
        .get("max.message.bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES)
}

fn failed(version: i16, index: i32, code: i16, message: String) -> PartitionProduceResponse {
    let response = PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1);
    // Per-partition error messages exist from v8 on.
    if version >= 8 {
        response.with_error_message(Some(StrBytes::from_string(message)))
    } else {
        response
    }
}
