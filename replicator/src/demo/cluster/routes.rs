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
            .map_err(|_| {
                anyhow::anyhow!("{addr} did not answer Metadata within {ASK_TIMEOUT:?}")
            })??;
        match &seen {
            Some(first) if *first != routes => bail!("the nodes disagree"),
            _ => seen = Some(routes),
        }
    }
    seen.ok_or_else(|| anyhow::anyhow!("no node asked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(brokers: &[i32], placed: &[(&str, i32, i32, &[i32])]) -> Routes {
        Routes {
            brokers: brokers.iter().copied().collect(),
            partitions: placed
                .iter()
                .map(|(t, p, leader, replicas)| {
                    (TopicPartition::new(*t, *p), (*leader, replicas.to_vec()))
                })
                .collect(),
        }
    }

    fn three_nodes() -> Routes {
        routes(
            &[1, 2, 3],
            &[
                ("a_orders", 0, 1, &[1, 2]),
                ("a_orders", 1, 3, &[3, 1]),
                ("a_shipments", 0, 2, &[2, 3]),
                ("a_shipments", 1, 1, &[1, 2]),
            ],
        )
    }

    #[test]
    fn settled_needs_every_partition_on_the_live_nodes_with_a_leader_among_them() {
        let live: BTreeSet<i32> = [1, 2, 3].into();
        assert!(three_nodes().settled(&live, 2));
        let mut lost_leader = three_nodes();
        lost_leader.brokers.remove(&1);
        assert!(!lost_leader.settled(&[2, 3].into(), 2));
        let mut short = three_nodes();
        short.partitions.values_mut().next().unwrap().1.pop();
        assert!(!short.settled(&live, 2));
    }

    #[test]
    fn a_replacement_is_the_node_added_to_a_partition_the_lost_node_held() {
        let after = routes(
            &[2, 3],
            &[
                ("a_orders", 0, 2, &[2, 3]),
                ("a_orders", 1, 3, &[3, 2]),
                ("a_shipments", 0, 2, &[2, 3]),
                ("a_shipments", 1, 2, &[2, 3]),
            ],
        );
        let replaced = after.replacements(&three_nodes(), 1);
        let expected: BTreeMap<TopicPartition, i32> = [
            (TopicPartition::new("a_orders", 0), 3),
            (TopicPartition::new("a_orders", 1), 2),
            (TopicPartition::new("a_shipments", 1), 3),
        ]
        .into();
        assert_eq!(replaced, expected);
        assert_eq!(three_nodes().led_by(1).len(), 2);
    }
}
