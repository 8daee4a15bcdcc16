//! ListGroups: every group with members or committed offsets.

use kafka_protocol::messages::list_groups_response::ListedGroup as WireListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::str_bytes;
use crate::authz::Operation;
use crate::groups::ListedGroup;
use crate::server::{Reply, RequestContext};

/// Every group here speaks the classic protocol (KIP-848 "consumer" groups are not served).
const GROUP_TYPE: &str = "classic";

pub fn handle(
    ctx: &RequestContext,
    header: &RequestHeader,
    request: ListGroupsRequest,
) -> Result<Reply, EncodeError> {
    let version = header.api_version;
    let groups = ctx
        .groups
        .overview()
        .into_iter()
        .filter(|g| wanted(&request, g))
        // As in Kafka, only the groups the principal may describe are listed.
        .filter(|g| ctx.group(Operation::Describe, &g.group_id).is_ok())
        .map(|g| listed(version, &g))
        .collect();
    let response = ListGroupsResponse::default().with_groups(groups);
    Reply::encode(header, &response)
}

/// v4 filters by state and v5 by type, both case-insensitively as Kafka does; an empty
/// filter matches everything.
fn wanted(request: &ListGroupsRequest, group: &ListedGroup) -> bool {
    let states = &request.states_filter;
    let types = &request.types_filter;
    let state_ok = states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(group.state));
    let type_ok = types.is_empty() || types.iter().any(|t| t.eq_ignore_ascii_case(GROUP_TYPE));
    state_ok && type_ok
}

fn listed(version: i16, group: &ListedGroup) -> WireListedGroup {
    let mut listed = WireListedGroup::default()
        .with_group_id(GroupId(str_bytes(&group.group_id)))
        .with_protocol_type(str_bytes(&group.protocol_type));
    if version >= 4 {
        listed = listed.with_group_state(str_bytes(group.state));
    }
    if version >= 5 {
        listed = listed.with_group_type(str_bytes(GROUP_TYPE));
    }
    listed
}

#[cfg(test)]
mod tests {
    use kafka_protocol::protocol::Encodable;

    use super::*;

    #[test]
    fn every_version_encodes() {
        let group = ListedGroup {
            group_id: "g".into(),
            protocol_type: "consumer".into(),
            state: "Stable",
        };
        for version in 0..=5 {
            let response = ListGroupsResponse::default().with_groups(vec![listed(version, &group)]);
            response.encode(&mut Vec::new(), version).unwrap();
        }
    }
}
