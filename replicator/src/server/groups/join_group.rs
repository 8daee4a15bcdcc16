//! JoinGroup: parks the request until the group's next generation is formed.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::{millis, non_empty, str_bytes};
use crate::authz::Operation;
use crate::errors::group_error_code;
use crate::groups::{GroupError, JoinOutcome, JoinRequest};
use crate::server::{Reply, RequestContext};

pub async fn handle(
    ctx: &RequestContext<'_>,
    header: &RequestHeader,
    request: JoinGroupRequest,
) -> Result<Reply, EncodeError> {
    let version = header.api_version;
    let group_id = request.group_id.0.to_string();
    let join = join_request(header, request);
    if let Err(denied) = ctx.group(Operation::Read, &group_id) {
        let failed = JoinOutcome::failed(GroupError::InvalidGroupId, join.member_id);
        let response = response(version, failed).with_error_code(denied.code());
        return Reply::encode(header, &response);
    }
    let outcome = if group_id.is_empty() {
        JoinOutcome::failed(GroupError::InvalidGroupId, join.member_id)
    } else {
        ctx.groups.join(&group_id, join).await
    };
    let response = response(version, outcome);
    Reply::encode(header, &response)
}

fn join_request(header: &RequestHeader, request: JoinGroupRequest) -> JoinRequest {
    let session_timeout = millis(request.session_timeout_ms);
    // v0 has no rebalance timeout; Kafka then uses the session timeout.
    let rebalance_timeout = if header.api_version >= 1 && request.rebalance_timeout_ms > 0 {
        millis(request.rebalance_timeout_ms)
    } else {
        session_timeout
    };
    JoinRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: non_empty(&request.group_instance_id),
        client_id: header.client_id.clone().unwrap_or_default(),
        // The dispatch interface does not carry the peer address.
        client_host: String::new(),
        session_timeout,
        rebalance_timeout,
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: header.api_version >= 4,
    }
}

fn response(version: i16, outcome: JoinOutcome) -> JoinGroupResponse {
    let members = outcome
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(&m.member_id))
                .with_group_instance_id(m.group_instance_id.as_deref().map(str_bytes))
                .with_metadata(m.metadata)
        })
        .collect();
    // Before v7 the protocol name is a non-nullable string; an error carries "".
    let protocol_name = match (outcome.protocol_name, version >= 7) {
        (Some(name), _) => Some(str_bytes(&name)),
        (None, true) => None,
        (None, false) => Some(str_bytes("")),
    };
    let mut response = JoinGroupResponse::default()
        .with_error_code(outcome.error.map_or(0, group_error_code))
        .with_generation_id(outcome.generation_id)
        .with_protocol_name(protocol_name)
        .with_leader(str_bytes(&outcome.leader))
        .with_member_id(str_bytes(&outcome.member_id))
        .with_members(members);
    if version >= 7 {
        response = response.with_protocol_type(outcome.protocol_type.as_deref().map(str_bytes));
    }
    response
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::protocol::Encodable;

    use super::*;
    use crate::groups::JoinedMember;

    #[test]
    fn every_version_encodes_success_and_error() {
        let ok = JoinOutcome {
            error: None,
            generation_id: 3,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            leader: "m1".into(),
            member_id: "m1".into(),
            members: vec![JoinedMember {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                metadata: Bytes::from_static(b"meta"),
            }],
        };
        for version in 0..=9 {
            for outcome in [
                ok.clone(),
                JoinOutcome::failed(GroupError::MemberIdRequired, "m".into()),
            ] {
                let mut buf = Vec::new();
                response(version, outcome)
                    .encode(&mut buf, version)
                    .unwrap();
            }
        }
    }
}
