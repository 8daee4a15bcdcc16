//! Failover through etcd: a node records the request under `failovers/<link>`, and the
//! assigner turns the named shadows into owned topics in the same transaction that
//! deletes the request, so a request is carried out exactly once.
//!
//! Each partition's first leader then records its records at risk under
//! `failover-reports/<topic>/<partition>`, once: a later leader (after a node loss)
//! finds the key taken and leaves the failover's report as it was.

use std::collections::BTreeMap;

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};

use super::coordinator::{Session, SessionError};
use super::{Assignment, FailoverAsk, LeaderReport};
use crate::failover::partition_outcome;
use crate::mirror::Store;
use crate::status::StatusReport;
use crate::topic_partition::TopicPartition;

/// The recorded requests an assignment carries out, with the guards and deletes that
/// make the write consume exactly them.
#[derive(Default)]
pub(super) struct Handled {
    pub(super) compares: Vec<Compare>,
    pub(super) deletes: Vec<TxnOp>,
}

impl Handled {
    pub(super) fn is_empty(&self) -> bool {
        self.deletes.is_empty()
    }
}

impl Session {
    /// Records this node's pending failover requests in etcd.
    pub(super) async fn record_failovers(&self, client: &mut Client) -> Result<(), SessionError> {
        let pending = self.cluster.pending_failovers();
        if pending.is_empty() {
            return Ok(());
        }
        for ask in &pending {
            let key = self.key(&format!("failovers/{}", ask.link));
            let value = serde_json::to_vec(ask)?;
            self.bounded(client.put(key, value, None)).await?;
            tracing::warn!(link = %ask.link, topics = ?ask.topics, "failover requested");
        }
        self.cluster.failovers_recorded(&pending);
        Ok(())
    }

    /// `next` with every recorded failover carried out.
    pub(super) async fn fail_over_requested(
        &self,
        client: &mut Client,
        next: Assignment,
    ) -> Result<(Assignment, Handled), SessionError> {
        let prefix = self.key("failovers/");
        let listed = client.get(prefix, Some(GetOptions::new().with_prefix()));
        let listed = self.bounded(listed).await?;
        let mut epochs = BTreeMap::new();
        let mut handled = Handled::default();
        for kv in listed.kvs() {
            let key = kv.key_str()?.to_string();
            handled.compares.push(Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                kv.mod_revision(),
            ));
            handled.deletes.push(TxnOp::delete(key, None));
            let ask: FailoverAsk = match serde_json::from_slice(kv.value()) {
                Ok(ask) => ask,
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable failover request dropped");
                    continue;
                }
            };
            for topic in ask.topics {
                let floors = epoch_floors(&self.store, &next, &topic);
                epochs.insert(topic, floors);
            }
        }
        if !epochs.is_empty() {
            tracing::warn!(topics = ?epochs.keys().collect::<Vec<_>>(), "failing over");
        }
        Ok((next.fail_over(&epochs), handled))
    }
}

impl Session {
    /// Records, for each failed-over partition this node leads and has not reported
    /// yet, its records at risk, unless a leader before it did.
    pub(super) async fn publish_reports(&self, client: &mut Client) -> Result<(), SessionError> {
        let due = self.cluster.reports_due();
        if due.is_empty() {
            return Ok(());
        }
        let seen = self.status.report(&self.store);
        let me = self.cluster.node_id();
        for (key, leader_epoch) in due {
            // Not yet taken over here: its log end at the takeover is not known yet.
            let Some(outcome) = measured(&self.store, &seen, &key) else {
                continue;
            };
            let report = LeaderReport {
                node_id: me,
                leader_epoch,
                outcome,
            };
            let name = self.key(&format!("failover-reports/{}/{}", key.topic, key.partition));
            let unwritten = Compare::create_revision(name.clone(), CompareOp::Equal, 0);
            let put = TxnOp::put(name, serde_json::to_vec(&report)?, None);
            let txn = Txn::new().when([unwritten]).and_then([put]);
            if self.bounded(client.txn(txn)).await?.succeeded() {
                tracing::warn!(partition = %key, records_at_risk = ?report.outcome.records_at_risk, "failover report recorded");
            }
            self.cluster.reported(key);
        }
        Ok(())
    }

    /// Reads every recorded report while a failover answer waits for them.
    pub(super) async fn read_reports(&self, client: &mut Client) -> Result<(), SessionError> {
        if !self.cluster.reports_wanted() {
            return Ok(());
        }
        let prefix = self.key("failover-reports/");
        let listed = client.get(prefix.clone(), Some(GetOptions::new().with_prefix()));
        let listed = self.bounded(listed).await?;
        let mut reports = BTreeMap::new();
        for kv in listed.kvs() {
            let name = kv.key_str()?.strip_prefix(&prefix).unwrap_or_default();
            // Topic names hold no '/', so the last one splits off the partition.
            let key = (name.rsplit_once('/'))
                .and_then(|(topic, p)| Some(TopicPartition::new(topic, p.parse().ok()?)));
            let report = serde_json::from_slice::<LeaderReport>(kv.value());
            match (key, report) {
                (Some(key), Ok(report)) => {
                    reports.insert(key, report);
                }
                _ => tracing::warn!(key = %name, "unreadable failover report skipped"),
            }
        }
        self.cluster.reports_read(reports);
        Ok(())
    }
}

/// A partition's records at risk from this node: its log end when the topic became
/// owned here (where the leader's producers continue) against what its link last saw
/// of the source. `None` until the topic is owned here.
fn measured(
    store: &Store,
    seen: &StatusReport,
    key: &TopicPartition,
) -> Option<crate::failover::PartitionOutcome> {
    let topic = store.topic(&key.topic)?;
    let dst_hwm = *topic.ownership()?.writable_from.get(&key.partition)?;
    let link = topic.meta().link;
    let report = (seen.links.iter())
        .filter(|l| l.name == link)
        .flat_map(|l| &l.topics)
        .filter(|t| t.name == key.topic)
        .flat_map(|t| &t.partitions)
        .find(|p| p.partition == key.partition);
    Some(partition_outcome(
        key.partition,
        dst_hwm,
        report,
        Vec::new(),
    ))
}

/// Per partition, one above every leader epoch this node saw it in: its link observes
/// the source's epochs of every partition, fetched here or not, and the mirrored
/// batches carry no later ones.
fn epoch_floors(store: &Store, assignment: &Assignment, topic: &str) -> Vec<i32> {
    let count = assignment.topics.get(topic).map_or(0, Vec::len);
    (0..count as i32)
        .map(|p| {
            store
                .partition(topic, p)
                .map_or(0, |m| m.leader_epoch() + 1)
        })
        .collect()
}
