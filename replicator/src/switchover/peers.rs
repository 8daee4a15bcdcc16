//! Where clients of a topic this node handed over find its owner now: what each link
//! last saw of its source's brokers, and the epochs this node last owned topics in.
//!
//! A handed-over topic (switching out, fenced by a failover, or demoted to a shadow of
//! its link) is led by the link's source only once the source really owns it, which it
//! shows by leading the partition in an epoch above the one this node owned it in: a
//! switchover or failover takes ownership at an epoch above every one either node
//! advertised, while a mere mirror advertises the epoch it copied. The epoch this node
//! owned a partition in is gone from the topic once it is demoted, and the shadow soon
//! advertises the owner's epoch itself, so it is remembered here, on disk.
//!
//! Broker ids must differ between the two nodes of a pair (`node_id`): a client keys
//! brokers by id, and a link must never be sent to its own node.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use crate::mirror::{MirrorTopic, TopicState};
use crate::source::metadata::ClusterView;

/// A source broker as a link last saw it in the source's Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerBroker {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

impl PeerBroker {
    pub fn addr(&self) -> String {
        match self.host.contains(':') {
            true => format!("[{}]:{}", self.host, self.port),
            false => format!("{}:{}", self.host, self.port),
        }
    }
}

#[derive(Debug, Default)]
struct PeerView {
    brokers: BTreeMap<i32, PeerBroker>,
    /// (topic, partition) → (leader, leader epoch).
    leaders: HashMap<(String, i32), (i32, i32)>,
}

/// Topic → partition → the leader epoch this node last owned it in.
type OwnedEpochs = BTreeMap<String, BTreeMap<i32, i32>>;

/// The node's identity, its links' views of their sources, and its owned epochs.
#[derive(Debug, Default)]
pub struct Peers {
    node_id: i32,
    /// This node's advertised hosts and ports, one per Kafka listener.
    own_addrs: Mutex<Vec<(String, i32)>>,
    links: Mutex<HashMap<String, PeerView>>,
    owned: Mutex<OwnedEpochs>,
    /// Where `owned` is kept; `None` keeps it in memory only.
    path: Option<PathBuf>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Peers {
    /// The peers of node `node_id`, its owned epochs kept in `path` (read now).
    pub fn open(
        node_id: i32,
        path: Option<PathBuf>,
    ) -> Result<Peers, shadowlink_storage::StorageError> {
        let owned = match &path {
            Some(path) => shadowlink_storage::read_meta(path)?.unwrap_or_default(),
            None => OwnedEpochs::new(),
        };
        Ok(Peers {
            node_id,
            own_addrs: Mutex::default(),
            links: Mutex::default(),
            owned: Mutex::new(owned),
            path,
        })
    }

    /// Adds an address this node's Kafka listeners are advertised at.
    pub fn add_own_address(&self, host: &str, port: i32) {
        lock(&self.own_addrs).push((host.to_string(), port));
    }

    /// This node's advertised addresses, written as a link's view of its source writes
    /// a broker's (`host:port`).
    pub fn own_addresses(&self) -> Vec<String> {
        let own = lock(&self.own_addrs);
        own.iter()
            .map(|(host, port)| format!("{host}:{port}"))
            .collect()
    }

    /// Whether broker `node_id` at `addr` (`host:port`) is this node: the same id at one
    /// of its advertised addresses.
    pub fn is_self(&self, node_id: i32, addr: &str) -> bool {
        let Some(addr) = crate::server::split_host_port(addr) else {
            return false;
        };
        node_id == self.node_id && lock(&self.own_addrs).contains(&addr)
    }

    /// Records `link`'s latest view of its source.
    pub fn update(&self, link: &str, view: &ClusterView) {
        let brokers = view
            .brokers
            .iter()
            .filter_map(|(id, addr)| {
                let (host, port) = crate::server::split_host_port(addr)?;
                let broker = PeerBroker {
                    node_id: *id,
                    host,
                    port,
                };
                Some((*id, broker))
            })
            .collect();
        let leaders = view
            .topics
            .iter()
            .flat_map(|(name, t)| {
                t.partitions
                    .iter()
                    .filter(|(_, p)| p.error_code == 0 && p.leader >= 0)
                    .map(move |(i, p)| ((name.clone(), *i), (p.leader, p.leader_epoch)))
            })
            .collect();
        lock(&self.links).insert(link.to_string(), PeerView { brokers, leaders });
    }

    /// Remembers the epochs of `topic` while this node owns it. Blocking when they changed
    /// (one small file write); a failure to keep them is logged, and only costs clients
    /// the redirect after a restart.
    pub fn remember_owned(&self, topic: &MirrorTopic) {
        let Some(ownership) = topic.ownership() else {
            return;
        };
        let mut owned = lock(&self.owned);
        if owned.get(&topic.name) == Some(&ownership.leader_epochs) {
            return;
        }
        owned.insert(topic.name.clone(), ownership.leader_epochs);
        if let Some(path) = &self.path {
            if let Err(e) = shadowlink_storage::write_meta(path, &*owned) {
                tracing::warn!(topic = %topic.name, error = %e, "cannot keep the epochs the topic is owned in");
            }
        }
    }

    /// The epoch this node owns, or last owned, `topic`-`partition` in.
    fn own_epoch(&self, topic: &MirrorTopic, partition: i32) -> Option<i32> {
        match topic.ownership() {
            Some(ownership) => ownership.leader_epochs.get(&partition).copied(),
            None => lock(&self.owned).get(&topic.name)?.get(&partition).copied(),
        }
    }

    /// The broker that owns `topic`-`partition` now that this node handed it over, and
    /// its epoch there: the leader its link sees at an epoch above this node's own, when
    /// that is another node.
    pub fn owner_elsewhere(
        &self,
        topic: &MirrorTopic,
        partition: i32,
    ) -> Option<(PeerBroker, i32)> {
        let (broker, epoch, own) = self.peer_leader(topic, partition)?;
        (epoch > own).then_some((broker, epoch))
    }

    /// Whether this node handed `topic`-`partition` over to another node that its link
    /// does not yet see leading above this node's epoch: the link has not refreshed
    /// since the owner took over, or the peer only mirrors it.
    pub fn awaiting_owner(&self, topic: &MirrorTopic, partition: i32) -> bool {
        self.peer_leader(topic, partition)
            .is_some_and(|(_, epoch, own)| epoch <= own)
    }

    /// For a handed-over partition, the other node its link sees leading it, that
    /// node's epoch and this node's own.
    fn peer_leader(&self, topic: &MirrorTopic, partition: i32) -> Option<(PeerBroker, i32, i32)> {
        let meta = topic.meta();
        let handed_over = matches!(
            meta.state,
            TopicState::Demoted | TopicState::SwitchingOut | TopicState::FencedByFailover { .. }
        );
        if !handed_over {
            return None;
        }
        let own = self.own_epoch(topic, partition)?;
        let links = lock(&self.links);
        let view = links.get(&meta.link)?;
        let (leader, epoch) = *view.leaders.get(&(topic.name.clone(), partition))?;
        let broker = view.brokers.get(&leader)?;
        (broker.node_id != self.node_id).then(|| (broker.clone(), epoch, own))
    }
}
