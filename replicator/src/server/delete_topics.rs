//! DeleteTopics: refused on shadow topics; a mirror is removed only with its link.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::{Reply, ServerContext};
use crate::errors::topic_write_refusal;

pub fn handle(
    ctx: &ServerContext,
    header: &RequestHeader,
    request: DeleteTopicsRequest,
) -> Result<Reply, EncodeError> {
    let version = header.api_version;
    let responses = request
        .topic_names
        .iter()
        .map(|name| {
            let refusal = topic_write_refusal(&ctx.store, name.as_str());
            let result = DeletableTopicResult::default()
                .with_name(Some(name.clone()))
                .with_error_code(refusal.code());
            // Error messages exist from v5.
            if version >= 5 {
                result.with_error_message(Some(StrBytes::from_string(refusal.to_string())))
            } else {
                result
            }
        })
        .collect();
    let response = DeleteTopicsResponse::default().with_responses(responses);
    Reply::encode(header, &response)
}
