//! Confirmations by KIP-227 session responses, one timestamp per broker session.
//!
//! An incremental fetch response leaves out every partition of the session that did not
//! change at the source: it confirms them all at their last known offsets, as a full
//! response naming them would. Recording that on each partition would cost the link a
//! visit to every partition per long poll while nothing happens. Instead the session
//! keeps the instants of its last two empty confirmations, and a partition applies them
//! when it is next read or changed ([`settle`]). Two are enough: confirming a partition
//! whose offsets did not move sets its last outcome to the latest confirmation and its
//! vouched-from instant to the one before, whatever came earlier.

use std::collections::HashMap;
use std::time::Instant;

use super::{LinkInner, LinkStatus, PartitionStatus, TopicPartition};

/// When one broker's session last confirmed its partitions.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Vouches {
    last: Option<Instant>,
    previous: Option<Instant>,
}

/// Applies the confirmations of the partition's session made since its own last outcome
/// and since it joined the session.
pub(super) fn settle(p: &mut PartitionStatus, sessions: &HashMap<i32, Vouches>) {
    let Some((broker, joined)) = p.session else {
        return;
    };
    let Some(last) = sessions.get(&broker).and_then(|v| v.last) else {
        return;
    };
    let after = p.last_outcome.max(joined);
    let (Some(source), Some(to)) = (p.source, p.fetched_to) else {
        return;
    };
    if last <= after {
        return;
    }
    if let Some(previous) = sessions[&broker].previous.filter(|t| *t > after) {
        p.confirm(source, to, previous);
    }
    p.confirm(source, to, last);
}

impl LinkInner {
    /// The status of `key`, tracked from `now` if it was not, with its session's
    /// confirmations applied: call before changing it.
    pub(super) fn settled(&mut self, key: &TopicPartition, now: Instant) -> &mut PartitionStatus {
        let p = self
            .partitions
            .entry(key.clone())
            .or_insert_with(|| PartitionStatus::new(now));
        settle(p, &self.sessions);
        p
    }

    /// Applies every pending session confirmation, before reading all partitions.
    pub(super) fn settle_all(&mut self) {
        for p in self.partitions.values_mut() {
            settle(p, &self.sessions);
        }
    }
}

impl LinkStatus {
    /// `keys` are in `broker`'s session from the request planned at `now` on: the
    /// responses to it that leave them out confirm them.
    pub fn join_session(&self, broker: i32, keys: &[TopicPartition], now: Instant) {
        let mut inner = self.lock();
        for key in keys {
            let p = inner.settled(key, now);
            p.session = Some((broker, now));
        }
    }

    /// `keys` left their session: its later responses say nothing about them.
    pub fn leave_session(&self, keys: &[TopicPartition]) {
        let now = Instant::now();
        let mut inner = self.lock();
        for key in keys {
            inner.settled(key, now).session = None;
        }
    }

    /// An incremental response of `broker`'s session, handled at `now` (taken before any
    /// partition it names was recorded), left out every partition that did not change.
    pub fn on_session_unchanged(&self, broker: i32, now: Instant) {
        let mut inner = self.lock();
        let vouches = inner.sessions.entry(broker).or_default();
        vouches.previous = vouches.last;
        vouches.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::status::testing::offsets;

    /// The same partition confirmed one response at a time and through its session.
    #[test]
    fn session_confirmations_settle_as_confirming_each_partition_would() {
        let ms = Duration::from_millis;
        let t0 = Instant::now() - Duration::from_secs(10);
        let (each, session) = (LinkStatus::new("a", &[]), LinkStatus::new("b", &[]));
        let key = TopicPartition::new("t", 0);
        let behind = TopicPartition::new("t", 1);
        for link in [&each, &session] {
            link.on_fetched(&key, offsets(10), 0, 10, t0);
            link.on_fetched(&behind, offsets(50), 0, 20, t0);
        }
        session.join_session(7, &[key.clone(), behind.clone()], t0 + ms(1));
        for step in 1..=3u64 {
            let at = t0 + ms(500 * step);
            let mut inner = each.lock();
            for k in [&key, &behind] {
                let p = inner.partitions.get_mut(k).unwrap();
                let (source, to) = (p.source.unwrap(), p.fetched_to.unwrap());
                p.confirm(source, to, at);
            }
            drop(inner);
            session.on_session_unchanged(7, at);
        }
        // Nothing was written to the partitions themselves...
        let untouched = session.lock().partitions[&key].last_outcome;
        assert_eq!(untouched, t0);
        // ...yet reading them finds what confirming each one found.
        let fields = |link: &LinkStatus, k: &TopicPartition| {
            let mut inner = link.lock();
            inner.settle_all();
            let p = &inner.partitions[k];
            (p.last_outcome, p.vouched_from, p.confirmed_at, p.caught_up)
        };
        for k in [&key, &behind] {
            assert_eq!(fields(&session, k), fields(&each, k));
        }
        assert_eq!(fields(&session, &key).2, Some(t0 + ms(1000)));
        // A partition that left the session is not confirmed by its later responses.
        session.leave_session(std::slice::from_ref(&key));
        session.on_session_unchanged(7, t0 + ms(2000));
        assert_eq!(fields(&session, &key).0, t0 + ms(1500));
        assert_eq!(fields(&session, &behind).0, t0 + ms(2000));
    }
}
