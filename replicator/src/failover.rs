//! Failover: a link's shadow topics become writable on this node, one way.
//!
//! Per topic: `active → failing_over → failed_over`, each step persisted before the next.
//! `failing_over` stops the link from writing the topic; making it writable continues
//! its offsets from the mirrored log end, in a leader epoch above every mirrored one.
//! Transactions the source left open in the mirrored batches (their markers never
//! arrived) are aborted there, so the last stable offset reaches the log end; the
//! report names each one.
//! Nothing here talks to the source: failover is for when the source is gone.
//!
//! The report never says less than the truth it can bound: besides the records the source
//! was known to hold beyond the mirror, it names each partition's blind window (see
//! [`crate::rpo`]) and the records the source may have acknowledged in it.

use serde::{Deserialize, Serialize};

use crate::filter::SCHEMAS;
use std::collections::BTreeMap;

use crate::mirror::{AbortedTransaction, MirrorError, MirrorTopic, Store, TopicState};
use crate::rpo::Unconfirmed;
use crate::status::{PartitionReport, Status};

/// Why a failover request was refused.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    #[error("link {0} is not configured on this node")]
    UnknownLink(String),
    #[error("topic {topic} is not a shadow topic of link {link}")]
    NotShadowed { topic: String, link: String },
    #[error("name the topics to fail over, or ask for all of them")]
    NothingNamed,
    #[error(transparent)]
    Mirror(#[from] MirrorError),
}

/// What to fail over: every shadow topic of the link, or the named ones.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FailoverRequest {
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub topics: Vec<String>,
}

/// The records at risk in one partition: what the source had that the mirror did not.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionOutcome {
    pub partition: i32,
    /// The mirror's log end: the first offset producers write here.
    pub dst_hwm: i64,
    /// The source's high watermark as last seen by the link, if it was ever seen.
    pub src_hwm: Option<i64>,
    /// Records the source had acknowledged beyond the mirror (the achieved RPO).
    pub records_at_risk: Option<i64>,
    /// Age of the oldest record not mirrored, as measured by the link (the RPO in time);
    /// the same value as `shadowlink_shadow_lag_seconds` at the failover.
    pub seconds_at_risk: Option<f64>,
    /// The blind window before the failover, as `/v1/status` showed it.
    #[serde(default)]
    pub unconfirmed: Option<Unconfirmed>,
    /// `records_at_risk` plus what the source may have acknowledged in the blind window:
    /// an upper estimate of the records this failover lost.
    #[serde(default)]
    pub records_at_risk_max: Option<i64>,
    /// Transactions left open by the source that this failover aborted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aborted_transactions: Vec<AbortedTransaction>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicOutcome {
    pub topic: String,
    pub state: String,
    pub partitions: Vec<PartitionOutcome>,
}

/// Fails over the requested topics of `link`; already failed-over ones are reported again.
pub fn fail_over(
    store: &Store,
    status: &Status,
    link: &str,
    request: &FailoverRequest,
) -> Result<Vec<TopicOutcome>, FailoverError> {
    if !status.has_link(link) {
        return Err(FailoverError::UnknownLink(link.to_string()));
    }
    let topics = chosen_topics(store, link, request)?;
    let before = status.report(store);
    let risk = |topic: &str| -> Vec<PartitionReport> {
        before
            .links
            .iter()
            .filter(|l| l.name == link)
            .flat_map(|l| l.topics.iter())
            .filter(|t| t.name == topic)
            .flat_map(|t| t.partitions.clone())
            .collect()
    };
    let mut outcomes = Vec::new();
    for topic in topics {
        let seen = risk(&topic.name);
        let aborted = complete(&topic)?;
        outcomes.push(outcome(&topic, &seen, aborted));
    }
    Ok(outcomes)
}

/// The topics of `link` a request names (all of them but `_schemas` for `all`).
pub fn chosen_topics(
    store: &Store,
    link: &str,
    request: &FailoverRequest,
) -> Result<Vec<std::sync::Arc<MirrorTopic>>, FailoverError> {
    let of_link = |t: &MirrorTopic| t.meta().link == link;
    if request.all {
        // `_schemas` fails over only when named: making the schema registry writable on
        // this site is a separate decision from moving the data.
        let all = store
            .topics()
            .into_iter()
            .filter(|t| of_link(t) && t.name != SCHEMAS);
        return Ok(all.collect());
    }
    if request.topics.is_empty() {
        return Err(FailoverError::NothingNamed);
    }
    request
        .topics
        .iter()
        .map(|name| {
            store
                .topic(name)
                .filter(|t| of_link(t))
                .ok_or_else(|| FailoverError::NotShadowed {
                    topic: name.clone(),
                    link: link.to_string(),
                })
        })
        .collect()
}

/// Drives one topic to `failed_over`, resuming wherever an earlier attempt stopped, and
/// returns, per partition, the open transactions it aborted.
pub fn complete(
    topic: &MirrorTopic,
) -> Result<BTreeMap<i32, Vec<AbortedTransaction>>, MirrorError> {
    let mut meta = topic.meta();
    if meta.state == TopicState::FailedOver {
        return Ok(BTreeMap::new());
    }
    if meta.state != TopicState::FailingOver {
        meta.state = TopicState::FailingOver;
        topic.set_meta(meta.clone())?;
        tracing::warn!(topic = %topic.name, link = %meta.link, "failover started");
    }
    topic.make_writable()?;
    // Before `failed_over`: a crash in between aborts the rest on resume.
    let mut aborted = BTreeMap::new();
    for p in topic.partitions() {
        let ended = p.abort_open_transactions(crate::txn::now_ms())?;
        if !ended.is_empty() {
            aborted.insert(p.partition, ended);
        }
    }
    meta.state = TopicState::FailedOver;
    topic.set_meta(meta.clone())?;
    tracing::warn!(topic = %topic.name, link = %meta.link, "failover complete: the topic is writable here");
    Ok(aborted)
}

