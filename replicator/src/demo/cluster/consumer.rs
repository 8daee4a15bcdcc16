//! A consumer of region B as an unchanged Kafka client reads a cluster: it bootstraps
//! through one node, learns each partition's leader from Metadata, fetches from the
//! leader, and asks again for Metadata (from any broker it knows) when a leader answers
//! NOT_LEADER_OR_FOLLOWER or cannot be reached.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use shadowlink::source::metadata::SourceCluster;

use super::super::client::{fetch_partition, Read};
use super::super::pair::{A_TOPICS, PARTITIONS};
use super::super::workload::TopicPartition;

/// What the consumer read, and when it last read something, per partition.
#[derive(Default)]
pub struct Reads {
    pub consumed: BTreeMap<TopicPartition, Vec<Read>>,
    pub last_read: BTreeMap<TopicPartition, Instant>,
}

impl Reads {
    pub fn count(&self) -> usize {
        self.consumed.values().map(Vec::len).sum()
    }

    /// The offset after the last record read of `tp`.
    pub fn next(&self, tp: &TopicPartition) -> i64 {
        let last = self.consumed.get(tp).and_then(|r| r.last());
        last.map_or(0, |(offset, _)| offset + 1)
    }
}

pub type SharedReads = Arc<Mutex<Reads>>;

pub fn lock(reads: &SharedReads) -> std::sync::MutexGuard<'_, Reads> {
    reads.lock().unwrap_or_else(|p| p.into_inner())
}

/// A connection or request this slow counts as a lost broker.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A running consumer, stopped by [`RoutedConsumer::finish`].
pub struct RoutedConsumer {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl RoutedConsumer {
    /// Reads every `a_*` partition from offset 0 through `bootstrap` into `reads`.
    pub fn start(bootstrap: &str, reads: &SharedReads) -> RoutedConsumer {
        let (stop, stopped) = watch::channel(false);
        let mut cluster = SourceCluster::new(
            vec![bootstrap.to_string()],
            "demo-consumer-b".into(),
            None,
            None,
        );
        cluster.set_request_timeout(REQUEST_TIMEOUT);
        let handle = tokio::spawn(consume(cluster, reads.clone(), stopped));
        RoutedConsumer { stop, handle }
    }

    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}

async fn consume(mut cluster: SourceCluster, reads: SharedReads, mut stop: watch::Receiver<bool>) {
    let targets: Vec<TopicPartition> = A_TOPICS
        .iter()
        .flat_map(|t| (0..PARTITIONS).map(move |p| TopicPartition::new(*t, p)))
        .collect();
    let mut stale = true;
    while !*stop.borrow() {
        if stale {
            stale = cluster.refresh().await.is_err();
        }
        if !stale {
            for target in &targets {
                stale |= !read_once(&mut cluster, target, &reads).await;
            }
        }
        let pause = if stale { 100 } else { 20 };
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
        }
    }
}

/// One fetch of `target` from its leader; false when the route needs refreshing.
async fn read_once(
    cluster: &mut SourceCluster,
    target: &TopicPartition,
    reads: &SharedReads,
) -> bool {
    let leader = cluster
        .view
        .topics
        .get(&target.topic)
        .and_then(|t| t.partitions.get(&target.partition))
        .map_or(-1, |p| p.leader);
    if leader < 0 {
        return false;
    }
    let Ok(client) = cluster.broker(leader).await else {
        return false;
    };
    let from = lock(reads).next(target);
    let fetched = tokio::time::timeout(
        REQUEST_TIMEOUT,
        fetch_partition(&client, &target.topic, target.partition, from),
    )
    .await;
    let fetched = match fetched {
        Ok(Ok(fetched)) => fetched,
        _ => {
            cluster.forget(client.addr());
            return false;
        }
    };
    if fetched.error_code != 0 {
        return false;
    }
    if !fetched.records.is_empty() {
        let mut reads = lock(reads);
        reads.last_read.insert(target.clone(), Instant::now());
        let consumed = reads.consumed.entry(target.clone()).or_default();
        consumed.extend(fetched.records);
    }
    true
}
