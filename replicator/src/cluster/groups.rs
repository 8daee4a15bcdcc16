//! Consumer groups on a cluster: which node coordinates each group, and the etcd keys
//! that keep every group's committed offsets beyond the node that coordinates it.
//!
//! The coordinator of a group is the live node (a broker of the installed assignment)
//! with the highest rendezvous score for the group id. Every node computes the same
//! answer from the same assignment, with no extra key to write; and when a node joins or
//! leaves, only the groups it gains or loses move, so the others keep their coordinator
//! and the members their sessions.
//!
//! Committed offsets live under `groups/<group id>`, one JSON value per group, replaced
//! whole by one transaction per commit that compares the key's mod revision with the one
//! the coordinator last read or wrote (`crate::groups::shared`).

use std::sync::Arc;

use super::Cluster;

/// Where a group's coordinator is, as this node's assignment says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupCoordinator {
    Here,
    Elsewhere {
        node_id: i32,
        host: String,
        port: i32,
    },
    /// No assignment is installed yet, so no node is known.
    Unknown,
}

impl Cluster {
    /// The node that coordinates `group` and the assignment generation that says so,
    /// read together: the generation changes with every installed assignment.
    fn group_placement(&self, group: &str) -> (Option<i32>, u64) {
        let assignment = self.assignment.read().unwrap_or_else(|p| p.into_inner());
        let node = coordinator_of(group, assignment.brokers.keys().copied());
        (
            node,
            self.generation.load(std::sync::atomic::Ordering::Acquire),
        )
    }

    /// Which node FindCoordinator names for `group`.
    pub fn group_coordinator(&self, group: &str) -> GroupCoordinator {
        let Some(node_id) = self.group_placement(group).0 else {
            return GroupCoordinator::Unknown;
        };
        if node_id == self.node_id {
            return GroupCoordinator::Here;
        }
        let assignment = self.assignment();
        let address = assignment.brokers.get(&node_id);
        match address.and_then(|a| crate::server::split_host_port(a)) {
            Some((host, port)) => GroupCoordinator::Elsewhere {
                node_id,
                host,
                port,
            },
            None => GroupCoordinator::Unknown,
        }
    }
}

/// The node among `nodes` that coordinates `group`: the highest rendezvous score.
pub fn coordinator_of(group: &str, nodes: impl Iterator<Item = i32>) -> Option<i32> {
    nodes.max_by_key(|node| (score(group, *node), *node))
}

