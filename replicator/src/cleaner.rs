//! Compaction of the node's own compacted topics (owned, or failed over to this node),
//! by the rules of `shadowlink_storage`'s cleaner and each topic's configs.
//!
//! One task (Kafka's `log.cleaner.threads = 1`) visits every owned partition whose
//! `cleanup.policy` contains `compact` once per `storage.cleaner_interval`. It holds a
//! partition's log only to plan a pass (a zero-copy snapshot) and to swap the result
//! in; the reading and writing in between run on a blocking thread without the log, at
//! most `storage.cleaner_bytes_per_second`, so produce and fetch are never queued
//! behind a pass. Shadows are never cleaned here: a mirror's data is its source's.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shadowlink_storage::{CleanStats, CompactionConfig, StorageError, Throttle};
use tokio::sync::watch;

use crate::mirror::{MirrorPartition, Store};

/// Whether a topic's `cleanup.policy` asks for compaction.
pub fn is_compacted(configs: &BTreeMap<String, String>) -> bool {
    configs
        .get("cleanup.policy")
        .is_some_and(|p| p.split(',').any(|x| x.trim() == "compact"))
}

/// The topic configs that shape compaction, Kafka's defaults for those unset or invalid.
pub fn compaction_config(configs: &BTreeMap<String, String>) -> CompactionConfig {
    let defaults = CompactionConfig::default();
    let ms = |name: &str, default: i64| {
        configs
            .get(name)
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|&v| v >= 0)
            .unwrap_or(default)
    };
    let ratio = configs
        .get("min.cleanable.dirty.ratio")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|r| (0.0..=1.0).contains(r))
        .unwrap_or(defaults.min_cleanable_dirty_ratio);
    CompactionConfig {
        min_cleanable_dirty_ratio: ratio,
        min_compaction_lag_ms: ms("min.compaction.lag.ms", defaults.min_compaction_lag_ms),
        max_compaction_lag_ms: ms("max.compaction.lag.ms", defaults.max_compaction_lag_ms),
        delete_retention_ms: ms("delete.retention.ms", defaults.delete_retention_ms),
        segment_ms: ms("segment.ms", defaults.segment_ms),
        ..defaults
    }
}

/// A compacted partition's state, as `/v1/status` reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompactionReport {
    pub topic: String,
    pub partition: i32,
    /// Dirty bytes over cleanable bytes when last checked (Kafka's cleaner metric).
    pub dirty_ratio: f64,
    pub passes: u64,
    pub bytes_reclaimed: u64,
}

/// Latest state per compacted partition, read by the status report.
static REPORTS: LazyLock<Mutex<BTreeMap<(String, i32), CompactionReport>>> =
    LazyLock::new(Mutex::default);

/// Every compacted partition's state, by topic and partition.
pub fn reports() -> Vec<CompactionReport> {
    let reports = REPORTS.lock().unwrap_or_else(|p| p.into_inner());
    reports.values().cloned().collect()
}

fn record(partition: &MirrorPartition, dirty_ratio: f64, pass: Option<&CleanStats>) {
    let mut reports = REPORTS.lock().unwrap_or_else(|p| p.into_inner());
    let key = (partition.topic.clone(), partition.partition);
    let report = reports.entry(key).or_insert_with(|| CompactionReport {
        topic: partition.topic.clone(),
        partition: partition.partition,
        ..CompactionReport::default()
    });
    report.dirty_ratio = dirty_ratio;
    if let Some(stats) = pass {
        report.passes += 1;
        report.bytes_reclaimed += stats.bytes_reclaimed();
    }
}

/// Cleans one partition if a pass is due: plan with the log held, run without it,
/// commit with it held again.
pub fn clean_partition(
    partition: &MirrorPartition,
    config: &CompactionConfig,
    throttle: &mut Throttle,
    now_ms: i64,
) -> Result<Option<CleanStats>, StorageError> {
    let roll_after = Duration::from_millis(
        config
            .segment_ms
            .min(config.max_compaction_lag_ms)
            .try_into()
            .unwrap_or(u64::MAX),
    );
    let (state, job) = {
        let mut log = partition.log();
        log.roll_if_older_than(roll_after)?;
        log.compaction_plan(config, now_ms)?
    };
    let Some(job) = job else {
        record(partition, state.dirty_ratio, None);
        return Ok(None);
    };
    let cleaned = job.run(throttle)?;
    let stats = partition.log().commit_clean(cleaned)?;
    let after = partition.log().compaction_plan(config, now_ms)?.0;
    record(partition, after.dirty_ratio, Some(&stats));
    crate::metrics::cleaner_pass(&partition.topic, stats.bytes_reclaimed());
    tracing::info!(
        topic = %partition.topic,
        partition = partition.partition,
        bytes_before = stats.bytes_before,
        bytes_after = stats.bytes_after,
        cleaned_to = stats.cleaned_to,
        "compacted"
    );
    Ok(Some(stats))
}

/// One visit of every owned compacted partition.
pub fn clean_all(store: &Store, bytes_per_second: Option<u64>, now_ms: i64) {
    let mut throttle = Throttle::new(bytes_per_second);
    for topic in store.topics() {
        let configs = topic.meta().configs;
        if !is_compacted(&configs) {
            continue;
        }
        let config = compaction_config(&configs);
        for partition in topic.partitions().iter().filter(|p| p.is_owned()) {
            if let Err(e) = clean_partition(partition, &config, &mut throttle, now_ms) {
                // A pass that raced retention is simply retried on the next visit.
                tracing::warn!(topic = %topic.name, partition = partition.partition, error = %e, "compaction failed");
            }
        }
    }
}

/// Runs [`clean_all`] every `interval` until `stopped` turns true.
pub async fn run(
    store: Arc<Store>,
    interval: Duration,
    bytes_per_second: Option<u64>,
    stopped: watch::Receiver<bool>,
) {
    crate::retention::every(interval, stopped, move |now_ms| {
        clean_all(&store, bytes_per_second, now_ms)
    })
    .await;
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
    fn only_a_policy_naming_compact_compacts() {
        assert!(!is_compacted(&configs(&[])));
        assert!(!is_compacted(&configs(&[("cleanup.policy", "delete")])));
        assert!(is_compacted(&configs(&[("cleanup.policy", "compact")])));
        assert!(is_compacted(&configs(&[(
            "cleanup.policy",
            "delete, compact"
        )])));
    }

    #[test]
    fn topic_configs_override_kafkas_defaults_and_invalid_ones_are_ignored() {
        let config = compaction_config(&configs(&[
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "500"),
            ("min.compaction.lag.ms", "-3"),
            ("segment.ms", "1000"),
        ]));
        assert_eq!(config.min_cleanable_dirty_ratio, 0.01);
        assert_eq!(config.delete_retention_ms, 500);
        assert_eq!(config.min_compaction_lag_ms, 0);
        assert_eq!(config.segment_ms, 1000);
        assert_eq!(config.max_compaction_lag_ms, i64::MAX);
        let bad = compaction_config(&configs(&[("min.cleanable.dirty.ratio", "2")]));
        assert_eq!(bad.min_cleanable_dirty_ratio, 0.5);
    }
}
