//! Failover through etcd: a node records the request under `failovers/<link>`, and the
//! assigner turns the named shadows into owned topics in the same transaction that
//! deletes the request, so a request is carried out exactly once.

use std::collections::BTreeMap;

use etcd_client::{Client, Compare, CompareOp, GetOptions, TxnOp};

use super::coordinator::{Session, SessionError};
use super::{Assignment, FailoverAsk};
use crate::mirror::Store;

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
