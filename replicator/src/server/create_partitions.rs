//! CreatePartitions: refused on shadow topics; their partition count follows the source.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::{Reply, RequestContext};
use crate::authz::Operation;
use crate::errors::topic_write_refusal;

pub fn handle(
    ctx: &RequestContext,
    header: &RequestHeader,
    request: CreatePartitionsRequest,
) -> Result<Reply, EncodeError> {
    let results = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.as_str();
            let (code, message) = match ctx.topic(Operation::Alter, name) {
                Err(denied) => (denied.code(), denied.message(name)),
                Ok(()) => {
                    let refusal = topic_write_refusal(&ctx.store, name);
                    (refusal.code(), refusal.to_string())
                }
            };
            CreatePartitionsTopicResult::default()
                .with_name(topic.name.clone())
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(message)))
        })
        .collect();
    let response = CreatePartitionsResponse::default().with_results(results);
    Reply::encode(header, &response)
}
