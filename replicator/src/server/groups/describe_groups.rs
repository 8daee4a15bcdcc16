//! DescribeGroups: state, protocol and members of each named group.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::str_bytes;
use crate::authz::Operation;
use crate::groups::GroupSummary;
use crate::server::{Reply, RequestContext};

/// What Kafka's classic coordinator reports for a group it does not know.
const DEAD: &str = "Dead";

pub fn handle(
    ctx: &RequestContext,
    header: &RequestHeader,
    request: DescribeGroupsRequest,
) -> Result<Reply, EncodeError> {
    let version = header.api_version;
    let groups = request
        .groups
        .iter()
        .map(|id| match ctx.group(Operation::Describe, id.0.as_str()) {
            Ok(()) => described(version, id.clone(), ctx.groups.describe(id.0.as_str())),
            Err(denied) => DescribedGroup::default()
                .with_group_id(id.clone())
                .with_error_code(denied.code()),
        })
        .collect();
    let response = DescribeGroupsResponse::default().with_groups(groups);
    Reply::encode(header, &response)
}

fn described(version: i16, group_id: GroupId, summary: Option<GroupSummary>) -> DescribedGroup {
    let group = DescribedGroup::default().with_group_id(group_id);
    let Some(summary) = summary else {
        return group.with_group_state(str_bytes(DEAD));
    };
    let members = summary
        .members
        .into_iter()
        .map(|m| {
            let member = DescribedGroupMember::default()
                .with_member_id(str_bytes(&m.member_id))
                .with_client_id(str_bytes(&m.client_id))
                .with_client_host(str_bytes(&m.client_host))
                .with_member_metadata(m.metadata)
                .with_member_assignment(m.assignment);
            // group_instance_id exists from v4 (KIP-345).
            if version >= 4 {
                member.with_group_instance_id(m.group_instance_id.as_deref().map(str_bytes))
            } else {
                member
            }
        })
        .collect();
    group
        .with_group_state(str_bytes(summary.phase.name()))
        .with_protocol_type(str_bytes(&summary.protocol_type))
        .with_protocol_data(str_bytes(&summary.protocol_name))
        .with_members(members)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::protocol::Encodable;

    use super::*;
    use crate::groups::{MemberSummary, Phase};

    #[test]
    fn every_version_encodes() {
        let summary = GroupSummary {
            phase: Phase::Stable,
            protocol_type: "consumer".into(),
            protocol_name: "range".into(),
            members: vec![MemberSummary {
                member_id: "m".into(),
                group_instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: String::new(),
                metadata: Bytes::from_static(b"x"),
                assignment: Bytes::from_static(b"y"),
            }],
        };
        for version in 0..=6 {
            for s in [Some(summary.clone()), None] {
                let group = described(version, GroupId(str_bytes("g")), s);
                let response = DescribeGroupsResponse::default().with_groups(vec![group]);
                response.encode(&mut Vec::new(), version).unwrap();
            }
        }
    }
}
