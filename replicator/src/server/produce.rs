//! Produce: appends to topics this node owns; refused on shadow topics, which only their
//! link may write.
//!
//! Each partition's single batch is validated, checked against its producer's sequence
//! state (KIP-98 idempotence) and appended with offsets assigned here; see
//! `mirror::owned`. The disk work runs on the blocking pool so a slow fsync never stalls
//! the runtime. acks=0 writes and answers nothing; acks=1 and acks=all answer after the
//! append, and acks=all after an fsync too when the persist mode is `always` (the
//! guarantee per mode is spelled out on `MirrorPartition::produce`).
//!
//! A topic this node handed over answers NOT_LEADER_OR_FOLLOWER (retriable) naming the
//! node that owns it now, once that node does: the client's Metadata refresh names it
//! leader (see `switchover::peers`), so an unchanged producer follows the topic.
//!
//! On a cluster node, an owned partition is written only by the leader the assignment
//! names, in the epoch it gives; elsewhere NOT_LEADER_OR_FOLLOWER sends the producer to
//! Metadata. There `acks=all` is answered once every other in-sync replica has fetched
//! past the batch, or REQUEST_TIMED_OUT after the request's timeout, as in Kafka.
//!
//! A transactional batch is written only when the transaction coordinator confirms that
//! its producer is the current epoch of its transactional id and that the partition is
//! in its ongoing transaction; otherwise Kafka's answers: INVALID_PRODUCER_EPOCH for a
//! fenced producer, INVALID_TXN_STATE (TRANSACTION_ABORTABLE from v11) for a partition
//! not added.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use shadowlink_protocol::batch::RecordBatch;
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::{Reply, RequestContext, ServerContext};
use crate::authz::Operation;
use crate::cluster::{Cluster, InSyncError};
use crate::errors::{
    produce_error_code, task_failed_code, topic_write_refusal, txn_error_code, Declined, Refusal,
    Unserved,
};
use crate::mirror::owned::{self, ProduceError, Produced, DEFAULT_MAX_MESSAGE_BYTES};
use crate::mirror::{MirrorPartition, MirrorTopic};
use crate::txn::{TxnCoordinator, TxnError};

