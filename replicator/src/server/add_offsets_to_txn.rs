//! AddOffsetsToTxn: a consumer group's offsets will be committed by the producer's
//! transaction (TxnOffsetCommit follows). This node coordinates every group, so the
//! group's offsets "partition" is always here.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, ApiKey};
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::{Reply, RequestContext};
use crate::authz::Operation;
use crate::errors::{group_error_code, task_failed_code, txn_error_code};
use crate::groups::GroupError;

pub async fn handle(
    ctx: &RequestContext<'_>,
    header: &RequestHeader,
    request: AddOffsetsToTxnRequest,
) -> Result<Reply, EncodeError> {
    let id = request.transactional_id.0.to_string();
    let group = request.group_id.0.to_string();
    let code = if let Err(denied) = ctx.group(Operation::Read, &group) {
        denied.code()
    } else if group.is_empty() {
        group_error_code(GroupError::InvalidGroupId)
    } else {
        let txns = ctx.txns.clone();
        let (producer_id, epoch) = (request.producer_id.0, request.producer_epoch);
        let txn_id = id.clone();
        let added = tokio::task::spawn_blocking(move || {
            txns.add_offsets(&txn_id, producer_id, epoch, &group)
        })
        .await;
        match added {
            Ok(Ok(())) => 0,
            Ok(Err(e)) => {
                tracing::info!(transactional_id = id, error = %e, "AddOffsetsToTxn refused");
                txn_error_code(&e, ApiKey::AddOffsetsToTxn, header.api_version)
            }
            Err(e) => {
                tracing::error!(error = %e, "AddOffsetsToTxn task failed");
                task_failed_code(&e)
            }
        }
    };
    Reply::encode(
        header,
        &AddOffsetsToTxnResponse::default().with_error_code(code),
    )
}
