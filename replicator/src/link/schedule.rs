//! Choosing what to fetch next, looking only at partitions that changed.
//!
//! A partition is looked at again only after something happened to it: a response
//! named it, its fetch failed, metadata or a pause changed, or it waits on something
//! that ends by itself (a backoff, a busy writer, a failed write being retried). A
//! partition of a KIP-227 session that is fetched and quiet stays in the session
//! without a visit, so an idle link's next request costs nothing per partition.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use futures::future::BoxFuture;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::FetchRequest;

use super::fetch::{group_in_order, max_wait_ms, topic_name, FetchOutcome};
use super::session::Planned;
use super::writer::WRITER_QUEUE;
use super::{LinkRunner, TopicPartition};

impl LinkRunner {
    /// Starts fetches for every broker with partitions to fetch and a free request slot.
    pub(super) fn schedule_fetches(&mut self) -> Vec<BoxFuture<'static, FetchOutcome>> {
        if self.waiting_on_sessions() {
            return Vec::new();
        }
        let now = Instant::now();
        let keys: Vec<TopicPartition> = match std::mem::take(&mut self.sweep) {
            true => self.partitions.keys().cloned().collect(),
            false => {
                let mut keys = std::mem::take(&mut self.touched);
                keys.append(&mut self.watched);
                keys.into_iter().collect()
            }
        };
        let mut ready: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
        let mut joined = BTreeMap::<i32, Vec<_>>::new();
        let mut behind = BTreeSet::new();
        for key in keys {
            match self.examine(&key, now) {
                Examined::Session {
                    broker,
                    joined: true,
                } => joined.entry(broker).or_default().push(key),
                Examined::Session { .. } | Examined::Idle => {}
                Examined::Ready(broker) => ready.entry(broker).or_default().push(key),
                Examined::WriterBehind(broker) => {
                    behind.insert(broker);
                }
            }
        }
        for (broker, keys) in joined {
            self.status.join_session(broker, &keys, now);
        }
        let mut requests = self.session_fetches(now, &behind);
        for (broker, keys) in ready {
            requests.extend(self.full_fetch(broker, keys, now, behind.contains(&broker)));
        }
        requests
    }

    /// Whether `key` can be fetched now and how: it joins or stays in its leader's
    /// session, or waits for a full fetch. Leaves the session it should no longer be in,
    /// and is watched while it waits on something that changes by itself.
    fn examine(&mut self, key: &TopicPartition, now: Instant) -> Examined {
        #[cfg(test)]
        {
            self.examined += 1;
        }
        let Some(state) = self.partitions.get(key) else {
            return Examined::Idle;
        };
        let capacity = state.writer.capacity();
        let failed = state.mirror.failure().is_some();
        let waits = capacity < WRITER_QUEUE || failed || !state.backoff.ready(now);
        // A partition moving off a session whose request is out stays put until it
        // answers, so no two requests fetch it at once.
        let moving = state.session.filter(|b| *b != state.leader);
        let held = moving.is_some_and(|b| self.brokers.get(&b).is_some_and(|s| s.in_flight > 0));
        let fetchable_but_for_writer = !state.in_flight
            && !state.absent
            && !state.paused
            && state.next_offset.is_some()
            && state.backoff.ready(now)
            && !failed
            && !state.mirror.is_owned()
            && !held
            && self.holds(key);
        let writer_behind = fetchable_but_for_writer && capacity < 2;
        let fetchable = fetchable_but_for_writer && !writer_behind;
        let leader = state.leader;
        let session = fetchable && self.uses_session(leader);
        if waits || held {
            self.watched.insert(key.clone());
        }
        let was = state.session;
        if was.is_some_and(|b| !session || b != leader) {
            if let Some(s) = was.and_then(|b| self.sessions.get_mut(&b)) {
                s.unwant(key);
            }
            self.set_session(key, None);
            if !session {
                self.status.leave_session(std::slice::from_ref(key));
            }
        }
        if session {
            let partition = self.fetch_partition(key);
            self.sessions
                .entry(leader)
                .or_default()
                .want(key, partition);
            let joined = self.set_session(key, Some(leader)) != Some(leader);
            return Examined::Session {
                broker: leader,
                joined,
            };
        }
        match (fetchable, writer_behind) {
            (true, _) => Examined::Ready(leader),
            (false, true) => Examined::WriterBehind(leader),
            (false, false) => Examined::Idle,
        }
    }

    /// Sets the session `key` is in; returns the one it was in.
    fn set_session(&mut self, key: &TopicPartition, broker: Option<i32>) -> Option<i32> {
        let state = self.partitions.get_mut(key)?;
        std::mem::replace(&mut state.session, broker)
    }

    /// The next request of every session with partitions wanted and no request out;
    /// `behind` are the brokers leading a partition whose writer is behind.
    fn session_fetches(
        &mut self,
        now: Instant,
        behind: &BTreeSet<i32>,
    ) -> Vec<BoxFuture<'static, FetchOutcome>> {
        let brokers: Vec<i32> = self
            .sessions
            .iter()
            .filter(|(b, s)| s.has_wanted() && self.uses_session(**b))
            .map(|(b, _)| *b)
            .collect();
        let mut requests = Vec::new();
        for broker in brokers {
            let state = self.brokers.entry(broker).or_default();
            if state.in_flight >= 1 || state.backoff.as_ref().is_some_and(|b| !b.ready(now)) {
                continue;
            }
            let Some(addr) = self.cluster.view.brokers.get(&broker).cloned() else {
                self.refresh_soon = true;
                continue;
            };
            let state = self.brokers.entry(broker).or_default();
            state.in_flight += 1;
            state.long_poll = true;
            let planned = self.sessions.entry(broker).or_default().plan();
            let epoch = planned.epoch;
            let request = self.session_request(planned).with_max_wait_ms(max_wait_ms(
                true,
                behind.contains(&broker),
                self.link.config.fetch_max_wait,
            ));
            requests.push(self.send(broker, addr, Vec::new(), request, Some(epoch)));
        }
        requests
    }

    /// A full fetch of `keys` from `broker`, if it has a free request slot; otherwise
    /// the keys wait for the next turn. `writer_behind`: a partition `broker` leads
    /// waits on its writer's queue.
    fn full_fetch(
        &mut self,
        broker: i32,
        mut keys: Vec<TopicPartition>,
        now: Instant,
        writer_behind: bool,
    ) -> Option<BoxFuture<'static, FetchOutcome>> {
        let limit = self.link.config.fetches_in_flight;
        // Several requests go out at once only for partitions that had records last
        // time, and with a short wait. A request that may wait for data goes alone: one
        // queued behind it on the connection would wait out its whole long poll, and the
        // next behind that one as long again.
        let long_poll = keys
            .iter()
            .any(|k| self.partitions.get(k).is_none_or(|s| s.caught_up));
        let entry = self.brokers.entry(broker).or_default();
        let broker_ready = entry.backoff.as_ref().is_none_or(|b| b.ready(now));
        let slot = match long_poll {
            true => entry.in_flight == 0,
            false => entry.in_flight < limit && !entry.long_poll,
        };
        let addr = self.cluster.view.brokers.get(&broker).cloned();
        let (true, Some(addr)) = (slot && broker_ready, addr) else {
            self.refresh_soon |= !self.cluster.view.brokers.contains_key(&broker);
            self.watched.extend(keys);
            return None;
        };
        entry.in_flight += 1;
        entry.long_poll = long_poll;
        // A broker fills a response in request order and stops at fetch_max_bytes, so a
        // fixed order would let one busy partition starve the ones after it (KIP-74):
        // each request starts one partition further on.
        self.fetch_rotation = self.fetch_rotation.wrapping_add(1);
        let len = keys.len();
        keys.rotate_left(self.fetch_rotation % len);
        crate::metrics::link_fetch_request(self.name(), "full");
        let request = self.fetch_request(&keys).with_max_wait_ms(max_wait_ms(
            long_poll,
            writer_behind,
            self.link.config.fetch_max_wait,
        ));
        for key in &keys {
            if let Some(s) = self.partitions.get_mut(key) {
                s.in_flight = true;
            }
        }
        Some(self.send(broker, addr, keys, request, None))
    }

    /// The request for a planned session step: a full fetch opening the session, or the
    /// partitions whose parameters changed and the ones to forget.
    fn session_request(&mut self, planned: Planned) -> FetchRequest {
        let base = self
            .base_request()
            .with_session_id(planned.session_id)
            .with_session_epoch(planned.epoch);
        let full = planned.is_full();
        let mut listed: Vec<(TopicPartition, FetchPartition)> = planned
            .listed_keys
            .into_iter()
            .zip(planned.listed)
            .collect();
        if full {
            crate::metrics::link_fetch_request(self.name(), "full");
            listed.sort_by(|a, b| a.0.cmp(&b.0));
            self.fetch_rotation = self.fetch_rotation.wrapping_add(1);
            let len = listed.len().max(1);
            listed.rotate_left(self.fetch_rotation % len);
        } else {
            crate::metrics::link_fetch_request(self.name(), "incremental");
        }
        let keys: Vec<TopicPartition> = listed.iter().map(|(k, _)| k.clone()).collect();
        let mut partitions: BTreeMap<(&str, i32), FetchPartition> = BTreeMap::new();
        for (key, partition) in &listed {
            partitions.insert((&key.topic, key.partition), partition.clone());
        }
        let topics = group_in_order(&keys).into_iter().map(|(name, indexes)| {
            let listed = indexes.iter().map(|i| partitions[&(name, *i)].clone());
            FetchTopic::default()
                .with_topic(topic_name(name))
                .with_partitions(listed.collect())
        });
        let mut forgotten: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for key in &planned.forgotten {
            forgotten.entry(&key.topic).or_default().push(key.partition);
        }
        let forgotten = forgotten.into_iter().map(|(name, partitions)| {
            ForgottenTopic::default()
                .with_topic(topic_name(name))
                .with_partitions(partitions)
        });
        base.with_topics(topics.collect())
            .with_forgotten_topics_data(forgotten.collect())
    }
}

