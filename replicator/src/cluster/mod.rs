//! A region's shadow served by several nodes, coordinated through etcd
//! (`docs/cluster.md`).
//!
//! Each node keeps its membership key alive on a lease; one node at a time (an etcd
//! election) is the assigner and writes the [`Assignment`] of every mirrored partition
//! to replicas. Every node follows that one revisioned key: its links fetch the
//! partitions it is a replica of, straight from the source (the bytes at an offset are
//! the source's, so replicas agree without copying from each other), and it serves the
//! ones it leads. While etcd cannot be reached, the last assignment stays in force.
//!
//! A failover makes a link's shadows owned in the assignment: the leader takes writes in
//! the epoch the assignment gives it, the other replicas copy it (`replica`), and
//! `acks=all` waits for the in-sync ones (`replication`). Owned topics created on the
//! cluster are recorded in etcd and placed the same way (`topics`).

mod admin;
mod assignment;
#[cfg(feature = "cluster")]
mod coordinator;
#[cfg(feature = "cluster")]
mod failovers;
mod groups;
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
mod isr;
#[cfg(feature = "cluster")]
mod peers;
mod persist;
#[cfg(feature = "cluster")]
mod replica;
mod replication;
#[cfg(feature = "cluster")]
mod retire;
#[cfg(feature = "cluster")]
mod tls;
mod topics;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::protocol::StrBytes;

use crate::mirror::MirrorTopic;

pub use admin::{refuse_ownership_changes, AdminGate, ClusterFailover, LeaderReport};
pub use assignment::{assign, Assignment, Placement, Role};
pub use groups::{share_offsets, GroupCoordinator};
pub use persist::Origin;
pub use replication::{high_watermark, record_follower_fetch, InSyncError};
pub use topics::{CreateTopicError, TopicSpec};

/// Keeps this node in the cluster until `stopped` (see `coordinator::run`), its copies
/// of owned partitions in the role the assignment gives them, the assignment in force
/// on disk, and removes the data of replicas moved away.
#[cfg(feature = "cluster")]
pub async fn run(
    cluster: Arc<Cluster>,
    config: crate::config::ClusterConfig,
    peer: crate::config::PeerClient,
    advertised: Advertised,
    store: Arc<crate::mirror::Store>,
    status: Arc<crate::status::Status>,
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    let grace = config.retired_replica_grace;
    let keep = cluster.data_dir.clone().map(|dir| {
        let kept = persist::run(cluster.clone(), dir, stopped.clone());
        tokio::spawn(kept)
    });
    let retired = retire::run(cluster.clone(), store.clone(), grace, stopped.clone());
    let retired = tokio::spawn(retired);
    let replicas = replica::run(cluster.clone(), store.clone(), peer, stopped.clone());
    let replicas = tokio::spawn(replicas);
    coordinator::run(cluster, config, advertised, store, status, stopped).await;
    let _ = replicas.await;
    let _ = retired.await;
    if let Some(keep) = keep {
        let _ = keep.await;
    }
}

/// Without the `cluster` feature a `[cluster]` section is a config error, so this never
/// runs; it keeps the daemon's wiring the same in both builds.
#[cfg(not(feature = "cluster"))]
pub async fn run(
    _cluster: Arc<Cluster>,
    _config: crate::config::ClusterConfig,
    _peer: crate::config::PeerClient,
    _advertised: Advertised,
    _store: Arc<crate::mirror::Store>,
    _status: Arc<crate::status::Status>,
    _stopped: tokio::sync::watch::Receiver<bool>,
) {
    tracing::error!("this shadowlink was built without cluster support");
}

/// Where this node is reached: clients at its first listener, which Metadata lists;
/// other nodes' followers at the listener `[cluster.peer]` names, when it names one.
#[derive(Debug, Clone)]
pub struct Advertised {
    pub kafka: String,
    pub peer: Option<String>,
}

/// Why coordination is unavailable before the first attempt to reach etcd has failed.
const NOT_CONNECTED: &str = "not yet connected";

/// This node's view of the cluster: the assignment in force and whether etcd answers.
pub struct Cluster {
    node_id: i32,
    assignment: RwLock<Arc<Assignment>>,
    /// Bumped on every assignment change, so a link notices without comparing.
    generation: AtomicU64,
    /// Since when, and why, etcd has not answered; `None` while it does.
    unavailable: Mutex<Option<(SystemTime, String)>>,
    /// Where the assignment in force was read.
    origin: Mutex<Origin>,
    /// Where the assignment in force is kept on disk; `None` keeps nothing.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    data_dir: Option<PathBuf>,
    /// Woken on every install, for the task that keeps the assignment on disk.
    installs: tokio::sync::Notify,
    /// Followers' fetch positions of the partitions this node leads.
    positions: replication::Positions,
    /// Failover requests made on this node, not yet recorded in etcd.
    failover_requests: Mutex<Vec<FailoverAsk>>,
    /// Topics created or declared on this node, not yet recorded in etcd.
    creations: Mutex<Vec<topics::Creation>>,
    /// The leaders' reports of records at risk, for failover answers.
    reports: admin::Reports,
    /// Other nodes' addresses on the listener followers use, when it is not the first.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    peer_addresses: RwLock<std::collections::BTreeMap<i32, String>>,
}