/// Why a partition's record set was not written.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error(transparent)]
    Transaction(#[from] TxnError),
    #[error(transparent)]
    Produce(#[from] ProduceError),
}

pub async fn handle(
    ctx: &RequestContext<'_>,
    header: &RequestHeader,
    request: ProduceRequest,
) -> Result<Reply, EncodeError> {
    let version = header.api_version;
    let acks = request.acks;
    let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data {
        let name = topic.name.clone();
        let owned = ctx.store.topic(name.as_str()).filter(|t| t.is_owned());
        let partitions = match (ctx.topic(Operation::Write, name.as_str()), owned) {
            (Err(denied), _) => {
                let message = denied.message(name.as_str());
                let partitions = topic.partition_data.iter();
                partitions
                    .map(|p| failed(version, p.index, denied.code(), message.clone()))
                    .collect()
            }
            (Ok(()), Some(owned)) => {
                let mut answers = Vec::with_capacity(topic.partition_data.len());
                for data in topic.partition_data {
                    let txns = &ctx.txns;
                    let answer = match ctx.cluster.as_deref() {
                        Some(cluster) => {
                            let write = Write {
                                version,
                                acks,
                                timeout,
                            };
                            produce_replicated(cluster, &owned, txns, data, write).await
                        }
                        None => produce_partition(&owned, txns, data, version, acks).await,
                    };
                    let moved = answer.error_code != 0;
                    let to_owner = moved.then(|| to_owner(ctx, &owned, answer.index, version));
                    answers.push(to_owner.flatten().unwrap_or(answer));
                }
                answers
            }
            (Ok(()), None) if failing_over(ctx, name.as_str()) => {
                let code = ResponseError::NotLeaderOrFollower.code();
                let message = format!(
                    "{} is failing over: it takes writes once its leader opens",
                    name.as_str()
                );
                let partitions = topic.partition_data.iter();
                partitions
                    .map(|p| failed(version, p.index, code, message.clone()))
                    .collect()
            }
            (Ok(()), None) => refused_topic(ctx, name.as_str(), &topic.partition_data, version),
        };
        responses.push(
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(partitions),
        );
    }
    // acks=0: the client expects no answer.
    if acks == 0 {
        return Ok(Reply::None);
    }
    let response = ProduceResponse::default().with_responses(responses);
    Reply::encode(header, &response)
}

/// Whether the cluster made the topic owned and this node has not taken it over yet: a
/// producer that followed Metadata here retries rather than fails.
fn failing_over(ctx: &ServerContext, topic: &str) -> bool {
    let cluster = ctx.cluster.as_deref();
    cluster.is_some_and(|c| c.assignment().is_owned(topic))
}

fn refused_topic(
    ctx: &ServerContext,
    topic: &str,
    partitions: &[PartitionProduceData],
    version: i16,
) -> Vec<PartitionProduceResponse> {
    let refusal = topic_write_refusal(&ctx.store, topic);
    if let Refusal::Shadow { .. } = &refusal {
        tracing::info!(topic, "produce to a shadow topic refused");
    }
    let handed_over = ctx.store.topic(topic);
    partitions
        .iter()
        .map(|p| {
            let to_owner = handed_over
                .as_ref()
                .and_then(|t| to_owner(ctx, t, p.index, version));
            to_owner
                .unwrap_or_else(|| failed(version, p.index, refusal.code(), refusal.to_string()))
        })
        .collect()
}

/// The answer for a partition of a topic this node handed over to another node, as from
/// a Kafka broker that stopped leading it.
fn to_owner(
    ctx: &ServerContext,
    topic: &MirrorTopic,
    index: i32,
    version: i16,
) -> Option<PartitionProduceResponse> {
    let message = match ctx.peers.owner_elsewhere(topic, index) {
        Some((owner, _)) => format!(
            "{}-{index} was handed over: broker {} at {} owns it now",
            topic.name,
            owner.node_id,
            owner.addr()
        ),
        // Retriable until the link sees the new owner lead, so the client retries
        // rather than fails between the demotion and the next refresh.
        None if ctx.peers.awaiting_owner(topic, index) => format!(
            "{}-{index} was handed over to the source of link {}, not yet seen leading it",
            topic.name,
            topic.meta().link
        ),
        None => return None,
    };
    let code = ResponseError::NotLeaderOrFollower.code();
    Some(failed(version, index, code, message))
}

/// How a Produce request asks each partition to be written.
#[derive(Clone, Copy)]
struct Write {
    version: i16,
    acks: i16,
    timeout: Duration,
}

/// A cluster node's write of an owned partition: by the leader only, in its epoch, and
/// with `acks=all` answered once the in-sync replicas hold it.
async fn produce_replicated(
    cluster: &Cluster,
    topic: &Arc<MirrorTopic>,
    txns: &Arc<TxnCoordinator>,
    data: PartitionProduceData,
    write: Write,
) -> PartitionProduceResponse {
    let (index, version) = (data.index, write.version);
    let epoch = topic.partition(index).and_then(|p| p.owned_epoch());
    let epoch = match cluster.check_writer(&topic.name, index, epoch) {
        Ok(epoch) => epoch,
        Err(code) => {
            let message = format!("this node does not lead {}-{index}", topic.name);
            return failed(version, index, code, message);
        }
    };
    // Offsets advance by the batch's last offset delta, not its record count.
    let span = (data.records.clone())
        .and_then(|r| RecordBatch::parse(r).ok())
        .map(|b| i64::from(b.last_offset_delta()) + 1);
    let answer = produce_partition(topic, txns, data, version, write.acks).await;
    let Some(span) = span.filter(|_| write.acks == -1 && answer.error_code == 0) else {
        return answer;
    };
    let end = answer.base_offset + span;
    match cluster
        .wait_in_sync(&topic.name, index, epoch, end, write.timeout)
        .await
    {
        Ok(()) => answer,
        Err(e) => {
            let code = match e {
                InSyncError::TimedOut => ResponseError::RequestTimedOut.code(),
                InSyncError::NotLeader => ResponseError::NotLeaderOrFollower.code(),
            };
            failed(version, index, code, format!("{}-{index}: {e}", topic.name))
        }
    }
}

async fn produce_partition(
    topic: &Arc<MirrorTopic>,
    txns: &Arc<TxnCoordinator>,
    data: PartitionProduceData,
    version: i16,
    acks: i16,
) -> PartitionProduceResponse {
    let index = data.index;
    let Some(partition) = topic.partition(index) else {
        if let Some(reason) = topic.offline_partitions().get(&index) {
            let code = Unserved::Offline.code();
            let message = format!("{}-{index} is offline: {reason}", topic.name);
            return failed(version, index, code, message);
        }
        let code = Unserved::Unknown.code();
        return failed(
            version,
            index,
            code,
            format!("{} has no partition {index}", topic.name),
        );
    };
    let Some(records) = data.records else {
        let code = Declined::NullRecords.code();
        return failed(version, index, code, "the record set is null".into());
    };
    let request = owned::ProduceRequest {
        acks,
        api_version: version,
        max_message_bytes: max_message_bytes(topic),
        in_transaction: false,
    };
    let txns = txns.clone();
    let written =
        tokio::task::spawn_blocking(move || write(&txns, &partition, records, request)).await;
    match written {
        Ok(Ok(produced)) => {
            let mut response = PartitionProduceResponse::default()
                .with_index(index)
                .with_base_offset(produced.base_offset)
                .with_log_append_time_ms(-1);
            if version >= 5 {
                response = response.with_log_start_offset(produced.log_start_offset);
            }
            response
        }
        Ok(Err(e)) => {
            tracing::debug!(topic = %topic.name, partition = index, error = %e, "produce refused");
            let code = match &e {
                Refused::Transaction(e) => txn_error_code(e, ApiKey::Produce, version),
                Refused::Produce(e) => produce_error_code(e),
            };
            failed(version, index, code, e.to_string())
        }
        Err(e) => {
            tracing::error!(topic = %topic.name, partition = index, error = %e, "produce task failed");
            let code = task_failed_code(&e);
            failed(version, index, code, "the write failed on the node".into())
        }
    }
}

/// Verifies a transactional batch with the coordinator, then writes. Blocking.
fn write(
    txns: &TxnCoordinator,
    partition: &MirrorPartition,
    records: Bytes,
    mut request: owned::ProduceRequest,
) -> Result<Produced, Refused> {
    if let Some((producer_id, epoch)) = transactional_producer(&records) {
        txns.verify_produce(producer_id, epoch, &partition.topic, partition.partition)?;
        request.in_transaction = true;
    }
    Ok(partition.produce(records, &request)?)
}

/// The producer of a transactional data batch; `None` for anything else (which the
/// write path validates on its own).
fn transactional_producer(records: &Bytes) -> Option<(i64, i16)> {
    let batch = RecordBatch::parse(records.clone()).ok()?;
    (batch.is_transactional() && !batch.is_control() && !batch.is_legacy())
        .then(|| (batch.producer_id(), batch.producer_epoch()))
}

/// The topic's `max.message.bytes`, or Kafka's default when unset or unreadable.
fn max_message_bytes(topic: &MirrorTopic) -> usize {
    topic
        .meta()
        .configs
        .get("max.message.bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES)
}

fn failed(version: i16, index: i32, code: i16, message: String) -> PartitionProduceResponse {
    let response = PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1);
    // Per-partition error messages exist from v8 on.
    if version >= 8 {
        response.with_error_message(Some(StrBytes::from_string(message)))
    } else {
        response
    }
}
