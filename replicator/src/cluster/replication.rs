//! Where each follower of a partition this node leads has fetched to, so `acks=all`
//! is answered once every in-sync replica holds the write (as in Kafka, a follower's
//! fetch at offset X proves it holds everything below X).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use super::Cluster;
use crate::topic_partition::TopicPartition;

/// A follower's last fetch: the leader epoch it fetched in and its fetch offset.
#[derive(Debug, Clone, Copy)]
struct Fetched {
    epoch: i32,
    offset: i64,
}

/// Per partition, each follower's last fetch, by node id.
type Followers = BTreeMap<i32, Fetched>;

#[derive(Default)]
pub(super) struct Positions {
    fetched: Mutex<HashMap<TopicPartition, Followers>>,
    /// Woken by every recorded fetch and every new assignment.
    moved: Notify,
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
        self.moved.notify_waiters();
    }
}

impl Cluster {
    /// Records a follower's fetch of a partition this node leads. A fetch in another
    /// epoch than the assignment's is not counted: it was made against another leader.
    pub fn record_fetch(&self, topic: &str, partition: i32, replica: i32, epoch: i32, offset: i64) {
        let assignment = self.assignment();
        let Some(placement) = assignment.placement(topic, partition) else {
            return;
        };
        let ours = placement.leader == self.node_id && placement.leader_epoch == epoch;
        if !ours || !placement.replicas.contains(&replica) {
            return;
        }
        let key = TopicPartition::new(topic, partition);
        {
            let mut fetched = self
                .positions
                .fetched
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let position = Fetched { epoch, offset };
            fetched.entry(key).or_default().insert(replica, position);
        }
        self.positions.wake();
    }

    /// Waits until every other member of the partition's in-sync set has fetched from
    /// `end` on in `epoch`, or `timeout` passes.
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
        let assignment = self.assignment();
        let placement = assignment.placement(topic, partition);
        let Some(placement) =
            placement.filter(|p| p.leader == self.node_id && p.leader_epoch == epoch)
        else {
            return Err(InSyncError::NotLeader);
        };
        let fetched = self
            .positions
            .fetched
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let positions = fetched.get(&TopicPartition::new(topic, partition));
        let holds = |replica: &i32| {
            positions
                .and_then(|p| p.get(replica))
                .is_some_and(|f| f.epoch == epoch && f.offset >= end)
        };
        let mut others = placement.isr.iter().filter(|r| **r != self.node_id);
        Ok(others.all(holds))
    }
}

/// Records the positions a follower's Fetch reports (`replica_id` up to v14, the
/// replica state from v15), before the fetch is read.
pub fn record_follower_fetch(cluster: &Cluster, request: &kafka_protocol::messages::FetchRequest) {
    let replica = match request.replica_id.0 {
        id if id >= 0 => id,
        _ => request.replica_state.replica_id.0,
    };
    if replica < 0 {
        return;
    }
    for topic in &request.topics {
        for p in &topic.partitions {
            let (epoch, offset) = (p.current_leader_epoch, p.fetch_offset);
            cluster.record_fetch(topic.topic.0.as_str(), p.partition, replica, epoch, offset);
        }
    }
}
