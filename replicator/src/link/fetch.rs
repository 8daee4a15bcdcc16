//! Building Fetch requests for a source broker and applying their responses.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use shadowlink_storage::CheckedRecordSet;

use super::offsets::{self, EARLIEST, LATEST};
use super::writer::WriteJob;
use super::{Backoff, LinkRunner, PartitionState, TopicPartition};
use crate::sasl::ClientSasl;
use crate::source::{SourceClient, SourceError};
use crate::status::SourceOffsets;
use crate::tls::ClientTls;

/// How long it may hold one while a partition it leads sits out because its writer is
/// behind: that partition can only be fetched once this request is answered, and one
/// request of caught-up partitions must not keep it waiting for a whole long poll.
const WAIT_WHILE_A_WRITER_IS_BEHIND_MS: i32 = 10;
/// The wait of a request sent while others are out, for partitions that had records:
/// short, as it must not hold up the requests behind it on the connection, and not zero,
/// which some Kafka-API brokers take as no deadline at all.
const PIPELINED_WAIT_MS: i32 = 1;

/// The source's wait for data for a request to a broker: `long_poll`, the request goes
/// alone and may wait up to the link's `fetch_max_wait` (`long_wait`); `writer_behind`,
/// a partition the broker leads waits on its writer's queue.
pub(super) fn max_wait_ms(long_poll: bool, writer_behind: bool, long_wait: Duration) -> i32 {
    let long_wait = i32::try_from(long_wait.as_millis()).unwrap_or(i32::MAX);
    match (long_poll, writer_behind) {
        (false, _) => PIPELINED_WAIT_MS.min(long_wait),
        (true, true) => WAIT_WHILE_A_WRITER_IS_BEHIND_MS.min(long_wait),
        (true, false) => long_wait,
    }
}

/// A finished Fetch round trip.
pub struct FetchOutcome {
    broker: i32,
    addr: String,
    /// A client connected for this request, to be reused.
    client: Option<SourceClient>,
    keys: Vec<TopicPartition>,
    result: Result<FetchResponse, SourceError>,
    /// The round trip, connecting included when a connection had to be made.
    elapsed: Duration,
    /// The session epoch the request carried, when it belonged to a session.
    session_epoch: Option<i32>,
}

impl FetchOutcome {
    /// The answer of `broker` to a request of its session at `session_epoch`.
    #[cfg(test)]
    pub(super) fn answered(broker: i32, response: FetchResponse, session_epoch: i32) -> Self {
        FetchOutcome {
            broker,
            addr: String::new(),
            client: None,
            keys: Vec::new(),
            result: Ok(response),
            elapsed: Duration::ZERO,
            session_epoch: Some(session_epoch),
        }
    }
}

/// KIP-320: the source's log stops agreeing with ours where `p` says, as
/// `(epoch, offset to truncate to)`. As a Kafka follower does, the mirror truncates to
/// the lower of the source's end of that epoch and its own: the source may hold the
/// epoch further than the mirror, which holds later epochs' batches from before.
fn diverged(state: &PartitionState, p: &PartitionData, fetch_offset: i64) -> Option<(i32, i64)> {
    let (epoch, end) = (p.diverging_epoch.epoch, p.diverging_epoch.end_offset);
    if epoch < 0 || (end >= fetch_offset && epoch >= state.last_fetched_epoch) {
        return None;
    }
    // Batches still queued for the writer are not in the log yet, so the log alone may
    // end the epoch early, never late: a truncation too deep only fetches again.
    let ours = state.mirror.log().own_end_of_epoch(epoch);
    Some((epoch, end.min(ours).min(fetch_offset).max(0)))
}

