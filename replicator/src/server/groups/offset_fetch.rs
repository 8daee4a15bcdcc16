//! OffsetFetch: committed positions; -1 with no error where nothing was committed.
//!
//! On a cluster node only the group's coordinator answers (NOT_COORDINATOR elsewhere),
//! and only once it holds the group's offsets as etcd has them: it reads them there the
//! first time it is asked in a new assignment, since another node may have coordinated
//! the group meanwhile.
//!
//! With `require_stable` (v7+, KIP-447), a partition whose group has offsets staged by a
//! transaction not yet decided answers UNSTABLE_OFFSET_COMMIT, and the client retries:
//! an exactly-once consumer must not start from a position its transaction may still
//! replace.

use std::collections::HashMap;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::ResponseError;
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::str_bytes;
use crate::authz::Operation;
use crate::errors::group_error_code;
use crate::errors::Denied;
use crate::groups::{Committed, GroupError, TopicPartition};
use crate::server::{Reply, RequestContext, ServerContext};

/// Per topic, per partition, the committed position if any.
type Positions = Vec<(String, Vec<(i32, Option<Committed>)>)>;

/// Per group asked for, whether its committed offsets may be served from this node.
type Ready = HashMap<String, Result<(), GroupError>>;

pub async fn handle(
    ctx: &RequestContext<'_>,
    header: &RequestHeader,
    request: OffsetFetchRequest,
) -> Result<Reply, EncodeError> {
    let version = header.api_version;
    let require_stable = request.require_stable;
    let ready = load(ctx, version, &request).await;
    let mut response = if version >= 8 {
        batched(ctx, request, &ready)
    } else {
        let group = request.group_id.0.to_string();
        let mut response = single(ctx, version, request, &ready);
        if require_stable {
            mark_unstable(ctx, &group, &mut response.topics);
        }
        response
    };
    // Named topics the principal may not describe answer TOPIC_AUTHORIZATION_FAILED, as
    // in Kafka; asking for all leaves them out.
    let denied = |topic: &TopicName| ctx.topic(Operation::Describe, topic.0.as_str()).is_err();
    for topic in response.topics.iter_mut().filter(|t| denied(&t.name)) {
        for p in &mut topic.partitions {
            p.error_code = Denied::Topic.code();
            p.committed_offset = -1;
        }
    }
    let groups = response.groups.iter_mut();
    for topic in groups.flat_map(|g| g.topics.iter_mut().filter(|t| denied(&t.name))) {
        for p in &mut topic.partitions {
            p.error_code = Denied::Topic.code();
            p.committed_offset = -1;
        }
    }
    if require_stable {
        for group in &mut response.groups {
            let unstable = ctx.txns.unstable_offsets(group.group_id.0.as_str());
            for topic in &mut group.topics {
                for p in &mut topic.partitions {
                    if unstable.contains(&(topic.name.0.to_string(), p.partition_index)) {
                        p.error_code = ResponseError::UnstableOffsetCommit.code();
                        p.committed_offset = -1;
                    }
                }
            }
        }
    }
    Reply::encode(header, &response)
}

/// Loads each group asked for that the principal may describe, as its coordinator.
async fn load(ctx: &RequestContext<'_>, version: i16, request: &OffsetFetchRequest) -> Ready {
    let groups: Vec<&str> = match version >= 8 {
        true => request
            .groups
            .iter()
            .map(|g| g.group_id.0.as_str())
            .collect(),
        false => vec![request.group_id.0.as_str()],
    };
    let mut ready = Ready::new();
    for group in groups {
        let described = ctx.group(Operation::Describe, group).is_ok();
        if described && !group.is_empty() && !ready.contains_key(group) {
            ready.insert(group.to_string(), ctx.groups.load(group).await);
        }
    }
    ready
}

/// UNSTABLE_OFFSET_COMMIT on the partitions a pending transaction has offsets for.
fn mark_unstable(ctx: &ServerContext, group: &str, topics: &mut [OffsetFetchResponseTopic]) {
    let unstable = ctx.txns.unstable_offsets(group);
    for topic in topics {
        for p in &mut topic.partitions {
            if unstable.contains(&(topic.name.0.to_string(), p.partition_index)) {
                p.error_code = ResponseError::UnstableOffsetCommit.code();
                p.committed_offset = -1;
            }
        }
    }
}

