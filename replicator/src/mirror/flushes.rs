//! Partitions owing an `Interval`-mode fsync, ordered by when it falls due, so the
//! node's flush timer visits only partitions written since their last sync and sleeps
//! while none is.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::Notify;

use crate::topic_partition::TopicPartition;

#[derive(Default)]
pub struct FlushQueue {
    due: Mutex<BinaryHeap<Reverse<(Instant, String, i32)>>>,
    changed: Notify,
}

impl FlushQueue {
    /// Queues `partition` for a sync at `at`; the caller queues each partition once
    /// until the timer takes it (see `MirrorPartition::flush_if_due`).
    pub(crate) fn schedule(&self, at: Instant, topic: &str, partition: i32) {
        let mut due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        due.push(Reverse((at, topic.to_string(), partition)));
        drop(due);
        // A permit is kept when the timer is not waiting, so it cannot miss this.
        self.changed.notify_one();
    }

    /// Takes the partitions due by `now`, and says when the next one falls due.
    pub fn take_due(&self, now: Instant) -> (Vec<TopicPartition>, Option<Instant>) {
        let mut due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        let mut taken = Vec::new();
        while let Some(Reverse((at, _, _))) = due.peek() {
            if *at > now {
                return (taken, Some(*at));
            }
            if let Some(Reverse((_, topic, partition))) = due.pop() {
                taken.push(TopicPartition { topic, partition });
            }
        }
        (taken, None)
    }

    /// Resolves once a partition was queued since the last call.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// How many partitions are queued.
    pub fn len(&self) -> usize {
        self.due.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
