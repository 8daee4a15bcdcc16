//! A region's shadow as three nodes of one cluster: etcd, a tansu source with one topic,
//! and nodes 1 to 3 of cluster `region-b` (replication factor 2), all on loopback.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};

use crate::etcd::Etcd;
use crate::raw::RawClient;
use crate::scenario::create_topic;
use crate::{until, Node, NodeConfig, Tansu};

/// Short, so a killed node's partitions move within a test's patience.
pub const LEASE_TTL: &str = "3s";
/// How long the region may take to agree after a change.
pub const SETTLE: Duration = Duration::from_secs(60);

/// etcd, a tansu source with the region's topic, and the cluster's nodes by id.
pub struct Region {
    pub etcd: Etcd,
    pub source: Tansu,
    pub nodes: BTreeMap<i32, Node>,
    topic: String,
    partitions: i32,
}

impl Region {
    /// Starts etcd and the source, creates `topic` there, and starts nodes 1 to 3.
    pub fn start(topic: &str, partitions: i32) -> Result<Region> {
        let etcd = Etcd::start()?;
        let source = Tansu::start()?;
        create_topic(source.addr, topic, partitions, &[])?;
        let mut region = Region {
            etcd,
            source,
            nodes: BTreeMap::new(),
            topic: topic.to_string(),
            partitions,
        };
        for id in 1..=3 {
            let config = NodeConfig::linked_to(region.source.addr)
                .admin()
                .node_id(id)
                .cluster("region-b", &region.etcd.endpoint(), LEASE_TTL, 2);
            region.nodes.insert(id, Node::start(&config)?);
        }
        Ok(region)
    }

    pub fn node(&self, id: i32) -> Result<&Node> {
        self.nodes.get(&id).with_context(|| format!("no node {id}"))
    }

    pub fn node_mut(&mut self, id: i32) -> Result<&mut Node> {
        self.nodes
            .get_mut(&id)
            .with_context(|| format!("no node {id}"))
    }

    /// Every node's Kafka address, as a client's bootstrap list.
    pub fn bootstrap(&self) -> String {
        let addrs: Vec<String> = self.nodes.values().map(|n| n.kafka.to_string()).collect();
        addrs.join(",")
    }

    /// What `node`'s Metadata says of the region's topic.
    pub fn routes(&self, node: SocketAddr) -> Result<Routes> {
        routes(node, &self.topic)
    }

    /// Waits until every node in `live` answers the same Metadata: those nodes as
    /// brokers, every partition on `min(2, live)` of them with a leader among them.
    pub fn settled(&self, live: &[i32]) -> Result<Routes> {
        let wanted: BTreeSet<i32> = live.iter().copied().collect();
        let replicas = live.len().min(2);
        until(
            SETTLE,
            || {
                let mut seen = Vec::new();
                for id in live {
                    seen.push(self.routes(self.node(*id)?.kafka)?);
                }
                Ok(seen)
            },
            |seen| {
                seen.windows(2).all(|w| w[0] == w[1])
                    && seen[0].brokers == wanted
                    && seen[0].partitions.len() == self.partitions as usize
                    && seen[0].partitions.values().all(|(leader, r)| {
                        r.len() == replicas
                            && r.contains(leader)
                            && r.iter().all(|n| wanted.contains(n))
                    })
            },
        )
        .map(|mut seen| seen.remove(0))
    }
}

/// What one node's Metadata says: the brokers, and each partition's leader and replicas.
#[derive(Debug, Clone, PartialEq)]
pub struct Routes {
    pub brokers: BTreeSet<i32>,
    pub partitions: BTreeMap<i32, (i32, Vec<i32>)>,
}

impl Routes {
    pub fn leaders(&self) -> BTreeMap<i32, i32> {
        self.partitions.iter().map(|(p, (l, _))| (*p, *l)).collect()
    }

    pub fn replicas_per_node(&self) -> BTreeMap<i32, usize> {
        let mut count: BTreeMap<i32, usize> = self.brokers.iter().map(|b| (*b, 0)).collect();
        for (_, replicas) in self.partitions.values() {
            for r in replicas {
                *count.entry(*r).or_default() += 1;
            }
        }
        count
    }
}

/// What `node`'s Metadata says of `topic`.
pub fn routes(node: SocketAddr, topic: &str) -> Result<Routes> {
    let mut client = RawClient::connect(node)?;
    let version = client.version(ApiKey::Metadata, 9)?;
    let request = MetadataRequest::default().with_topics(None);
    let response: MetadataResponse = client.call(ApiKey::Metadata, version, &request)?;
    let brokers = response.brokers.iter().map(|b| b.node_id.0).collect();
    let mut partitions = BTreeMap::new();
    for t in response
        .topics
        .iter()
        .filter(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
    {
        for p in &t.partitions {
            let replicas = p.replica_nodes.iter().map(|r| r.0).collect();
            partitions.insert(p.partition_index, (p.leader_id.0, replicas));
        }
    }
    Ok(Routes {
        brokers,
        partitions,
    })
}