/// Positions of `wanted` partitions, or of everything the group committed when `None`
/// (v2+ lets a client ask for all).
fn positions(
    ctx: &RequestContext,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
    ready: &Ready,
) -> Result<Positions, i16> {
    ctx.group(Operation::Describe, group)
        .map_err(|d| d.code())?;
    if group.is_empty() {
        return Err(group_error_code(GroupError::InvalidGroupId));
    }
    if let Some(Err(error)) = ready.get(group) {
        return Err(group_error_code(*error));
    }
    let Some(wanted) = wanted else {
        let mut all: Positions = Vec::new();
        let committed = ctx.groups.fetch_all(group).into_iter();
        let described =
            committed.filter(|(tp, _)| ctx.topic(Operation::Describe, &tp.topic).is_ok());
        for (TopicPartition { topic, partition }, committed) in described {
            match all.last_mut() {
                Some((t, partitions)) if *t == topic => {
                    partitions.push((partition, Some(committed)))
                }
                _ => all.push((topic, vec![(partition, Some(committed))])),
            }
        }
        return Ok(all);
    };
    Ok(wanted
        .into_iter()
        .map(|(topic, partitions)| {
            let found = partitions
                .into_iter()
                .map(|p| (p, ctx.groups.fetch_offset(group, &topic, p)))
                .collect();
            (topic, found)
        })
        .collect())
}

fn single(
    ctx: &RequestContext,
    version: i16,
    request: OffsetFetchRequest,
    ready: &Ready,
) -> OffsetFetchResponse {
    let wanted = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let mut response = OffsetFetchResponse::default();
    match positions(ctx, request.group_id.0.as_str(), wanted, ready) {
        Ok(found) => {
            let topics = found
                .into_iter()
                .map(|(name, partitions)| {
                    let partitions = partitions
                        .into_iter()
                        .map(|(index, c)| old_partition(version, index, c.as_ref()))
                        .collect();
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str_bytes(&name)))
                        .with_partitions(partitions)
                })
                .collect();
            response = response.with_topics(topics);
        }
        // v1 has no group-level error; it then answers with no partitions at all.
        Err(code) if version >= 2 => response = response.with_error_code(code),
        Err(_) => {}
    }
    response
}

fn old_partition(
    version: i16,
    index: i32,
    committed: Option<&Committed>,
) -> OffsetFetchResponsePartition {
    let (offset, epoch, metadata) = unpack(committed);
    let partition = OffsetFetchResponsePartition::default()
        .with_partition_index(index)
        .with_committed_offset(offset)
        .with_metadata(Some(str_bytes(metadata)));
    // committed_leader_epoch exists from v5 (KIP-320).
    if version >= 5 {
        partition.with_committed_leader_epoch(epoch)
    } else {
        partition
    }
}

fn unpack(committed: Option<&Committed>) -> (i64, i32, &str) {
    match committed {
        Some(c) => (
            c.offset,
            c.leader_epoch,
            c.metadata.as_deref().unwrap_or(""),
        ),
        None => (-1, -1, ""),
    }
}

/// v8+ (KIP-709): several groups per request, each answered on its own.
fn batched(
    ctx: &RequestContext,
    request: OffsetFetchRequest,
    ready: &Ready,
) -> OffsetFetchResponse {
    let groups = request
        .groups
        .into_iter()
        .map(|group| {
            let wanted = group.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes))
                    .collect()
            });
            let answer = OffsetFetchResponseGroup::default().with_group_id(group.group_id.clone());
            match positions(ctx, group.group_id.0.as_str(), wanted, ready) {
                Ok(found) => answer.with_topics(new_topics(found)),
                Err(code) => answer.with_error_code(code),
            }
        })
        .collect();
    OffsetFetchResponse::default().with_groups(groups)
}

fn new_topics(found: Positions) -> Vec<OffsetFetchResponseTopics> {
    found
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, committed)| {
                    let (offset, epoch, metadata) = unpack(committed.as_ref());
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(index)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(epoch)
                        .with_metadata(Some(str_bytes(metadata)))
                })
                .collect();
            OffsetFetchResponseTopics::default()
                .with_name(TopicName(str_bytes(&name)))
                .with_partitions(partitions)
        })
        .collect()
}
