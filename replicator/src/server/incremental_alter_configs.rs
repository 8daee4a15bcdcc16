//! IncrementalAlterConfigs: refused, as AlterConfigs is.

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::alter_configs::refusal;
use super::{Reply, RequestContext};

pub fn handle(
    ctx: &RequestContext,
    header: &RequestHeader,
    request: IncrementalAlterConfigsRequest,
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
    let response = IncrementalAlterConfigsResponse::default().with_responses(responses);
    Reply::encode(header, &response)
}
