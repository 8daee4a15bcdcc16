//! AlterConfigs: refused. Shadow topics take their configs from the source, and the node
//! has no dynamic broker configs.

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::{Reply, RequestContext};
use crate::authz::Operation;
use crate::errors::config_change_refusal;

/// ConfigResource type of a topic; every other type is part of the cluster.
const TOPIC_RESOURCE: i8 = 2;

/// The error code and message for a change to one config resource. Kafka asks for
/// alter-configs on the topic, or on the cluster for broker resources.
pub(super) fn refusal(
    ctx: &RequestContext,
    resource_type: i8,
    name: &StrBytes,
) -> (i16, Option<StrBytes>) {
    let allowed = match resource_type {
        TOPIC_RESOURCE => ctx.topic(Operation::Alter, name.as_str()),
        _ => ctx.cluster(Operation::Alter),
    };
    if let Err(denied) = allowed {
        let message = denied.message(name.as_str());
        return (denied.code(), Some(StrBytes::from_string(message)));
    }
    let (code, message) = config_change_refusal(&ctx.store, resource_type, name.as_str());
    (code, Some(StrBytes::from_string(message)))
}

pub fn handle(
    ctx: &RequestContext,
    header: &RequestHeader,
    request: AlterConfigsRequest,
) -> Result<Reply, EncodeError> {
    let responses = request
        .resources
        .iter()
        .map(|r| {
            let (code, message) = refusal(ctx, r.resource_type, &r.resource_name);
            AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone())
                .with_error_code(code)
                .with_error_message(message)
        })
        .collect();
    let response = AlterConfigsResponse::default().with_responses(responses);
    Reply::encode(header, &response)
}