/// A failover of a link's topics, as recorded under `failovers/<link>` for the
/// assigner to carry out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FailoverAsk {
    pub link: String,
    pub topics: Vec<String>,
}

/// How a partition is served from this node, for Metadata.
pub struct Route {
    /// 0, or LEADER_NOT_AVAILABLE while the partition has no placement yet.
    pub error_code: i16,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// The epoch the assignment gives an owned partition's leader; `None` where the
    /// partition's own epoch is served (shadows, a node on its own).
    pub leader_epoch: Option<i32>,
}

impl Cluster {
    pub fn new(node_id: i32) -> Arc<Cluster> {
        Arc::new(Cluster::with_dir(node_id, None))
    }

    fn with_dir(node_id: i32, data_dir: Option<PathBuf>) -> Cluster {
        Cluster {
            node_id,
            assignment: RwLock::new(Arc::new(Assignment::default())),
            generation: AtomicU64::new(0),
            unavailable: Mutex::new(Some((SystemTime::now(), NOT_CONNECTED.into()))),
            origin: Mutex::new(Origin::default()),
            data_dir,
            installs: tokio::sync::Notify::new(),
            positions: Default::default(),
            failover_requests: Mutex::new(Vec::new()),
            creations: Mutex::new(Vec::new()),
            reports: Default::default(),
            peer_addresses: Default::default(),
        }
    }

    /// A node whose assignment is kept in `data_dir`: it starts with the one kept there,
    /// so it serves before etcd answers, and keeps every later one.
    pub fn open(node_id: i32, data_dir: &Path) -> Arc<Cluster> {
        let cluster = Cluster::with_dir(node_id, Some(data_dir.to_path_buf()));
        match persist::load(data_dir) {
            Ok(Some((origin, kept))) => {
                tracing::info!(
                    node_id,
                    revision = origin.revision,
                    "serving the assignment kept on disk until etcd answers"
                );
                cluster.install_at(kept, origin);
            }
            Ok(None) => {}
            Err(e) => tracing::error!(
                error = %e,
                "the kept assignment cannot be read; waiting for etcd's"
            ),
        }
        Arc::new(cluster)
    }

