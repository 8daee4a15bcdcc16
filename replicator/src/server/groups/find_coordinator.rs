//! FindCoordinator: a node on its own coordinates every group and every transactional
//! id; a cluster node names the node the cluster places the group on (`cluster::groups`).

use kafka_protocol::messages::find_coordinator_response::Coordinator as WireCoordinator;
use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::str_bytes;
use crate::authz::Operation;
use crate::cluster::GroupCoordinator;
use crate::errors::{Declined, Denied};
use crate::server::{Reply, RequestContext};

const GROUP_KEY: i8 = 0;
const TRANSACTION_KEY: i8 = 1;

/// The coordinator as `(node, host, port)`, or the error code and message instead.
type Located = Result<(i32, String, i32), (i16, String)>;

/// Where the coordinator of `key` is, on the listener asked, or why it is not told.
///
/// As in Kafka, the coordinator is only named to a principal that may describe the
/// group or transactional id. Rules do not name transactional ids; one is described by
/// whoever may write some topic, as InitProducerId grants them (KIP-679).
fn locate(ctx: &RequestContext, key_type: i8, key: &str) -> Located {
    let allowed = match key_type {
        GROUP_KEY => ctx.group(Operation::Describe, key),
        TRANSACTION_KEY if ctx.grants.allows_any_topic(Operation::Write) => Ok(()),
        TRANSACTION_KEY => Err(Denied::TransactionalId),
        _ => {
            let code = Declined::UnknownCoordinatorKey.code();
            return Err((code, "unknown coordinator key type".to_string()));
        }
    };
    if let Err(denied) = allowed {
        return Err((denied.code(), denied.message(key)));
    }
    let placed = match (&ctx.cluster, key_type) {
        (Some(cluster), GROUP_KEY) => cluster.group_coordinator(key),
        _ => GroupCoordinator::Here,
    };
    match placed {
        GroupCoordinator::Here => {
            let listener = ctx.listener;
            let host = listener.advertised_host.clone();
            Ok((ctx.node_id, host, listener.advertised_port))
        }
        GroupCoordinator::Elsewhere {
            node_id,
            host,
            port,
        } => Ok((node_id, host, port)),
        GroupCoordinator::Unknown => Err((
            ResponseError::CoordinatorNotAvailable.code(),
            "the cluster has not placed its nodes yet".to_string(),
        )),
    }
}

pub fn handle(
    ctx: &RequestContext,
    header: &RequestHeader,
    request: FindCoordinatorRequest,
) -> Result<Reply, EncodeError> {
    let version = header.api_version;
    let response = if version >= 4 {
        // v4+ (KIP-699) batches keys; each key is answered on its own.
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| batched(key.clone(), locate(ctx, request.key_type, key)))
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        single(version, locate(ctx, request.key_type, &request.key))
    };
    Reply::encode(header, &response)
}

fn batched(key: StrBytes, located: Located) -> WireCoordinator {
    let coordinator = WireCoordinator::default().with_key(key);
    match located {
        Ok((node, host, port)) => coordinator
            .with_node_id(node.into())
            .with_host(str_bytes(&host))
            .with_port(port),
        Err((code, message)) => coordinator
            .with_error_code(code)
            .with_error_message(Some(str_bytes(&message)))
            .with_node_id((-1).into())
            .with_port(-1),
    }
}

fn single(version: i16, located: Located) -> FindCoordinatorResponse {
    let response = FindCoordinatorResponse::default();
    match located {
        Ok((node, host, port)) => response
            .with_node_id(node.into())
            .with_host(str_bytes(&host))
            .with_port(port),
        Err((code, message)) => {
            let response = response
                .with_error_code(code)
                .with_node_id((-1).into())
                .with_port(-1);
            // error_message exists from v1.
            if version >= 1 {
                response.with_error_message(Some(str_bytes(&message)))
            } else {
                response
            }
        }
    }
}
