//! Produce: refused on shadow topics, which only their link may write.

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::{encode_response, EncodeError};

use super::{Reply, ServerContext};
use crate::errors::{topic_write_refusal, Refusal};

pub fn handle(
    ctx: &ServerContext,
    header: &RequestHeader,
    request: ProduceRequest,
) -> Result<Reply, EncodeError> {
    let version = header.api_version;
    let responses = request
        .topic_data
        .iter()
        .map(|topic| {
            let refusal = topic_write_refusal(&ctx.store, topic.name.as_str());
            if let Refusal::Shadow { .. } = &refusal {
                tracing::info!(topic = %topic.name.as_str(), "produce to a shadow topic refused");
            }
            let partitions = topic
                .partition_data
                .iter()
                .map(|p| refused_partition(version, p.index, &refusal))
                .collect();
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_partition_responses(partitions)
        })
        .collect();
    // acks=0: the client expects no answer, and nothing was written.
    if request.acks == 0 {
        return Ok(Reply::None);
    }
    let response = ProduceResponse::default().with_responses(responses);
    let frame = encode_response(ApiKey::Produce, version, header.correlation_id, &response)?;
    Ok(Reply::Frame(frame))
}

fn refused_partition(version: i16, index: i32, refusal: &Refusal) -> PartitionProduceResponse {
    let response = PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(refusal.code())
        .with_base_offset(-1);
    // Per-partition error messages exist from v8 on.
    if version >= 8 {
        response.with_error_message(Some(StrBytes::from_string(refusal.to_string())))
    } else {
        response
    }
}
