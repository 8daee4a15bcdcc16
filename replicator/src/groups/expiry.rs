//! The periodic expiry of idle groups (Kafka's `offsets.retention.check.interval.ms`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::Coordinator;

/// Every `interval`, expires the groups [`Coordinator::expire`] finds, until `stopped`.
pub async fn run(groups: Arc<Coordinator>, interval: Duration, mut stopped: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tick.tick() => {}
        }
        let coordinator = groups.clone();
        let expired =
            tokio::task::spawn_blocking(move || coordinator.expire(SystemTime::now())).await;
        match expired {
            Ok(Ok(expired)) => {
                for group in expired {
                    tracing::info!(
                        %group,
                        "group expired: no members and no offset committed within groups.offsets_retention"
                    );
                }
            }
            Ok(Err(error)) => tracing::warn!(%error, "cannot expire idle groups"),
            Err(error) => tracing::warn!(%error, "group expiry task failed"),
        }
    }
}
