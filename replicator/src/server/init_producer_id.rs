//! InitProducerId: producer ids for idempotent producers (KIP-98) and, with a
//! transactional id, for transactional ones (see `txn`).
//!
//! Without a transactional id Kafka "blindly" hands out a fresh producer id at epoch 0,
//! whatever id and epoch the request carries (a KIP-360 bump from an idempotent producer
//! gets a new id too); so does this node.
//!
//! With a transactional id the coordinator answers: the id's producer id at its next
//! epoch, which fences the older producers of the id. An empty transactional id is
//! INVALID_REQUEST, as Kafka answers it.

use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse};
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::{Reply, RequestContext, ServerContext};
use crate::authz::Operation;
use crate::errors::{producer_id_error_code, task_failed_code, txn_error_code, Denied};

pub async fn handle(
    ctx: &RequestContext<'_>,
    header: &RequestHeader,
    request: InitProducerIdRequest,
) -> Result<Reply, EncodeError> {
    // KIP-679: a principal that may write some topic may have a producer id; without
    // such a right Kafka answers CLUSTER_AUTHORIZATION_FAILED, or for a transactional
    // id TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
    if !ctx.grants.allows_any_topic(Operation::Write) {
        let denied = match request.transactional_id {
            Some(_) => Denied::TransactionalId,
            None => Denied::Cluster,
        };
        return Reply::encode(header, &refused(denied.code()));
    }
    let response = match request.transactional_id.as_ref().map(|t| t.to_string()) {
        Some(transactional_id) => {
            transactional(ctx, header.api_version, transactional_id, &request).await
        }
        None => allocate(ctx).await,
    };
    Reply::encode(header, &response)
}

async fn transactional(
    ctx: &ServerContext,
    version: i16,
    transactional_id: String,
    request: &InitProducerIdRequest,
) -> InitProducerIdResponse {
    let txns = ctx.txns.clone();
    let timeout_ms = request.transaction_timeout_ms;
    // KIP-360 (v3+): a producer that already has an id names it to keep it.
    let current =
        (request.producer_id.0 >= 0).then_some((request.producer_id.0, request.producer_epoch));
    let id = transactional_id.clone();
    let answer =
        tokio::task::spawn_blocking(move || txns.init_producer_id(&id, timeout_ms, current)).await;
    match answer {
        Ok(Ok((producer_id, epoch))) => InitProducerIdResponse::default()
            .with_producer_id(producer_id.into())
            .with_producer_epoch(epoch),
        Ok(Err(e)) => {
            tracing::info!(transactional_id, error = %e, "InitProducerId refused");
            refused(txn_error_code(&e, ApiKey::InitProducerId, version))
        }
        Err(e) => {
            tracing::error!(transactional_id, error = %e, "InitProducerId task failed");
            refused(task_failed_code(&e))
        }
    }
}

async fn allocate(ctx: &ServerContext) -> InitProducerIdResponse {
    let store = ctx.store.clone();
    // Reserving a new block of ids writes a file.
    match tokio::task::spawn_blocking(move || store.allocate_producer_id()).await {
        Ok(Ok(id)) => InitProducerIdResponse::default()
            .with_producer_id(id.into())
            .with_producer_epoch(0),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            refused(producer_id_error_code(&e))
        }
        Err(e) => {
            tracing::error!(error = %e, "producer id allocation failed");
            refused(task_failed_code(&e))
        }
    }
}

fn refused(code: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(code)
        .with_producer_id((-1).into())
        .with_producer_epoch(-1)
}
