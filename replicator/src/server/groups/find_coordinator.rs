//! FindCoordinator: this node coordinates every group and every transactional id.

use kafka_protocol::messages::find_coordinator_response::Coordinator as WireCoordinator;
use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::str_bytes;
use crate::errors::Declined;
use crate::server::{Reply, ServerContext, NODE_ID};

const GROUP_KEY: i8 = 0;
const TRANSACTION_KEY: i8 = 1;

/// Where the coordinator for a key type is, as `(node, host, port)`, or why there is none.
fn locate(ctx: &ServerContext, key_type: i8) -> Result<(i32, &str, i32), (i16, &'static str)> {
    match key_type {
        GROUP_KEY | TRANSACTION_KEY => Ok((NODE_ID, &ctx.advertised_host, ctx.advertised_port)),
        _ => Err((
            Declined::UnknownCoordinatorKey.code(),
            "unknown coordinator key type",
        )),
    }
}

pub fn handle(
    ctx: &ServerContext,
    header: &RequestHeader,
    request: FindCoordinatorRequest,
) -> Result<Reply, EncodeError> {
    let version = header.api_version;
    let located = locate(ctx, request.key_type);
    let response = if version >= 4 {
        // v4+ (KIP-699) batches keys; every key gets the same answer.
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| batched(key.clone(), located))
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        single(version, located)
    };
    Reply::encode(header, &response)
}

fn batched(
    key: kafka_protocol::protocol::StrBytes,
    located: Result<(i32, &str, i32), (i16, &'static str)>,
) -> WireCoordinator {
    let coordinator = WireCoordinator::default().with_key(key);
    match located {
        Ok((node, host, port)) => coordinator
            .with_node_id(node.into())
            .with_host(str_bytes(host))
            .with_port(port),
        Err((code, message)) => coordinator
            .with_error_code(code)
            .with_error_message(Some(str_bytes(message)))
            .with_node_id((-1).into())
            .with_port(-1),
    }
}

fn single(
    version: i16,
    located: Result<(i32, &str, i32), (i16, &'static str)>,
) -> FindCoordinatorResponse {
    let response = FindCoordinatorResponse::default();
    match located {
        Ok((node, host, port)) => response
            .with_node_id(node.into())
            .with_host(str_bytes(host))
            .with_port(port),
        Err((code, message)) => {
            let response = response
                .with_error_code(code)
                .with_node_id((-1).into())
                .with_port(-1);
            // error_message exists from v1.
            if version >= 1 {
                response.with_error_message(Some(str_bytes(message)))
            } else {
                response
            }
        }
    }
}
