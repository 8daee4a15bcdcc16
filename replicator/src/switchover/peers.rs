//! What each link last saw of its source's brokers, so Metadata can send clients of a
//! topic this node handed over (demoted) to the node that owns it now.
//!
//! Nodes of a pair need distinct `kafka.node_id`s for this: a client keys brokers by id.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::source::metadata::ClusterView;

/// A source broker as the link last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerBroker {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

#[derive(Debug, Default)]
struct PeerView {
    brokers: BTreeMap<i32, PeerBroker>,
    /// (topic, partition) → (leader, leader epoch).
    leaders: HashMap<(String, i32), (i32, i32)>,
}

/// Per link, the source's brokers and partition leaders from its latest Metadata.
#[derive(Debug, Default)]
pub struct Peers {
    links: Mutex<HashMap<String, PeerView>>,
}

impl Peers {
    /// Records `link`'s latest view of its source.
    pub fn update(&self, link: &str, view: &ClusterView) {
        let brokers = view
            .brokers
            .iter()
            .filter_map(|(id, addr)| {
                let (host, port) = crate::server::split_host_port(addr)?;
                Some((
                    *id,
                    PeerBroker {
                        node_id: *id,
                        host,
                        port,
                    },
                ))
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
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        links.insert(link.to_string(), PeerView { brokers, leaders });
    }

    /// The broker leading `topic`-`partition` at `link`'s source, and its epoch there.
    pub fn leader(&self, link: &str, topic: &str, partition: i32) -> Option<(PeerBroker, i32)> {
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let view = links.get(link)?;
        let (leader, epoch) = view.leaders.get(&(topic.to_string(), partition))?;
        Some((view.brokers.get(leader)?.clone(), *epoch))
    }
}
