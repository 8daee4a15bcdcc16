//! A region's shadow as three nodes of one cluster: etcd, a tansu source with one topic,
//! and nodes 1 to 3 of cluster `region-b` (replication factor 2), all on loopback.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Child;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};

use crate::etcd::Etcd;
use crate::raw::RawClient;
use crate::scenario::create_topic;
use crate::{until, Node, NodeConfig, Tansu};

/// The plaintext listener tests read a node through when its `[kafka]` listener needs
/// TLS or SASL.
pub const PROBE: &str = "probe";

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
        Region::start_with(topic, partitions, 3, LEASE_TTL)
    }

    /// Nodes 1 to `nodes`, replication factor 2, the source holding `topic`.
    pub fn start_with(topic: &str, partitions: i32, nodes: i32, lease_ttl: &str) -> Result<Region> {
        Region::start_configured(topic, partitions, nodes, lease_ttl, |config| config)
    }

    /// As [`start_with`](Self::start_with), each node's config passed through `configure`
    /// first: TLS or SASL on its listeners, `[cluster.peer]`. A node whose `[kafka]`
    /// listener needs either is read through a plaintext listener named [`PROBE`].
    pub fn start_configured(
        topic: &str,
        partitions: i32,
        nodes: i32,
        lease_ttl: &str,
        configure: impl Fn(NodeConfig) -> NodeConfig,
    ) -> Result<Region> {
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
        for id in 1..=nodes {
            let config = NodeConfig::linked_to(region.source.addr)
                .admin()
                .node_id(id)
                .cluster("region-b", &region.etcd.endpoint(), lease_ttl, 2);
            region.nodes.insert(id, Node::start(&configure(config))?);
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

    /// Where the test reads node `id` with a plaintext client: its [`PROBE`] listener
    /// when it has one, else `[kafka]`.
    pub fn probe(&self, id: i32) -> Result<SocketAddr> {
        let node = self.node(id)?;
        Ok(node.listener(PROBE).unwrap_or(node.kafka))
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
                    seen.push(self.routes(self.probe(*id)?)?);
                }
                Ok(seen)
            },
            |seen| {
                seen.windows(2).all(|w| w[0] == w[1])
                    && seen[0].settled(&wanted, replicas, self.partitions)
            },
        )
        .map(|mut seen| seen.remove(0))
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

    pub fn led_by(&self, node: i32) -> Vec<i32> {
        let led = self.partitions.iter().filter(|(_, r)| r.leader == node);
        led.map(|(p, _)| *p).collect()
    }

    pub fn replicas_per_node(&self) -> BTreeMap<i32, usize> {
        let mut count: BTreeMap<i32, usize> = self.brokers.iter().map(|b| (*b, 0)).collect();
        for route in self.partitions.values() {
            for r in &route.replicas {
                *count.entry(*r).or_default() += 1;
            }
        }
        count
    }

    /// Every one of `partitions` placed on `replicas` of the nodes `live`, led by one
    /// of them, and `live` the brokers.
    pub fn settled(&self, live: &BTreeSet<i32>, replicas: usize, partitions: i32) -> bool {
        self.brokers == *live
            && self.partitions.len() == partitions as usize
            && self.partitions.values().all(|r| {
                r.replicas.len() == replicas
                    && r.replicas.contains(&r.leader)
                    && r.replicas.iter().all(|n| live.contains(n))
            })
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

/// `(partition, offset, key, time)` of each line a client script printed; the time is
/// Unix seconds when the script prints one, else 0.
pub fn records(child: Child, what: &str) -> Result<Vec<(i32, i64, String, f64)>> {
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "{what} failed: {:?}", out.status);
    let text = String::from_utf8(out.stdout)?;
    text.lines()
        .map(|line| {
            let mut f = line.split_whitespace();
            let p = f.next().context("partition")?.parse()?;
            let o = f.next().context("offset")?.parse()?;
            let k = f.next().context("key")?.to_string();
            let t = f.next().map_or(Ok(0.0), str::parse)?;
            Ok((p, o, k, t))
        })
        .collect()
}

/// The bytes of a partition's log on `node`'s disk, its segments in offset order.
pub fn log_bytes(node: &Node, topic: &str, partition: i32) -> Result<Vec<u8>> {
    let dir = node
        .data_dir
        .join("topics")
        .join(topic)
        .join(partition.to_string());
    let mut segments: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("{}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    // Segment names are their base offsets, zero-padded: name order is offset order.
    segments.retain(|p| p.extension().is_some_and(|e| e == "log"));
    segments.sort();
    let mut bytes = Vec::new();
    for segment in segments {
        bytes.extend(std::fs::read(segment)?);
    }
    Ok(bytes)
}
