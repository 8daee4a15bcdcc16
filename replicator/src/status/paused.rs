//! Paused links and topics in the status report, and the source offsets of partitions
//! that are not fetched while paused.

use std::time::Instant;

use super::{LinkStatus, SourceOffsets, StatusReport, TopicPartition};
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
        let p = inner.settled(key, now);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::status::testing::offsets;

    #[test]
    fn a_paused_partition_lags_from_when_the_source_last_matched_it() {
        let link = LinkStatus::new("from-a", &[]);
        let key = TopicPartition::new("a_paused", 0);
        let t0 = Instant::now();
        let s = Duration::from_secs;
        link.on_listed(&key, offsets(50), Some(50), t0);
        let lag = |now| link.lock().partitions[&key].lag_seconds(now);
        assert_eq!(lag(t0 + s(1)), 0.0);
        link.on_listed(&key, offsets(80), Some(50), t0 + s(2));
        assert_eq!(lag(t0 + s(4)), 4.0);
        let known = link.lock().partitions[&key]
            .source
            .map(|s| s.high_watermark);
        assert_eq!(known, Some(80));
    }

    #[test]
    fn a_partition_never_fetched_only_learns_the_source() {
        let link = LinkStatus::new("from-a", &[]);
        let key = TopicPartition::new("a_paused", 0);
        let t0 = Instant::now();
        link.on_listed(&key, offsets(50), None, t0);
        let inner = link.lock();
        let p = &inner.partitions[&key];
        assert_eq!(p.source.map(|s| s.high_watermark), Some(50));
        assert_eq!(p.confirmed_at, None);
    }
}
