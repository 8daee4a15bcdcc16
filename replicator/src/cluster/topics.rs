//! Owned topics created on a cluster (CreateTopics on any node, `[[topics]]` in the
//! shared config).
//!
//! A topic is recorded under `topics/<name>` in etcd, in a transaction that writes the
//! key only if it is absent, so exactly one creation of a name succeeds across the
//! cluster and a `[[topics]]` entry every node declares is created once. The assigner
//! places every recorded topic (`assignment::assign_with_created`); each node creates
//! its copy, every partition with the topic's configs, once its installed assignment
//! carries the topic, and then leads or follows each partition it holds (`replica`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::{Assignment, Cluster, Role};
use crate::mirror::{OwnTopicError, Store};

/// What `topics/<name>` holds: the topic as its creator asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSpec {
    pub partitions: i32,
    /// Replicas per partition; `None` takes the cluster's `replication_factor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<usize>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, String>,
}

/// The epoch of a created topic's partition that never had a leader: it holds nothing
/// on any replica, so all its replicas are in sync, and its first leader writes in 0.
const NEVER_LED: i32 = -1;

/// A topic to record in etcd; `reply` hears whether this creation made it (true) or
/// found it there (false). A declared `[[topics]]` entry has none, and waits until the
/// installed assignment lists `min_nodes` live nodes, so that every partition starts
/// with as many replicas in sync as the cluster's replication factor asks.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(super) struct Creation {
    name: String,
    spec: TopicSpec,
    reply: Option<oneshot::Sender<bool>>,
    min_nodes: usize,
}

/// Why CreateTopics on a cluster node did not create a topic.
#[derive(Debug, thiserror::Error)]
pub enum CreateTopicError {
    #[error("topic {0} already exists in the cluster")]
    Exists(String),
    #[error(
        "topic {topic} was not created and placed within {waited:?}: {why}; it may still be \
         created"
    )]
    NotPlaced {
        topic: String,
        waited: Duration,
        why: String,
    },
}

impl Assignment {
    /// Marks the topics of `created` this assignment places as owned, and the
    /// partitions new to it as never led. A name the previous assignment placed as
    /// something else (a shadow) is left as it is.
    pub(super) fn adopt_created(
        &mut self,
        previous: &Assignment,
        created: &BTreeMap<String, TopicSpec>,
    ) {
        for (name, spec) in created {
            let shadow = previous.topics.contains_key(name) && !previous.created.contains_key(name);
            let Some(placements) = self.topics.get_mut(name).filter(|_| !shadow) else {
                continue;
            };
            for (index, placement) in placements.iter_mut().enumerate() {
                if previous.placement(name, index as i32).is_none() {
                    placement.leader_epoch = NEVER_LED;
                }
            }
            self.roles.insert(name.clone(), Role::Owned);
            self.created.insert(name.clone(), spec.clone());
        }
        let placed = &self.topics;
        self.created.retain(|name, _| placed.contains_key(name));
    }

    /// A created partition that never had a leader has every replica in sync: none
    /// holds a write yet. Its first leader is then elected in epoch 0.
    pub(super) fn start_created(&mut self) {
        for name in self.created.keys() {
            let Some(placements) = self.topics.get_mut(name) else {
                continue;
            };
            for placement in placements.iter_mut() {
                if placement.leader_epoch == NEVER_LED {
                    placement.isr = placement.replicas.clone();
                }
            }
        }
    }
}