/// On a cluster node, once the assignment made the topic owned: the link stops writing
/// it, and its partitions wait for the role the assignment gives each, leader or
/// follower (see `cluster::replica`). Idempotent. The ownership is persisted before the
/// state, and never through `failing_over`, whose resumption after a crash would make
/// this node alone writable in an epoch of its own choosing.
pub fn adopt(topic: &MirrorTopic) -> Result<(), MirrorError> {
    topic.make_replica()?;
    let mut meta = topic.meta();
    if meta.state != TopicState::FailedOver {
        meta.state = TopicState::FailedOver;
        topic.set_meta(meta.clone())?;
        tracing::warn!(topic = %topic.name, link = %meta.link, "failed over in the cluster");
    }
    Ok(())
}

fn outcome(
    topic: &MirrorTopic,
    seen: &[PartitionReport],
    mut aborted: BTreeMap<i32, Vec<AbortedTransaction>>,
) -> TopicOutcome {
    let partitions = topic
        .partitions()
        .iter()
        .map(|p| {
            let dst_hwm = p.log().log_end_offset();
            let report = seen.iter().find(|r| r.partition == p.partition);
            let aborted = aborted.remove(&p.partition).unwrap_or_default();
            partition_outcome(p.partition, dst_hwm, report, aborted)
        })
        .collect();
    TopicOutcome {
        topic: topic.name.clone(),
        state: "failed_over".to_string(),
        partitions,
    }
}

/// One partition's records at risk: `dst_hwm` is where producers continue, `report` what
/// the link last showed of the partition (`/v1/status`), if it tracked it.
pub fn partition_outcome(
    partition: i32,
    dst_hwm: i64,
    report: Option<&PartitionReport>,
    aborted_transactions: Vec<AbortedTransaction>,
) -> PartitionOutcome {
    let src_hwm = report.and_then(|r| r.src_hwm);
    let records_at_risk = src_hwm.map(|h| (h - dst_hwm).max(0));
    let unconfirmed = report.and_then(|r| r.unconfirmed);
    PartitionOutcome {
        partition,
        dst_hwm,
        src_hwm,
        records_at_risk,
        seconds_at_risk: report.and_then(|r| r.lag_seconds),
        unconfirmed,
        records_at_risk_max: records_at_risk
            .zip(unconfirmed)
            .map(|(known, u)| known + u.records_max),
        aborted_transactions,
    }
}

/// The whole failover in one line: known losses and the widest blind window, summed over
/// partitions (windows overlap in time, so the widest one is the link's).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    pub records_at_risk: i64,
    pub records_at_risk_max: i64,
    pub bytes_unconfirmed_max: i64,
    pub unconfirmed_seconds: f64,
    pub records_per_second: f64,
    /// Partitions the link never heard from: nothing can be said about them.
    pub unknown_partitions: usize,
}

pub fn summarize(outcomes: &[TopicOutcome]) -> Summary {
    let mut sum = Summary::default();
    for p in outcomes.iter().flat_map(|t| &t.partitions) {
        let (Some(known), Some(u)) = (p.records_at_risk, p.unconfirmed) else {
            sum.unknown_partitions += 1;
            continue;
        };
        sum.records_at_risk += known;
        sum.records_at_risk_max += known + u.records_max;
        sum.bytes_unconfirmed_max += u.bytes_max;
        sum.unconfirmed_seconds = sum.unconfirmed_seconds.max(u.seconds);
        sum.records_per_second += u.records_per_second;
    }
    sum
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} known at risk; up to ~{} of writes unconfirmed (about {} records, {} bytes at \
             the recent peak rate of {:.0} records/s): at most {} records lost",
            self.records_at_risk,
            window(self.unconfirmed_seconds),
            self.records_at_risk_max - self.records_at_risk,
            self.bytes_unconfirmed_max,
            self.records_per_second,
            self.records_at_risk_max,
        )?;
        if self.unknown_partitions > 0 {
            write!(
                f,
                "; {} partition(s) never heard from, unknown",
                self.unknown_partitions
            )?;
        }
        Ok(())
    }
}

/// A window in the unit that reads best: `4 ms`, `1.3 s`.
pub fn window(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{} ms", (seconds * 1000.0).ceil() as i64)
    } else {
        format!("{seconds:.1} s")
    }
}

/// Finishes failovers a crash interrupted between `failing_over` and `failed_over`.
pub fn resume_interrupted(store: &Store) -> Result<(), MirrorError> {
    for topic in store.topics() {
        if topic.meta().state == TopicState::FailingOver {
            let aborted = complete(&topic)?;
            let transactions: usize = aborted.values().map(Vec::len).sum();
            tracing::warn!(topic = %topic.name, transactions, "interrupted failover finished");
        }
    }
    Ok(())
}
