//! Retention of mirror partitions, by the limits synced from each source topic.
//!
//! A mirror enforces its source's `retention.ms` and `retention.bytes` itself rather
//! than waiting for the source's log start to move, so it never keeps more history than
//! the source promises to keep, even while the source is unreachable.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shadowlink_storage::PartitionLog;
use tokio::sync::watch;

use crate::mirror::{MirrorPartition, MirrorTopic, Store};

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

/// A topic's limits as [`limits`] reads them.
type Limits = (Option<i64>, Option<u64>);

/// The node's retention passes.
///
/// A pass takes a log mutably only when it has a segment to delete: taking it counts as
/// a change in [`Store::changes`], and a change sends every idle fetch session back to
/// read all its partitions. Only a roll seals a segment, and only a sealed segment is
/// ever deleted, so a log with one segment has nothing to delete until it changes:
/// while no log changed and no topic or limit moved since a pass began, the next pass
/// looks only at the logs that one found holding a sealed segment.
pub struct Retention {
    store: Arc<Store>,
    last: Mutex<Option<LastPass>>,
}

/// What a pass saw, for the next one.
struct LastPass {
    /// The store's change count, taken before the pass looked at any log.
    changes: u64,
    /// Every topic, in name order, with the limits the pass applied.
    topics: Vec<(Arc<MirrorTopic>, Limits)>,
    /// The partitions left holding a sealed segment, with their topic's index in `topics`.
    sealed: Vec<(usize, Arc<MirrorPartition>)>,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    /// Logs the pass looked at.
    pub looked_at: usize,
    /// Segments it deleted.
    pub deleted: u64,
}

impl Retention {
    pub fn new(store: Arc<Store>) -> Self {
        Retention {
            store,
            last: Mutex::new(None),
        }
    }

    /// Applies retention to every partition that may have something to delete.
    pub fn pass(&self, now_ms: i64) -> PassReport {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let changes = self.store.changes();
        let topics: Vec<(Arc<MirrorTopic>, Limits)> = self
            .store
            .topics()
            .into_iter()
            .map(|t| {
                let limits = limits(&t.meta().configs);
                (t, limits)
            })
            .collect();
        let partitions = match last.take() {
            Some(last) if last.changes == changes && same_topics(&last.topics, &topics) => {
                last.sealed
            }
            _ => limited_partitions(&topics),
        };
        let mut report = PassReport::default();
        let mut sealed = Vec::new();
        for (index, partition) in partitions {
            let (topic, limits) = &topics[index];
            let (deleted, holds_sealed) = apply(topic, &partition, *limits, now_ms);
            report.looked_at += 1;
            report.deleted += deleted;
            if holds_sealed {
                sealed.push((index, partition));
            }
        }
        *last = Some(LastPass {
            changes,
            topics,
            sealed,
        });
        report
    }
}

/// The same topics (not recreated under their names) with the same limits.
fn same_topics(before: &[(Arc<MirrorTopic>, Limits)], now: &[(Arc<MirrorTopic>, Limits)]) -> bool {
    before.len() == now.len()
        && before
            .iter()
            .zip(now)
            .all(|((a, x), (b, y))| Arc::ptr_eq(a, b) && x == y)
}

/// Every partition of the topics that set a limit.
fn limited_partitions(topics: &[(Arc<MirrorTopic>, Limits)]) -> Vec<(usize, Arc<MirrorPartition>)> {
    let limited = topics
        .iter()
        .enumerate()
        .filter(|(_, (_, limits))| *limits != (None, None));
    limited
        .flat_map(|(index, (topic, _))| topic.partitions().into_iter().map(move |p| (index, p)))
        .collect()
}

/// Deletes what `limits` no longer keep of one log, taking it mutably only then.
/// Returns how many segments went and whether the log still holds a sealed one.
fn apply(
    topic: &MirrorTopic,
    partition: &MirrorPartition,
    limits: Limits,
    now_ms: i64,
) -> (u64, bool) {
    let mut log = partition.log();
    let deleted = match log.retention_due(now_ms, limits.0, limits.1) {
        true => delete(topic, partition.partition, &mut log, limits, now_ms),
        false => 0,
    };
    (deleted, log.segment_count() > 1)
}

fn delete(
    topic: &MirrorTopic,
    partition: i32,
    log: &mut PartitionLog,
    limits: Limits,
    now_ms: i64,
) -> u64 {
    log.set_retention(limits.0, limits.1);
    match log.apply_retention(now_ms) {
        Ok(n) => {
            tracing::info!(
                topic = %topic.name,
                partition,
                segments = n,
                log_start = log.log_start_offset(),
                "retention deleted old segments"
            );
            n
        }
        Err(e) => {
            tracing::warn!(topic = %topic.name, partition, error = %e, "retention failed");
            0
        }
    }
}

