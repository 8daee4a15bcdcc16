//! AlterConfigs and IncrementalAlterConfigs: refused. Shadow topics take their configs
//! from the source, and the node has no dynamic broker configs.

use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::{encode_response, EncodeError};

use super::{Reply, ServerContext};
use crate::errors::config_change_refusal;

pub fn handle(
    ctx: &ServerContext,
    header: &RequestHeader,
    request: AlterConfigsRequest,
) -> Result<Reply, EncodeError> {
    let responses = request
        .resources
        .iter()
        .map(|r| {
            let (code, message) =
                config_change_refusal(&ctx.store, r.resource_type, r.resource_name.as_str());
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone())
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(message)))
        })
        .collect();
    let response = AlterConfigsResponse::default().with_responses(responses);
    let frame = encode_response(
        ApiKey::AlterConfigs,
        header.api_version,
        header.correlation_id,
        &response,
    )?;
    Ok(Reply::Frame(frame))
}

pub fn handle_incremental(
    ctx: &ServerContext,
    header: &RequestHeader,
    request: IncrementalAlterConfigsRequest,
) -> Result<Reply, EncodeError> {
    let responses = request
        .resources
        .iter()
        .map(|r| {
            let (code, message) =
                config_change_refusal(&ctx.store, r.resource_type, r.resource_name.as_str());
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone())
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(message)))
        })
        .collect();
    let response = IncrementalAlterConfigsResponse::default().with_responses(responses);
    let frame = encode_response(
        ApiKey::IncrementalAlterConfigs,
        header.api_version,
        header.correlation_id,
        &response,
    )?;
    Ok(Reply::Frame(frame))
}
