//! Where every partition lives: the document the assigner writes to etcd and every node
//! reads, and the pure placement function that computes the next one.
//!
//! Placement is sticky: a live replica stays where it is, and a partition's leader stays
//! while it is alive. It is balanced: replicas per node differ by at most one, reached by
//! moving as few replicas as that needs. A moved or added replica fills itself from the
//! source, so leadership only goes to a replica that already held the partition when
//! there is one.
//!
//! An owned partition (a failed-over shadow) is different: its replicas copy the
//! leader, so a replica that did not hold it has none of its writes. Its replicas are
//! never moved to rebalance, only a lost one is replaced; its leadership goes only to a
//! member of its in-sync set (the replicas that held it when it became owned, less the
//! lost ones, changed since by its leader's proposals: `isr`), in a leader epoch one
//! above the last, and nowhere when none survives.
//!
//! An owned topic created on the cluster (CreateTopics, `[[topics]]`) is placed like a
//! shadow on its own replication factor, then kept like a failed-over one. A new
//! partition of it holds nothing anywhere yet, so its in-sync set is all its replicas
//! and its first leader writes in epoch 0.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use super::topics::TopicSpec;

/// The whole cluster's placement, one etcd value so no reader sees half a change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The live nodes when written, by node id: the advertised `host:port` Metadata
    /// gives clients.
    pub brokers: BTreeMap<i32, String>,
    /// Per topic, the placement of each partition, indexed by partition.
    pub topics: BTreeMap<String, Vec<Placement>>,
    /// Topics that are no longer shadows: absent means mirrored from the source.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, Role>,
    /// Owned topics created on the cluster, with what every node needs to create its
    /// copy; each is also in `roles` as owned.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub created: BTreeMap<String, TopicSpec>,
}

/// What a placed topic is. A shadow's replicas each fetch from the source; an owned
/// topic's leader takes writes and its other replicas fetch from the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owned,
}

/// One partition's replicas and the one among them that serves it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub leader: i32,
    pub replicas: Vec<i32>,
    /// For an owned partition, the epoch its leader writes in: above every epoch the
    /// partition had, and raised with every change of leader, so a deposed leader is
    /// fenced. Unused (0) for shadows, whose epochs are the source's.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub leader_epoch: i32,
    /// For an owned partition, the replicas holding every acknowledged write: `acks=all`
    /// waits for each of them, and only they may lead. A replacement replica joins
    /// when its leader reports it caught up (`isr`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub isr: Vec<i32>,
}

fn is_zero(epoch: &i32) -> bool {
    *epoch == 0
}

impl Assignment {
    pub fn placement(&self, topic: &str, partition: i32) -> Option<&Placement> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get(topic)?.get(index)
    }

    pub fn is_owned(&self, topic: &str) -> bool {
        self.roles.get(topic) == Some(&Role::Owned)
    }

    /// Makes `topics` owned in one step (a failover): each partition keeps its replicas
    /// and leader, in an epoch above both its placed one and the partition's floor
    /// (`epochs`, indexed by partition: one above every epoch it was seen in). A topic
    /// already owned, or not placed, is left as it is.
    pub fn fail_over(&self, epochs: &BTreeMap<String, Vec<i32>>) -> Assignment {
        let mut next = self.clone();
        for (topic, floors) in epochs {
            if next.is_owned(topic) {
                continue;
            }
            let Some(placements) = next.topics.get_mut(topic) else {
                continue;
            };
            for (index, placement) in placements.iter_mut().enumerate() {
                let floor = floors.get(index).copied().unwrap_or(0);
                placement.leader_epoch = floor.max(placement.leader_epoch + 1);
                placement.isr = placement.replicas.clone();
            }
            next.roles.insert(topic.clone(), Role::Owned);
        }
        next
    }

    /// Replicas held by each node, every live node listed.
    fn loads(&self, nodes: &BTreeSet<i32>) -> BTreeMap<i32, usize> {
        let mut loads: BTreeMap<i32, usize> = nodes.iter().map(|n| (*n, 0)).collect();
        for placement in self.topics.values().flatten() {
            for r in &placement.replicas {
                *loads.entry(*r).or_default() += 1;
            }
        }
        loads
    }
}

