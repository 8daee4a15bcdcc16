//! InitProducerId: producer ids for idempotent producers (KIP-98). Transactions are not
//! supported.
//!
//! Without a transactional id Kafka "blindly" hands out a fresh producer id at epoch 0,
//! whatever id and epoch the request carries (a KIP-360 bump from an idempotent producer
//! gets a new id too); so does this node.
//!
//! With a transactional id the answer is TRANSACTIONAL_ID_AUTHORIZATION_FAILED. Kafka has
//! no "transactions unsupported" code, and the choice matters: COORDINATOR_NOT_AVAILABLE
//! or NOT_COORDINATOR are retriable, so clients would retry forever; this code is fatal in
//! the Java client, librdkafka and kafkajs, so `initTransactions()` fails at once, and
//! the message logged here names the reason. An empty transactional id is INVALID_REQUEST,
//! as Kafka answers it.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::{Reply, ServerContext};
use crate::errors::{producer_id_error_code, task_failed_code, Declined};

pub async fn handle(
    ctx: &ServerContext,
    header: &RequestHeader,
    request: InitProducerIdRequest,
) -> Result<Reply, EncodeError> {
    let response = match request.transactional_id.as_ref().map(|t| t.as_str()) {
        Some("") => refused(Declined::EmptyTransactionalId.code()),
        Some(transactional_id) => {
            tracing::info!(
                transactional_id,
                "InitProducerId refused: shadowlink does not support transactions"
            );
            refused(Declined::Transactions.code())
        }
        None => allocate(ctx).await,
    };
    Reply::encode(header, &response)
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
