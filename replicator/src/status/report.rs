//! The shape of the `/v1/status` report, as served in JSON and read back by the admin
//! client.

use serde::{Deserialize, Serialize};

use crate::rpo::Unconfirmed;

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
    /// `syncing`, `active`, `failed`, `failing_over` or `failed_over` (see
    /// [`TopicStateName`](super::TopicStateName)).
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
