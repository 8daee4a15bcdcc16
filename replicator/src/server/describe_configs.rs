//! DescribeConfigs: a mirror topic's configs as synced from its source, read-only.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::{Reply, RequestContext};
use crate::authz::Operation;
use crate::errors::Unserved;

const TOPIC_RESOURCE: i8 = 2;
/// ConfigSource DYNAMIC_TOPIC_CONFIG: set on the topic, as the source reported it.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;

pub fn handle(
    ctx: &RequestContext,
    header: &RequestHeader,
    request: DescribeConfigsRequest,
) -> Result<Reply, EncodeError> {
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            if resource.resource_type != TOPIC_RESOURCE {
                return result;
            }
            let name = resource.resource_name.as_str();
            if let Err(denied) = ctx.topic(Operation::Describe, name) {
                let message = StrBytes::from_string(denied.message(name));
                return result
                    .with_error_code(denied.code())
                    .with_error_message(Some(message));
            }
            let Some(topic) = ctx.store.topic(resource.resource_name.as_str()) else {
                return result
                    .with_error_code(Unserved::Unknown.code())
                    .with_error_message(Some(StrBytes::from_static_str("unknown topic")));
            };
            let wanted = resource.configuration_keys.as_ref();
            let configs = topic
                .meta()
                .configs
                .into_iter()
                .filter(|(k, _)| wanted.is_none_or(|keys| keys.iter().any(|w| w.as_str() == k)))
                .map(|(name, value)| {
                    let entry = DescribeConfigsResourceResult::default()
                        .with_name(StrBytes::from_string(name))
                        .with_value(Some(StrBytes::from_string(value)))
                        .with_read_only(true);
                    if header.api_version >= 1 {
                        entry.with_config_source(DYNAMIC_TOPIC_CONFIG)
                    } else {
                        entry
                    }
                })
                .collect();
            result.with_configs(configs)
        })
        .collect();
    let response = DescribeConfigsResponse::default().with_results(results);
    Reply::encode(header, &response)
}
