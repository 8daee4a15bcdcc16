//! The demo's applications: a producer per region writing its topics, and a consumer per
//! node reading every topic there, local and shadow.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::client::{DemoClient, Read};
use super::pair::{A_TOPICS, B_TOPICS, PARTITIONS};
use super::verify::Acked;

/// A topic-partition.
pub use shadowlink::topic_partition::TopicPartition;

/// Records by topic-partition: acknowledged ones (producers) or read ones (consumers).
#[derive(Default)]
pub struct Ledger {
    pub acked: BTreeMap<TopicPartition, Acked>,
    pub consumed: BTreeMap<TopicPartition, Vec<Read>>,
}

pub type Shared = Arc<Mutex<Ledger>>;

/// The ledgers of the drill's applications.
#[derive(Default)]
pub struct Ledgers {
    /// Region A's producer until A stopped: `a_*`, past the failover point too.
    pub acked_a: Shared,
    /// Region B's producers: `b_*` throughout, `a_*` while B owned them.
    pub acked_b: Shared,
    /// Region A's producer once the switchover returned `a_*` to A.
    pub acked_home: Shared,
    /// Region A's consumer until A stopped.
    pub seen_a: Shared,
    /// Region B's consumer, throughout.
    pub seen_b: Shared,
}

pub fn lock(ledger: &Shared) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ledger {
    /// Acknowledged records of the topics starting with `prefix`.
    pub fn acked_count(&self, prefix: &str) -> usize {
        self.acked
            .iter()
            .filter(|(key, _)| key.topic.starts_with(prefix))
            .map(|(_, a)| a.len())
            .sum()
    }

    pub fn consumed_count(&self) -> usize {
        self.consumed.values().map(Vec::len).sum()
    }
}

/// Records per batch, and the pause between batches: 5 / 10 ms is ~500 records/s.
const BATCH: usize = 5;
const PAUSE: Duration = Duration::from_millis(10);

/// Writes `topics` round-robin over their partitions until `stop` turns true; every
/// acknowledged record goes into the ledger at the offset the node assigned. The keys
/// carry `tag` (the region writing) and a per-partition counter, so each is unique.
fn spawn_producer(
    addr: String,
    tag: &'static str,
    topics: &'static [&'static str],
    ledger: Shared,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        let client = DemoClient::connect(&addr, &format!("demo-producer-{tag}")).await?;
        let mut counters: BTreeMap<TopicPartition, usize> = BTreeMap::new();
        let targets: Vec<TopicPartition> = topics
            .iter()
            .flat_map(|t| (0..PARTITIONS).map(move |p| TopicPartition::new(*t, p)))
            .collect();
        for target in targets.iter().cycle() {
            if *stop.borrow() {
                return Ok(());
            }
            let n = counters.entry(target.clone()).or_default();
            let keys: Vec<Bytes> = (0..BATCH)
                .map(|i| Bytes::from(format!("{tag}:{target}:{}", *n + i)))
                .collect();
            *n += BATCH;
            let base = client
                .produce(&target.topic, target.partition, &keys)
                .await?;
            record_acks(&ledger, target, base, keys)?;
            tokio::select! {
                _ = stop.changed() => {}
                _ = tokio::time::sleep(PAUSE) => {}
            }
        }
        Ok(())
    })
}

/// Enters one acknowledged batch into the ledger at the offsets the node assigned.
fn record_acks(
    ledger: &Shared,
    target: &TopicPartition,
    base: i64,
    keys: Vec<Bytes>,
) -> anyhow::Result<()> {
    let mut ledger = lock(ledger);
    let acked = ledger.acked.entry(target.clone()).or_default();
    for (i, key) in keys.into_iter().enumerate() {
        let offset = base + i as i64;
        if acked.insert(offset, key).is_some() {
            anyhow::bail!("{target}: offset {offset} acknowledged twice");
        }
    }
    Ok(())
}

/// Reads every partition of all four topics on one node, local and shadow alike, from
/// offset 0, into `ledger.consumed`, until `stop` turns true.
fn spawn_consumer(
    addr: String,
    tag: &'static str,
    ledger: Shared,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        let client = DemoClient::connect(&addr, &format!("demo-consumer-{tag}")).await?;
        let targets: Vec<TopicPartition> = A_TOPICS
            .iter()
            .chain(B_TOPICS.iter())
            .flat_map(|t| (0..PARTITIONS).map(move |p| TopicPartition::new(*t, p)))
            .collect();
        let mut next: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        loop {
            for target in &targets {
                if *stop.borrow() {
                    return Ok(());
                }
                let from = next.get(target).copied().unwrap_or(0);
                let (records, _) = client.fetch(&target.topic, target.partition, from).await?;
                if let Some((last, _)) = records.last() {
                    next.insert(target.clone(), last + 1);
                    lock(&ledger)
                        .consumed
                        .entry(target.clone())
                        .or_default()
                        .extend(records);
                }
            }
            tokio::select! {
                _ = stop.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    })
}

/// A running producer or consumer, stopped by [`Task::finish`].
pub struct Task {
    stop: watch::Sender<bool>,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl Task {
    /// A producer of `topics` on the node at `addr` (see [`spawn_producer`]).
    pub fn producer(
        addr: &str,
        tag: &'static str,
        topics: &'static [&'static str],
        ledger: &Shared,
    ) -> Task {
        let (stop, stopped) = watch::channel(false);
        let handle = spawn_producer(addr.to_string(), tag, topics, ledger.clone(), stopped);
        Task { stop, handle }
    }

    /// A consumer of every topic on the node at `addr` (see [`spawn_consumer`]).
    pub fn consumer(addr: &str, tag: &'static str, ledger: &Shared) -> Task {
        let (stop, stopped) = watch::channel(false);
        let handle = spawn_consumer(addr.to_string(), tag, ledger.clone(), stopped);
        Task { stop, handle }
    }

    /// The task ended by itself: its error is what [`Task::finish`] returns.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Stops the task and returns its own error, if any.
    pub async fn finish(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.handle
            .await
            .map_err(|e| anyhow::anyhow!("a demo task panicked: {e}"))?
    }
}
