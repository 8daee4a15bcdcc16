//! AddPartitionsToTxn (v0-3, the client versions; v4+ is broker to broker): enlists
//! partitions of this node's own topics in a producer's transaction. One partition that
//! cannot join fails the request, and the others are answered OPERATION_NOT_ATTEMPTED,
//! as Kafka does.

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey};
use kafka_protocol::ResponseError;
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::{Reply, RequestContext, ServerContext};
use crate::authz::Operation;
use crate::errors::{task_failed_code, txn_error_code, txn_partition_refusal};

pub async fn handle(
    ctx: &RequestContext<'_>,
    header: &RequestHeader,
    request: AddPartitionsToTxnRequest,
) -> Result<Reply, EncodeError> {
    let wanted: Vec<(String, i32)> = request
        .v3_and_below_topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|&p| (t.name.0.to_string(), p)))
        .collect();
    let refusals: Vec<Option<i16>> = wanted
        .iter()
        .map(|(topic, p)| match ctx.topic(Operation::Write, topic) {
            Err(denied) => Some(denied.code()),
            Ok(()) => txn_partition_refusal(&ctx.store, topic, *p).map(|(code, _)| code),
        })
        .collect();
    let codes: Vec<i16> = if refusals.iter().any(Option::is_some) {
        let skipped = ResponseError::OperationNotAttempted.code();
        refusals.iter().map(|r| r.unwrap_or(skipped)).collect()
    } else {
        let code = enlist(ctx, header.api_version, &request, wanted.clone()).await;
        vec![code; wanted.len()]
    };
    let mut results: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, partition), code) in wanted.into_iter().zip(codes) {
        let result = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(partition)
            .with_partition_error_code(code);
        match results.last_mut() {
            Some(last) if last.name.0.as_str() == topic => last.results_by_partition.push(result),
            _ => results.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(kafka_protocol::messages::TopicName(topic.into()))
                    .with_results_by_partition(vec![result]),
            ),
        }
    }
    let response =
        AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    Reply::encode(header, &response)
}

async fn enlist(
    ctx: &ServerContext,
    version: i16,
    request: &AddPartitionsToTxnRequest,
    partitions: Vec<(String, i32)>,
) -> i16 {
    let txns = ctx.txns.clone();
    let id = request.v3_and_below_transactional_id.0.to_string();
    let producer_id = request.v3_and_below_producer_id.0;
    let epoch = request.v3_and_below_producer_epoch;
    let added = tokio::task::spawn_blocking(move || {
        txns.add_partitions(&id, producer_id, epoch, partitions)
            .map_err(|e| (id, e))
    })
    .await;
    match added {
        Ok(Ok(())) => 0,
        Ok(Err((transactional_id, e))) => {
            tracing::info!(transactional_id, error = %e, "AddPartitionsToTxn refused");
            txn_error_code(&e, ApiKey::AddPartitionsToTxn, version)
        }
        Err(e) => {
            tracing::error!(error = %e, "AddPartitionsToTxn task failed");
            task_failed_code(&e)
        }
    }
}
