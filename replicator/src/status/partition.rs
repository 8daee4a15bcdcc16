//! One partition as its link sees it: what the source last showed, what is fetched, and
//! the lag and blind window computed from them (see the module's "Lag in seconds").

use std::time::Instant;

use super::{SourceOffsets, STALE_AFTER};
use crate::rpo::{Unconfirmed, WriteHistory};

/// A first sync in progress on one partition.
#[derive(Debug, Clone, Copy)]
pub(super) struct InitialSync {
    pub(super) start_offset: i64,
    pub(super) started: Instant,
}

#[derive(Debug, Clone)]
pub(super) struct PartitionStatus {
    pub(super) source: Option<SourceOffsets>,
    /// Where the next fetch starts: everything below is fetched and queued for the log.
    pub(super) fetched_to: Option<i64>,
    pub(super) caught_up: bool,
    pub(super) confirmed_at: Option<Instant>,
    pub(super) first_seen: Instant,
    pub(super) last_error: Option<(String, Instant)>,
    pub(super) sync: Option<InitialSync>,
    /// When the link last handled a fetch outcome (data or error) of this partition: the
    /// next request was sent after it.
    pub(super) last_outcome: Instant,
    /// The [`Self::last_outcome`] before the latest successful response: no later than
    /// that response's request, so no later than the high watermark it carries.
    pub(super) vouched_from: Option<Instant>,
    /// The first failure since the latest successful response.
    pub(super) failing_since: Option<Instant>,
    pub(super) writes: WriteHistory,
    /// The broker whose KIP-227 session holds the partition, and since when: its
    /// responses confirm the partition without naming it (see `session.rs`).
    pub(super) session: Option<(i32, Instant)>,
}

impl PartitionStatus {
    pub(super) fn new(now: Instant) -> PartitionStatus {
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
    pub(super) fn confirm(&mut self, source: SourceOffsets, to: i64, now: Instant) {
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
    pub(super) fn unconfirmed(
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

    pub(super) fn lag_seconds(&self, now: Instant) -> f64 {
        let since = self.confirmed_at.unwrap_or(self.first_seen);
        let age = now.saturating_duration_since(since);
        if self.caught_up && age <= STALE_AFTER {
            0.0
        } else {
            age.as_secs_f64()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::status::testing::{key, offsets};
    use crate::status::LinkStatus;

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
}
