//! What the node knows about its links, topics and partitions, for `/v1/status`,
//! `/readyz` and the state gauges of `/metrics`.
//!
//! Each link runner owns a [`LinkStatus`] and updates it from every fetch response (the
//! source's log start, high watermark and last stable offset) and every failure. The mirror
//! side (high watermark, failures, topic state) is read from the store when a report is
//! made, so it is never stale. Locks are held for one update and never across an await.
//!
//! ## Lag in seconds
//!
//! `lag_seconds` is the time since the partition was last *confirmed* to hold everything
//! the source held: 0 while the latest fetch response (at most [`STALE_AFTER`] old) showed
//! the mirror at the source's high watermark, otherwise the time since the last response
//! that did. (A transaction open at the source keeps the mirror at the source's last
//! stable offset; records committed behind it are not mirrored yet, so they count.) Fetches long-poll for 500 ms, so a caught-up partition is
//! confirmed at least twice a second. This is an upper bound on the age of the oldest
//! record not yet mirrored, which is what is lost if the source region is lost now (the
//! live RPO); it keeps growing while the source is unreachable, because nothing newer can
//! be vouched for. A partition never confirmed since the node started counts from when the
//! link first saw it; one the link does not fetch at all (its topic failed) has no value.
//! A confirmation counts from before its request was sent (see [`crate::rpo`]), so the
//! lag in seconds of a partition behind the source always covers its blind window.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::mirror::{MirrorTopic, Store, TopicState};
use crate::rpo::{self, Unconfirmed, WriteHistory};
pub use crate::topic_partition::TopicPartition;
use shadowlink_storage::{Poison, StorageError};

mod paused;
mod session;
pub use paused::mark_paused;

/// After this long without a fetch response confirming it, a caught-up partition is no
/// longer reported at zero lag.
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// Whether a link reaches its source cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Started, nothing heard from the source yet.
    Connecting,
    Connected,
    Lost,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::Lost => "lost",
        }
    }
}

/// The states a mirror topic is reported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicStateName {
    /// Copying the source's existing data for the first time since the node started.
    Syncing,
    Active,
    /// The topic, or one of its partitions, stopped on an error.
    Failed,
    /// Being failed over: no longer fetched, not yet writable.
    FailingOver,
    /// Failed over: writable on this node.
    FailedOver,
    /// Owned, but the link's source took it over by failover: writes refused.
    FencedByFailover,
    /// Owned, writes stopped while ownership moves to the link's source.
    SwitchingOut,
}

impl TopicStateName {
    pub const ALL: [TopicStateName; 7] = [
        TopicStateName::Syncing,
        TopicStateName::Active,
        TopicStateName::Failed,
        TopicStateName::FailingOver,
        TopicStateName::FailedOver,
        TopicStateName::FencedByFailover,
        TopicStateName::SwitchingOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TopicStateName::Syncing => "syncing",
            TopicStateName::Active => "active",
            TopicStateName::Failed => "failed",
            TopicStateName::FailingOver => "failing_over",
            TopicStateName::FailedOver => "failed_over",
            TopicStateName::FencedByFailover => "fenced_by_failover",
            TopicStateName::SwitchingOut => "switching_out",
        }
    }
}

/// The source side of a partition, from one fetch response.
#[derive(Debug, Clone, Copy)]
pub struct SourceOffsets {
    pub log_start: i64,
    pub high_watermark: i64,
    pub last_stable: i64,
}

impl SourceOffsets {
    /// The end of what the source committed. Brokers without transactions may report the
    /// LSO as -1; then the high watermark is the bound.
    pub fn committed(&self) -> i64 {
        if self.last_stable >= 0 {
            self.last_stable
        } else {
            self.high_watermark
        }
    }
}

/// A first sync in progress on one partition.
#[derive(Debug, Clone, Copy)]
struct InitialSync {
    start_offset: i64,
    started: Instant,
}

