//! Heartbeat: keeps a member's session alive and tells it when to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::non_empty;
use crate::authz::Operation;
use crate::errors::group_code;
use crate::groups::GroupError;
use crate::server::{Reply, RequestContext};

pub fn handle(
    ctx: &RequestContext,
    header: &RequestHeader,
    request: HeartbeatRequest,
) -> Result<Reply, EncodeError> {
    let group_id = request.group_id.0.as_str();
    if let Err(denied) = ctx.group(Operation::Read, group_id) {
        let response = HeartbeatResponse::default().with_error_code(denied.code());
        return Reply::encode(header, &response);
    }
    let result = if group_id.is_empty() {
        Err(GroupError::InvalidGroupId)
    } else {
        let instance = non_empty(&request.group_instance_id);
        ctx.groups.heartbeat(
            group_id,
            request.member_id.as_str(),
            instance.as_deref(),
            request.generation_id,
        )
    };
    let response = HeartbeatResponse::default().with_error_code(group_code(result));
    Reply::encode(header, &response)
}