/// The next assignment: every partition of `partitions` (topic to partition count)
/// placed on `replication_factor` of `members` (capped by how many there are).
pub fn assign(
    previous: &Assignment,
    members: &BTreeMap<i32, String>,
    partitions: &BTreeMap<String, i32>,
    replication_factor: usize,
) -> Assignment {
    let none = BTreeMap::new();
    assign_with_created(previous, members, partitions, replication_factor, &none)
}

/// [`assign`], with the owned topics created on the cluster (`created`, each also in
/// `partitions`) placed on their own replication factor.
pub fn assign_with_created(
    previous: &Assignment,
    members: &BTreeMap<i32, String>,
    partitions: &BTreeMap<String, i32>,
    replication_factor: usize,
    created: &BTreeMap<String, TopicSpec>,
) -> Assignment {
    let nodes: BTreeSet<i32> = members.keys().copied().collect();
    let wanted = |topic: &str| {
        let asked = created.get(topic).and_then(|s| s.replication_factor);
        asked.unwrap_or(replication_factor).min(nodes.len())
    };
    let mut next = Assignment {
        brokers: members.clone(),
        topics: BTreeMap::new(),
        roles: previous.roles.clone(),
        created: previous.created.clone(),
    };
    for (topic, count) in partitions {
        let kept = (0..*count)
            .map(|p| surviving(previous.placement(topic, p), &nodes, wanted(topic)))
            .collect();
        next.topics.insert(topic.clone(), kept);
    }
    next.adopt_created(previous, created);
    next.roles
        .retain(|topic, _| next.topics.contains_key(topic));
    fill(&mut next, &nodes, &wanted);
    next.start_created();
    rebalance(&mut next, &nodes);
    elect_leaders(&mut next, previous);
    next
}

/// The live part of a previous placement, at most `wanted` replicas, its leader kept.
/// A leader that is gone is marked -1 for [`elect_leaders`].
fn surviving(previous: Option<&Placement>, nodes: &BTreeSet<i32>, wanted: usize) -> Placement {
    let Some(previous) = previous else {
        return Placement {
            leader: -1,
            replicas: Vec::new(),
            leader_epoch: 0,
            isr: Vec::new(),
        };
    };
    let leader = match nodes.contains(&previous.leader) {
        true => previous.leader,
        false => -1,
    };
    let mut replicas: Vec<i32> = previous
        .replicas
        .iter()
        .copied()
        .filter(|r| nodes.contains(r))
        .collect();
    while replicas.len() > wanted {
        match replicas.iter().rposition(|r| *r != leader) {
            Some(i) => replicas.remove(i),
            None => break,
        };
    }
    let isr = previous
        .isr
        .iter()
        .copied()
        .filter(|r| replicas.contains(r))
        .collect();
    Placement {
        leader,
        replicas,
        leader_epoch: previous.leader_epoch,
        isr,
    }
}

/// Adds replicas where a partition has fewer than its topic's `wanted`, each on the
/// least loaded node that does not hold it yet.
fn fill(next: &mut Assignment, nodes: &BTreeSet<i32>, wanted: &dyn Fn(&str) -> usize) {
    let mut loads = next.loads(nodes);
    for (topic, placements) in next.topics.iter_mut() {
        let wanted = wanted(topic);
        for placement in placements {
            while placement.replicas.len() < wanted {
                let Some(node) = least_loaded(&loads, &placement.replicas) else {
                    break;
                };
                placement.replicas.push(node);
                *loads.entry(node).or_default() += 1;
            }
        }
    }
}

