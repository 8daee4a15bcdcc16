//! Why a transaction request is refused. Mapped to Kafka codes in `errors.rs`.

use shadowlink_storage::StorageError;

use super::TxnState;
use crate::mirror::owned::ProduceError;
use crate::mirror::producer_ids::ProducerIdError;

#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    #[error("the transactional id is empty")]
    EmptyTransactionalId,
    #[error("transaction.timeout.ms {0} is not in 1..=900000")]
    InvalidTimeout(i32),
    #[error("transactional id {transactional_id} does not belong to producer id {producer_id}")]
    ProducerIdMapping {
        transactional_id: String,
        producer_id: i64,
    },
    #[error(
        "producer {producer_id} with epoch {epoch} is fenced: transactional id \
         {transactional_id} is at epoch {current}"
    )]
    Fenced {
        transactional_id: String,
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("transactional id {0} is completing a transaction; retry")]
    Concurrent(String),
    #[error("transactional id {transactional_id} is {state:?}, which does not allow {wanted}")]
    InvalidState {
        transactional_id: String,
        state: TxnState,
        wanted: &'static str,
    },
    #[error("{topic}-{partition} is not in producer {producer_id}'s ongoing transaction")]
    NotInTransaction {
        producer_id: i64,
        topic: String,
        partition: i32,
    },
    #[error("the transaction state cannot be persisted: {0}")]
    Storage(#[from] StorageError),
    #[error(transparent)]
    ProducerIds(#[from] ProducerIdError),
    #[error("a transaction marker cannot be written: {0}")]
    Marker(#[from] ProduceError),
}
