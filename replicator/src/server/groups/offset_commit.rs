//! OffsetCommit: stores consumer positions, durably, for partitions this node mirrors.

use kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::non_empty;
use crate::authz::Operation;
use crate::errors::{group_code, group_error_code};
use crate::groups::{Committed, GroupError, TopicPartition, MAX_METADATA_BYTES};
use crate::server::{Reply, RequestContext};

/// Per topic, per partition: the entry to store, or the code it is refused with before
/// the group is asked.
type Checked = Vec<(String, Vec<(i32, Result<Committed, i16>)>)>;

pub async fn handle(
    ctx: &RequestContext<'_>,
    header: &RequestHeader,
    request: OffsetCommitRequest,
) -> Result<Reply, EncodeError> {
    let group_id = request.group_id.0.to_string();
    // Kafka asks for read on the group and on each topic committed to.
    let group_denied = ctx.group(Operation::Read, &group_id).err();
    let checked: Checked = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let checked = match group_denied {
                        Some(denied) => Err(denied.code()),
                        None => check_partition(ctx, &name, p),
                    };
                    (p.partition_index, checked)
                })
                .collect();
            (name, partitions)
        })
        .collect();
    let entries: Vec<(TopicPartition, Committed)> = checked
        .iter()
        .flat_map(|(topic, partitions)| {
            partitions.iter().filter_map(|(p, c)| {
                let committed = c.as_ref().ok()?.clone();
                Some((TopicPartition::new(topic.clone(), *p), committed))
            })
        })
        .collect();
    let outcome = if group_denied.is_some() {
        Ok(())
    } else if group_id.is_empty() {
        Err(GroupError::InvalidGroupId)
    } else {
        let instance = non_empty(&request.group_instance_id);
        ctx.groups
            .commit(
                &group_id,
                request.member_id.as_str(),
                instance.as_deref(),
                request.generation_id_or_member_epoch,
                entries,
            )
            .await
    };
    let response = response(checked, outcome);
    Reply::encode(header, &response)
}

fn check_partition(
    ctx: &RequestContext,
    topic: &str,
    p: &OffsetCommitRequestPartition,
) -> Result<Committed, i16> {
    ctx.topic(Operation::Read, topic).map_err(|d| d.code())?;
    let mirrored = ctx
        .store
        .topic(topic)
        .and_then(|t| t.partition(p.partition_index))
        .is_some();
    if !mirrored {
        return Err(group_error_code(GroupError::UnknownTopicOrPartition));
    }
    let metadata = p.committed_metadata.as_ref().map(|m| m.to_string());
    if metadata
        .as_ref()
        .is_some_and(|m| m.len() > MAX_METADATA_BYTES)
    {
        return Err(group_error_code(GroupError::OffsetMetadataTooLarge));
    }
    Ok(Committed {
        offset: p.committed_offset,
        // Absent before v6, where the struct's default is already -1.
        leader_epoch: p.committed_leader_epoch,
        metadata,
    })
}

/// Each partition gets its own refusal, else the outcome of the group's commit.
fn response(checked: Checked, outcome: Result<(), GroupError>) -> OffsetCommitResponse {
    let topics = checked
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, checked)| {
                    let code = match checked {
                        Ok(_) => group_code(outcome),
                        Err(code) => code,
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(kafka_protocol::messages::TopicName(super::str_bytes(&name)))
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
