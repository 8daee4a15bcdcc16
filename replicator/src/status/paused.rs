//! Paused links and topics in the status report, and the source offsets of partitions
//! that are not fetched while paused.

use std::time::Instant;

use super::{LinkStatus, PartitionStatus, SourceOffsets, StatusReport, TopicPartition};
use crate::link::pause::Pauses;

impl LinkStatus {
    /// The source holds `source` for `key` (from ListOffsets, not a fetch), and
    /// everything below `to` is fetched: a paused partition's lag keeps growing with the
    /// source, and one paused while caught up stays confirmed as long as it is.
    pub fn on_listed(
        &self,
        key: &TopicPartition,
        source: SourceOffsets,
        to: Option<i64>,
        now: Instant,
    ) {
        let mut inner = self.lock();
        let p = inner
            .partitions
            .entry(key.clone())
            .or_insert_with(|| PartitionStatus::new(now));
        match to.or(p.fetched_to) {
            Some(to) => p.confirm(source, to, now),
            None => p.source = Some(source),
        }
    }
}

/// Marks in `report` what is paused of each link and topic.
pub fn mark_paused(report: &mut StatusReport, pauses: &Pauses) {
    for link in &mut report.links {
        let paused = pauses.of(&link.name);
        link.paused = paused.all;
        link.paused_topics = paused.topics.iter().cloned().collect();
        for topic in &mut link.topics {
            topic.paused = paused.is_paused(&topic.name);
        }
    }
}
