//! SyncGroup: the leader hands in assignments; every member waits for its own.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::{non_empty, str_bytes};
use crate::authz::Operation;
use crate::errors::group_error_code;
use crate::groups::{GroupError, SyncOutcome, SyncRequest};
use crate::server::{Reply, RequestContext};

pub async fn handle(
    ctx: &RequestContext<'_>,
    header: &RequestHeader,
    request: SyncGroupRequest,
) -> Result<Reply, EncodeError> {
    let version = header.api_version;
    let group_id = request.group_id.0.to_string();
    if let Err(denied) = ctx.group(Operation::Read, &group_id) {
        let failed = SyncOutcome::failed(GroupError::InvalidGroupId);
        let response = response(version, failed).with_error_code(denied.code());
        return Reply::encode(header, &response);
    }
    let sync = SyncRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: non_empty(&request.group_instance_id),
        generation_id: request.generation_id,
        protocol_type: non_empty(&request.protocol_type),
        protocol_name: non_empty(&request.protocol_name),
        assignments: request
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let outcome = if group_id.is_empty() {
        SyncOutcome::failed(GroupError::InvalidGroupId)
    } else {
        ctx.groups.sync(&group_id, sync).await
    };
    let response = response(version, outcome);
    Reply::encode(header, &response)
}

fn response(version: i16, outcome: SyncOutcome) -> SyncGroupResponse {
    let response = SyncGroupResponse::default()
        .with_error_code(outcome.error.map_or(0, group_error_code))
        .with_assignment(outcome.assignment);
    // v5 (KIP-559) echoes the protocol so the client can check what it runs.
    if version >= 5 {
        response
            .with_protocol_type(outcome.protocol_type.as_deref().map(str_bytes))
            .with_protocol_name(outcome.protocol_name.as_deref().map(str_bytes))
    } else {
        response
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::protocol::Encodable;

    use super::*;

    #[test]
    fn every_version_encodes() {
        let ok = SyncOutcome {
            error: None,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignment: bytes::Bytes::from_static(b"a"),
        };
        for version in 0..=5 {
            for outcome in [
                ok.clone(),
                SyncOutcome::failed(GroupError::RebalanceInProgress),
            ] {
                response(version, outcome)
                    .encode(&mut Vec::new(), version)
                    .unwrap();
            }
        }
    }
}
