//! The transaction coordinator of the node's own topics (KIP-98): owned topics and
//! topics failed over from a shadow.
//!
//! Each transactional id maps to one persistent producer id and its current epoch.
//! InitProducerId bumps the epoch, which fences every older producer of the id (a
//! zombie); AddPartitionsToTxn and AddOffsetsToTxn enlist partitions and consumer
//! groups; TxnOffsetCommit keeps offsets pending; EndTxn writes one COMMIT or ABORT
//! marker to each enlisted partition and applies or drops the pending offsets. The
//! clients this serves use transaction version 1: markers carry the producer's current
//! epoch and EndTxn does not bump it.
//!
//! The state of every transactional id lives in `transactions.json` in the data
//! directory, replaced atomically before any answer depends on it. A transaction that
//! reached PrepareCommit or PrepareAbort is completed on start (its markers are written
//! again; a second marker for a closed transaction changes nothing); an ongoing one is
//! aborted once its `transaction.timeout.ms` has passed, while running or after a
//! restart, by a sweep every [`SWEEP_INTERVAL`].

mod coordinator;
mod error;
mod state;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use coordinator::TxnCoordinator;
pub use error::TxnError;
pub use state::{Transaction, TxnState};

/// How often ongoing transactions are checked against their timeout (Kafka's
/// `transaction.abort.timed.out.transaction.cleanup.interval.ms` is 10 s).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Kafka's default `transaction.max.timeout.ms`: a longer timeout is refused.
pub const MAX_TIMEOUT_MS: i32 = 900_000;

/// Milliseconds since the Unix epoch. Deadlines must hold across a restart, so they
/// count on the wall clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Aborts timed-out transactions every [`SWEEP_INTERVAL`] until `stopped` turns true.
pub async fn sweep_loop(coordinator: Arc<TxnCoordinator>, mut stopped: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tick.tick() => {}
        }
        let coordinator = coordinator.clone();
        let swept = tokio::task::spawn_blocking(move || coordinator.sweep(now_ms())).await;
        if let Err(error) = swept {
            tracing::error!(%error, "transaction timeout sweep failed");
        }
    }
}
