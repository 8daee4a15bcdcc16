//! A region's shadow as three nodes of one cluster: etcd, a tansu source with one topic,
//! and nodes 1 to 3 of cluster `region-b` (replication factor 2), all on loopback. Or a
//! region that owns its topics: etcd and the nodes, no source ([`Owners`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::batch::testing::build_batch;
use shadowlink_protocol::batch::BatchWalker;

use crate::etcd::Etcd;
use crate::raw::RawClient;
use crate::scenario::create_topic;
use crate::{http_post, until, Node, NodeConfig, Tansu};

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

/// etcd and nodes 1 to N of cluster `region-b` (replication factor 2), without a link:
/// their topics are created on the cluster and written by producers.
pub struct Owners {
    pub etcd: Etcd,
    pub nodes: BTreeMap<i32, Node>,
}

impl Owners {
    /// Starts etcd and nodes 1 to `nodes` (`persist = "always"`), each config changed
    /// by `configure`, one after another as in a rolling start: each once it has
    /// installed an assignment and the nodes before it list it as a broker. Returns
    /// once every node lists all of them.
    pub fn start(nodes: i32, configure: impl Fn(NodeConfig) -> NodeConfig) -> Result<Owners> {
        let etcd = Etcd::start()?;
        let mut owners = Owners {
            etcd,
            nodes: BTreeMap::new(),
        };
        for id in 1..=nodes {
            let config = NodeConfig::owner().admin().node_id(id).cluster(
                "region-b",
                &owners.etcd.endpoint(),
                LEASE_TTL,
                2,
            );
            let node = Node::start(&configure(config))?;
            until(SETTLE, || coordinator_named(node.kafka), |named| *named)?;
            owners.nodes.insert(id, node);
            let joined: BTreeSet<i32> = owners.nodes.keys().copied().collect();
            for node in owners.nodes.values() {
                until(SETTLE, || routes(node.kafka, ""), |r| r.brokers == joined)?;
            }
        }
        Ok(owners)
    }

    pub fn node(&self, id: i32) -> Result<&Node> {
        self.nodes.get(&id).with_context(|| format!("no node {id}"))
    }

    pub fn node_mut(&mut self, id: i32) -> Result<&mut Node> {
        self.nodes
            .get_mut(&id)
            .with_context(|| format!("no node {id}"))
    }

    /// The Kafka addresses of nodes `ids`, as a client's bootstrap list.
    pub fn bootstrap(&self, ids: &[i32]) -> Result<String> {
        let addrs: Vec<String> = (ids.iter())
            .map(|id| Ok(self.node(*id)?.kafka.to_string()))
            .collect::<Result<_>>()?;
        Ok(addrs.join(","))
    }

    /// Waits until every node of `live` routes `topic` alike: `partitions` partitions,
    /// each on `replicas` of those nodes and led by one of them.
    pub fn placed(
        &self,
        topic: &str,
        live: &[i32],
        replicas: usize,
        partitions: i32,
    ) -> Result<Routes> {
        let wanted: BTreeSet<i32> = live.iter().copied().collect();
        let seen = until(
            SETTLE,
            || {
                (live.iter())
                    .map(|id| routes(self.node(*id)?.kafka, topic))
                    .collect::<Result<Vec<_>>>()
            },
            |seen| {
                seen.windows(2).all(|w| w[0] == w[1])
                    && seen[0].settled(&wanted, replicas, partitions)
            },
        )?;
        Ok(seen[0].clone())
    }
}

/// Whether the node at `node` names a group coordinator: it does once it has installed
/// an assignment, which lists it among the live nodes.
fn coordinator_named(node: SocketAddr) -> Result<bool> {
    let mut client = RawClient::connect(node)?;
    let key = StrBytes::from_static_str("joined");
    let request = FindCoordinatorRequest::default().with_key(key);
    let response: FindCoordinatorResponse = client.call(ApiKey::FindCoordinator, 3, &request)?;
    Ok(response.error_code == 0)
}

/// The bytes of every segment of one partition's log on `node`'s disk, oldest first: two
/// replicas holding the same batches at the same offsets give the same bytes.
pub fn log_bytes(node: &Node, topic: &str, partition: i32) -> Result<Vec<u8>> {
    let dir = node
        .data_dir
        .join("topics")
        .join(topic)
        .join(partition.to_string());
    let mut segments: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    let mut bytes = Vec::new();
    for segment in segments {
        bytes.extend(std::fs::read(&segment)?);
    }
    Ok(bytes)
}