fn least_loaded(loads: &BTreeMap<i32, usize>, exclude: &[i32]) -> Option<i32> {
    loads
        .iter()
        .filter(|(node, _)| !exclude.contains(node))
        .min_by_key(|(node, load)| (**load, **node))
        .map(|(node, _)| *node)
}

/// Moves replicas from the most to the least loaded node until loads differ by at most
/// one: each move narrows the gap, so this is the fewest moves that balance. A replica
/// that is not its partition's leader is moved first, so serving moves only when it
/// must.
fn rebalance(next: &mut Assignment, nodes: &BTreeSet<i32>) {
    let mut loads = next.loads(nodes);
    loop {
        let Some((&heavy, &most)) = loads.iter().max_by_key(|(n, l)| (**l, -**n)) else {
            return;
        };
        let Some((&light, &least)) = loads.iter().min_by_key(|(n, l)| (**l, **n)) else {
            return;
        };
        if most <= least + 1 {
            return;
        }
        let movable = |p: &Placement| p.replicas.contains(&heavy) && !p.replicas.contains(&light);
        let roles = &next.roles;
        let shadows = next
            .topics
            .iter_mut()
            .filter(|(t, _)| !roles.contains_key(*t));
        let all = shadows.flat_map(|(_, placements)| placements.iter_mut());
        let mut candidates: Vec<&mut Placement> = all.filter(|p| movable(p)).collect();
        candidates.sort_by_key(|p| p.leader == heavy);
        let Some(placement) = candidates.into_iter().next() else {
            return;
        };
        for r in placement.replicas.iter_mut().filter(|r| **r == heavy) {
            *r = light;
        }
        if placement.leader == heavy {
            placement.leader = -1;
        }
        *loads.entry(heavy).or_default() -= 1;
        *loads.entry(light).or_default() += 1;
    }
}

