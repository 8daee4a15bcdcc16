//! DeleteRecords: refused on shadow topics; their log start follows the source.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::{Reply, RequestContext};
use crate::authz::Operation;
use crate::errors::topic_write_refusal;

pub fn handle(
    ctx: &RequestContext,
    header: &RequestHeader,
    request: DeleteRecordsRequest,
) -> Result<Reply, EncodeError> {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let code = match ctx.topic(Operation::Delete, topic.name.as_str()) {
                Err(denied) => denied.code(),
                Ok(()) => topic_write_refusal(&ctx.store, topic.name.as_str()).code(),
            };
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1)
                        .with_error_code(code)
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    let response = DeleteRecordsResponse::default().with_topics(topics);
    Reply::encode(header, &response)
}