/// FNV-1a over the group id and the node id, then a 64-bit finaliser so that node ids
/// differing in their last bits spread over the whole range. Stable across Rust
/// releases and platforms, as every node must compute the same value.
fn score(group: &str, node: i32) -> u64 {
    let bytes = group.bytes().chain(node.to_be_bytes());
    let hash = bytes.fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut z = hash.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Makes `groups` one of the cluster's coordinators, with its offsets in etcd.
#[cfg(feature = "cluster")]
pub fn share_offsets(
    groups: &crate::groups::Coordinator,
    cluster: Arc<Cluster>,
    config: &crate::config::ClusterConfig,
) {
    groups.share(Arc::new(etcd::EtcdOffsets::new(cluster, config)));
}

/// Without the `cluster` feature a `[cluster]` section is a config error, so this never
/// runs; it keeps the daemon's wiring the same in both builds.
#[cfg(not(feature = "cluster"))]
pub fn share_offsets(
    _groups: &crate::groups::Coordinator,
    _cluster: Arc<Cluster>,
    _config: &crate::config::ClusterConfig,
) {
    tracing::error!("this shadowlink was built without cluster support");
}

#[cfg(feature = "cluster")]
mod etcd {
    use std::future::Future;
    use std::sync::Arc;
    use std::time::Duration;

    use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp};
    use futures::future::BoxFuture;
    use serde::{Deserialize, Serialize};

    use super::Cluster;
    use crate::config::ClusterConfig;
    use crate::groups::{
        Committed, GroupError, GroupOffsets, SharedError, SharedOffsets, Stored, TopicPartition,
    };

    /// The value of `groups/<group id>`.
    #[derive(Serialize, Deserialize)]
    struct GroupValue {
        offsets: Vec<Entry>,
    }

    #[derive(Serialize, Deserialize)]
    struct Entry {
        topic: String,
        partition: i32,
        #[serde(flatten)]
        committed: Committed,
    }

    /// Group offsets in etcd, through a client of their own: a commit must not wait
    /// behind the membership session's calls, and fails fast while etcd is away.
    pub struct EtcdOffsets {
        cluster: Arc<Cluster>,
        endpoints: Vec<String>,
        timeout: Duration,
        prefix: String,
        /// Connected on first use, dropped after a failed call so the next one
        /// connects again.
        client: tokio::sync::Mutex<Option<Client>>,
    }

    impl EtcdOffsets {
        pub fn new(cluster: Arc<Cluster>, config: &ClusterConfig) -> EtcdOffsets {
            EtcdOffsets {
                cluster,
                endpoints: config.endpoints.clone(),
                timeout: config.request_timeout,
                prefix: format!("/shadowlink/{}/groups/", config.name),
                client: tokio::sync::Mutex::new(None),
            }
        }

        fn key(&self, group: &str) -> String {
            format!("{}{group}", self.prefix)
        }

        /// The connected client, connecting first when there is none. Calls run
        /// outside the lock, so commits of different groups do not wait for each other.
        async fn client(&self) -> Result<Client, etcd_client::Error> {
            let mut held = self.client.lock().await;
            if let Some(client) = held.as_ref() {
                return Ok(client.clone());
            }
            let options = ConnectOptions::new()
                .with_connect_timeout(self.timeout)
                .with_timeout(self.timeout);
            let client = Client::connect(&self.endpoints, Some(options)).await?;
            Ok(held.insert(client).clone())
        }

        /// Runs one etcd call, bounded by `request_timeout`; any failure drops the
        /// client and counts as etcd unavailable.
        async fn call<T, F, Fut>(&self, call: F) -> Result<T, SharedError>
        where
            F: FnOnce(Client) -> Fut,
            Fut: Future<Output = Result<T, etcd_client::Error>>,
        {
            let outcome =
                tokio::time::timeout(self.timeout, async { call(self.client().await?).await })
                    .await;
            let error = match outcome {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("etcd did not answer within {:?}", self.timeout),
            };
            *self.client.lock().await = None;
            Err(SharedError::Unavailable(error))
        }
    }

    impl SharedOffsets for EtcdOffsets {
        fn term(&self, group: &str) -> Result<u64, GroupError> {
            match self.cluster.group_placement(group) {
                (Some(node), generation) if node == self.cluster.node_id => Ok(generation),
                (Some(_), _) => Err(GroupError::NotCoordinator),
                (None, _) => Err(GroupError::CoordinatorNotAvailable),
            }
        }

        fn read<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<Stored, SharedError>> {
            Box::pin(async move {
                let key = self.key(group);
                let response = self
                    .call(|mut client| async move { client.get(key, None).await })
                    .await?;
                let Some(kv) = response.kvs().first() else {
                    return Ok(Stored::default());
                };
                let value: GroupValue = serde_json::from_slice(kv.value()).map_err(|e| {
                    SharedError::Unavailable(format!("the stored offsets cannot be read: {e}"))
                })?;
                let offsets = value
                    .offsets
                    .into_iter()
                    .map(|e| (TopicPartition::new(e.topic, e.partition), e.committed))
                    .collect();
                Ok(Stored {
                    offsets,
                    revision: kv.mod_revision(),
                })
            })
        }

        fn write<'a>(
            &'a self,
            group: &'a str,
            offsets: &'a GroupOffsets,
            revision: i64,
        ) -> BoxFuture<'a, Result<i64, SharedError>> {
            Box::pin(async move {
                let value = encode(offsets);
                let key = self.key(group);
                // A missing key has mod revision 0, so the first commit is guarded too.
                let txn = Txn::new()
                    .when([Compare::mod_revision(
                        key.clone(),
                        CompareOp::Equal,
                        revision,
                    )])
                    .and_then([TxnOp::put(key, value, None)]);
                let response = self
                    .call(|mut client| async move { client.txn(txn).await })
                    .await?;
                if !response.succeeded() {
                    return Err(SharedError::Conflict);
                }
                let header = response.header();
                header.map(|h| h.revision()).ok_or_else(|| {
                    SharedError::Unavailable("etcd answered without a revision".into())
                })
            })
        }
    }

    fn encode(offsets: &GroupOffsets) -> Vec<u8> {
        let offsets = offsets
            .iter()
            .map(|(tp, committed)| Entry {
                topic: tp.topic.clone(),
                partition: tp.partition,
                committed: committed.clone(),
            })
            .collect();
        serde_json::to_vec(&GroupValue { offsets }).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn every_node_names_the_same_coordinator_and_groups_spread() {
        let nodes = [1, 2, 3];
        let mut per_node: BTreeMap<i32, usize> = BTreeMap::new();
        for g in 0..300 {
            let group = format!("group-{g}");
            let chosen = coordinator_of(&group, nodes.iter().copied()).unwrap();
            let reversed = coordinator_of(&group, nodes.iter().rev().copied()).unwrap();
            assert_eq!(chosen, reversed, "{group}");
            *per_node.entry(chosen).or_default() += 1;
        }
        assert!(per_node.values().all(|n| *n > 60), "{per_node:?}");
        assert_eq!(coordinator_of("g", std::iter::empty()), None);
    }

    #[test]
    fn only_a_lost_nodes_groups_move() {
        for g in 0..300 {
            let group = format!("group-{g}");
            let before = coordinator_of(&group, [1, 2, 3].into_iter()).unwrap();
            let after = coordinator_of(&group, [1, 3].into_iter()).unwrap();
            if before != 2 {
                assert_eq!(before, after, "{group} moved off a live node");
            }
            let joined = coordinator_of(&group, [1, 2, 3, 4].into_iter()).unwrap();
            assert!(
                joined == before || joined == 4,
                "{group} moved between old nodes"
            );
        }
    }

    #[test]
    fn a_cluster_node_names_the_coordinator_its_assignment_places() {
        let cluster = Cluster::new(2);
        assert_eq!(cluster.group_coordinator("g"), GroupCoordinator::Unknown);
        let brokers = [
            (1, "10.0.0.1:9092"),
            (2, "10.0.0.2:9092"),
            (3, "10.0.0.3:9093"),
        ];
        cluster.install(crate::cluster::Assignment {
            brokers: brokers.iter().map(|(n, a)| (*n, a.to_string())).collect(),
            ..Default::default()
        });
        for g in 0..30 {
            let group = format!("group-{g}");
            let expected = coordinator_of(&group, [1, 2, 3].into_iter()).unwrap();
            let named = cluster.group_coordinator(&group);
            match named {
                GroupCoordinator::Here => assert_eq!(expected, 2),
                GroupCoordinator::Elsewhere {
                    node_id,
                    host,
                    port,
                } => {
                    assert_eq!(node_id, expected);
                    assert_eq!(host, format!("10.0.0.{node_id}"));
                    assert_eq!(port, if node_id == 3 { 9093 } else { 9092 });
                }
                GroupCoordinator::Unknown => panic!("{group} has no coordinator"),
            }
        }
    }
}
