//! What the leader of an owned partition knows of its followers: their fetch positions
//! give the high watermark consumers read up to, answer `acks=all` once every in-sync
//! replica holds the write (as in Kafka, a follower's fetch at offset X proves it holds
//! everything below X), and decide the in-sync set the leader proposes (`isr`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shadowlink_storage::PartitionLog;
use tokio::sync::Notify;

use super::isr::{IsrProposal, Led};
use super::{Cluster, Placement};
use crate::mirror::Store;
use crate::topic_partition::TopicPartition;

#[derive(Default)]
pub(super) struct Positions {
    led: Mutex<HashMap<TopicPartition, Led>>,
    /// Woken by every recorded fetch and every new assignment.
    moved: Notify,
    /// Counts the moves of a follower's position and the new assignments: either may
    /// move a high watermark, and so what a consumer's fetch answers.
    advanced: AtomicU64,
    /// Woken with every count of `advanced`, for consumers' long polls.
    advances: Notify,
}

/// Why an `acks=all` write was not confirmed in sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InSyncError {
    #[error("this node no longer leads the partition in the epoch the write was made in")]
    NotLeader,
    #[error("the in-sync replicas did not fetch the write within the request's timeout")]
    TimedOut,
}

impl Positions {
    pub(super) fn wake(&self) {
        self.advance();
        self.moved.notify_waiters();
    }

    fn advance(&self) {
        self.advanced.fetch_add(1, Ordering::AcqRel);
        self.advances.notify_waiters();
    }
}

/// Where the partition's epoch began in `log`: the log end when this node took it
/// over (or the log end now, before it has).
fn epoch_start(log: &PartitionLog, epoch: i32) -> i64 {
    let entries = log.epoch_entries();
    let started = entries.iter().find(|(e, _)| *e == epoch);
    started.map_or(log.log_end_offset(), |(_, start)| *start)
}

impl Cluster {
    /// The placement of an owned partition this node leads in the installed assignment.
    fn led(&self, topic: &str, partition: i32) -> Option<Placement> {
        let assignment = self.assignment();
        let placement = assignment.placement(topic, partition)?;
        let ours = assignment.is_owned(topic) && placement.leader == self.node_id;
        ours.then(|| placement.clone())
    }

    /// Runs `f` on what this node tracks of the partition in `placement`'s epoch,
    /// starting afresh in a new epoch.
    fn with_led<R>(
        &self,
        key: TopicPartition,
        placement: &Placement,
        log: &PartitionLog,
        f: impl FnOnce(&mut Led) -> R,
    ) -> R {
        let epoch = placement.leader_epoch;
        let mut led = self.positions.led.lock().unwrap_or_else(|p| p.into_inner());
        let entry = led
            .entry(key)
            .or_insert_with(|| Led::new(epoch, epoch_start(log, epoch), Instant::now()));
        if entry.epoch() != epoch {
            *entry = Led::new(epoch, epoch_start(log, epoch), Instant::now());
        }
        f(entry)
    }

    /// Records a follower's fetch of a partition this node leads. A fetch in another
    /// epoch than the assignment's is not counted: it was made against another leader.
    pub fn record_fetch(
        &self,
        key: TopicPartition,
        replica: i32,
        epoch: i32,
        offset: i64,
        log: &PartitionLog,
    ) {
        let Some(placement) = self.led(&key.topic, key.partition) else {
            return;
        };
        if placement.leader_epoch != epoch || !placement.replicas.contains(&replica) {
            return;
        }
        let end = log.log_end_offset();
        let now = Instant::now();
        let moved = self.with_led(key, &placement, log, |led| {
            led.record(replica, offset, end, now)
        });
        if moved {
            self.positions.advance();
        }
        self.positions.moved.notify_waiters();
    }

    /// The partition's high watermark: for an owned partition this node leads, the
    /// lowest of its log end and the positions of the in-sync set's other members (the
    /// set in flight counted too); else the log end.
    pub fn high_watermark(&self, topic: &str, partition: i32, log: &PartitionLog) -> i64 {
        let Some(placement) = self.led(topic, partition) else {
            return log.high_watermark();
        };
        let end = log.log_end_offset();
        let me = self.node_id;
        let key = TopicPartition::new(topic, partition);
        self.with_led(key, &placement, log, |led| {
            let mut members = led.maximal(&placement.isr);
            members.retain(|m| *m != me);
            led.high_watermark(end, &members)
        })
    }

