//! What region B's Metadata says: its brokers, and each `a_*` partition's leader and
//! replicas.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::bail;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};

use shadowlink::source::SourceClient;

use super::super::pair::{A_TOPICS, PARTITIONS};
use super::super::workload::TopicPartition;

/// A node slower than this to answer Metadata counts as not answering.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// One node's view of the region.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Routes {
    pub brokers: BTreeSet<i32>,
    /// Per partition: its leader and replicas.
    pub partitions: BTreeMap<TopicPartition, (i32, Vec<i32>)>,
}

impl Routes {
    /// The partitions `node` leads.
    pub fn led_by(&self, node: i32) -> Vec<TopicPartition> {
        let led = self.partitions.iter().filter(|(_, (l, _))| *l == node);
        led.map(|(tp, _)| tp.clone()).collect()
    }

    /// Every `a_*` partition is placed on `min(RF, live)` of the `live` nodes, with a
    /// leader among them, and the brokers are exactly `live`.
    pub fn settled(&self, live: &BTreeSet<i32>, replication_factor: usize) -> bool {
        let wanted = replication_factor.min(live.len());
        self.brokers == *live
            && self.partitions.len() == A_TOPICS.len() * PARTITIONS as usize
            && self.partitions.values().all(|(leader, replicas)| {
                replicas.len() == wanted
                    && replicas.contains(leader)
                    && replicas.iter().all(|r| live.contains(r))
            })
    }

    /// Per partition that `gone` held: the node that holds it now and did not before.
    pub fn replacements(&self, before: &Routes, gone: i32) -> BTreeMap<TopicPartition, i32> {
        let mut out = BTreeMap::new();
        for (tp, (_, old)) in before.partitions.iter() {
            let Some((_, new)) = self.partitions.get(tp) else {
                continue;
            };
            let added = new.iter().find(|n| !old.contains(n));
            if let (true, Some(added)) = (old.contains(&gone), added) {
                out.insert(tp.clone(), *added);
            }
        }
        out
    }
}

/// The routes Metadata on the node at `addr` gives.
pub async fn routes(addr: &str) -> anyhow::Result<Routes> {
    let client = SourceClient::connect(addr, "demo-routes", None, None).await?;
    let request = MetadataRequest::default().with_topics(None);
    let response: MetadataResponse = client.send(ApiKey::Metadata, &request).await?;
    let mut routes = Routes {
        brokers: response.brokers.iter().map(|b| b.node_id.0).collect(),
        partitions: BTreeMap::new(),
    };
    for topic in &response.topics {
        let Some(name) = topic.name.as_ref().map(|n| n.0.to_string()) else {
            continue;
        };
        if !A_TOPICS.contains(&name.as_str()) {
            continue;
        }
        for p in &topic.partitions {
            let replicas = p.replica_nodes.iter().map(|r| r.0).collect();
            let tp = TopicPartition::new(name.clone(), p.partition_index);
            routes.partitions.insert(tp, (p.leader_id.0, replicas));
        }
    }
    Ok(routes)
}

/// Polls every node in `addrs` until each answers the same routes and `done` holds for
/// them; returns those routes.
pub async fn wait_for(
    addrs: &[&str],
    timeout: Duration,
    done: impl Fn(&Routes) -> bool,
) -> anyhow::Result<Routes> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match agreed(addrs).await {
            Ok(routes) if done(&routes) => return Ok(routes),
            Ok(routes) => format!("{routes:?}"),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() > deadline {
            bail!("region B did not settle within {timeout:?}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The routes all of `addrs` agree on.
async fn agreed(addrs: &[&str]) -> anyhow::Result<Routes> {
    let mut seen: Option<Routes> = None;
    for addr in addrs {
        let routes = tokio::time::timeout(ASK_TIMEOUT, routes(addr))
            .await
            .map_err(|_| anyhow::anyhow!("{addr} did not answer Metadata within {ASK_TIMEOUT:?}"))??;
        match &seen {
            Some(first) if *first != routes => bail!("the nodes disagree"),
            _ => seen = Some(routes),
        }
    }
    seen.ok_or_else(|| anyhow::anyhow!("no node asked"))
}