/// What [`LinkRunner::examine`] found a partition to be.
enum Examined {
    /// In `broker`'s session; `joined` when it was not before.
    Session { broker: i32, joined: bool },
    /// Fetched by the next full fetch of this broker.
    Ready(i32),
    /// Fetchable but for its writer's queue, which is too full to take another
    /// response: `broker`'s next request must not hold it back for a long poll.
    WriterBehind(i32),
    /// Not fetchable now.
    Idle,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use shadowlink_storage::LogConfig;

    use super::*;
    use crate::config::Config;
    use crate::groups::Coordinator;
    use crate::link::fetch::FetchOutcome;
    use crate::link::pause::Pauses;
    use crate::link::{writer, Backoff, PartitionState};
    use crate::mirror::{topic_id_hex, Store, TopicMeta, TopicState};
    use crate::status::Status;

    const PARTITIONS: i32 = 300;
    const BROKER: i32 = 1;

    /// A link whose source broker leads `PARTITIONS` partitions, all at offset 0.
    fn runner(dir: &std::path::Path) -> (LinkRunner, Arc<Store>, Arc<Status>) {
        let text = format!(
            "data_dir = {:?}\n[kafka]\nlisten = \"127.0.0.1:0\"\n[[links]]\nname = \"from-a\"\n\
             bootstrap = [\"127.0.0.1:1\"]\ninclude = [\"a_*\"]\n",
            dir.display()
        );
        let link = Config::parse(&text).unwrap().links().remove(0);
        let store = Arc::new(Store::open(dir, LogConfig::default()).unwrap());
        let meta = TopicMeta {
            link: "from-a".into(),
            source_topic_id: topic_id_hex(&[0; 16]),
            partitions: PARTITIONS,
            state: TopicState::Active,
            configs: BTreeMap::new(),
        };
        let topic = store.ensure_topic("a_idle", meta).unwrap();
        let status = Arc::new(Status::new(String::new(), Vec::new()));
        let link_status = status.add_link("from-a", &[]);
        let groups = Arc::new(Coordinator::open(dir).unwrap());
        let pauses = Arc::new(Pauses::open(dir).unwrap());
        let mut runner = LinkRunner::new(link, store.clone(), link_status, groups, pauses);
        runner
            .cluster
            .view
            .brokers
            .insert(BROKER, "127.0.0.1:1".into());
        runner.leaders.insert(BROKER);
        for index in 0..PARTITIONS {
            let mirror = topic.partition(index).unwrap();
            let state = PartitionState {
                writer: writer::spawn(mirror.clone(), "from-a".into()),
                mirror,
                next_offset: Some(0),
                leader: BROKER,
                leader_epoch: 0,
                last_fetched_epoch: -1,
                in_flight: false,
                caught_up: true,
                backoff: Backoff::new(),
                corrupt_at: None,
                absent: false,
                paused: false,
                session: None,
            };
            let key = TopicPartition::new("a_idle", index);
            runner.status.track_all(&[&key]);
            runner.partitions.insert(key, state);
        }
        (runner, store, status)
    }

