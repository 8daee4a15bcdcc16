//! Retention of mirror partitions, by the limits synced from each source topic.
//!
//! A mirror enforces its source's `retention.ms` and `retention.bytes` itself rather
//! than waiting for the source's log start to move, so it never keeps more history than
//! the source promises to keep, even while the source is unreachable.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::mirror::Store;

/// Retention limits from synced topic configs; `None` keeps data forever.
pub fn limits(configs: &BTreeMap<String, String>) -> (Option<i64>, Option<u64>) {
    // A compact-only topic is never trimmed by age or size (Kafka's cleanup.policy).
    let deletes = configs
        .get("cleanup.policy")
        .is_none_or(|p| p.split(',').any(|x| x.trim() == "delete"));
    if !deletes {
        return (None, None);
    }
    let ms = configs
        .get("retention.ms")
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v >= 0);
    let bytes = configs
        .get("retention.bytes")
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(|v| u64::try_from(v).ok());
    (ms, bytes)
}

/// Applies retention to every partition once.
pub fn apply_all(store: &Store, now_ms: i64) {
    for topic in store.topics() {
        let (ms, bytes) = limits(&topic.meta().configs);
        for partition in topic.partitions() {
            let mut log = partition.log();
            log.set_retention(ms, bytes);
            match log.apply_retention(now_ms) {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    topic = %topic.name,
                    partition = partition.partition,
                    segments = n,
                    log_start = log.log_start_offset(),
                    "retention deleted old segments"
                ),
                Err(e) => {
                    tracing::warn!(topic = %topic.name, partition = partition.partition, error = %e, "retention failed")
                }
            }
        }
    }
}

/// Runs [`apply_all`] every `interval` until `stopped` turns true.
pub async fn run(store: Arc<Store>, interval: Duration, stopped: watch::Receiver<bool>) {
    every(interval, stopped, move |now_ms| apply_all(&store, now_ms)).await;
}

/// Runs `work` on the blocking pool every `interval`, with the wall clock in Unix
/// milliseconds, until `stopped` turns true: the shape of the node's log maintenance
/// (retention, compaction), which walks every partition and must not hold up the runtime.
pub async fn every<F>(interval: Duration, mut stopped: watch::Receiver<bool>, work: F)
where
    F: Fn(i64) + Send + Sync + 'static,
{
    let work = Arc::new(work);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tick.tick() => {}
        }
        let work = work.clone();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let _ = tokio::task::spawn_blocking(move || work(now)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn limits_follow_kafka_semantics() {
        assert_eq!(limits(&configs(&[])), (None, None));
        assert_eq!(
            limits(&configs(&[
                ("retention.ms", "1000"),
                ("retention.bytes", "5000")
            ])),
            (Some(1000), Some(5000))
        );
        assert_eq!(
            limits(&configs(&[
                ("retention.ms", "-1"),
                ("retention.bytes", "-1")
            ])),
            (None, None),
            "-1 means unlimited"
        );
        assert_eq!(
            limits(&configs(&[
                ("cleanup.policy", "compact"),
                ("retention.ms", "1000")
            ])),
            (None, None),
            "compact-only topics are not trimmed"
        );
        assert_eq!(
            limits(&configs(&[
                ("cleanup.policy", "compact,delete"),
                ("retention.ms", "1000")
            ])),
            (Some(1000), None)
        );
    }
}