impl Cluster {
    /// Records `name` in etcd unless a topic of that name is there, and waits until
    /// this node's assignment places it and the node holds its copy, or `wait` passes.
    pub async fn create_topic(
        &self,
        store: &Store,
        name: &str,
        spec: TopicSpec,
        wait: Duration,
    ) -> Result<(), CreateTopicError> {
        let (reply, created) = oneshot::channel();
        self.queue_creation(Creation {
            name: name.to_string(),
            spec,
            reply: Some(reply),
            min_nodes: 0,
        });
        let placed = async {
            if !created.await.unwrap_or(false) {
                return Err(CreateTopicError::Exists(name.to_string()));
            }
            loop {
                let placed = self.assignment().created.contains_key(name);
                if placed && store.topic(name).is_some_and(|t| t.is_owned()) {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        match tokio::time::timeout(wait, placed).await {
            Ok(outcome) => outcome,
            Err(_) => Err(CreateTopicError::NotPlaced {
                topic: name.to_string(),
                waited: wait,
                why: self
                    .not_ready()
                    .unwrap_or_else(|| "no assignment placed it yet".to_string()),
            }),
        }
    }

    /// `[[topics]]` of the shared config: each is recorded in etcd unless a topic of
    /// that name is there, whichever node gets there first, once `replication_factor`
    /// nodes are live.
    pub fn declare_topics(
        &self,
        topics: &[crate::config::OwnedTopicConfig],
        replication_factor: usize,
    ) {
        for topic in topics {
            let spec = TopicSpec {
                partitions: topic.partitions,
                replication_factor: None,
                configs: BTreeMap::new(),
            };
            self.queue_creation(Creation {
                name: topic.name.clone(),
                spec,
                reply: None,
                min_nodes: replication_factor,
            });
        }
    }

    /// The live nodes of the installed assignment: the most replicas a partition gets.
    pub fn live_nodes(&self) -> usize {
        self.assignment().brokers.len()
    }

    fn queue_creation(&self, creation: Creation) {
        let mut queued = self.creations.lock().unwrap_or_else(|p| p.into_inner());
        queued.push(creation);
    }

    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    fn take_creations(&self) -> Vec<Creation> {
        let mut queued = self.creations.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *queued)
    }

    /// Puts back creations an etcd failure left unrecorded, ahead of newer ones.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    fn requeue_creations(&self, left: Vec<Creation>) {
        let mut queued = self.creations.lock().unwrap_or_else(|p| p.into_inner());
        let newer = std::mem::replace(&mut *queued, left);
        queued.extend(newer);
    }
}

/// Creates this node's copy of every created topic the assignment carries, or grows it
/// to the recorded partition count. Every node holds every partition's log, so any node
/// lists the topic in Metadata and can become a replica; only replicas write theirs.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(super) async fn create_copies(store: &Arc<Store>, assignment: &Assignment) {
    for (name, spec) in &assignment.created {
        let local = store.topic(name);
        if local.is_some_and(|t| !t.is_owned() || t.meta().partitions >= spec.partitions) {
            continue;
        }
        let (s, topic, spec) = (store.clone(), name.clone(), spec.clone());
        let made = tokio::task::spawn_blocking(move || copy(&s, &topic, &spec)).await;
        let failed = match made {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::error!(topic = %name, error = %failed, "cannot create this node's copy of the topic");
    }
}

fn copy(store: &Store, name: &str, spec: &TopicSpec) -> Result<(), OwnTopicError> {
    if store.topic(name).is_some() {
        return store.ensure_owned_topic(name, spec.partitions).map(|_| ());
    }
    // The cluster created it: every node holds it, whatever its own partition limit.
    let configs = spec.configs.clone();
    let created = store.create_owned_topic(name, spec.partitions, configs, i64::MAX);
    created.map(|_| tracing::info!(topic = name, "this node's copy of the topic created"))
}

#[cfg(feature = "cluster")]
mod etcd {
    use std::collections::BTreeMap;

    use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};

    use super::super::coordinator::{Session, SessionError};
    use super::TopicSpec;

