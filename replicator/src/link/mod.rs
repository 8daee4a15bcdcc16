//! A link: discovers matching source topics and keeps their mirrors up to date.
//!
//! One task per link owns all fetch state, so no locks guard offsets: it refreshes
//! metadata on a timer, keeps up to `fetches_in_flight` Fetch requests outstanding per
//! source broker (one while a request may wait for data, since a broker answers a
//! connection's requests in order), and hands fetched bytes to per-partition writers.

mod compaction;
mod configs;
mod fetch;
pub(crate) use fetch::kafka_error_name;
mod offset_sync;
mod offsets;
pub mod pause;
mod progress;
mod schedule;
mod session;
pub mod writer;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, watch};

use crate::config::{Link, StartPosition};
use crate::groups::Coordinator;
use crate::mirror::{
    topic_id_hex, validate_topic_name, MirrorError, MirrorPartition, MirrorTopic, Store, TopicMeta,
    TopicState,
};
use crate::source::metadata::{SourceCluster, TopicView};
use crate::status::LinkStatus;
use writer::WriteJob;

/// The key of a partition in the link's state.
pub use crate::status::TopicPartition;

/// Fetch state of one mirrored partition.
struct PartitionState {
    mirror: Arc<MirrorPartition>,
    writer: mpsc::Sender<WriteJob>,
    /// Where the next fetch starts; `None` until the start offset is known.
    next_offset: Option<i64>,
    leader: i32,
    leader_epoch: i32,
    /// Leader epoch of the newest batch fetched, for divergence detection (KIP-320).
    last_fetched_epoch: i32,
    in_flight: bool,
    /// Its last fetch brought no records, or it was not fetched yet: a request for it
    /// may have to wait at the source for data (a long poll).
    caught_up: bool,
    backoff: Backoff,
    /// Offset of a batch that arrived corrupt and is being fetched again, so the fault
    /// and its end are each logged once.
    corrupt_at: Option<i64>,
    /// The topic was missing from the last source Metadata, or this very node leads the
    /// partition there. Its state (writer, next offset) is kept, so a topic that
    /// reappears continues with the same single writer.
    absent: bool,
    /// Paused by an operator: not fetched, so the next fetch starts where the last ended.
    paused: bool,
    /// The broker whose KIP-227 session fetches the partition.
    session: Option<i32>,
}

/// Retry delay that doubles from 100 ms to 10 s, with jitter so that many partitions
/// retrying together do not hit a recovering broker at the same instant.
#[derive(Debug, Clone)]
struct Backoff {
    failures: u32,
    until: Option<Instant>,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            failures: 0,
            until: None,
        }
    }

    fn fail(&mut self) {
        let base = 100u64.saturating_mul(1 << self.failures.min(7)).min(10_000);
        let jitter = fastrand::u64(0..=base / 2);
        self.until = Some(Instant::now() + Duration::from_millis(base / 2 + jitter));
        self.failures += 1;
    }

    fn delay(&mut self, d: Duration) {
        self.until = Some(Instant::now() + d);
    }

    fn reset(&mut self) {
        self.failures = 0;
        self.until = None;
    }

    fn ready(&self, now: Instant) -> bool {
        self.until.is_none_or(|t| t <= now)
    }
}