impl LinkRunner {
    /// A fetch to `broker` at `addr`, over a cached connection when there is one.
    pub(super) fn send(
        &mut self,
        broker: i32,
        addr: String,
        keys: Vec<TopicPartition>,
        request: FetchRequest,
        session_epoch: Option<i32>,
    ) -> BoxFuture<'static, FetchOutcome> {
        let cached = self.cluster.fetch_client(&addr);
        let target = FetchTarget {
            broker,
            addr,
            client_id: self.link.config.client_id.clone(),
            tls: self.cluster.tls().cloned(),
            timeout: self.cluster.request_timeout(),
            sasl: self.cluster.sasl().cloned(),
            session_epoch,
        };
        Box::pin(send_fetch(target, cached, keys, request))
    }

    /// Whether fetches to `broker` go through a KIP-227 session.
    pub(super) fn uses_session(&self, broker: i32) -> bool {
        self.link.config.fetch_sessions && self.sessions.get(&broker).is_none_or(|s| s.offered())
    }

    /// Every leader's session has its request out, so no partition can be fetched before
    /// one answers: the partitions need not be looked at until then.
    pub(super) fn waiting_on_sessions(&self) -> bool {
        let waiting = |broker: &i32| {
            self.uses_session(*broker) && self.brokers.get(broker).is_some_and(|b| b.in_flight > 0)
        };
        !self.leaders.is_empty() && self.leaders.iter().all(waiting)
    }

    /// A full fetch of `keys` without a session.
    pub(super) fn fetch_request(&self, keys: &[TopicPartition]) -> FetchRequest {
        self.base_request()
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(self.full_topics(keys))
    }

    pub(super) fn full_topics(&self, keys: &[TopicPartition]) -> Vec<FetchTopic> {
        group_in_order(keys)
            .into_iter()
            .map(|(name, indexes)| {
                let partitions = indexes
                    .into_iter()
                    .map(|index| self.fetch_partition(&TopicPartition::new(name, index)))
                    .collect();
                FetchTopic::default()
                    .with_topic(topic_name(name))
                    .with_partitions(partitions)
            })
            .collect()
    }

    pub(super) fn base_request(&self) -> FetchRequest {
        // read_uncommitted, as a follower replica reads: the mirror copies up to the
        // source's high watermark, open transactions included, and derives its own last
        // stable offset from the batches it stores. A transaction hanging open at the
        // source then holds back neither the copy nor the records after it, and one the
        // source never decides is aborted by failover.
        FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(max_wait_ms(true, false, self.link.config.fetch_max_wait))
            .with_min_bytes(self.link.config.fetch_min_bytes)
            .with_max_bytes(self.link.config.fetch_max_bytes)
            .with_isolation_level(0)
    }

    pub(super) fn fetch_partition(&self, key: &TopicPartition) -> FetchPartition {
        let state = &self.partitions[key];
        FetchPartition::default()
            .with_partition(key.partition)
            .with_current_leader_epoch(state.leader_epoch)
            .with_fetch_offset(state.next_offset.unwrap_or(0))
            .with_last_fetched_epoch(state.last_fetched_epoch)
            .with_log_start_offset(-1)
            .with_partition_max_bytes(self.link.partition_max_bytes)
    }

    /// Applies one fetch response: stores data, follows errors, reschedules.
    pub(super) async fn on_fetch(&mut self, outcome: FetchOutcome) {
        // Before any partition the response names is recorded: what the session's
        // silence confirms is older than what the response says.
        let now = Instant::now();
        crate::metrics::fetch_round_trip(self.name(), outcome.elapsed.as_secs_f64());
        let broker = self.brokers.entry(outcome.broker).or_default();
        broker.in_flight = broker.in_flight.saturating_sub(1);
        broker.long_poll &= broker.in_flight > 0;
        for key in &outcome.keys {
            if let Some(s) = self.partitions.get_mut(key) {
                s.in_flight = false;
                self.touched.insert(key.clone());
            }
        }
        if let Some(client) = outcome.client {
            self.cluster.adopt_fetch_client(&outcome.addr, client);
        }
        let response = match outcome.result {
            Ok(r) => r,
            Err(e) => {
                let mut keys = outcome.keys;
                if outcome.session_epoch.is_some() {
                    let session = self.sessions.entry(outcome.broker).or_default();
                    session.on_lost();
                    keys = session.wanted().cloned().collect();
                }
                return self.on_broker_error(outcome.broker, &keys, e);
            }
        };
        self.status.set_connected();
        let broker = self.brokers.entry(outcome.broker).or_default();
        broker.backoff = None;
        if response.throttle_time_ms > 0 {
            let mut b = Backoff::new();
            b.delay(Duration::from_millis(response.throttle_time_ms as u64));
            broker.backoff = Some(b);
        }
        if let Some(epoch) = outcome.session_epoch {
            let session = self.sessions.entry(outcome.broker).or_default();
            session.on_response(epoch, response.error_code, response.session_id);
            // Its partitions go over to full fetches.
            self.sweep |= !session.offered();
            if is_session_error(response.error_code) {
                // The next request opens a new session with a full fetch, at once: the
                // partitions themselves are fine.
                let name = kafka_error_name(response.error_code);
                tracing::debug!(link = %self.link.config.name, broker = outcome.broker, error = %name, "fetch session reset");
                crate::metrics::fetch_error(self.name(), &name);
                return;
            }
        }
        if response.error_code != 0 {
            let e = SourceError::Broker {
                addr: outcome.addr.clone(),
                api: ApiKey::Fetch,
                code: response.error_code,
            };
            let mut keys = outcome.keys;
            if outcome.session_epoch.is_some() {
                let session = self.sessions.entry(outcome.broker).or_default();
                keys = session.wanted().cloned().collect();
            }
            return self.on_broker_error(outcome.broker, &keys, e);
        }
        for topic in response.responses {
            let name = topic.topic.0.to_string();
            for p in topic.partitions {
                let key = TopicPartition::new(name.clone(), p.partition_index);
                self.touched.insert(key.clone());
                self.on_partition(key, p).await;
            }
        }
        if outcome.session_epoch.is_some_and(|epoch| epoch != 0) {
            // An incremental response leaves out what did not change at the source: it
            // vouches for those partitions as a full response would.
            self.status.on_session_unchanged(outcome.broker, now);
        }
    }

    pub(super) fn on_broker_error(
        &mut self,
        broker: i32,
        keys: &[TopicPartition],
        error: SourceError,
    ) {
        // Not a warning per failure: a broker that is down fails every retry, and the
        // link's lost/connected transitions are the events worth a line.
        tracing::debug!(link = %self.link.config.name, broker, error = %error, "fetch failed");
        crate::metrics::fetch_error(self.name(), error.kind());
        let message = error.to_string();
        if error.is_unreachable() {
            self.status.set_lost(&message);
        }
        for key in keys {
            self.status.on_error(key, &message);
        }
        if let Some(addr) = self.cluster.view.brokers.get(&broker).cloned() {
            self.cluster.forget(&addr);
        }
        let state = self.brokers.entry(broker).or_default();
        state.backoff.get_or_insert_with(Backoff::new).fail();
        for key in keys {
            if let Some(s) = self.partitions.get_mut(key) {
                s.backoff.fail();
                self.touched.insert(key.clone());
            }
        }
        self.refresh_soon = true;
    }

    async fn on_partition(&mut self, key: TopicPartition, p: PartitionData) {
        // A response to a fetch sent before a pause is dropped: the pause is in effect
        // from when it was asked for, and resume refetches from the same offset.
        if self.partitions.get(&key).is_none_or(|s| s.paused) {
            return;
        }
        // Failed or failed over since the request went out: not stored, and no longer
        // fetched once the partition is looked at again.
        if self
            .partitions
            .get(&key)
            .is_some_and(|s| s.mirror.failure().is_some() || s.mirror.is_owned())
        {
            return;
        }
        match p.error_code {
            0 => self.store_fetched(&key, p).await,
            code if code == ResponseError::OffsetOutOfRange.code() => {
                self.on_out_of_range(&key).await
            }
            code => {
                let retriable = ResponseError::try_from_code(code).is_none_or(|e| e.is_retriable());
                tracing::debug!(link = %self.link.config.name, topic = %key.topic, partition = key.partition, code, retriable, "partition fetch error");
                let name = kafka_error_name(code);
                crate::metrics::fetch_error(self.name(), &name);
                self.status.on_error(
                    &key,
                    &format!("the source answered Fetch with {name} (code {code})"),
                );
                self.refresh_soon = true;
                if let Some(s) = self.partitions.get_mut(&key) {
                    s.backoff.fail();
                }
            }
        }
    }

    async fn store_fetched(&mut self, key: &TopicPartition, p: PartitionData) {
        let link = self.link.config.name.clone();
        let status = self.status.clone();
        let Some(state) = self.partitions.get_mut(key) else {
            return;
        };
        if state.corrupt_at.is_none() {
            state.backoff.reset();
        }
        let Some(fetch_offset) = state.next_offset else {
            return;
        };
        if let Some((epoch, to)) = diverged(state, &p, fetch_offset) {
            send(state, WriteJob::Truncate(to)).await;
            state.next_offset = Some(to);
            state.last_fetched_epoch = epoch;
            return;
        }
        let mirror_start = state.mirror.log().log_start_offset();
        if p.log_start_offset > mirror_start && p.log_start_offset <= fetch_offset {
            send(state, WriteJob::DeleteBefore(p.log_start_offset)).await;
        }
        let records = p.records.unwrap_or_default();
        crate::metrics::bytes_fetched(&link, records.len());
        // A byte damaged on the way must never reach the log, where it would be served
        // as the source's data: the CRCs are checked here, once.
        let fetched = CheckedRecordSet::check(&records, fetch_offset);
        state.caught_up = fetched.set.is_none();
        if let Some(set) = fetched.set {
            state.next_offset = Some(set.next_offset());
            state.last_fetched_epoch = set.last_epoch();
            send(state, WriteJob::Append(set)).await;
        }
        if let Some(bad) = fetched.unreadable {
            // As a Kafka follower after a CorruptRecordException: keep what came intact
            // and fetch the rest again, since a batch damaged on the way arrives whole
            // on a later fetch. The partition reports the fault until then.
            let reason = format!("{key}: {bad}; fetching it again");
            if state.corrupt_at.replace(bad.offset) != Some(bad.offset) {
                tracing::error!(link = %link, error = %reason, "corrupt batch fetched");
            }
            state.backoff.fail();
            crate::metrics::fetch_error(&link, "corrupt_batch");
            status.on_error(key, &reason);
            return;
        }
        let past = |at: i64| state.next_offset.is_some_and(|next| next > at);
        if let Some(at) = state.corrupt_at.filter(|at| past(*at)) {
            state.corrupt_at = None;
            state.backoff.reset();
            tracing::info!(link = %link, topic = %key.topic, partition = key.partition, offset = at, "batch fetched intact after a corrupt copy");
        }
        let source = SourceOffsets {
            log_start: p.log_start_offset,
            high_watermark: p.high_watermark,
            last_stable: p.last_stable_offset,
        };
        let to = state.next_offset.unwrap_or(fetch_offset);
        if let Some(took) = status.on_fetched(key, source, fetch_offset, to, Instant::now()) {
            tracing::info!(link = %link, topic = %key.topic, took = %humantime::format_duration(
                Duration::from_secs(took.as_secs())), "initial sync complete");
        }
    }

    /// The fetch offset is outside the source log: either the source deleted records we
    /// never copied (jump forward, leaving a gap) or it lost records we hold (truncate).
    async fn on_out_of_range(&mut self, key: &TopicPartition) {
        let Some(leader) = self.partitions.get(key).map(|s| s.leader) else {
            return;
        };
        let keys = [key.clone()];
        let earliest = offsets::list_offsets(&mut self.cluster, leader, &keys, EARLIEST).await;
        let latest = offsets::list_offsets(&mut self.cluster, leader, &keys, LATEST).await;
        let (Some((_, Ok(earliest))), Some((_, Ok(latest)))) = (earliest.first(), latest.first())
        else {
            if let Some(s) = self.partitions.get_mut(key) {
                s.backoff.fail();
            }
            return;
        };
        let (earliest, latest) = (*earliest, *latest);
        let Some(state) = self.partitions.get_mut(key) else {
            return;
        };
        let Some(at) = state.next_offset else {
            return;
        };
        if at < earliest {
            // The writer restarts the log at `earliest` and names the records skipped.
            send(state, WriteJob::DeleteBefore(earliest)).await;
            state.next_offset = Some(earliest);
            // Nothing fetched is left to check for divergence (KIP-320), as for a
            // follower that truncates fully.
            state.last_fetched_epoch = -1;
        } else if at > latest {
            send(state, WriteJob::Truncate(latest)).await;
            state.next_offset = Some(latest);
        } else {
            state.backoff.fail();
        }
    }
}

