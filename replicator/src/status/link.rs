//! The live status of one link: its state, the partitions it fetches and their first
//! syncs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::partition::{InitialSync, PartitionStatus};
use super::{session, LinkState, SourceOffsets, SyncProgress, TopicPartition};

pub(super) struct LinkInner {
    pub(super) state: LinkState,
    pub(super) since: Instant,
    pub(super) last_error: Option<(String, Instant)>,
    pub(super) partitions: BTreeMap<TopicPartition, PartitionStatus>,
    /// What the link last saw of the partitions of topics it no longer fetches (failed
    /// over, or failed): a failover's records at risk are measured against it, and it
    /// may be read after the link has let the partitions go.
    pub(super) handed_over: BTreeMap<TopicPartition, PartitionStatus>,
    pub(super) sessions: HashMap<i32, session::Vouches>,
    /// The partitions in their first sync, so progress walks those alone.
    syncing: BTreeSet<TopicPartition>,
}

/// The keys of `topic`'s partitions in `map`, in order.
fn keys_of<'a, V>(
    map: &'a BTreeMap<TopicPartition, V>,
    topic: &'a str,
) -> impl Iterator<Item = &'a TopicPartition> {
    (map.range(TopicPartition::new(topic, i32::MIN)..))
        .map(|(key, _)| key)
        .take_while(move |key| key.topic == topic)
}

impl LinkInner {
    /// The table holding `topic`'s partitions: the handed-over one once the link has
    /// let them go.
    pub(super) fn tracked(&self, topic: &str) -> &BTreeMap<TopicPartition, PartitionStatus> {
        match keys_of(&self.handed_over, topic).next().is_some() {
            true => &self.handed_over,
            false => &self.partitions,
        }
    }

    /// Drops the last view of a handed-over `topic` the link fetches again.
    fn take_back(&mut self, topic: &str) {
        if self.handed_over.is_empty() {
            return;
        }
        let keys: Vec<TopicPartition> = keys_of(&self.handed_over, topic).cloned().collect();
        for key in keys {
            self.handed_over.remove(&key);
        }
    }
}

/// The live status of one link, shared by its runner and the admin listener.
pub struct LinkStatus {
    pub name: String,
    pub source: Vec<String>,
    inner: Mutex<LinkInner>,
}

impl LinkStatus {
    pub(super) fn new(name: &str, source: &[String]) -> LinkStatus {
        LinkStatus {
            name: name.to_string(),
            source: source.to_vec(),
            inner: Mutex::new(LinkInner {
                state: LinkState::Connecting,
                since: Instant::now(),
                last_error: None,
                partitions: BTreeMap::new(),
                handed_over: BTreeMap::new(),
                sessions: HashMap::new(),
                syncing: BTreeSet::new(),
            }),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, LinkInner> {
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
                inner.take_back(&key.topic);
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

    /// Sets aside what the link last saw of `topic`'s partitions, which it stops
    /// fetching: no session confirms them from now on, and [`Self::retain`] keeps them.
    pub fn hand_over(&self, topic: &str) {
        let mut inner = self.lock();
        let keys: Vec<TopicPartition> = keys_of(&inner.partitions, topic).cloned().collect();
        for key in keys {
            if let Some(mut p) = inner.partitions.remove(&key) {
                session::settle(&mut p, &inner.sessions);
                p.session = None;
                inner.syncing.remove(&key);
                inner.handed_over.insert(key, p);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::testing::{key, offsets};

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
    fn a_handed_over_topic_keeps_its_last_view_until_the_link_fetches_it_again() {
        let link = LinkStatus::new("from-a", &[]);
        let now = Instant::now();
        let other = TopicPartition::new("a_other", 0);
        link.track_all(&[&key(0), &key(1), &other]);
        link.on_fetched(&key(0), offsets(30), 0, 20, now);
        link.hand_over("a_big");
        // The link's next metadata refresh names only what it still fetches.
        assert_eq!(link.track_all(&[&other]), 1);
        link.retain(|k| *k == other);
        let inner = link.lock();
        let kept = inner.tracked("a_big");
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[&key(0)].source.map(|s| s.high_watermark), Some(30));
        assert_eq!(kept[&key(0)].fetched_to, Some(20));
        assert!(inner.tracked("a_other").contains_key(&other));
        drop(inner);
        // Mirrored again (a topic demoted after a fail-back): a fresh view.
        link.track_all(&[&key(0), &other]);
        let inner = link.lock();
        assert!(inner.handed_over.is_empty());
        assert!(inner.tracked("a_big")[&key(0)].source.is_none());
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
    fn progress_of_an_empty_remainder_is_complete() {
        let p = sync_progress(0, 0, 0.0);
        assert_eq!(p.percent, 100.0);
        assert_eq!(p.eta_seconds, None);
    }
}