    /// The assignment in force and where it was read.
    pub fn installed(&self) -> (Origin, Arc<Assignment>) {
        let origin = self.origin.lock().unwrap_or_else(|p| p.into_inner());
        (*origin, self.assignment())
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    pub fn assignment(&self) -> Arc<Assignment> {
        self.assignment
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Installs an assignment read from etcd unless the one in force is newer.
    fn install_at(&self, next: Assignment, origin: Origin) {
        let mut current = self.origin.lock().unwrap_or_else(|p| p.into_inner());
        if !origin.supersedes(&current) {
            return;
        }
        *current = origin;
        self.install(next);
        drop(current);
        self.installs.notify_one();
    }

    fn install(&self, next: Assignment) {
        let mut current = self.assignment.write().unwrap_or_else(|p| p.into_inner());
        if **current != next {
            *current = Arc::new(next);
            self.generation.fetch_add(1, Ordering::AcqRel);
            drop(current);
            // A smaller in-sync set or a lost leadership ends `acks=all` waits.
            self.positions.wake();
        }
    }

    /// Asks the assigner, through etcd, to fail `topics` of `link` over.
    pub fn request_failover(&self, ask: FailoverAsk) {
        let mut requests = self
            .failover_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        requests.push(ask);
    }

    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    fn pending_failovers(&self) -> Vec<FailoverAsk> {
        let requests = self
            .failover_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        requests.clone()
    }

    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    fn failovers_recorded(&self, recorded: &[FailoverAsk]) {
        let mut requests = self
            .failover_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        requests.retain(|r| !recorded.contains(r));
    }

    /// `Ok` while the installed assignment names this node leader of an owned partition
    /// in the epoch the partition writes in (`owned_epoch`); else NOT_LEADER_OR_FOLLOWER,
    /// which producers retry after refreshing Metadata.
    pub fn check_writer(
        &self,
        topic: &str,
        partition: i32,
        owned_epoch: Option<i32>,
    ) -> Result<i32, i16> {
        let assignment = self.assignment();
        match assignment.placement(topic, partition) {
            Some(p)
                if assignment.is_owned(topic)
                    && p.leader == self.node_id
                    && owned_epoch == Some(p.leader_epoch) =>
            {
                Ok(p.leader_epoch)
            }
            _ => Err(ResponseError::NotLeaderOrFollower.code()),
        }
    }

    /// Whether this node is a replica of the partition, so its links fetch it.
    pub fn holds(&self, topic: &str, partition: i32) -> bool {
        let assignment = self.assignment();
        let placement = assignment.placement(topic, partition);
        placement.is_some_and(|p| p.replicas.contains(&self.node_id))
    }

    /// `Err(NOT_LEADER_OR_FOLLOWER)` unless this node serves the partition. As in
    /// Kafka, only the leader answers consumers: a replica still filling from the source
    /// would give a shorter log.
    pub fn check_leader(&self, topic: &str, partition: i32) -> Result<(), i16> {
        let assignment = self.assignment();
        match assignment.placement(topic, partition) {
            Some(p) if p.leader == self.node_id => Ok(()),
            _ => Err(ResponseError::NotLeaderOrFollower.code()),
        }
    }

    /// The partition's leader and replicas as Metadata lists them.
    fn route(&self, topic: &str, partition: i32) -> Route {
        let assignment = self.assignment();
        let owned = assignment.is_owned(topic);
        match assignment.placement(topic, partition) {
            Some(p) if p.leader >= 0 => Route {
                error_code: 0,
                leader: p.leader,
                replicas: p.replicas.clone(),
                isr: if owned {
                    p.isr.clone()
                } else {
                    p.replicas.clone()
                },
                leader_epoch: owned.then_some(p.leader_epoch),
            },
            _ => Route {
                error_code: ResponseError::LeaderNotAvailable.code(),
                leader: -1,
                replicas: Vec::new(),
                isr: Vec::new(),
                leader_epoch: None,
            },
        }
    }

    /// Every live node but this one: this node is listed with the address of the
    /// listener a request came in on.
    fn other_brokers(&self) -> Vec<MetadataResponseBroker> {
        let assignment = self.assignment();
        let others = assignment
            .brokers
            .iter()
            .filter(|(id, _)| **id != self.node_id);
        others
            .filter_map(|(id, addr)| {
                let (host, port) = crate::server::split_host_port(addr)?;
                let broker = MetadataResponseBroker::default()
                    .with_node_id((*id).into())
                    .with_host(StrBytes::from_string(host))
                    .with_port(port);
                Some(broker)
            })
            .collect()
    }

    /// Why the node is not ready, while etcd cannot be reached.
    pub fn not_ready(&self) -> Option<String> {
        let unavailable = self.unavailable.lock().unwrap_or_else(|p| p.into_inner());
        let (since, why) = unavailable.as_ref()?;
        let since = humantime::format_rfc3339_seconds(*since);
        Some(format!(
            "cluster coordination unavailable since {since} ({why}); serving the last assignment, \
             no leadership changes"
        ))
    }

    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    fn set_available(&self) {
        let mut unavailable = self.unavailable.lock().unwrap_or_else(|p| p.into_inner());
        if unavailable.take().is_some() {
            tracing::info!(node_id = self.node_id, "cluster coordination available");
        }
    }

    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    fn set_unavailable(&self, why: String) {
        let mut unavailable = self.unavailable.lock().unwrap_or_else(|p| p.into_inner());
        // The time is when the outage began; the reason is the latest, so a node that
        // never connected shows why (a certificate etcd refused), not "not yet connected".
        // Logged once per outage, and once more for the first real reason at start.
        let first = match unavailable.as_mut() {
            Some((_, last)) if *last == why => return,
            Some((_, last)) => std::mem::replace(last, why.clone()) == NOT_CONNECTED,
            None => {
                *unavailable = Some((SystemTime::now(), why.clone()));
                true
            }
        };
        if first {
            tracing::warn!(node_id = self.node_id, error = %why, "cluster coordination unavailable");
        } else {
            tracing::debug!(node_id = self.node_id, error = %why, "cluster coordination still unavailable");
        }
    }
}

/// How Metadata describes a partition: from the assignment on a cluster node; a node on
/// its own leads what it holds.
pub fn route(
    cluster: Option<&Cluster>,
    node_id: i32,
    topic: &MirrorTopic,
    partition: i32,
) -> Route {
    match cluster {
        Some(cluster) => cluster.route(&topic.name, partition),
        None => Route {
            error_code: 0,
            leader: node_id,
            replicas: vec![node_id],
            isr: vec![node_id],
            leader_epoch: None,
        },
    }
}

/// The cluster's other live nodes, for Metadata's broker list.
pub fn metadata_brokers(cluster: &Cluster) -> Vec<MetadataResponseBroker> {
    cluster.other_brokers()
}

/// Fetch and ListOffsets: `Err(NOT_LEADER_OR_FOLLOWER)` on a cluster node that does not
/// lead the partition.
pub fn check_served(cluster: Option<&Cluster>, topic: &str, partition: i32) -> Result<(), i16> {
    match cluster {
        Some(cluster) => cluster.check_leader(topic, partition),
        None => Ok(()),
    }
}
