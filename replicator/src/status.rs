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

use std::time::Duration;

pub use crate::topic_partition::TopicPartition;

mod link;
mod node;
mod partition;
mod paused;
mod report;
mod session;
use link::LinkInner;
pub use link::{sync_progress, LinkStatus};
pub use node::{ReadinessCheck, Status};
use partition::PartitionStatus;
pub use paused::mark_paused;
pub use report::{
    LinkReport, ListenerReport, OfflineReport, PartitionReport, StatusReport, SyncProgress,
    TopicReport,
};

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

/// Inputs the status modules' tests share.
#[cfg(test)]
mod testing {
    use super::{SourceOffsets, TopicPartition};

    /// A source with nothing left undecided: its last stable offset is its high watermark.
    pub(super) fn offsets(hwm: i64) -> SourceOffsets {
        SourceOffsets {
            log_start: 0,
            high_watermark: hwm,
            last_stable: hwm,
        }
    }

    pub(super) fn key(p: i32) -> TopicPartition {
        TopicPartition::new("a_big", p)
    }
}