impl Region {
    /// Fails every topic of link `from-a` over through node 1's admin API and waits
    /// until every node in `live` routes the region's topic in the new leader epochs,
    /// with its in-sync set.
    pub fn fail_over(&self, live: &[i32]) -> Result<Routes> {
        let before = self.settled(live)?;
        let admin = self.node(1)?.admin.context("node 1 has no admin API")?;
        let (code, body) = http_post(admin, "/v1/links/from-a/failover", r#"{"all": true}"#)?;
        ensure!(code == 200, "failover answered {code}: {body}");
        until(
            SETTLE,
            || self.settled(live),
            |after| {
                after.partitions.iter().all(|(p, r)| {
                    let was = before.partitions.get(p);
                    was.is_some_and(|w| r.leader_epoch > w.leader_epoch) && !r.isr.is_empty()
                })
            },
        )
    }

    /// The id of the node that holds the assigner role, as etcd has it now.
    pub fn assigner(&self) -> Result<i32> {
        let held = self.etcd.get("/shadowlink/region-b/assigner")?;
        Ok(held.context("no assigner in etcd")?.trim().parse()?)
    }

    /// Waits until every node in `live` gives partition `partition` of the region's
    /// topic the in-sync set `isr` (in any order).
    pub fn isr_becomes(&self, live: &[i32], partition: i32, isr: &[i32]) -> Result<Routes> {
        let wanted: BTreeSet<i32> = isr.iter().copied().collect();
        let seen = until(
            SETTLE,
            || {
                live.iter()
                    .map(|id| self.routes(self.node(*id)?.kafka))
                    .collect::<Result<Vec<_>>>()
            },
            |seen| {
                seen.iter().all(|routes| {
                    let route = routes.partitions.get(&partition);
                    route.is_some_and(|r| r.isr.iter().copied().collect::<BTreeSet<_>>() == wanted)
                })
            },
        );
        seen.map(|mut seen| seen.remove(0))
    }
}

/// Sends `signal` (`-STOP`, `-CONT`, ...) to a node's process.
pub fn signal(node: &Node, signal: &str) -> Result<()> {
    signal_process(node.process.pid(), signal)
}

/// How long a stopped process's threads may take to stop.
const STOPPING: Duration = Duration::from_secs(10);

/// Sends `signal` to process `pid`; `-STOP` returns only once every thread of it has
/// stopped. `kill` returns once the signal is queued, and the process's other threads
/// run on until the one that takes it is scheduled, which on a loaded machine may be
/// long enough for a follower to fetch a write made after the signal was sent.
pub fn signal_process(pid: u32, signal: &str) -> Result<()> {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill {signal} {pid} failed");
    if matches!(signal, "-STOP" | "-SIGSTOP") {
        until(STOPPING, || running_threads(pid), Vec::is_empty)
            .with_context(|| format!("process {pid} did not stop"))?;
    }
    Ok(())
}

/// The threads of process `pid` that are not stopped, each with its state in `/proc`.
fn running_threads(pid: u32) -> Result<Vec<(String, char)>> {
    let mut running = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let entry = entry?;
        // A thread that exited meanwhile runs nothing.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The state follows the command name, which may itself hold parentheses.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .with_context(|| format!("unreadable {}", entry.path().display()))?;
        if !matches!(state, 'T' | 't' | 'Z' | 'X') {
            running.push((entry.file_name().to_string_lossy().into_owned(), state));
        }
    }
    Ok(running)
}

/// What one consumer Fetch (`replica_id` -1, no wait) of a partition at `offset`
/// answers: its high watermark, last stable offset and the batches it returns.
#[derive(Debug)]
pub struct Fetched {
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub batches: Vec<(i64, Bytes)>,
}

/// Fetch v12 of one partition from `offset`, as a consumer at `isolation_level`.
pub fn fetch_at(
    node: SocketAddr,
    topic: &str,
    partition: i32,
    offset: i64,
    isolation_level: i8,
) -> Result<Fetched> {
    let p = FetchPartition::default()
        .with_partition(partition)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(1024 * 1024);
    let request = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(8 * 1024 * 1024)
        .with_isolation_level(isolation_level)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![p])]);
    let mut client = RawClient::connect(node)?;
    let version = client.version(ApiKey::Fetch, 12)?;
    let response: FetchResponse = client.call(ApiKey::Fetch, version, &request)?;
    let p = (response.responses.into_iter())
        .flat_map(|t| t.partitions)
        .next()
        .context("empty Fetch response")?;
    let mut batches = Vec::new();
    for batch in BatchWalker::new(p.records.unwrap_or_default()) {
        let batch = batch?;
        batches.push((batch.base_offset(), batch.into_bytes()));
    }
    Ok(Fetched {
        error_code: p.error_code,
        high_watermark: p.high_watermark,
        last_stable_offset: p.last_stable_offset,
        batches,
    })
}

/// Produce v9 of one record `value` to a partition with `acks` and `timeout_ms`: the
/// partition's error code and base offset.
pub fn produce_one(
    node: SocketAddr,
    topic: &str,
    partition: i32,
    acks: i16,
    timeout_ms: i32,
    value: &str,
) -> Result<(i16, i64)> {
    let batch = build_batch(0, 0, &[(None, Some(value.as_bytes()))], 1_000);
    let data = PartitionProduceData::default()
        .with_index(partition)
        .with_records(Some(batch));
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![data])]);
    let mut client = RawClient::connect(node)?;
    let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request)?;
    let answer = (response.responses.into_iter())
        .flat_map(|t| t.partition_responses)
        .next()
        .context("empty Produce response")?;
    Ok((answer.error_code, answer.base_offset))
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
