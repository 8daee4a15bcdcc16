//! CreatePartitions: refused on shadow topics; their partition count follows the source.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::{Reply, ServerContext};
use crate::errors::topic_write_refusal;

pub fn handle(
    ctx: &ServerContext,
    header: &RequestHeader,
    request: CreatePartitionsRequest,
) -> Result<Reply, EncodeError> {
    let results = request
        .topics
        .iter()
        .map(|topic| {
            let refusal = topic_write_refusal(&ctx.store, topic.name.as_str());
            CreatePartitionsTopicResult::default()
                .with_name(topic.name.clone())
                .with_error_code(refusal.code())
                .with_error_message(Some(StrBytes::from_string(refusal.to_string())))
        })
        .collect();
    let response = CreatePartitionsResponse::default().with_results(results);
    Reply::encode(header, &response)
}