    impl Session {
        /// Records the topics created or declared on this node, each only if absent.
        pub(in crate::cluster) async fn record_creations(
            &self,
            client: &mut Client,
        ) -> Result<(), SessionError> {
            let (pending, early): (Vec<_>, Vec<_>) = (self.cluster.take_creations().into_iter())
                .partition(|c| self.cluster.live_nodes() >= c.min_nodes);
            self.cluster.requeue_creations(early);
            let mut pending = pending.into_iter();
            while let Some(creation) = pending.next() {
                if creation.reply.as_ref().is_some_and(|r| r.is_closed()) {
                    continue;
                }
                let key = self.key(&format!("topics/{}", creation.name));
                let value = serde_json::to_vec(&creation.spec)?;
                let absent = Compare::create_revision(key.clone(), CompareOp::Equal, 0);
                let create = Txn::new()
                    .when([absent])
                    .and_then([TxnOp::put(key, value, None)]);
                let written = match self.bounded(client.txn(create)).await {
                    Ok(answer) => answer.succeeded(),
                    Err(e) => {
                        let left = std::iter::once(creation).chain(pending).collect();
                        self.cluster.requeue_creations(left);
                        return Err(e);
                    }
                };
                if written {
                    tracing::info!(topic = %creation.name, spec = ?creation.spec, "topic created in the cluster");
                }
                if let Some(reply) = creation.reply {
                    let _ = reply.send(written);
                }
            }
            Ok(())
        }

