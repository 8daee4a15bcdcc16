//! LeaveGroup: members leaving on purpose, so the rest rebalance without waiting for a
//! session to expire.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::{non_empty, str_bytes};
use crate::authz::Operation;
use crate::errors::group_code;
use crate::groups::GroupError;
use crate::server::{Reply, RequestContext};

pub fn handle(
    ctx: &RequestContext,
    header: &RequestHeader,
    request: LeaveGroupRequest,
) -> Result<Reply, EncodeError> {
    let version = header.api_version;
    let group_id = request.group_id.0.as_str();
    // v3+ (KIP-345) names several members, each possibly by instance id only.
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| (m.member_id.to_string(), non_empty(&m.group_instance_id)))
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    if let Err(denied) = ctx.group(Operation::Read, group_id) {
        let response = LeaveGroupResponse::default().with_error_code(denied.code());
        return Reply::encode(header, &response);
    }
    let results = if group_id.is_empty() {
        leaving
            .iter()
            .map(|_| Err(GroupError::InvalidGroupId))
            .collect()
    } else {
        ctx.groups.leave(group_id, &leaving)
    };
    let response = response(version, &leaving, &results);
    Reply::encode(header, &response)
}

fn response(
    version: i16,
    leaving: &[(String, Option<String>)],
    results: &[Result<(), GroupError>],
) -> LeaveGroupResponse {
    if version < 3 {
        let code = results.first().copied().map_or(0, group_code);
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let members = leaving
        .iter()
        .zip(results)
        .map(|((member_id, instance), result)| {
            MemberResponse::default()
                .with_member_id(str_bytes(member_id))
                .with_group_instance_id(instance.as_deref().map(str_bytes))
                .with_error_code(group_code(*result))
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::protocol::Encodable;

    use super::*;

    #[test]
    fn every_version_encodes() {
        let leaving = vec![("m".to_string(), Some("i".to_string()))];
        for version in 0..=5 {
            for result in [Ok(()), Err(GroupError::UnknownMemberId)] {
                response(version, &leaving, &[result])
                    .encode(&mut Vec::new(), version)
                    .unwrap();
            }
        }
    }
}