/// Runs a [`Retention`] pass every `interval` until `stopped` turns true.
pub async fn run(store: Arc<Store>, interval: Duration, stopped: watch::Receiver<bool>) {
    let retention = Retention::new(store);
    every(interval, stopped, move |now_ms| {
        retention.pass(now_ms);
    })
    .await;
}

/// Runs `work` on the blocking pool every `interval`, with the wall clock in Unix
/// milliseconds, until `stopped` turns true: the shape of the node's log maintenance
/// (retention, compaction), which may visit every partition and must not hold up the
/// runtime.
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
    use bytes::Bytes;
    use shadowlink_protocol::batch::testing::BatchBuilder;
    use shadowlink_storage::LogConfig;

    use super::*;
    use crate::mirror::{topic_id_hex, TopicMeta, TopicState};

    /// A store whose segments roll after about three of [`stamped`]'s batches.
    fn store(dir: &std::path::Path) -> Arc<Store> {
        let config = LogConfig {
            segment_bytes: 1024,
            ..LogConfig::default()
        };
        Arc::new(Store::open(dir, config).unwrap())
    }

    fn meta(partitions: i32, pairs: &[(&str, &str)]) -> TopicMeta {
        TopicMeta {
            link: "from-a".into(),
            source_topic_id: topic_id_hex(&[0; 16]),
            partitions,
            state: TopicState::Active,
            configs: configs(pairs),
        }
    }

    /// A 300-byte record at `offset` stamped `timestamp`.
    fn stamped(offset: i64, timestamp: i64) -> Bytes {
        BatchBuilder::new(offset)
            .timestamp(timestamp)
            .records(&[(None, Some(&[7u8; 300][..]))])
            .build()
    }

    /// Appends records stamped 1_000 to 1_011 to partition 0 of `topic`.
    fn fill(store: &Store, topic: &str) -> Arc<MirrorPartition> {
        let partition = store.partition(topic, 0).unwrap();
        for i in 0..12 {
            partition.append(stamped(i, 1_000 + i)).unwrap();
        }
        assert!(partition.log().segment_count() >= 3);
        partition
    }

    #[test]
    fn a_pass_changes_only_logs_with_something_to_delete_and_then_looks_only_at_sealed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        store
            .ensure_topic("a_timed", meta(2, &[("retention.ms", "60000")]))
            .unwrap();
        store.ensure_topic("a_kept", meta(1, &[])).unwrap();
        let timed = fill(&store, "a_timed");
        fill(&store, "a_kept");
        let retention = Retention::new(store.clone());

        // Nothing is a minute old yet: no log is taken mutably, so nothing changed.
        let before = store.changes();
        let first = retention.pass(30_000);
        assert_eq!(
            first,
            PassReport {
                looked_at: 2,
                deleted: 0
            },
            "both partitions of the limited topic"
        );
        assert_eq!(store.changes(), before);
        // Nothing changed since: only the log holding sealed segments is looked at.
        let idle = retention.pass(30_000);
        assert_eq!(
            idle,
            PassReport {
                looked_at: 1,
                deleted: 0
            }
        );
        assert_eq!(store.changes(), before);

        // A minute on, its sealed segments go, and that is a change.
        let due = retention.pass(62_000);
        assert_eq!(due.looked_at, 1);
        assert!(due.deleted >= 2, "{due:?}");
        assert!(store.changes() > before);
        assert_eq!(timed.log().segment_count(), 1);
        assert!(timed.log().log_start_offset() > 0);
        // After that change one full pass, then none is left to look at.
        let changed = store.changes();
        assert_eq!(
            retention.pass(62_000),
            PassReport {
                looked_at: 2,
                deleted: 0
            }
        );
        assert_eq!(
            retention.pass(62_000),
            PassReport {
                looked_at: 0,
                deleted: 0
            }
        );
        assert_eq!(store.changes(), changed);
    }

    #[test]
    fn new_limits_and_appends_bring_back_a_full_pass() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let topic = store.ensure_topic("a_later", meta(1, &[])).unwrap();
        let partition = fill(&store, "a_later");
        let retention = Retention::new(store.clone());
        assert_eq!(
            retention.pass(i64::MAX).looked_at,
            0,
            "no limit, nothing to look at"
        );

        topic
            .set_meta(meta(1, &[("retention.bytes", "1")]))
            .unwrap();
        let limited = retention.pass(0);
        assert_eq!(limited.looked_at, 1);
        assert!(limited.deleted >= 2, "{limited:?}");
        assert_eq!(partition.log().segment_count(), 1);
        assert_eq!(retention.pass(0).looked_at, 1, "after its own change");
        assert_eq!(retention.pass(0).looked_at, 0);

        // An append may roll a segment: the next pass looks at every limited log again.
        let end = partition.log().log_end_offset();
        for i in 0..6 {
            partition.append(stamped(end + i, 2_000)).unwrap();
        }
        let after = retention.pass(0);
        assert_eq!(after.looked_at, 1);
        assert!(after.deleted >= 1, "{after:?}");
    }

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