async fn send(state: &mut super::PartitionState, job: WriteJob) {
    // The queue had room for two jobs when the fetch was scheduled; waiting here only
    // happens if a writer is slower than expected and keeps order intact.
    let _ = state.writer.send(job).await;
}

/// The codes after which a session starts over with a full fetch (KIP-227).
fn is_session_error(code: i16) -> bool {
    code == ResponseError::FetchSessionIdNotFound.code()
        || code == ResponseError::InvalidFetchSessionEpoch.code()
}

pub(super) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// Partitions grouped by topic, topics in the order their first partition appears, so
/// the request keeps the order of `keys`.
pub(super) fn group_in_order(keys: &[TopicPartition]) -> Vec<(&str, Vec<i32>)> {
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for TopicPartition { topic, partition } in keys {
        match topics.iter_mut().find(|(t, _)| t == topic) {
            Some((_, partitions)) => partitions.push(*partition),
            None => topics.push((topic, vec![*partition])),
        }
    }
    topics
}

/// A Kafka error code as a metric label: `NOT_LEADER_OR_FOLLOWER` becomes
/// `not_leader_or_follower`; codes this build does not know become `code_N`.
pub fn kafka_error_name(code: i16) -> String {
    let error = match ResponseError::try_from_code(code) {
        None | Some(ResponseError::Unknown(_)) => return format!("code_{code}"),
        Some(e) => e,
    };
    let mut name = String::new();
    for (i, c) in format!("{error:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

/// The broker a fetch goes to and how to connect to it when there is no cached client.
struct FetchTarget {
    broker: i32,
    addr: String,
    client_id: String,
    tls: Option<ClientTls>,
    /// Bounds the connect, and the fetch beyond its long-poll wait.
    timeout: Duration,
    sasl: Option<ClientSasl>,
    /// The session epoch the request carries, when it belongs to a session.
    session_epoch: Option<i32>,
}

async fn send_fetch(
    target: FetchTarget,
    cached: Option<SourceClient>,
    keys: Vec<TopicPartition>,
    request: FetchRequest,
) -> FetchOutcome {
    let started = Instant::now();
    let FetchTarget {
        broker,
        addr,
        client_id,
        tls,
        timeout,
        sasl,
        session_epoch,
    } = target;
    let (client, fresh) = match cached {
        Some(c) => (Ok(c), false),
        None => {
            let connect = SourceClient::connect(&addr, &client_id, tls.as_ref(), sasl.as_ref());
            let connected = match tokio::time::timeout(timeout, connect).await {
                Ok(connected) => connected.map(|c| c.with_request_timeout(timeout)),
                Err(_) => Err(SourceError::Timeout { addr: addr.clone() }),
            };
            (connected, true)
        }
    };
    let (client, result) = match client {
        Ok(c) => {
            let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64);
            let result = c.send_waiting(ApiKey::Fetch, &request, wait).await;
            (fresh.then_some(c), result)
        }
        Err(e) => (None, Err(e)),
    };
    FetchOutcome {
        broker,
        addr,
        client,
        keys,
        result,
        elapsed: started.elapsed(),
        session_epoch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use shadowlink_protocol::batch::testing::build_batch;
    use shadowlink_protocol::batch::BatchError;
    use shadowlink_storage::Checked;

    fn check(records: &Bytes, fetch_offset: i64) -> Checked {
        CheckedRecordSet::check(records, fetch_offset)
    }

    fn record_set(bases: &[i64]) -> Bytes {
        let mut all = Vec::new();
        for &b in bases {
            all.extend_from_slice(&build_batch(
                b,
                3,
                &[(Some(b"k"), Some(b"v")), (None, Some(b"w"))],
                1000,
            ));
        }
        Bytes::from(all)
    }

    #[test]
    fn skips_batches_below_the_fetch_offset_and_keeps_gaps() {
        let records = record_set(&[0, 2, 10]);
        let chunk = check(&records, 3).set.unwrap();
        assert_eq!(chunk.next_offset(), 12);
        assert_eq!(chunk.last_epoch(), 3);
        let one = records.len() / 3;
        assert_eq!(*chunk.bytes(), records.slice(one..));
    }

    #[test]
    fn a_fetch_inside_a_compressed_legacy_wrapper_keeps_the_wrapper() {
        use shadowlink_protocol::batch::testing::{build_gzip_wrapper, build_legacy_message};
        let inner = [
            (None, Some(&b"a"[..])),
            (None, Some(b"b")),
            (None, Some(b"c")),
        ];
        let entries = [
            build_legacy_message(6, 1, 100, None, Some(b"v")),
            build_gzip_wrapper(9, 1, &inner, 200),
            build_batch(10, 4, &[(None, None)], 300),
        ];
        let records = Bytes::from(entries.concat());
        // The wrapper holds 7..=9: a fetch at 8 keeps all of it and the batch after it.
        let chunk = check(&records, 8).set.unwrap();
        assert_eq!(*chunk.bytes(), records.slice(entries[0].len()..));
        assert_eq!((chunk.next_offset(), chunk.last_epoch()), (11, 4));
        let chunk = check(&records.slice(..entries[0].len()), 6).set;
        assert_eq!(
            chunk.map(|c| (c.next_offset(), c.last_epoch())),
            Some((7, -1))
        );
    }

    #[test]
    fn requests_keep_the_rotated_partition_order() {
        let mut keys: Vec<TopicPartition> = [("a", 0), ("a", 1), ("b", 0), ("c", 0)]
            .iter()
            .map(|(t, p)| TopicPartition::new(*t, *p))
            .collect();
        keys.rotate_left(2);
        assert_eq!(
            group_in_order(&keys),
            vec![("b", vec![0]), ("c", vec![0]), ("a", vec![0, 1])]
        );
        // Partitions of one topic stay together; the first partition still leads.
        keys.rotate_left(3);
        assert_eq!(
            group_in_order(&keys),
            vec![("a", vec![1, 0]), ("b", vec![0]), ("c", vec![0])]
        );
    }

    #[test]
    fn kafka_errors_become_snake_case_labels() {
        let code = ResponseError::NotLeaderOrFollower.code();
        assert_eq!(kafka_error_name(code), "not_leader_or_follower");
        assert_eq!(kafka_error_name(-42), "code_-42");
    }

    #[test]
    fn a_trailing_partial_batch_is_left_for_the_next_fetch() {
        let records = record_set(&[5, 7]);
        let cut = records.slice(..records.len() - 3);
        let chunk = check(&cut, 5).set.unwrap();
        assert_eq!(chunk.next_offset(), 7);
        assert_eq!(chunk.len(), records.len() / 2);
        assert!(check(&Bytes::new(), 5).set.is_none());
    }

    #[test]
    fn an_unreadable_batch_names_the_offset_and_keeps_its_cause() {
        let mut records = record_set(&[5, 7]).to_vec();
        let second = records.len() / 2;
        // The magic byte follows base offset, length and partition leader epoch.
        records[second + 16] = 9;
        let error = check(&Bytes::from(records), 5)
            .unreadable
            .expect("a batch with magic 9 is unreadable");
        assert_eq!(error.offset, 7);
        assert!(matches!(
            error.source,
            BatchError::BadMagic {
                base_offset: 7,
                magic: 9
            }
        ));
        assert!(error
            .to_string()
            .starts_with("unreadable batch at offset 7: "));
    }

    #[test]
    fn a_batch_failing_its_crc_is_held_back_with_the_batches_after_it() {
        let mut records = record_set(&[5, 7, 9]).to_vec();
        let one = records.len() / 3;
        // The last byte of the second batch lies in its records, which the CRC covers.
        records[2 * one - 1] ^= 0x01;
        let fetched = check(&Bytes::from(records.clone()), 5);
        let chunk = fetched.set.expect("the first batch is intact");
        assert_eq!(*chunk.bytes(), Bytes::from(records[..one].to_vec()));
        assert_eq!(chunk.next_offset(), 7);
        let bad = fetched.unreadable.expect("the second batch fails its CRC");
        assert_eq!(bad.offset, 7);
        assert!(matches!(
            bad.source,
            BatchError::CrcMismatch { base_offset: 7, .. }
        ));
        // A fetch from the damaged batch keeps nothing at all.
        let again = check(&Bytes::from(records[one..].to_vec()), 7);
        assert!(again.set.is_none());
        assert!(again.unreadable.is_some());
    }
}