#[derive(Debug, Clone)]
struct PartitionStatus {
    source: Option<SourceOffsets>,
    /// Where the next fetch starts: everything below is fetched and queued for the log.
    fetched_to: Option<i64>,
    caught_up: bool,
    confirmed_at: Option<Instant>,
    first_seen: Instant,
    last_error: Option<(String, Instant)>,
    sync: Option<InitialSync>,
    /// When the link last handled a fetch outcome (data or error) of this partition: the
    /// next request was sent after it.
    last_outcome: Instant,
    /// The [`Self::last_outcome`] before the latest successful response: no later than
    /// that response's request, so no later than the high watermark it carries.
    vouched_from: Option<Instant>,
    /// The first failure since the latest successful response.
    failing_since: Option<Instant>,
    writes: WriteHistory,
    /// The broker whose KIP-227 session holds the partition, and since when: its
    /// responses confirm the partition without naming it (see `session.rs`).
    session: Option<(i32, Instant)>,
}

impl PartitionStatus {
    fn new(now: Instant) -> PartitionStatus {
        PartitionStatus {
            source: None,
            fetched_to: None,
            caught_up: false,
            confirmed_at: None,
            first_seen: now,
            last_error: None,
            sync: None,
            last_outcome: now,
            vouched_from: None,
            failing_since: None,
            writes: WriteHistory::default(),
            session: None,
        }
    }

    /// A fetch response showed the source at `source` with everything below `to`
    /// fetched.
    fn confirm(&mut self, source: SourceOffsets, to: i64, now: Instant) {
        self.source = Some(source);
        self.fetched_to = Some(to);
        // Caught up means holding everything the source holds, not only what it has
        // decided: a transaction left open at the source stops the mirror at the source's
        // LSO while other producers' committed records pile up behind it, and that is lag.
        self.caught_up = to >= source.high_watermark;
        let vouched_from = self.last_outcome;
        self.vouched_from = Some(vouched_from);
        self.last_outcome = now;
        self.failing_since = None;
        self.writes.observe(source.high_watermark, now);
        if self.caught_up {
            self.confirmed_at = Some(vouched_from);
        }
    }

    /// The blind window as of `now`. `lost` is when the link lost its source, if it has
    /// not reached it since: the window of a partition failing since then ends at the
    /// later of the two, so a partition that failed earlier for another reason (its
    /// leader moved) still counts the writes its new leader took until the source was gone.
    fn unconfirmed(
        &self,
        now: Instant,
        lost: Option<Instant>,
        bytes_per_record: f64,
    ) -> Option<Unconfirmed> {
        let from = self.vouched_from?;
        let end = lost.zip(self.failing_since).map(|(l, f)| l.max(f));
        let until = end.unwrap_or(now);
        let ends_at_loss = end.is_some();
        let window = until.saturating_duration_since(from);
        let peak = self.writes.peak(until);
        Some(Unconfirmed::new(
            window,
            ends_at_loss,
            peak,
            bytes_per_record,
        ))
    }

    fn lag_seconds(&self, now: Instant) -> f64 {
        let since = self.confirmed_at.unwrap_or(self.first_seen);
        let age = now.saturating_duration_since(since);
        if self.caught_up && age <= STALE_AFTER {
            0.0
        } else {
            age.as_secs_f64()
        }
    }
}

/// Progress of a topic's first sync, summed over its partitions still syncing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SyncProgress {
    pub percent: f64,
    /// Offsets copied per second since the sync started.
    pub records_per_second: f64,
    pub remaining: i64,
    /// `None` until anything was copied.
    pub eta_seconds: Option<f64>,
}

struct LinkInner {
    state: LinkState,
    since: Instant,
    last_error: Option<(String, Instant)>,
    partitions: BTreeMap<TopicPartition, PartitionStatus>,
    sessions: HashMap<i32, session::Vouches>,
    /// The partitions in their first sync, so progress walks those alone.
    syncing: BTreeSet<TopicPartition>,
}

/// The live status of one link, shared by its runner and the admin listener.
pub struct LinkStatus {
    pub name: String,
    pub source: Vec<String>,
    inner: Mutex<LinkInner>,
}

