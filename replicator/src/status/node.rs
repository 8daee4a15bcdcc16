//! The node's status: every link, the readiness checks, and the report made from them
//! and the store.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::partition::PartitionStatus;
use super::{
    LinkReport, LinkState, LinkStatus, ListenerReport, OfflineReport, PartitionReport,
    StatusReport, SyncProgress, TopicPartition, TopicReport, TopicStateName,
};
use crate::mirror::{MirrorPartition, MirrorTopic, Store, TopicState};
use crate::rpo;
use shadowlink_storage::{Poison, StorageError};

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
        let mut not_ready = links_not_ready(&links);
        let offline = offline_reports(store);
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

/// Why the links keep the node from being ready: a link not connected, a topic failed.
fn links_not_ready(links: &[LinkReport]) -> Vec<String> {
    let mut not_ready = Vec::new();
    for link in links {
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
    not_ready
}

fn offline_reports(store: &Store) -> Vec<OfflineReport> {
    store
        .offline()
        .into_iter()
        .map(|o| OfflineReport {
            topic: o.topic,
            partition: o.partition,
            error: o.reason,
        })
        .collect()
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
            let tracked = inner.tracked(&t.name);
            let mut report = topic_report(&t, tracked, sync, now);
            let lost = (inner.state == LinkState::Lost).then_some(inner.since);
            add_unconfirmed(&mut report, &t, tracked, lost, now);
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
            let failure = mirror.failure();
            if reason.is_none() {
                reason.clone_from(&failure);
            }
            partition_report(&topic.name, mirror, failure, tracked, now)
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

/// One partition's report. `failure`, why the partition stopped if it did, is reported as
/// its last error ahead of the link's latest fetch error.
fn partition_report(
    topic: &str,
    mirror: &MirrorPartition,
    failure: Option<String>,
    tracked: &BTreeMap<TopicPartition, PartitionStatus>,
    now: Instant,
) -> PartitionReport {
    let (dst_log_start, dst_hwm) = {
        let log = mirror.log();
        (log.log_start_offset(), log.high_watermark())
    };
    let key = TopicPartition::new(topic, mirror.partition);
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
}