    /// A response of the session naming `partitions`, each with nothing new.
    fn response(session_id: i32, partitions: i32) -> FetchResponse {
        let listed = (0..partitions)
            .map(|index| {
                PartitionData::default()
                    .with_partition_index(index)
                    .with_high_watermark(0)
                    .with_last_stable_offset(0)
                    .with_log_start_offset(0)
            })
            .collect::<Vec<_>>();
        let topics = match listed.is_empty() {
            true => Vec::new(),
            false => vec![FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("a_idle")))
                .with_partitions(listed)],
        };
        FetchResponse::default()
            .with_session_id(session_id)
            .with_responses(topics)
    }

    fn planned_partitions(runner: &mut LinkRunner) -> usize {
        let requests = runner.schedule_fetches();
        assert_eq!(requests.len(), 1, "one request per session");
        runner.sessions[&BROKER].wanted().count()
    }

    #[tokio::test]
    async fn a_refresh_with_unchanged_metadata_visits_no_partition() {
        use crate::source::metadata::{PartitionView, TopicView};
        let dir = tempfile::tempdir().unwrap();
        let (mut runner, _store, _status) = runner(dir.path());
        let partition = PartitionView {
            leader: BROKER,
            leader_epoch: 0,
            error_code: 0,
        };
        let mut view = TopicView {
            id: [0; 16],
            internal: false,
            error_code: 0,
            partitions: (0..PARTITIONS).map(|i| (i, partition.clone())).collect(),
        };
        runner.reconcile_topic("a_idle", &view).unwrap();
        assert_eq!(runner.reconciled_partitions, PARTITIONS as usize);
        runner.reconcile_topic("a_idle", &view).unwrap();
        assert_eq!(
            runner.reconciled_partitions, PARTITIONS as usize,
            "no visit"
        );
        // A new leader epoch is applied to its partition.
        view.partitions.get_mut(&7).unwrap().leader_epoch = 3;
        runner.reconcile_topic("a_idle", &view).unwrap();
        let key = TopicPartition::new("a_idle", 7);
        assert_eq!(runner.partitions[&key].leader_epoch, 3);
        assert_eq!(runner.partitions[&key].mirror.leader_epoch(), 3);
    }

    #[tokio::test]
    async fn an_empty_incremental_response_visits_no_partition() {
        let dir = tempfile::tempdir().unwrap();
        let (mut runner, store, status) = runner(dir.path());
        // The first request opens the session with every partition.
        assert_eq!(planned_partitions(&mut runner), PARTITIONS as usize);
        assert_eq!(runner.examined, PARTITIONS as usize);
        let full = FetchOutcome::answered(BROKER, response(42, PARTITIONS), 0);
        runner.on_fetch(full).await;
        planned_partitions(&mut runner);
        // Idle long polls: the session answers naming nothing, again and again.
        for epoch in 1..=3 {
            runner.examined = 0;
            let empty = FetchOutcome::answered(BROKER, response(42, 0), epoch);
            runner.on_fetch(empty).await;
            assert!(runner.touched.is_empty() && runner.watched.is_empty());
            assert_eq!(planned_partitions(&mut runner), PARTITIONS as usize);
            assert_eq!(runner.examined, 0, "no partition looked at");
        }
        // What the silence confirmed shows in the status all the same.
        let report = status.report(&store);
        let partitions = &report.links[0].topics[0].partitions;
        assert_eq!(partitions.len(), PARTITIONS as usize);
        assert!(partitions.iter().all(|p| p.lag_seconds == Some(0.0)));
        // A response naming one partition looks at that one alone.
        runner.examined = 0;
        let one = FetchOutcome::answered(BROKER, response(42, 1), 4);
        runner.on_fetch(one).await;
        planned_partitions(&mut runner);
        assert_eq!(runner.examined, 1);
    }
}