impl LinkStatus {
    fn new(name: &str, source: &[String]) -> LinkStatus {
        LinkStatus {
            name: name.to_string(),
            source: source.to_vec(),
            inner: Mutex::new(LinkInner {
                state: LinkState::Connecting,
                since: Instant::now(),
                last_error: None,
                partitions: BTreeMap::new(),
                sessions: HashMap::new(),
                syncing: BTreeSet::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LinkInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> LinkState {
        self.lock().state
    }

    /// The source answered; logs the transition when it was not connected.
    pub fn set_connected(&self) {
        let mut inner = self.lock();
        if inner.state != LinkState::Connected {
            let was = inner.state;
            inner.state = LinkState::Connected;
            inner.since = Instant::now();
            drop(inner);
            tracing::info!(link = %self.name, source = ?self.source, was = was.as_str(), "link connected");
        }
    }

    /// The source cannot be reached. Every partition loses its confirmation: nothing the
    /// source commits from now on can be vouched for.
    pub fn set_lost(&self, error: &str) {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.last_error = Some((error.to_string(), now));
        inner.settle_all();
        for p in inner.partitions.values_mut() {
            p.caught_up = false;
        }
        if inner.state != LinkState::Lost {
            inner.state = LinkState::Lost;
            inner.since = now;
            drop(inner);
            tracing::warn!(link = %self.name, source = ?self.source, error, "link lost");
        }
    }

    /// Starts tracking those of `keys` not tracked yet; returns how many are tracked.
    pub fn track_all(&self, keys: &[&TopicPartition]) -> usize {
        let now = Instant::now();
        let mut inner = self.lock();
        for &key in keys {
            if !inner.partitions.contains_key(key) {
                inner
                    .partitions
                    .insert(key.clone(), PartitionStatus::new(now));
            }
        }
        inner.partitions.len()
    }

    /// Stops tracking partitions the link no longer mirrors.
    pub fn retain(&self, keep: impl Fn(&TopicPartition) -> bool) {
        let mut inner = self.lock();
        inner.partitions.retain(|k, _| keep(k));
        inner.syncing.retain(|k| keep(k));
    }

    /// Records a successful fetch of `key` from `from`, which advanced the fetch position
    /// to `to`. Returns how long the topic's first sync took when this response ended it.
    pub fn on_fetched(
        &self,
        key: &TopicPartition,
        source: SourceOffsets,
        from: i64,
        to: i64,
        now: Instant,
    ) -> Option<Duration> {
        let mut inner = self.lock();
        let p = inner.settled(key, now);
        p.confirm(source, to, now);
        let copied_all_decided = to >= source.committed();
        if copied_all_decided {
            let sync = p.sync.take()?;
            inner.syncing.remove(key);
            let topic_done = !inner.syncing.iter().any(|k| k.topic == key.topic);
            return topic_done.then(|| now.saturating_duration_since(sync.started));
        }
        if p.sync.is_none() && p.confirmed_at.is_none() {
            p.sync = Some(InitialSync {
                start_offset: from,
                started: now,
            });
            inner.syncing.insert(key.clone());
        }
        None
    }

    /// Records a failed fetch of `key`.
    pub fn on_error(&self, key: &TopicPartition, error: &str) {
        let now = Instant::now();
        let mut inner = self.lock();
        let p = inner.settled(key, now);
        p.caught_up = false;
        p.last_error = Some((error.to_string(), now));
        p.last_outcome = now;
        p.failing_since.get_or_insert(now);
    }

    /// First-sync progress of every topic that has one.
    pub fn progress(&self, now: Instant) -> BTreeMap<String, SyncProgress> {
        let inner = self.lock();
        let mut acc: BTreeMap<&str, (i64, i64, Instant)> = BTreeMap::new();
        for key in &inner.syncing {
            let Some(p) = inner.partitions.get(key) else {
                continue;
            };
            let (Some(sync), Some(to)) = (p.sync, p.fetched_to) else {
                continue;
            };
            let topic = key.topic.as_str();
            let target = p.source.map_or(to, |s| s.committed());
            let entry = acc.entry(topic).or_insert((0, 0, sync.started));
            entry.0 += (to - sync.start_offset).max(0);
            entry.1 += (target.max(to) - sync.start_offset).max(0);
            entry.2 = entry.2.min(sync.started);
        }
        acc.into_iter()
            .map(|(topic, (copied, total, started))| {
                let elapsed = now.saturating_duration_since(started).as_secs_f64();
                (topic.to_string(), sync_progress(copied, total, elapsed))
            })
            .collect()
    }
}

/// Percent, rate and ETA of `copied` out of `total` offsets after `elapsed` seconds.
pub fn sync_progress(copied: i64, total: i64, elapsed: f64) -> SyncProgress {
    let remaining = (total - copied).max(0);
    let percent = if total > 0 {
        100.0 * copied as f64 / total as f64
    } else {
        100.0
    };
    let rate = if elapsed > 0.0 {
        copied as f64 / elapsed
    } else {
        0.0
    };
    SyncProgress {
        percent,
        records_per_second: rate,
        remaining,
        eta_seconds: (rate > 0.0).then(|| remaining as f64 / rate),
    }
}

/// Every link of the node.
pub struct Status {
    started: Instant,
    kafka: String,
    listeners: Vec<ListenerReport>,
    links: Mutex<Vec<Arc<LinkStatus>>>,
    /// Further causes of not being ready, each a sentence when it applies.
    checks: Mutex<Vec<ReadinessCheck>>,
}

/// A cause of not being ready that lives outside the links and the store.
pub type ReadinessCheck = Box<dyn Fn() -> Option<String> + Send + Sync>;

impl Status {
    /// `kafka` is the first listener's bound address, `listeners` every listener.
    pub fn new(kafka: String, listeners: Vec<ListenerReport>) -> Status {
        Status {
            started: Instant::now(),
            kafka,
            listeners,
            links: Mutex::new(Vec::new()),
            checks: Mutex::new(Vec::new()),
        }
    }

    /// Adds a cause of not being ready to what `/readyz` and `/v1/status` report.
    pub fn add_check(&self, check: ReadinessCheck) {
        let mut checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        checks.push(check);
    }

    /// Registers a link and returns the status its runner updates.
    pub fn add_link(&self, name: &str, source: &[String]) -> Arc<LinkStatus> {
        let link = Arc::new(LinkStatus::new(name, source));
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(link.clone());
        link
    }

    pub fn has_link(&self, name: &str) -> bool {
        self.links().iter().any(|l| l.name == name)
    }

    fn links(&self) -> Vec<Arc<LinkStatus>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A snapshot of every link, topic and partition.
    pub fn report(&self, store: &Store) -> StatusReport {
        let now = Instant::now();
        let links: Vec<LinkReport> = self
            .links()
            .iter()
            .map(|l| link_report(l, store, now))
            .collect();
        let mut not_ready = Vec::new();
        for link in &links {
            if link.state == LinkState::Lost.as_str() {
                let why = link.last_error.as_deref().unwrap_or("no answer");
                not_ready.push(format!("link {} is {}: {why}", link.name, link.state));
            } else if link.state != LinkState::Connected.as_str() {
                not_ready.push(format!("link {} is {}", link.name, link.state));
            }
            for topic in &link.topics {
                if topic.state == TopicStateName::Failed.as_str() {
                    not_ready.push(format!("topic {} failed", topic.name));
                }
            }
        }
        let offline: Vec<OfflineReport> = store
            .offline()
            .into_iter()
            .map(|o| OfflineReport {
                topic: o.topic,
                partition: o.partition,
                error: o.reason,
            })
            .collect();
        not_ready.extend(offline.iter().map(|o| match o.partition {
            Some(p) => format!("partition {}-{p} is offline", o.topic),
            None => format!("topic {} is offline", o.topic),
        }));
        not_ready.extend(unsynced_partitions(store));
        let producer_ids_error = store.producer_ids_failure();
        if producer_ids_error.is_some() {
            not_ready.push("producer ids cannot be allocated".to_string());
        }
        let checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        not_ready.extend(checks.iter().filter_map(|check| check()));
        StatusReport {
            kafka: self.kafka.clone(),
            listeners: self.listeners.clone(),
            uptime_seconds: now.saturating_duration_since(self.started).as_secs(),
            ready: not_ready.is_empty(),
            not_ready,
            links,
            offline,
            producer_ids_error,
            scrub: None,
            compaction: crate::cleaner::reports(),
        }
    }
}

/// Partitions whose log refuses writes after a failed fsync, with what to do about it.
fn unsynced_partitions(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    for topic in store.topics() {
        for p in topic.partitions() {
            if p.log().poisoned() == Some(Poison::Fsync) {
                let why = StorageError::FsyncFailed;
                out.push(format!("partition {}-{}: {why}", topic.name, p.partition));
            }
        }
    }
    out
}

fn link_report(link: &LinkStatus, store: &Store, now: Instant) -> LinkReport {
    let progress = link.progress(now);
    let mut inner = link.lock();
    inner.settle_all();
    let topics = store
        .topics()
        .into_iter()
        .filter(|t| t.meta().link == link.name)
        .map(|t| {
            let sync = progress.get(&t.name).copied();
            let mut report = topic_report(&t, &inner.partitions, sync, now);
            let lost = (inner.state == LinkState::Lost).then_some(inner.since);
            add_unconfirmed(&mut report, &t, &inner.partitions, lost, now);
            report
        })
        .collect();
    LinkReport {
        name: link.name.clone(),
        source: link.source.clone(),
        state: inner.state.as_str().to_string(),
        state_seconds: now.saturating_duration_since(inner.since).as_secs(),
        last_error: inner.last_error.as_ref().map(|(e, _)| e.clone()),
        topics,
        paused: false,
        paused_topics: Vec::new(),
    }
}

/// Fills in each partition's blind window.
fn add_unconfirmed(
    report: &mut TopicReport,
    topic: &MirrorTopic,
    tracked: &BTreeMap<TopicPartition, PartitionStatus>,
    lost: Option<Instant>,
    now: Instant,
) {
    for mirror in topic.partitions().iter() {
        let Some(p) = report
            .partitions
            .iter_mut()
            .find(|p| p.partition == mirror.partition)
        else {
            continue;
        };
        let bytes_per_record = {
            let log = mirror.log();
            let (start, end) = (log.log_start_offset(), log.log_end_offset());
            rpo::bytes_per_record(log.size_bytes(), start, end)
        };
        let key = TopicPartition::new(topic.name.clone(), mirror.partition);
        p.unconfirmed = tracked
            .get(&key)
            .and_then(|s| s.unconfirmed(now, lost, bytes_per_record));
    }
}

fn topic_report(
    topic: &MirrorTopic,
    tracked: &BTreeMap<TopicPartition, PartitionStatus>,
    sync: Option<SyncProgress>,
    now: Instant,
) -> TopicReport {
    let (mut reason, handed_over) = match topic.meta().state {
        TopicState::Failed { reason } => (Some(reason), None),
        TopicState::Active => (None, None),
        TopicState::FailingOver => (None, Some(TopicStateName::FailingOver)),
        TopicState::FailedOver => (None, Some(TopicStateName::FailedOver)),
        TopicState::FencedByFailover { .. } => (None, Some(TopicStateName::FencedByFailover)),
        TopicState::SwitchingOut => (None, Some(TopicStateName::SwitchingOut)),
        TopicState::Demoted => (None, None),
    };
    if let Some((p, why)) = topic.offline_partitions().iter().next() {
        reason.get_or_insert_with(|| format!("partition {p} is offline: {why}"));
    }
    let partitions: Vec<PartitionReport> = topic
        .partitions()
        .iter()
        .map(|mirror| {
            let (dst_log_start, dst_hwm) = {
                let log = mirror.log();
                (log.log_start_offset(), log.high_watermark())
            };
            let failure = mirror.failure();
            if reason.is_none() {
                reason.clone_from(&failure);
            }
            let key = TopicPartition::new(topic.name.clone(), mirror.partition);
            let status = tracked.get(&key);
            let source = status.and_then(|s| s.source);
            let last_error = failure.or_else(|| {
                status
                    .and_then(|s| s.last_error.as_ref())
                    .map(|(e, _)| e.clone())
            });
            PartitionReport {
                partition: mirror.partition,
                src_log_start: source.map(|s| s.log_start),
                src_lso: source.map(|s| s.last_stable),
                src_hwm: source.map(|s| s.high_watermark),
                dst_log_start,
                dst_hwm,
                lag: source.map(|s| (s.high_watermark - dst_hwm).max(0)),
                lag_seconds: status.map(|s| s.lag_seconds(now)),
                last_error,
                unconfirmed: None,
            }
        })
        .collect();
    let state = if let Some(state) = handed_over {
        state
    } else if reason.is_some() {
        TopicStateName::Failed
    } else if sync.is_some() {
        TopicStateName::Syncing
    } else {
        TopicStateName::Active
    };
    TopicReport {
        name: topic.name.clone(),
        state: state.as_str().to_string(),
        reason,
        sync,
        partitions,
        paused: false,
    }
}

/// `GET /v1/status`: the node, each link, each mirror topic and partition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// The first Kafka listener's bound address.
    pub kafka: String,
    /// Every Kafka listener, the first included.
    #[serde(default)]
    pub listeners: Vec<ListenerReport>,
    pub uptime_seconds: u64,
    /// What `/readyz` answers: every link connected and no topic failed.
    pub ready: bool,
    /// Why the node is not ready, one sentence per cause.
    pub not_ready: Vec<String>,
    pub links: Vec<LinkReport>,
    /// Topics and partitions on disk that cannot be opened: neither served (clients get
    /// KAFKA_STORAGE_ERROR) nor written until repaired and the node restarted.
    #[serde(default)]
    pub offline: Vec<OfflineReport>,
    /// Why InitProducerId is refused, when the allocator's file cannot be read.
    #[serde(default)]
    pub producer_ids_error: Option<String>,
    /// The background CRC scrubber's findings.
    #[serde(default)]
    pub scrub: Option<crate::scrub::ScrubReport>,
    /// The node's own compacted partitions (see `cleaner`).
    #[serde(default)]
    pub compaction: Vec<crate::cleaner::CompactionReport>,
}

/// One Kafka listener as operators see it; its certificates and users stay out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListenerReport {
    pub name: String,
    /// Kafka's `security.protocol` its clients set: PLAINTEXT, SSL, SASL_PLAINTEXT or
    /// SASL_SSL.
    pub protocol: String,
    /// Where it accepts clients (the real port when configured as 0).
    pub address: String,
    /// What Metadata tells its clients to connect to.
    pub advertised: String,
}

/// A topic (whole, when `partition` is `None`) or partition that cannot be opened.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OfflineReport {
    pub topic: String,
    pub partition: Option<i32>,
    /// The file at fault and what is wrong with it.
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkReport {
    pub name: String,
    /// The source cluster's bootstrap addresses.
    pub source: Vec<String>,
    /// `connecting`, `connected` or `lost`.
    pub state: String,
    /// How long the link has been in that state.
    pub state_seconds: u64,
    pub last_error: Option<String>,
    pub topics: Vec<TopicReport>,
    /// Paused as a whole: nothing of it is fetched until resumed.
    #[serde(default)]
    pub paused: bool,
    /// Topics paused on their own while the link runs.
    #[serde(default)]
    pub paused_topics: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicReport {
    pub name: String,
    /// `syncing`, `active`, `failed`, `failing_over` or `failed_over` (see [`TopicStateName`]).
    pub state: String,
    /// Why the topic (or one of its partitions) failed.
    pub reason: Option<String>,
    /// First-sync progress while `state` is `syncing`.
    pub sync: Option<SyncProgress>,
    pub partitions: Vec<PartitionReport>,
    /// Not fetched until resumed, on its own or with its link.
    #[serde(default)]
    pub paused: bool,
}

/// Source offsets are those of the latest fetch response; `None` before the first one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionReport {
    pub partition: i32,
    pub src_log_start: Option<i64>,
    pub src_lso: Option<i64>,
    pub src_hwm: Option<i64>,
    pub dst_log_start: i64,
    pub dst_hwm: i64,
    /// Records behind: source last stable offset minus mirror high watermark.
    pub lag: Option<i64>,
    /// `None` for a partition the link does not fetch (its topic failed): nothing is
    /// known about it from this run.
    pub lag_seconds: Option<f64>,
    pub last_error: Option<String>,
    /// The blind window and the records the source may have acknowledged in it; `None`
    /// before the first response.
    #[serde(default)]
    pub unconfirmed: Option<Unconfirmed>,
}

impl PartitionReport {
    /// Records the source holds beyond the mirror, known or possibly unseen: what would
    /// be lost if the source were lost now. The failover report's `records_at_risk_max`.
    pub fn records_at_risk_max(&self) -> Option<i64> {
        let known = (self.src_hwm? - self.dst_hwm).max(0);
        Some(known + self.unconfirmed?.records_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(lso: i64) -> SourceOffsets {
        SourceOffsets {
            log_start: 0,
            high_watermark: lso,
            last_stable: lso,
        }
    }

    fn key(p: i32) -> TopicPartition {
        TopicPartition::new("a_big", p)
    }

    #[test]
    fn first_sync_reports_percent_rate_and_eta_then_ends() {
        let link = LinkStatus::new("from-a", &["src:9092".to_string()]);
        let t0 = Instant::now();
        assert_eq!(link.on_fetched(&key(0), offsets(1000), 0, 100, t0), None);
        assert_eq!(link.on_fetched(&key(1), offsets(1000), 0, 100, t0), None);
        let t1 = t0 + Duration::from_secs(10);
        link.on_fetched(&key(0), offsets(1000), 100, 600, t1);
        link.on_fetched(&key(1), offsets(1000), 100, 400, t1);
        let p = link.progress(t1)["a_big"];
        assert_eq!(p.percent, 50.0);
        assert_eq!(p.records_per_second, 100.0);
        assert_eq!(p.remaining, 1000);
        assert_eq!(p.eta_seconds, Some(10.0));
        let t2 = t1 + Duration::from_secs(5);
        assert_eq!(link.on_fetched(&key(0), offsets(1000), 600, 1000, t2), None);
        let done = link.on_fetched(&key(1), offsets(1000), 400, 1000, t2);
        assert_eq!(done, Some(Duration::from_secs(15)));
        assert!(link.progress(t2).is_empty());
    }

    #[test]
    fn a_partition_caught_up_at_its_first_fetch_never_syncs() {
        let link = LinkStatus::new("from-a", &[]);
        let now = Instant::now();
        assert_eq!(link.on_fetched(&key(0), offsets(10), 0, 10, now), None);
        assert!(link.progress(now).is_empty());
        // Falling behind later is lag, not a first sync.
        link.on_fetched(&key(0), offsets(500), 10, 20, now);
        assert!(link.progress(now).is_empty());
    }

    #[test]
    fn lag_seconds_counts_from_the_last_confirmation() {
        let link = LinkStatus::new("from-a", &[]);
        let t0 = Instant::now();
        link.on_fetched(&key(0), offsets(10), 0, 10, t0);
        let p = |now| link.lock().partitions[&key(0)].lag_seconds(now);
        assert_eq!(p(t0 + Duration::from_secs(1)), 0.0);
        // Confirmed caught up, but nothing heard since: it cannot stay at zero.
        assert_eq!(p(t0 + Duration::from_secs(7)), 7.0);
        link.on_fetched(&key(0), offsets(50), 10, 20, t0 + Duration::from_secs(2));
        assert_eq!(p(t0 + Duration::from_secs(3)), 3.0);
        link.on_fetched(&key(0), offsets(50), 20, 50, t0 + Duration::from_secs(4));
        assert_eq!(p(t0 + Duration::from_secs(4)), 0.0);
        link.on_error(&key(0), "connection lost");
        // The last confirmation's request went out after the outcome handled at 2 s.
        assert_eq!(p(t0 + Duration::from_secs(6)), 4.0);
    }

    #[test]
    fn the_blind_window_starts_before_the_vouching_request_and_ends_at_the_loss() {
        let ms = Duration::from_millis;
        let t0 = Instant::now() - Duration::from_secs(3);
        let link = LinkStatus::new("from-a", &[]);
        link.track_all(&[&key(0)]);
        // 1000 records/s in steps of 10, each response handled 10 ms after the last.
        for step in 0..=200 {
            let hwm = 10 * step as i64;
            link.on_fetched(&key(0), offsets(hwm), hwm, hwm, t0 + ms(10 * step));
        }
        let last_request_after = t0 + ms(1990);
        link.set_lost("connection lost");
        link.on_error(&key(0), "connection lost");
        let inner = link.lock();
        let p = &inner.partitions[&key(0)];
        let failed = p.failing_since.expect("the failure is noted");
        let later = failed + Duration::from_secs(5);
        let lost = Some(inner.since);
        let u = p.unconfirmed(later, lost, 100.0).expect("a window");
        assert!(u.ends_at_loss);
        assert_eq!(u.seconds, (failed - last_request_after).as_secs_f64());
        assert!(u.records_per_second >= 1000.0, "{u:?}");
        let at_rate = (1000.0 * u.seconds) as i64;
        assert!(u.records_max >= at_rate + 10, "{u:?}");
        assert_eq!(u.bytes_max, u.records_max * 100);
        // Had the link not lost the source, nothing ends the window before now.
        let u = p.unconfirmed(later, None, 100.0).expect("a window");
        assert!(!u.ends_at_loss);
        assert_eq!(u.seconds, (later - last_request_after).as_secs_f64());
    }

    #[test]
    fn the_lag_in_seconds_covers_the_blind_window() {
        let link = LinkStatus::new("from-a", &[]);
        let t0 = Instant::now() - Duration::from_secs(2);
        link.track_all(&[&key(0)]);
        let mut inner = link.lock();
        let p = inner.partitions.get_mut(&key(0)).expect("tracked");
        p.last_outcome = t0;
        drop(inner);
        link.on_fetched(&key(0), offsets(10), 0, 10, t0 + Duration::from_secs(1));
        link.on_error(&key(0), "connection lost");
        let inner = link.lock();
        let p = &inner.partitions[&key(0)];
        let failed = p.failing_since.expect("the failure is noted");
        let u = p.unconfirmed(failed, Some(failed), 0.0).expect("a window");
        assert!(p.lag_seconds(failed) >= u.seconds, "{u:?}");
        assert_eq!(u.seconds, (failed - t0).as_secs_f64());
    }

    #[test]
    fn a_partition_that_failed_before_the_source_was_lost_counts_until_the_loss() {
        let link = LinkStatus::new("from-a", &[]);
        let t0 = Instant::now() - Duration::from_secs(10);
        link.on_fetched(&key(0), offsets(10), 0, 10, t0);
        link.on_fetched(&key(0), offsets(10), 10, 10, t0 + Duration::from_secs(1));
        // Its leader moved; then, before the link fetched from the new one, all was lost.
        link.on_error(&key(0), "NOT_LEADER_OR_FOLLOWER");
        let inner = link.lock();
        let p = &inner.partitions[&key(0)];
        let moved = p.failing_since.expect("the failure is noted");
        let lost = moved + Duration::from_secs(3);
        let u = p.unconfirmed(lost + Duration::from_secs(5), Some(lost), 0.0);
        assert_eq!(u.map(|u| u.seconds), Some((lost - t0).as_secs_f64()));
        assert!(u.is_some_and(|u| u.ends_at_loss));
    }

    #[test]
    fn a_new_response_closes_the_window_and_a_partition_never_heard_has_none() {
        let link = LinkStatus::new("from-a", &[]);
        let t0 = Instant::now();
        link.track_all(&[&key(0)]);
        link.track_all(&[&key(1)]);
        link.on_error(&key(0), "connection lost");
        link.on_fetched(&key(0), offsets(5), 5, 5, t0 + Duration::from_secs(1));
        let inner = link.lock();
        let p = &inner.partitions[&key(0)];
        assert_eq!(p.failing_since, None);
        let u = p.unconfirmed(t0 + Duration::from_secs(1), Some(t0), 0.0);
        assert!(
            u.is_some_and(|u| !u.ends_at_loss && u.seconds < 1.0),
            "{u:?}"
        );
        assert_eq!(
            inner.partitions[&key(1)].unconfirmed(t0, Some(t0), 0.0),
            None
        );
    }

    #[test]
    fn progress_of_an_empty_remainder_is_complete() {
        let p = sync_progress(0, 0, 0.0);
        assert_eq!(p.percent, 100.0);
        assert_eq!(p.eta_seconds, None);
    }
}