/// Gives each partition without a leader one: a replica that already held it when
/// there is one (it has the data), else any, the one leading the fewest partitions. An
/// owned partition takes only a member of its in-sync set, in the next leader epoch.
fn elect_leaders(next: &mut Assignment, previous: &Assignment) {
    let mut leading: BTreeMap<i32, usize> = next.brokers.keys().map(|n| (*n, 0)).collect();
    for placement in next.topics.values().flatten() {
        if placement.leader >= 0 {
            *leading.entry(placement.leader).or_default() += 1;
        }
    }
    for (topic, placements) in next.topics.iter_mut() {
        let owned = next.roles.contains_key(topic);
        for (index, placement) in placements.iter_mut().enumerate() {
            if placement.leader >= 0 || placement.replicas.is_empty() {
                continue;
            }
            let held: Vec<i32> = previous
                .placement(topic, index as i32)
                .map(|p| p.replicas.clone())
                .unwrap_or_default();
            let isr = &placement.isr;
            let leader = placement
                .replicas
                .iter()
                .copied()
                .filter(|r| !owned || isr.contains(r))
                .min_by_key(|r| (!held.contains(r), leading.get(r).copied().unwrap_or(0), *r));
            if let Some(leader) = leader {
                placement.leader = leader;
                *leading.entry(leader).or_default() += 1;
                if owned {
                    placement.leader_epoch += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(ids: &[i32]) -> BTreeMap<i32, String> {
        ids.iter()
            .map(|id| (*id, format!("127.0.0.1:{}", 9000 + id)))
            .collect()
    }

    fn topics(list: &[(&str, i32)]) -> BTreeMap<String, i32> {
        list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn loads(a: &Assignment) -> BTreeMap<i32, usize> {
        a.loads(&a.brokers.keys().copied().collect())
    }

    fn leaders(a: &Assignment) -> BTreeMap<i32, usize> {
        let mut count: BTreeMap<i32, usize> = a.brokers.keys().map(|n| (*n, 0)).collect();
        for p in a.topics.values().flatten() {
            *count.entry(p.leader).or_default() += 1;
        }
        count
    }

    fn spread(counts: &BTreeMap<i32, usize>) -> usize {
        counts.values().max().unwrap() - counts.values().min().unwrap()
    }

    /// Replicas present in `after` that were not in `before`, over all partitions.
    fn moved(before: &Assignment, after: &Assignment) -> usize {
        let mut added = 0;
        for (topic, placements) in &after.topics {
            for (i, p) in placements.iter().enumerate() {
                let old = before.placement(topic, i as i32);
                let old = old.map(|o| o.replicas.clone()).unwrap_or_default();
                added += p.replicas.iter().filter(|r| !old.contains(r)).count();
            }
        }
        added
    }

    fn check_valid(a: &Assignment, replicas: usize) {
        for p in a.topics.values().flatten() {
            assert_eq!(p.replicas.len(), replicas, "{p:?}");
            let distinct: BTreeSet<_> = p.replicas.iter().collect();
            assert_eq!(distinct.len(), replicas, "a node twice in {p:?}");
            assert!(p.replicas.contains(&p.leader), "leader outside {p:?}");
            assert!(p.replicas.iter().all(|r| a.brokers.contains_key(r)));
        }
    }

    #[test]
    fn a_fresh_assignment_balances_replicas_and_leaders() {
        let parts = topics(&[("orders", 6), ("payments", 5), ("audit", 1)]);
        let a = assign(&Assignment::default(), &members(&[1, 2, 3]), &parts, 2);
        check_valid(&a, 2);
        assert_eq!(a.topics["payments"].len(), 5);
        assert_eq!(loads(&a).values().sum::<usize>(), 24);
        assert!(spread(&loads(&a)) <= 1, "{:?}", loads(&a));
        assert!(spread(&leaders(&a)) <= 1, "{:?}", leaders(&a));
    }

    #[test]
    fn the_same_inputs_change_nothing() {
        let parts = topics(&[("orders", 7)]);
        let a = assign(&Assignment::default(), &members(&[1, 2, 3]), &parts, 2);
        assert_eq!(assign(&a, &members(&[1, 2, 3]), &parts, 2), a);
    }

    #[test]
    fn a_lost_node_moves_only_its_replicas_and_leadership_stays_on_holders() {
        let parts = topics(&[("orders", 9), ("payments", 4)]);
        let before = assign(&Assignment::default(), &members(&[1, 2, 3]), &parts, 2);
        let lost = loads(&before)[&3];
        let after = assign(&before, &members(&[1, 2]), &parts, 2);
        check_valid(&after, 2);
        assert_eq!(moved(&before, &after), lost);
        for (topic, placements) in &after.topics {
            for (i, p) in placements.iter().enumerate() {
                let old = before.placement(topic, i as i32).unwrap();
                if old.leader != 3 {
                    assert_eq!(p.leader, old.leader, "a live leader moved: {topic}/{i}");
                } else {
                    assert!(old.replicas.contains(&p.leader), "new leader has no data");
                }
            }
        }
    }

    #[test]
    fn a_joining_node_takes_the_fewest_replicas_that_balance() {
        let parts = topics(&[("orders", 12)]);
        let before = assign(&Assignment::default(), &members(&[1, 2]), &parts, 2);
        let after = assign(&before, &members(&[1, 2, 3]), &parts, 2);
        check_valid(&after, 2);
        // 24 replicas over 3 nodes: the newcomer needs 8, and nothing else moves.
        assert_eq!(loads(&after)[&3], 8);
        assert_eq!(moved(&before, &after), 8);
        assert!(spread(&loads(&after)) <= 1);
    }

    #[test]
    fn replication_factor_above_the_node_count_places_on_every_node() {
        let parts = topics(&[("orders", 3)]);
        let one = assign(&Assignment::default(), &members(&[4]), &parts, 3);
        check_valid(&one, 1);
        let two = assign(&one, &members(&[4, 7]), &parts, 3);
        check_valid(&two, 2);
        assert!(two.topics["orders"].iter().all(|p| p.leader == 4));
        let none = assign(&two, &BTreeMap::new(), &parts, 3);
        assert!(none.topics["orders"].iter().all(|p| p.replicas.is_empty()));
    }

    #[test]
    fn a_grown_topic_keeps_its_partitions_and_places_the_new_ones() {
        let before = assign(
            &Assignment::default(),
            &members(&[1, 2, 3]),
            &topics(&[("orders", 2)]),
            2,
        );
        let after = assign(&before, &members(&[1, 2, 3]), &topics(&[("orders", 5)]), 2);
        check_valid(&after, 2);
        assert_eq!(&after.topics["orders"][..2], &before.topics["orders"][..]);
    }

    fn failed_over(a: &Assignment, topic: &str, floor: i32) -> Assignment {
        let count = a.topics[topic].len();
        a.fail_over(&BTreeMap::from([(topic.to_string(), vec![floor; count])]))
    }

    #[test]
    fn a_failover_makes_the_topic_owned_in_place_above_every_epoch() {
        let parts = topics(&[("orders", 4), ("payments", 2)]);
        let before = assign(&Assignment::default(), &members(&[1, 2, 3]), &parts, 2);
        let after = failed_over(&before, "orders", 7);
        assert!(after.is_owned("orders") && !after.is_owned("payments"));
        assert_eq!(after.topics["payments"], before.topics["payments"]);
        for (old, new) in before.topics["orders"].iter().zip(&after.topics["orders"]) {
            assert_eq!((new.leader, &new.replicas), (old.leader, &old.replicas));
            assert_eq!(new.leader_epoch, 7);
            assert_eq!(new.isr, old.replicas);
        }
        // Already owned: a second request changes nothing, and neither does a round.
        assert_eq!(failed_over(&after, "orders", 9), after);
        assert_eq!(assign(&after, &members(&[1, 2, 3]), &parts, 2), after);
    }

    #[test]
    fn an_owned_partition_moves_only_to_its_in_sync_set_in_a_new_epoch() {
        let parts = topics(&[("orders", 6)]);
        let before = assign(&Assignment::default(), &members(&[1, 2, 3]), &parts, 2);
        let owned = failed_over(&before, "orders", 3);
        let lost = 1;
        let after = assign(&owned, &members(&[2, 3]), &parts, 2);
        check_valid(&after, 2);
        for (old, new) in owned.topics["orders"].iter().zip(&after.topics["orders"]) {
            if old.leader == lost {
                assert!(old.isr.contains(&new.leader) && new.leader != lost);
                assert_eq!(new.leader_epoch, old.leader_epoch + 1);
            } else {
                assert_eq!(
                    (new.leader, new.leader_epoch),
                    (old.leader, old.leader_epoch)
                );
            }
            // The replacement replica is not in sync: it holds none of the writes yet.
            assert!(!new.isr.contains(&lost));
            assert!(new.isr.iter().all(|r| old.isr.contains(r)));
        }
        // Its in-sync set lost too, a partition stays without a leader rather than
        // taking one that never held it.
        let alone = assign(&after, &members(&[4, 5]), &parts, 2);
        assert!(alone.topics["orders"].iter().all(|p| p.leader == -1));
        let later = assign(&alone, &members(&[4, 5]), &parts, 2);
        assert!(later.topics["orders"].iter().all(|p| p.leader == -1));
    }

    #[test]
    fn a_joining_node_takes_no_replica_of_an_owned_partition() {
        let parts = topics(&[("orders", 6), ("payments", 6)]);
        let before = assign(&Assignment::default(), &members(&[1, 2]), &parts, 2);
        let owned = failed_over(&before, "orders", 1);
        let after = assign(&owned, &members(&[1, 2, 3]), &parts, 2);
        assert_eq!(after.topics["orders"], owned.topics["orders"]);
        assert!(after.topics["payments"]
            .iter()
            .any(|p| p.replicas.contains(&3)));
    }
}
