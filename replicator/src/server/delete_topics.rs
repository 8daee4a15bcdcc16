//! DeleteTopics: refused on shadow topics; a mirror is removed only with its link.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::{Reply, RequestContext};
use crate::authz::Operation;
use crate::errors::topic_write_refusal;

pub fn handle(
    ctx: &RequestContext,
    header: &RequestHeader,
    request: DeleteTopicsRequest,
) -> Result<Reply, EncodeError> {
    let version = header.api_version;
    let responses = request
        .topic_names
        .iter()
        .map(|name| {
            let (code, message) = match ctx.topic(Operation::Delete, name.as_str()) {
                Err(denied) => (denied.code(), denied.message(name.as_str())),
                Ok(()) => {
                    let refusal = topic_write_refusal(&ctx.store, name.as_str());
                    (refusal.code(), refusal.to_string())
                }
            };
            let result = DeletableTopicResult::default()
                .with_name(Some(name.clone()))
                .with_error_code(code);
            // Error messages exist from v5.
            if version >= 5 {
                result.with_error_message(Some(StrBytes::from_string(message)))
            } else {
                result
            }
        })
        .collect();
    let response = DeleteTopicsResponse::default().with_responses(responses);
    Reply::encode(header, &response)
}