    /// Counts what may change a fetch's answer beyond the logs: new assignments and
    /// followers' progress.
    pub fn serving_changes(&self) -> u64 {
        self.positions.advanced.load(Ordering::Acquire)
    }

    /// Woken with every change [`Cluster::serving_changes`] counts.
    pub fn serving_changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.positions.advances.notified()
    }

    /// Waits until every other member of the partition's in-sync set (with the set in
    /// flight) has fetched from `end` on in `epoch`, or `timeout` passes.
    pub async fn wait_in_sync(
        &self,
        topic: &str,
        partition: i32,
        epoch: i32,
        end: i64,
        timeout: Duration,
    ) -> Result<(), InSyncError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let moved = self.positions.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if self.in_sync(topic, partition, epoch, end)? {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, moved).await.is_err() {
                return Err(InSyncError::TimedOut);
            }
        }
    }

    fn in_sync(
        &self,
        topic: &str,
        partition: i32,
        epoch: i32,
        end: i64,
    ) -> Result<bool, InSyncError> {
        let placement = self.led(topic, partition);
        let Some(placement) = placement.filter(|p| p.leader_epoch == epoch) else {
            return Err(InSyncError::NotLeader);
        };
        let led = self.positions.led.lock().unwrap_or_else(|p| p.into_inner());
        let tracked = led.get(&TopicPartition::new(topic, partition));
        let tracked = tracked.filter(|l| l.epoch() == epoch);
        let mut members = match tracked {
            Some(led) => led.maximal(&placement.isr),
            None => placement.isr.clone(),
        };
        members.retain(|m| *m != self.node_id);
        Ok(members.is_empty() || tracked.is_some_and(|led| led.holds(&members, end)))
    }

    /// The in-sync sets to propose now for the owned partitions this node leads, at
    /// `lag` (see `isr`); forgets partitions it no longer leads.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(super) fn isr_proposals(&self, store: &Store, lag: Duration) -> Vec<IsrProposal> {
        let assignment = self.assignment();
        let mut led = Vec::new();
        for topic in assignment.roles.keys() {
            let placements = assignment.topics.get(topic).into_iter().flatten();
            for (index, placement) in placements.enumerate() {
                if placement.leader == self.node_id {
                    led.push((TopicPartition::new(topic, index as i32), placement.clone()));
                }
            }
        }
        {
            let mut tracked = self.positions.led.lock().unwrap_or_else(|p| p.into_inner());
            tracked.retain(|key, _| led.iter().any(|(k, _)| k == key));
        }
        let mut proposals = Vec::new();
        for (key, placement) in led {
            let Some(partition) = store.partition(&key.topic, key.partition) else {
                continue;
            };
            let log = partition.log();
            let end = log.log_end_offset();
            let (topic, index) = (key.topic.clone(), key.partition);
            let me = self.node_id;
            let proposed = self.with_led(key, &placement, &log, |led| {
                let mut members = led.maximal(&placement.isr);
                members.retain(|m| *m != me);
                led.high_watermark(end, &members);
                led.propose(&placement, lag, Instant::now())
            });
            if let Some(isr) = proposed {
                proposals.push(IsrProposal {
                    topic,
                    partition: index,
                    leader: me,
                    leader_epoch: placement.leader_epoch,
                    isr,
                });
            }
        }
        proposals
    }
}

/// A partition's high watermark as served to consumers: on a node on its own, its log
/// end.
pub fn high_watermark(
    cluster: Option<&Cluster>,
    topic: &str,
    partition: i32,
    log: &PartitionLog,
) -> i64 {
    match cluster {
        Some(cluster) => cluster.high_watermark(topic, partition, log),
        None => log.high_watermark(),
    }
}

/// Records the positions a follower's Fetch reports (`replica_id` up to v14, the
/// replica state from v15), before the fetch is read.
pub fn record_follower_fetch(
    cluster: &Cluster,
    store: &Store,
    request: &kafka_protocol::messages::FetchRequest,
) {
    let replica = match request.replica_id.0 {
        id if id >= 0 => id,
        _ => request.replica_state.replica_id.0,
    };
    if replica < 0 {
        return;
    }
    for topic in &request.topics {
        let name = topic.topic.0.as_str();
        for p in &topic.partitions {
            let Some(partition) = store.partition(name, p.partition) else {
                continue;
            };
            let log = partition.log();
            let key = TopicPartition::new(name, p.partition);
            cluster.record_fetch(key, replica, p.current_leader_epoch, p.fetch_offset, &log);
        }
    }
}