        /// Every topic recorded under `topics/`, by name.
        pub(in crate::cluster) async fn created_topics(
            &self,
            client: &mut Client,
        ) -> Result<BTreeMap<String, TopicSpec>, SessionError> {
            let prefix = self.key("topics/");
            let listed = client.get(prefix.clone(), Some(GetOptions::new().with_prefix()));
            let listed = self.bounded(listed).await?;
            let mut topics = BTreeMap::new();
            for kv in listed.kvs() {
                let name = kv.key_str()?.strip_prefix(&prefix).unwrap_or_default();
                match serde_json::from_slice::<TopicSpec>(kv.value()) {
                    Ok(spec) if spec.partitions >= 1 => {
                        topics.insert(name.to_string(), spec);
                    }
                    Ok(_) | Err(_) => {
                        tracing::warn!(topic = name, "unreadable topic record left unplaced")
                    }
                }
            }
            Ok(topics)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::super::assignment::{assign, assign_with_created};
    use super::*;

    fn members(ids: &[i32]) -> BTreeMap<i32, String> {
        ids.iter()
            .map(|id| (*id, format!("127.0.0.1:{}", 9000 + id)))
            .collect()
    }

    fn spec(partitions: i32, rf: Option<usize>) -> TopicSpec {
        TopicSpec {
            partitions,
            replication_factor: rf,
            configs: BTreeMap::from([("retention.ms".into(), "60000".into())]),
        }
    }

    /// The assigner's round: shadows plus the created topics' partition counts.
    fn round(
        previous: &Assignment,
        nodes: &[i32],
        shadows: &[(&str, i32)],
        created: &BTreeMap<String, TopicSpec>,
    ) -> Assignment {
        let mut partitions: BTreeMap<String, i32> =
            shadows.iter().map(|(t, n)| (t.to_string(), *n)).collect();
        for (name, s) in created {
            partitions.insert(name.clone(), s.partitions);
        }
        assign_with_created(previous, &members(nodes), &partitions, 2, created)
    }

    #[test]
    fn a_created_topic_is_owned_on_its_replication_factor_in_epoch_zero() {
        let created = BTreeMap::from([
            ("orders".to_string(), spec(6, None)),
            ("audit".to_string(), spec(3, Some(3))),
        ]);
        let a = round(&Assignment::default(), &[1, 2, 3], &[("a_m", 3)], &created);
        assert!(a.is_owned("orders") && a.is_owned("audit") && !a.is_owned("a_m"));
        assert_eq!(a.created, created);
        for (name, rf) in [("orders", 2), ("audit", 3)] {
            for p in &a.topics[name] {
                let distinct: BTreeSet<_> = p.replicas.iter().collect();
                assert_eq!((p.replicas.len(), distinct.len()), (rf, rf), "{p:?}");
                assert!(p.replicas.contains(&p.leader), "{p:?}");
                assert_eq!(p.isr, p.replicas);
                assert_eq!(p.leader_epoch, 0);
            }
        }
        // 12 + 9 + 6 replicas over three nodes, and the 12 leaders, balanced.
        let mut loads: BTreeMap<i32, usize> = BTreeMap::new();
        let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
        for p in a.topics.values().flatten() {
            *leaders.entry(p.leader).or_default() += 1;
            for r in &p.replicas {
                *loads.entry(*r).or_default() += 1;
            }
        }
        assert_eq!(loads.values().collect::<Vec<_>>(), [&9, &9, &9]);
        let spread = leaders.values().max().unwrap() - leaders.values().min().unwrap();
        assert!(spread <= 1, "{leaders:?}");
        // The same inputs change nothing.
        let again = round(&a, &[1, 2, 3], &[("a_m", 3)], &created);
        assert_eq!(again, a);
    }

    #[test]
    fn a_created_topic_loses_a_node_like_a_failed_over_one() {
        let created = BTreeMap::from([("orders".to_string(), spec(6, None))]);
        let before = round(&Assignment::default(), &[1, 2, 3], &[], &created);
        let after = round(&before, &[2, 3], &[], &created);
        for (old, new) in before.topics["orders"].iter().zip(&after.topics["orders"]) {
            if old.leader == 1 {
                assert!(old.isr.contains(&new.leader) && new.leader != 1);
                assert_eq!(new.leader_epoch, 1);
            } else {
                assert_eq!((new.leader, new.leader_epoch), (old.leader, 0));
            }
            // The replacement copies the leader: it is not in sync until it has.
            assert_eq!(new.replicas.len(), 2);
            assert!(!new.isr.contains(&1));
            assert!(new.isr.iter().all(|r| old.isr.contains(r)));
        }
        // A node joining takes no replica of it: owned replicas are not moved.
        let joined = round(&after, &[2, 3, 4], &[], &created);
        assert_eq!(joined.topics["orders"], after.topics["orders"]);
    }

    #[test]
    fn a_created_topic_placed_before_any_node_starts_when_one_joins() {
        let created = BTreeMap::from([("orders".to_string(), spec(2, None))]);
        let empty = round(&Assignment::default(), &[], &[], &created);
        assert!(empty.topics["orders"].iter().all(|p| p.leader == -1));
        let one = round(&empty, &[5], &[], &created);
        for p in &one.topics["orders"] {
            assert_eq!((p.leader, p.leader_epoch, &p.isr), (5, 0, &vec![5]));
        }
    }

    #[test]
    fn a_created_topic_never_takes_over_a_placed_shadow() {
        let shadows = assign(
            &Assignment::default(),
            &members(&[1, 2]),
            &BTreeMap::from([("a_m".to_string(), 2)]),
            2,
        );
        let created = BTreeMap::from([("a_m".to_string(), spec(2, None))]);
        let next = round(&shadows, &[1, 2], &[("a_m", 2)], &created);
        assert!(!next.is_owned("a_m") && next.created.is_empty());
        assert_eq!(next.topics, shadows.topics);
    }

    #[test]
    fn a_grown_created_topic_starts_only_its_new_partitions() {
        let created = BTreeMap::from([("orders".to_string(), spec(2, None))]);
        let before = round(&Assignment::default(), &[1, 2, 3], &[], &created);
        let mut led = before.clone();
        led.topics.get_mut("orders").unwrap()[0].isr.truncate(1);
        let grown = BTreeMap::from([("orders".to_string(), spec(4, None))]);
        let after = round(&led, &[1, 2, 3], &[], &grown);
        assert_eq!(after.topics["orders"][..2], led.topics["orders"][..]);
        for p in &after.topics["orders"][2..] {
            assert_eq!((p.leader_epoch, &p.isr), (0, &p.replicas));
        }
    }
}