/// The task behind one link.
pub struct LinkRunner {
    link: Link,
    store: Arc<Store>,
    cluster: SourceCluster,
    partitions: BTreeMap<TopicPartition, PartitionState>,
    brokers: HashMap<i32, BrokerState>,
    refresh_soon: bool,
    /// A topic was created since the last config sync.
    configs_soon: bool,
    /// What `/v1/status` and `/metrics` report about this link.
    status: Arc<LinkStatus>,
    /// The node's group coordinator, where synced consumer offsets are committed.
    groups: Arc<Coordinator>,
    /// Source topics matching the filter, so each is logged once when it appears.
    discovered: BTreeSet<String>,
    /// Matching source topics whose names Kafka's rules reject, each warned of once.
    invalid_names: BTreeSet<String>,
    /// Advances with every fetch request, to rotate the partition order in requests.
    fetch_rotation: usize,
    /// The KIP-227 session kept with each source broker.
    sessions: HashMap<i32, session::BrokerSession>,
    /// The brokers leading the partitions, as of the last metadata.
    leaders: BTreeSet<i32>,
    /// The node's paused links and topics, and what of this link was last applied.
    pauses: Arc<pause::Pauses>,
    paused: pause::LinkPause,
    pause_generation: u64,
    /// Where the node's Metadata finds the owners of topics it handed over to a source,
    /// and who this node is, so a link never fetches from it.
    peers: Arc<crate::switchover::peers::Peers>,
    /// Partitions the source names this very node leader of, each warned of once.
    self_led: BTreeSet<TopicPartition>,
    /// The source view each topic's partitions were last reconciled with: a topic whose
    /// view did not change since costs a metadata refresh no visit per partition.
    reconciled: HashMap<String, TopicView>,
    /// Partitions something happened to since fetches were last scheduled.
    touched: BTreeSet<TopicPartition>,
    /// Partitions waiting on something that ends by itself (a backoff, a busy writer).
    watched: BTreeSet<TopicPartition>,
    /// Every partition is looked at when fetches are next scheduled (after metadata,
    /// pauses or a broker's sessions changed).
    sweep: bool,
    /// Partitions looked at by scheduling, for tests of what an idle link does.
    #[cfg(test)]
    examined: usize,
    /// Partitions looked at by reconciling topics with metadata, likewise.
    #[cfg(test)]
    reconciled_partitions: usize,
    /// On a cluster node, the assignment: only the partitions this node is a replica of
    /// are fetched. The generation last seen tells when it changed.
    placement: Option<(Arc<crate::cluster::Cluster>, u64)>,
    /// Notified by the partitions' writers after each job, so a partition held back by
    /// a full writer queue is fetched again as soon as the queue has room.
    applied: Arc<tokio::sync::Notify>,
}

#[derive(Default)]
struct BrokerState {
    in_flight: usize,
    /// The request out may wait at the source for data. A broker answers one
    /// connection's requests in order, so nothing is sent behind it until it answers.
    long_poll: bool,
    backoff: Option<Backoff>,
}

impl LinkRunner {
    pub fn new(
        link: Link,
        store: Arc<Store>,
        status: Arc<LinkStatus>,
        groups: Arc<Coordinator>,
        pauses: Arc<pause::Pauses>,
    ) -> LinkRunner {
        let cluster = SourceCluster::for_link(&link);
        crate::metrics::register_link(&link.config.name);
        LinkRunner {
            status,
            groups,
            discovered: BTreeSet::new(),
            invalid_names: BTreeSet::new(),
            fetch_rotation: 0,
            sessions: HashMap::new(),
            leaders: BTreeSet::new(),
            pauses,
            paused: pause::LinkPause::default(),
            pause_generation: 0,
            peers: Default::default(),
            self_led: BTreeSet::new(),
            reconciled: HashMap::new(),
            touched: BTreeSet::new(),
            watched: BTreeSet::new(),
            sweep: true,
            #[cfg(test)]
            examined: 0,
            #[cfg(test)]
            reconciled_partitions: 0,
            placement: None,
            applied: Arc::new(tokio::sync::Notify::new()),
            link,
            store,
            cluster,
            partitions: BTreeMap::new(),
            brokers: HashMap::new(),
            refresh_soon: false,
            configs_soon: false,
        }
    }

    /// Shares what this link sees of its source with the node's Metadata.
    pub fn with_peers(mut self, peers: Arc<crate::switchover::peers::Peers>) -> LinkRunner {
        self.cluster.set_own_addresses(peers.own_addresses());
        self.peers = peers;
        self
    }

    /// Fetches only the partitions `cluster` places on this node.
    pub fn with_cluster(mut self, cluster: Arc<crate::cluster::Cluster>) -> LinkRunner {
        self.placement = Some((cluster, u64::MAX));
        self
    }

