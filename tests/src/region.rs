//! A region's shadow as a cluster: one etcd, a tansu source and nodes 1 to N of cluster
//! `region-b` linked to it, on loopback; and what a node's Metadata says about a topic.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use anyhow::{Context, Result};
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};

use crate::etcd::Etcd;
use crate::raw::RawClient;
use crate::scenario::create_topic;
use crate::{Node, NodeConfig, Tansu};

/// etcd, a tansu source with one topic, and the region's nodes by id.
pub struct Region {
    pub etcd: Etcd,
    pub source: Tansu,
    pub nodes: BTreeMap<i32, Node>,
}

impl Region {
    /// Nodes 1 to `nodes`, replication factor 2, the source holding `topic`.
    pub fn start(topic: &str, partitions: i32, nodes: i32, lease_ttl: &str) -> Result<Region> {
        let etcd = Etcd::start()?;
        let source = Tansu::start()?;
        create_topic(source.addr, topic, partitions, &[])?;
        let mut region = Region {
            etcd,
            source,
            nodes: BTreeMap::new(),
        };
        for id in 1..=nodes {
            let config = NodeConfig::linked_to(region.source.addr)
                .admin()
                .node_id(id)
                .cluster("region-b", &region.etcd.endpoint(), lease_ttl, 2);
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
}

/// One partition as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// What one node's Metadata says: the brokers, and each partition of the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    pub brokers: BTreeSet<i32>,
    pub partitions: BTreeMap<i32, Route>,
}

impl Routes {
    pub fn leaders(&self) -> BTreeMap<i32, i32> {
        self.partitions
            .iter()
            .map(|(p, r)| (*p, r.leader))
            .collect()
    }
}

/// `topic` as the node at `node` routes it.
pub fn routes(node: SocketAddr, topic: &str) -> Result<Routes> {
    let mut client = RawClient::connect(node)?;
    let version = client.version(ApiKey::Metadata, 9)?;
    let request = MetadataRequest::default().with_topics(None);
    let response: MetadataResponse = client.call(ApiKey::Metadata, version, &request)?;
    let brokers = response.brokers.iter().map(|b| b.node_id.0).collect();
    let mut partitions = BTreeMap::new();
    let named = |t: &&kafka_protocol::messages::metadata_response::MetadataResponseTopic| {
        t.name.as_ref().is_some_and(|n| n.0.as_str() == topic)
    };
    for t in response.topics.iter().filter(named) {
        for p in &t.partitions {
            let route = Route {
                leader: p.leader_id.0,
                leader_epoch: p.leader_epoch,
                replicas: p.replica_nodes.iter().map(|r| r.0).collect(),
                isr: p.isr_nodes.iter().map(|r| r.0).collect(),
            };
            partitions.insert(p.partition_index, route);
        }
    }
    Ok(Routes {
        brokers,
        partitions,
    })
}
