//! The node's etcd session: its membership lease, the assigner election, and the watch
//! on the assignment. Keys, all under `/shadowlink/<cluster name>/`:
//! `members/<node id>` (the advertised address, on the node's lease), `assigner` (the
//! elected node's id, on its lease) and `assignment` (JSON, written in a transaction
//! guarded by the revision it was computed from and by the writer still being assigner).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use tokio::sync::watch;

use super::assignment::assign_with_created;
use super::{Assignment, Cluster, Origin};
use crate::config::ClusterConfig;
use crate::mirror::Store;

/// Why the etcd session ended; the node keeps its last assignment and tries again.
#[derive(Debug, thiserror::Error)]
pub(super) enum SessionError {
    #[error("etcd: {}", super::tls::describe(.0))]
    Etcd(#[from] etcd_client::Error),
    #[error(transparent)]
    Setup(#[from] super::tls::SetupError),
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the membership lease expired")]
    LeaseExpired,
    #[error("a stream from etcd ended")]
    StreamEnded,
    #[error("the stored assignment cannot be read: {0}")]
    Decode(#[from] serde_json::Error),
}

/// What the node's session needs and keeps across reconnects.
pub(super) struct Session {
    pub(super) cluster: Arc<Cluster>,
    pub(super) config: ClusterConfig,
    /// Where clients and other nodes reach this node.
    pub(super) advertised: super::Advertised,
    pub(super) store: Arc<Store>,
    /// What the links saw of the source, for the failover reports of partitions led here.
    pub(super) status: Arc<crate::status::Status>,
    prefix: String,
    /// Kept across reconnects: etcd extends leases when it restarts, so a node that
    /// comes back on its old lease keeps its membership and its election unbroken.
    lease: Option<i64>,
}

/// Keeps this node in the cluster until `stopped`: membership, the assigner role when
/// elected, and the assignment in force. Never returns an error: while etcd cannot be
/// reached, the node serves its last assignment and `/readyz` says why.
pub async fn run(
    cluster: Arc<Cluster>,
    config: ClusterConfig,
    advertised: super::Advertised,
    store: Arc<Store>,
    status: Arc<crate::status::Status>,
    mut stopped: watch::Receiver<bool>,
) {
    let prefix = format!("/shadowlink/{}/", config.name);
    let mut session = Session {
        cluster,
        config,
        advertised,
        store,
        status,
        prefix,
        lease: None,
    };
    loop {
        // Each etcd call is bounded by `request_timeout`, so a stop is seen soon.
        let outcome = session.connect_and_run(&mut stopped).await;
        match outcome {
            Ok(()) => return,
            Err(_) if *stopped.borrow() => return,
            Err(e) => session.cluster.set_unavailable(e.to_string()),
        }
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

impl Session {
    pub(super) fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Bounds one etcd call: a stopped etcd must not hold the session forever.
    pub(super) async fn bounded<T, F>(&self, call: F) -> Result<T, SessionError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        let limit = self.config.request_timeout;
        match tokio::time::timeout(limit, call).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(SessionError::Timeout(limit)),
        }
    }

    async fn connect_and_run(
        &mut self,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<(), SessionError> {
        let options = super::tls::connect_options(&self.config)?;
        let mut client = self
            .bounded(Client::connect(&self.config.endpoints, Some(options)))
            .await?;
        let lease = self.join(&mut client).await?;
        let (mut keeper, mut kept) = self.bounded(client.lease_keep_alive(lease)).await?;
        let key = self.key("assignment");
        let revision = self.load_assignment(&mut client).await?;
        let from = WatchOptions::new().with_start_revision(revision + 1);
        let mut changes = self.bounded(client.watch(key, Some(from))).await?;
        self.cluster.set_available();
        let mut assigner = false;
        let keep_every = self.config.lease_ttl / 3;
        let mut keep_at = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = stopped.changed() => {
                    // A node shut down on purpose hands its partitions over at once
                    // instead of after the lease runs out.
                    let _ = self.bounded(client.lease_revoke(lease)).await;
                    return Ok(());
                }
                message = changes.message() => {
                    let response = message?.ok_or(SessionError::StreamEnded)?;
                    let etcd_cluster = response.header().map_or(0, |h| h.cluster_id());
                    for event in response.events() {
                        if let (EventType::Put, Some(kv)) = (event.event_type(), event.kv()) {
                            let origin = Origin { etcd_cluster, revision: kv.mod_revision() };
                            self.cluster.install_at(serde_json::from_slice(kv.value())?, origin);
                        }
                    }
                }
                _ = tick.tick() => {
                    if Instant::now() >= keep_at {
                        self.bounded(keeper.keep_alive()).await?;
                        let answer = self.bounded(kept.message()).await?;
                        let answer = answer.ok_or(SessionError::StreamEnded)?;
                        if answer.ttl() <= 0 {
                            self.lease = None;
                            return Err(SessionError::LeaseExpired);
                        }
                        keep_at = Instant::now() + keep_every;
                    }
                    self.record_failovers(&mut client).await?;
                    self.record_creations(&mut client).await?;
                    self.propose_isr(&mut client).await?;
                    self.publish_reports(&mut client).await?;
                    self.read_reports(&mut client).await?;
                    self.read_peers(&mut client).await?;
                    assigner = self.assign_step(&mut client, lease, assigner).await?;
                }
            }
        }
    }

    /// Puts this node's membership key on its lease, reusing the lease it had when etcd
    /// still holds it.
    async fn join(&mut self, client: &mut Client) -> Result<i64, SessionError> {
        let alive = match self.lease {
            Some(id) => {
                let ttl = self.bounded(client.lease_time_to_live(id, None)).await?;
                (ttl.ttl() > 0).then_some(id)
            }
            None => None,
        };
        let lease = match alive {
            Some(id) => id,
            None => {
                let granted = client.lease_grant(self.config.lease_seconds(), None);
                self.bounded(granted).await?.id()
            }
        };
        self.lease = Some(lease);
        let key = self.key(&format!("members/{}", self.cluster.node_id()));
        let put = PutOptions::new().with_lease(lease);
        let address = self.advertised.kafka.clone();
        self.bounded(client.put(key, address, Some(put))).await?;
        self.join_peers(client, lease).await?;
        tracing::info!(
            node_id = self.cluster.node_id(),
            lease,
            "joined the cluster"
        );
        Ok(lease)
    }

    /// Installs the stored assignment and returns the revision it was read at.
    async fn load_assignment(&self, client: &mut Client) -> Result<i64, SessionError> {
        let response = self
            .bounded(client.get(self.key("assignment"), None))
            .await?;
        if let Some(kv) = response.kvs().first() {
            let etcd_cluster = response.header().map_or(0, |h| h.cluster_id());
            let origin = Origin {
                etcd_cluster,
                revision: kv.mod_revision(),
            };
            self.cluster
                .install_at(serde_json::from_slice(kv.value())?, origin);
        }
        Ok(response.header().map_or(0, |h| h.revision()))
    }

    /// One round of the assigner: claim the role when it is free, and while holding it,
    /// write the next assignment when members or partitions changed. Returns whether
    /// this node is the assigner.
    async fn assign_step(
        &self,
        client: &mut Client,
        lease: i64,
        assigner: bool,
    ) -> Result<bool, SessionError> {
        let key = self.key("assigner");
        let me = self.cluster.node_id().to_string();
        if !assigner {
            let claim = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key.clone(),
                    me.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                )]);
            let claimed = self.bounded(client.txn(claim)).await?;
            let current = self.bounded(client.get(key.clone(), None)).await?;
            let holder = current.kvs().first().map(|kv| kv.value().to_vec());
            if !claimed.succeeded() && holder.as_deref() != Some(me.as_bytes()) {
                return Ok(false);
            }
            tracing::info!(node_id = self.cluster.node_id(), "elected assigner");
        }
        self.write_assignment(client, &key, &me).await
    }

    /// Writes the next assignment if it differs from the stored one. The write holds only
    /// while this node is still the assigner and nobody wrote since it read, so two nodes
    /// that both believe they are assigner cannot both write.
    async fn write_assignment(
        &self,
        client: &mut Client,
        assigner_key: &str,
        me: &str,
    ) -> Result<bool, SessionError> {
        let members = self.members(client).await?;
        let key = self.key("assignment");
        let stored = self.bounded(client.get(key.clone(), None)).await?;
        let (previous, revision) = match stored.kvs().first() {
            Some(kv) => (serde_json::from_slice(kv.value())?, kv.mod_revision()),
            None => (Assignment::default(), 0),
        };
        let created = self.created_topics(client).await?;
        let mut partitions = mirrored_partitions(&self.store, &previous);
        for (topic, spec) in &created {
            let count = partitions.entry(topic.clone()).or_default();
            *count = (*count).max(spec.partitions);
        }
        let rf = self.config.replication_factor;
        let next = assign_with_created(&previous, &members, &partitions, rf, &created);
        let (next, mut handled) = self.fail_over_requested(client, next).await?;
        let (next, isr) = self.isr_changes_requested(client, next).await?;
        handled.compares.extend(isr.compares);
        handled.deletes.extend(isr.deletes);
        if next == previous && handled.is_empty() {
            return Ok(true);
        }
        let mut guards = vec![
            Compare::value(assigner_key, CompareOp::Equal, me),
            Compare::mod_revision(key.clone(), CompareOp::Equal, revision),
        ];
        guards.extend(handled.compares);
        let mut ops = vec![TxnOp::put(key, serde_json::to_vec(&next)?, None)];
        ops.extend(handled.deletes);
        let write = Txn::new().when(guards).and_then(ops);
        let written = self.bounded(client.txn(write)).await?.succeeded();
        if written {
            let nodes: Vec<i32> = next.brokers.keys().copied().collect();
            tracing::info!(
                node_id = self.cluster.node_id(),
                ?nodes,
                "assignment written"
            );
        }
        Ok(written)
    }

    /// The live members: node id to advertised address.
    async fn members(&self, client: &mut Client) -> Result<BTreeMap<i32, String>, SessionError> {
        let prefix = self.key("members/");
        let listed = client.get(prefix.clone(), Some(GetOptions::new().with_prefix()));
        let listed = self.bounded(listed).await?;
        let mut members = BTreeMap::new();
        for kv in listed.kvs() {
            let id = kv
                .key_str()
                .ok()
                .and_then(|k| k.strip_prefix(&prefix)?.parse().ok());
            if let (Some(id), Ok(address)) = (id, kv.value_str()) {
                members.insert(id, address.to_string());
            }
        }
        Ok(members)
    }
}

/// Every mirrored partition the assignment must place: the shadows this node's links
/// found, and every partition already placed, so a newly elected assigner whose links
/// have not found a topic yet does not drop it.
fn mirrored_partitions(store: &Store, previous: &Assignment) -> BTreeMap<String, i32> {
    let mut partitions: BTreeMap<String, i32> = previous
        .topics
        .iter()
        .map(|(t, p)| (t.clone(), p.len() as i32))
        .collect();
    for topic in store.topics() {
        if topic.is_owned() {
            continue;
        }
        let count = partitions.entry(topic.name.clone()).or_default();
        *count = (*count).max(topic.meta().partitions);
    }
    partitions
}
