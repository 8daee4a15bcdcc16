//! EndTxn: commits or aborts the producer's transaction. The answer comes once every
//! marker is written and the transaction's offsets are applied (or dropped), so the
//! producer's next transaction never overlaps this one.

use kafka_protocol::messages::{ApiKey, EndTxnRequest, EndTxnResponse};
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::{Reply, ServerContext};
use crate::errors::{task_failed_code, txn_error_code};

pub async fn handle(
    ctx: &ServerContext,
    header: &RequestHeader,
    request: EndTxnRequest,
) -> Result<Reply, EncodeError> {
    let id = request.transactional_id.0.to_string();
    let txns = ctx.txns.clone();
    let (producer_id, epoch, commit) = (
        request.producer_id.0,
        request.producer_epoch,
        request.committed,
    );
    let txn_id = id.clone();
    let ended =
        tokio::task::spawn_blocking(move || txns.end(&txn_id, producer_id, epoch, commit)).await;
    let code = match ended {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            tracing::info!(transactional_id = id, commit, error = %e, "EndTxn refused");
            txn_error_code(&e, ApiKey::EndTxn, header.api_version)
        }
        Err(e) => {
            tracing::error!(error = %e, "EndTxn task failed");
            task_failed_code(&e)
        }
    };
    Reply::encode(header, &EndTxnResponse::default().with_error_code(code))
}
