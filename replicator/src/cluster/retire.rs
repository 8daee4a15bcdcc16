//! Removes the data of replicas the assignment moved off this node, once they have been
//! elsewhere for `retired_replica_grace`: a node that comes back, or a move undone,
//! within the grace refetches nothing.
//!
//! Only mirrored partitions are removed, and only while etcd answers, so the assignment
//! acted on is one the cluster agrees on; an owned topic's data is never removed here.
//! The log restarts empty at its own end offset rather than at zero, so a replica placed
//! back on this node later continues from there without a gap below it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Assignment, Cluster};
use crate::mirror::Store;

type Key = (String, i32);

/// One mirrored topic as the node holds it, for [`moved_away`].
struct Held {
    name: String,
    partitions: i32,
    owned: bool,
}

/// Partitions of `held` that the assignment places, but not on `node`.
fn moved_away(assignment: &Assignment, node: i32, held: &[Held]) -> BTreeSet<Key> {
    let mut moved = BTreeSet::new();
    for topic in held.iter().filter(|t| !t.owned) {
        for p in 0..topic.partitions {
            let Some(placement) = assignment.placement(&topic.name, p) else {
                continue;
            };
            let elsewhere = !placement.replicas.is_empty()
                && !placement.replicas.contains(&node)
                && placement.leader != node;
            if elsewhere {
                moved.insert((topic.name.clone(), p));
            }
        }
    }
    moved
}

/// When each partition moved away was first seen elsewhere, and which are due.
#[derive(Default)]
struct Grace {
    since: BTreeMap<Key, Instant>,
}

impl Grace {
    /// Records `moved` as seen at `now` (forgetting partitions placed back) and returns
    /// those elsewhere for at least `grace`.
    fn due(&mut self, moved: BTreeSet<Key>, now: Instant, grace: Duration) -> Vec<Key> {
        self.since.retain(|key, _| moved.contains(key));
        for key in moved {
            self.since.entry(key).or_insert(now);
        }
        let due = self
            .since
            .iter()
            .filter(|(_, at)| now.duration_since(**at) >= grace);
        due.map(|(key, _)| key.clone()).collect()
    }
}

/// Until `stopped`: every so often, removes the data of partitions that have been placed
/// elsewhere for `grace`.
pub async fn run(
    cluster: Arc<Cluster>,
    store: Arc<Store>,
    grace: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let every = (grace / 10).clamp(Duration::from_millis(200), Duration::from_secs(30));
    let mut tick = tokio::time::interval(every);
    let mut times = Grace::default();
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tick.tick() => {}
        }
        // An assignment etcd cannot confirm may be one the cluster has moved past.
        if cluster.not_ready().is_some() {
            continue;
        }
        let held: Vec<Held> = store
            .topics()
            .iter()
            .map(|t| Held {
                name: t.name.clone(),
                partitions: t.meta().partitions,
                owned: t.is_owned(),
            })
            .collect();
        let moved = moved_away(&cluster.assignment(), cluster.node_id(), &held);
        for (topic, partition) in times.due(moved, Instant::now(), grace) {
            let (c, s) = (cluster.clone(), store.clone());
            let removed = tokio::task::spawn_blocking(move || remove(&c, &s, &topic, partition));
            if let Ok(Err(e)) = removed.await {
                tracing::warn!(error = %e, "cannot remove the data of a replica moved away");
            }
        }
    }
}

/// Deletes the partition's segments; the log restarts empty at its end offset. Checked
/// again under the log's lock: a partition placed back here since is left alone.
fn remove(
    cluster: &Cluster,
    store: &Store,
    topic: &str,
    partition: i32,
) -> Result<(), shadowlink_storage::StorageError> {
    let Some(mirror) = store.partition(topic, partition) else {
        return Ok(());
    };
    let mut log = mirror.log();
    let owned = store.topic(topic).is_none_or(|t| t.is_owned());
    let placed_here =
        cluster.holds(topic, partition) || cluster.check_leader(topic, partition).is_ok();
    if owned || placed_here || log.size_bytes() == 0 {
        return Ok(());
    }
    let (start, end, bytes) = (
        log.log_start_offset(),
        log.log_end_offset(),
        log.size_bytes(),
    );
    log.truncate_fully_and_start_at(end)?;
    tracing::info!(
        topic,
        partition,
        start,
        end,
        bytes,
        "removed the data of a replica moved to other nodes"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Placement;

    fn assignment(placements: &[(i32, &[i32])]) -> Assignment {
        let mut a = Assignment::default();
        let list = placements
            .iter()
            .map(|(leader, replicas)| Placement {
                leader: *leader,
                replicas: replicas.to_vec(),
                ..Default::default()
            })
            .collect();
        a.topics.insert("orders".into(), list);
        a
    }

    fn orders(owned: bool) -> Vec<Held> {
        vec![Held {
            name: "orders".into(),
            partitions: 4,
            owned,
        }]
    }

    #[test]
    fn only_mirrored_partitions_placed_on_other_nodes_are_moved_away() {
        // 0: elsewhere; 1: held here; 2: led here; 3: not placed yet.
        let a = assignment(&[(2, &[2, 3]), (1, &[1, 2]), (1, &[2, 3])]);
        let moved = moved_away(&a, 1, &orders(false));
        assert_eq!(moved, BTreeSet::from([("orders".to_string(), 0)]));
        assert!(moved_away(&a, 1, &orders(true)).is_empty());
        let unplaced = assignment(&[(-1, &[]), (-1, &[]), (-1, &[]), (-1, &[])]);
        assert!(moved_away(&unplaced, 1, &orders(false)).is_empty());
    }

    #[test]
    fn a_partition_is_due_only_after_the_grace_and_a_move_back_resets_it() {
        let grace = Duration::from_secs(10);
        let key = ("orders".to_string(), 0);
        let start = Instant::now();
        let mut times = Grace::default();
        assert!(times
            .due(BTreeSet::from([key.clone()]), start, grace)
            .is_empty());
        let later = start + Duration::from_secs(9);
        assert!(times
            .due(BTreeSet::from([key.clone()]), later, grace)
            .is_empty());
        // Placed back here for a moment: the grace starts again when it leaves.
        assert!(times.due(BTreeSet::new(), later, grace).is_empty());
        let again = start + Duration::from_secs(11);
        assert!(times
            .due(BTreeSet::from([key.clone()]), again, grace)
            .is_empty());
        let due = times.due(BTreeSet::from([key.clone()]), again + grace, grace);
        assert_eq!(due, vec![key]);
    }
}