    /// Whether this node fetches the partition: always, unless it is a cluster node the
    /// assignment does not name as one of the partition's replicas.
    fn holds(&self, key: &TopicPartition) -> bool {
        let placement = self.placement.as_ref();
        placement.is_none_or(|(c, _)| c.holds(&key.topic, key.partition))
    }

    /// A new assignment may have given this node partitions that need a start offset.
    fn placement_moved(&mut self) -> bool {
        let Some((cluster, seen)) = &mut self.placement else {
            return false;
        };
        let now = cluster.generation();
        std::mem::replace(seen, now) != now
    }

    pub fn name(&self) -> &str {
        &self.link.config.name
    }

    /// Runs until `shutdown` becomes true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let checks = compaction::CompactionChecks::new(&self.link, self.store.clone());
        tokio::spawn(checks.run(shutdown.clone()));
        let mut in_flight = FuturesUnordered::new();
        let mut metadata_at = Instant::now();
        let mut configs_at = Instant::now();
        let mut groups_at = Instant::now();
        let mut progress = progress::ProgressLog::new(self.link.config.progress_interval);
        let idle = Duration::from_millis(20);
        let applied = self.applied.clone();
        loop {
            if *shutdown.borrow() {
                break;
            }
            if self.placement_moved() {
                self.refresh_soon = true;
            }
            if self.refresh_soon || Instant::now() >= metadata_at {
                self.discover().await;
                self.resolve_start_offsets().await;
                self.list_paused_offsets().await;
                self.sweep = true;
                metadata_at = Instant::now() + self.link.config.metadata_interval;
            }
            if self.configs_soon || Instant::now() >= configs_at {
                self.configs_soon = false;
                self.sync_configs().await;
                configs_at = Instant::now() + self.link.config.config_interval;
            }
            if Instant::now() >= groups_at {
                self.sync_group_offsets().await;
                groups_at = Instant::now() + self.link.config.group_interval;
            }
            progress.tick(&self.status, Instant::now());
            self.apply_pauses();
            for request in self.schedule_fetches() {
                in_flight.push(request);
            }
            tokio::select! {
                _ = shutdown.changed() => {}
                Some(outcome) = in_flight.next(), if !in_flight.is_empty() => {
                    // A pause acknowledged before this response is handled covers it.
                    self.apply_pauses();
                    self.on_fetch(outcome).await;
                }
                _ = applied.notified() => {}
                _ = tokio::time::sleep(idle) => {}
            }
        }
        tracing::info!(link = %self.name(), "link stopped");
    }

    /// Refreshes source metadata and reconciles mirror topics with it.
    async fn discover(&mut self) {
        self.refresh_soon = false;
        let view = match self.cluster.refresh().await {
            Ok(view) => view.clone(),
            Err(e) => {
                tracing::debug!(link = %self.name(), error = %e, "source metadata refresh failed");
                self.status.set_lost(&e.to_string());
                return;
            }
        };
        self.status.set_connected();
        self.peers.update(&self.link.config.name, &view);
        let mut seen = HashSet::new();
        for (name, topic) in &view.topics {
            if topic.internal || topic.error_code != 0 {
                continue;
            }
            let local = self.store.topic(name);
            if let Some(local) = &local {
                self.peers.remember_owned(local);
                crate::failback::fence_if_taken_over(local, &self.link.config, topic);
            }
            let demoted = local.is_some_and(|t| self.follows_demoted(&t));
            if !self.link.filter.matches(name) && !demoted {
                continue;
            }
            if let Err(e) = validate_topic_name(name) {
                if self.invalid_names.insert(name.clone()) {
                    tracing::warn!(link = %self.name(), error = %e, "source topic skipped");
                }
                continue;
            }
            seen.insert(name.clone());
            if self.discovered.insert(name.clone()) {
                tracing::info!(link = %self.name(), topic = %name, partitions = topic.partitions.len(), "topic discovered");
            }
            if let Err(e) = self.reconcile_topic(name, topic) {
                tracing::error!(link = %self.name(), topic = %name, error = %e, "cannot set up mirror topic");
            }
        }
        for (key, state) in self.partitions.iter_mut() {
            state.absent = !seen.contains(&key.topic);
        }
        self.discovered.retain(|topic| seen.contains(topic));
        let present: Vec<&TopicPartition> = (self.partitions.iter())
            .filter(|(_, s)| !s.absent)
            .map(|(key, _)| key)
            .collect();
        // The status holds every present partition now: only more means it holds some
        // that are gone, and only then is each of its entries looked up.
        if self.status.track_all(&present) > present.len() {
            self.status
                .retain(|key| self.partitions.get(key).is_some_and(|s| !s.absent));
        }
        self.leaders = self.partitions.values().map(|s| s.leader).collect();
        self.hold_self_led();
    }

    /// Holds back, until a metadata refresh names another leader, every partition whose
    /// source leader is this node itself: fetching it would read the mirror into itself.
    /// Two nodes that each name the other leader of a topic lead there.
    fn hold_self_led(&mut self) {
        let brokers = &self.cluster.view.brokers;
        let mut self_led = BTreeSet::new();
        for (key, state) in self.partitions.iter_mut() {
            let Some(addr) = brokers.get(&state.leader) else {
                continue;
            };
            if state.absent || !self.peers.is_self(state.leader, addr) {
                continue;
            }
            state.absent = true;
            let error = format!(
                "the source names this node (broker {} at {addr}) leader of {key}: a link never fetches from its own node",
                state.leader
            );
            self.status.on_error(key, &error);
            if !self.self_led.contains(key) {
                tracing::warn!(link = %self.link.config.name, %error, "partition not fetched");
            }
            self_led.insert(key.clone());
        }
        self.self_led = self_led;
    }

    fn reconcile_topic(&mut self, name: &str, source: &TopicView) -> Result<(), MirrorError> {
        let count = source.partitions.len() as i32;
        let source_id = topic_id_hex(&source.id);
        let wanted = TopicMeta {
            link: self.name().to_string(),
            source_topic_id: source_id.clone(),
            partitions: count,
            state: TopicState::Active,
            configs: Default::default(),
        };
        let topic = match self.store.topic(name) {
            None => {
                self.configs_soon = true;
                self.store.ensure_topic(name, wanted)?
            }
            Some(existing) => match self.check_existing(&existing, &source_id, count)? {
                Some(topic) => topic,
                None => {
                    self.status.hand_over(name);
                    self.partitions.retain(|key, _| key.topic != name);
                    self.reconciled.remove(name);
                    return Ok(());
                }
            },
        };
        if self.reconciled.get(name) == Some(source) {
            return Ok(());
        }
        let mut complete = true;
        for (index, p) in &source.partitions {
            #[cfg(test)]
            {
                self.reconciled_partitions += 1;
            }
            let Some(mirror) = topic.partition(*index) else {
                complete = false;
                continue;
            };
            let key = TopicPartition::new(name, *index);
            let state = self
                .partitions
                .entry(key)
                .or_insert_with(|| PartitionState {
                    writer: writer::spawn_waking(
                        mirror.clone(),
                        self.link.config.name.clone(),
                        self.applied.clone(),
                    ),
                    mirror,
                    next_offset: None,
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    last_fetched_epoch: -1,
                    in_flight: false,
                    caught_up: true,
                    backoff: Backoff::new(),
                    corrupt_at: None,
                    absent: false,
                    paused: self.paused.is_paused(name),
                    session: None,
                });
            state.leader = p.leader;
            state.leader_epoch = p.leader_epoch;
            complete &= state.mirror.observe_source_epoch(p.leader_epoch);
        }
        if complete {
            self.reconciled.insert(name.to_string(), source.clone());
        }
        Ok(())
    }

    /// Checks an existing mirror topic against its source; `None` when it must not be
    /// fetched (failed, owned by another link, or its source changed identity).
    /// Whether `topic` is an active shadow of this link, which it keeps up to date. A
    /// failed topic, another link's, or one made writable by failover is left alone.
    pub(super) fn fetches(&self, topic: &MirrorTopic) -> bool {
        let meta = topic.meta();
        let shadow = matches!(meta.state, TopicState::Active | TopicState::Demoted);
        meta.link == self.link.config.name && shadow && !topic.is_owned()
    }

    /// A topic demoted to a shadow of this link is fetched even if `include` omits it.
    fn follows_demoted(&self, topic: &MirrorTopic) -> bool {
        let meta = topic.meta();
        meta.link == self.link.config.name && meta.state == TopicState::Demoted
    }

    fn check_existing(
        &self,
        topic: &Arc<MirrorTopic>,
        source_id: &str,
        count: i32,
    ) -> Result<Option<Arc<MirrorTopic>>, MirrorError> {
        let meta = topic.meta();
        if !self.fetches(topic) {
            return Ok(None);
        }
        let zero = topic_id_hex(&[0; 16]);
        if meta.source_topic_id != zero && source_id != zero && meta.source_topic_id != source_id {
            topic.mark_failed(format!(
                "the source topic was deleted and re-created (id {} is now {source_id})",
                meta.source_topic_id
            ))?;
            return Ok(None);
        }
        if count < meta.partitions {
            topic.mark_failed(format!(
                "the source topic shrank from {} to {count} partitions",
                meta.partitions
            ))?;
            return Ok(None);
        }
        if count > meta.partitions {
            let mut grown = meta;
            grown.partitions = count;
            return self.store.ensure_topic(&topic.name, grown).map(Some);
        }
        Ok(Some(topic.clone()))
    }

    /// Sets the first fetch offset of partitions that have none yet. A mirror that ever
    /// held data resumes at its own end; a new one asks the source where `start` is,
    /// which on a real cluster is rarely offset 0 (retention moves the log start).
    async fn resolve_start_offsets(&mut self) {
        let timestamp = match self.link.config.start {
            StartPosition::Earliest => offsets::EARLIEST,
            StartPosition::Latest => offsets::LATEST,
        };
        let mut unresolved: HashMap<i32, Vec<TopicPartition>> = HashMap::new();
        let pending: Vec<TopicPartition> = (self.partitions.iter())
            .filter(|(key, s)| s.next_offset.is_none() && !s.absent && self.holds(key))
            .map(|(key, _)| key.clone())
            .collect();
        for key in pending {
            let Some(state) = self.partitions.get_mut(&key) else {
                continue;
            };
            let log = state.mirror.log();
            if log.log_end_offset() > 0 {
                state.next_offset = Some(log.log_end_offset());
                state.last_fetched_epoch = log.latest_epoch().unwrap_or(-1);
            } else {
                unresolved.entry(state.leader).or_default().push(key);
            }
        }
        for (leader, keys) in unresolved {
            let offsets = offsets::list_offsets(&mut self.cluster, leader, &keys, timestamp).await;
            for (key, result) in offsets {
                match result {
                    Ok(offset) => self.start_empty_at(&key, offset),
                    Err(e) => {
                        tracing::warn!(link = %self.link.config.name, topic = %key.topic, partition = key.partition, error = %e, "cannot find the start offset");
                    }
                }
            }
        }
    }

    /// Starts an empty mirror partition at `offset`: its log restarts there (persisted
    /// before the first append) and the first fetch asks for it.
    fn start_empty_at(&mut self, key: &TopicPartition, offset: i64) {
        let Some(state) = self.partitions.get_mut(key) else {
            return;
        };
        if offset < 0 {
            return;
        }
        if offset > 0 && state.writer.try_send(WriteJob::StartAt(offset)).is_err() {
            return;
        }
        state.next_offset = Some(offset);
        self.touched.insert(key.clone());
    }
}
