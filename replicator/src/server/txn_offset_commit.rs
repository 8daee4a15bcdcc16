//! TxnOffsetCommit: consumer offsets staged in the producer's transaction. They stay
//! invisible to OffsetFetch until the transaction commits, and are dropped if it aborts.

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ApiKey, TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::{Reply, RequestContext};
use crate::authz::Operation;
use crate::errors::{group_error_code, task_failed_code, txn_error_code};
use crate::groups::{Committed, GroupError, MAX_METADATA_BYTES};

pub async fn handle(
    ctx: &RequestContext<'_>,
    header: &RequestHeader,
    request: TxnOffsetCommitRequest,
) -> Result<Reply, EncodeError> {
    let mut offsets = Vec::new();
    let mut refused = Vec::new();
    // Kafka asks for read on the group and on each topic committed to.
    let group_denied = ctx
        .group(Operation::Read, request.group_id.0.as_str())
        .err();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        for p in &topic.partitions {
            let denied = group_denied.or(ctx.topic(Operation::Read, &name).err());
            if let Some(denied) = denied {
                refused.push((name.clone(), p.partition_index, denied.code()));
                continue;
            }
            match check(
                ctx,
                &name,
                p.partition_index,
                p.committed_metadata.as_deref(),
            ) {
                Ok(()) => offsets.push((
                    name.clone(),
                    p.partition_index,
                    Committed {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                    },
                )),
                Err(e) => refused.push((name.clone(), p.partition_index, group_error_code(e))),
            }
        }
    }
    let code = match (group_denied, member_check(ctx, &request)) {
        (Some(denied), _) => denied.code(),
        (None, Err(e)) => group_error_code(e),
        (None, Ok(())) => stage(ctx, header.api_version, &request, offsets).await,
    };
    let mut topics: Vec<TxnOffsetCommitResponseTopic> = Vec::new();
    for topic in &request.topics {
        let partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let own = refused
                    .iter()
                    .find(|(t, i, _)| t == topic.name.0.as_str() && *i == p.partition_index);
                TxnOffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(own.map_or(code, |r| r.2))
            })
            .collect();
        topics.push(
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions),
        );
    }
    Reply::encode(
        header,
        &TxnOffsetCommitResponse::default().with_topics(topics),
    )
}

/// KIP-447 (v3+): a consumer that is no longer a member of its generation (a zombie
/// after a rebalance) may not commit through a transaction either.
fn member_check(ctx: &RequestContext, request: &TxnOffsetCommitRequest) -> Result<(), GroupError> {
    let group = request.group_id.0.as_str();
    if group.is_empty() {
        return Err(GroupError::InvalidGroupId);
    }
    let instance = request.group_instance_id.as_ref().map(|i| i.to_string());
    ctx.groups.validate_commit(
        group,
        request.member_id.as_str(),
        instance.as_deref().filter(|i| !i.is_empty()),
        request.generation_id,
    )
}

fn check(
    ctx: &RequestContext,
    topic: &str,
    partition: i32,
    metadata: Option<&str>,
) -> Result<(), GroupError> {
    if ctx.store.partition(topic, partition).is_none() {
        return Err(GroupError::UnknownTopicOrPartition);
    }
    if metadata.is_some_and(|m| m.len() > MAX_METADATA_BYTES) {
        return Err(GroupError::OffsetMetadataTooLarge);
    }
    Ok(())
}

async fn stage(
    ctx: &RequestContext<'_>,
    version: i16,
    request: &TxnOffsetCommitRequest,
    offsets: Vec<(String, i32, Committed)>,
) -> i16 {
    let txns = ctx.txns.clone();
    let id = request.transactional_id.0.to_string();
    let group = request.group_id.0.to_string();
    let (producer_id, epoch) = (request.producer_id.0, request.producer_epoch);
    let txn_id = id.clone();
    let staged = tokio::task::spawn_blocking(move || {
        txns.stage_offsets(&txn_id, producer_id, epoch, &group, offsets)
    })
    .await;
    match staged {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            tracing::info!(transactional_id = id, error = %e, "TxnOffsetCommit refused");
            txn_error_code(&e, ApiKey::TxnOffsetCommit, version)
        }
        Err(e) => {
            tracing::error!(error = %e, "TxnOffsetCommit task failed");
            task_failed_code(&e)
        }
    }
}
