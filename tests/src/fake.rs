//! A scripted single-broker source for fault injection: corrupt batches, leader-epoch
//! divergence and partition errors that a real broker cannot be made to produce on cue.
//!
//! It answers ApiVersions, Metadata, ListOffsets (by time too), DescribeConfigs and Fetch
//! (v12, with Kafka's KIP-320 divergence check) from logs the test edits while it runs.
//! Started with a session lifetime, it also wants SASL/PLAIN logins (any credentials)
//! and, as Kafka with `connections.max.reauth.ms` (KIP-368), closes a connection whose
//! session has expired at its next request. It offers no fetch sessions (KIP-227).
//! With long polls on, it holds a Fetch that finds no records for its `max_wait_ms`,
//! and, as any broker, answers one connection's requests in order.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use shadowlink_protocol::batch::RecordBatch;
use shadowlink_protocol::request::{decode_body, parse_header, RequestHeader};
use shadowlink_protocol::response::encode_response;

/// The broker id the fake reports for itself.
pub const FAKE_NODE: i32 = 7;

/// One partition's log as the fake serves it: complete batches in offset order.
#[derive(Debug, Clone, Default)]
pub struct FakeLog {
    pub batches: Vec<Bytes>,
    /// Error code answered to every fetch instead of data, while non-zero.
    pub fetch_error: i16,
    /// The log start offset reported (retention or DeleteRecords at the source).
    pub log_start: i64,
    /// The leader epoch Metadata reports, when ahead of the newest batch's (a leader
    /// change with nothing written since).
    pub leader_epoch: Option<i32>,
    /// A last stable offset below the log end: a transaction left open there. Fetches
    /// with isolation_level 1 then get nothing at or past it, as from Kafka.
    pub last_stable: Option<i64>,
    /// Batches at or past this offset are not served, while the high watermark still
    /// counts them: each response stops short of the log end, as a size-limited one does.
    pub served_before: Option<i64>,
}

impl FakeLog {
    fn end_offset(&self) -> i64 {
        self.batches
            .last()
            .and_then(|b| RecordBatch::parse(b.clone()).ok())
            .map_or(0, |b| b.next_offset())
    }

    fn epochs(&self) -> Vec<(i32, i64)> {
        let mut out: Vec<(i32, i64)> = Vec::new();
        for b in &self.batches {
            let Ok(b) = RecordBatch::parse(b.clone()) else {
                continue;
            };
            if out
                .last()
                .is_none_or(|(e, _)| *e < b.partition_leader_epoch())
            {
                out.push((b.partition_leader_epoch(), b.base_offset()));
            }
        }
        out
    }

    /// `(offset, timestamp, epoch)` of every record at or above the log start, decoded
    /// from the hand-built batches.
    fn records(&self) -> Vec<(i64, i64, i32)> {
        let mut out = Vec::new();
        for b in &self.batches {
            let Ok(set) = RecordBatchDecoder::decode(&mut b.clone()) else {
                continue;
            };
            for r in set.records.iter().filter(|r| r.offset >= self.log_start) {
                out.push((r.offset, r.timestamp, r.partition_leader_epoch));
            }
        }
        out
    }

    /// Kafka's ListOffsets answer `(offset, timestamp, epoch)`: -2 the log start, -1 the
    /// end, -3 the record with the largest timestamp (KIP-734, earliest on ties), else the
    /// first record whose timestamp is at or above the target.
    fn list_offset(&self, target: i64) -> (i64, i64, i32) {
        let records = self.records();
        let found = match target {
            -2 => return (self.log_start, -1, -1),
            -1 => return (self.end_offset(), -1, self.latest_epoch()),
            -3 => records
                .iter()
                .fold(None, |best: Option<&(i64, i64, i32)>, r| match best {
                    Some(b) if b.1 >= r.1 => Some(b),
                    _ => Some(r),
                }),
            ts => records.iter().find(|r| r.1 >= ts),
        };
        found.map_or((-1, -1, -1), |&(offset, ts, epoch)| (offset, ts, epoch))
    }

    fn latest_epoch(&self) -> i32 {
        self.epochs().last().map_or(0, |(e, _)| *e)
    }

    /// Kafka's leader-side answer to OffsetForLeaderEpoch: the largest epoch at or below
    /// `epoch`, and where it ends.
    fn end_of_epoch(&self, epoch: i32) -> (i32, i64) {
        let epochs = self.epochs();
        let Some(i) = epochs.iter().rposition(|(e, _)| *e <= epoch) else {
            return (-1, -1);
        };
        let end = epochs
            .get(i + 1)
            .map_or(self.end_offset(), |(_, start)| *start);
        (epochs[i].0, end)
    }
}

/// The fake's state: topic → partition logs. Tests edit it through [`FakeBroker::edit`].
pub type FakeTopics = BTreeMap<String, Vec<FakeLog>>;

pub struct FakeBroker {
    pub addr: SocketAddr,
    topics: Arc<Mutex<FakeTopics>>,
    logins: Arc<AtomicUsize>,
    polls: Arc<LongPolls>,
}

/// Long polls: whether the fake holds empty fetches, and what it saw while it did.
#[derive(Default)]
struct LongPolls {
    on: AtomicBool,
    held: AtomicUsize,
    queued_behind: AtomicUsize,
}

impl FakeBroker {
    pub fn start(topics: FakeTopics) -> Result<FakeBroker> {
        Self::start_with_session(topics, None)
    }

    /// With `session`, every connection must log in with SASL/PLAIN first, and its
    /// login lasts that long.
    pub fn start_with_session(topics: FakeTopics, session: Option<Duration>) -> Result<FakeBroker> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let topics = Arc::new(Mutex::new(topics));
        let logins = Arc::new(AtomicUsize::new(0));
        let polls = Arc::new(LongPolls::default());
        let (shared, counted, watched) = (topics.clone(), logins.clone(), polls.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (topics, logins, polls) = (shared.clone(), counted.clone(), watched.clone());
                let sasl = session.map(|lifetime| Session {
                    lifetime,
                    expires: None,
                    logins,
                });
                std::thread::spawn(move || serve(stream, addr, topics, sasl, &polls));
            }
        });
        Ok(FakeBroker {
            addr,
            topics,
            logins,
            polls,
        })
    }

    /// From now on, holds a Fetch that finds no records for its `max_wait_ms` (at most
    /// a second), as Kafka holds one until data arrives or the wait ends.
    pub fn hold_empty_fetches(&self) {
        self.polls.on.store(true, Ordering::SeqCst);
    }

    /// Fetches held so far.
    pub fn fetches_held(&self) -> usize {
        self.polls.held.load(Ordering::SeqCst)
    }

    /// Requests that were already waiting on their connection when a fetch held for a
    /// long poll (100 ms or more) was answered: each of them waited out that whole poll.
    pub fn queued_behind_held_fetches(&self) -> usize {
        self.polls.queued_behind.load(Ordering::SeqCst)
    }

    /// SASL logins so far, over all connections.
    pub fn logins(&self) -> usize {
        self.logins.load(Ordering::SeqCst)
    }

    /// Changes the served logs.
    pub fn edit(&self, change: impl FnOnce(&mut FakeTopics)) {
        change(&mut self.topics.lock().unwrap());
    }
}

/// One connection's SASL session.
struct Session {
    lifetime: Duration,
    expires: Option<Instant>,
    logins: Arc<AtomicUsize>,
}

impl Session {
    /// The answer to a SASL request, or whether another request may be served.
    fn handle(&mut self, header: &RequestHeader) -> Result<Option<Bytes>, ()> {
        let (v, corr) = (header.api_version, header.correlation_id);
        match header.api_key {
            ApiKey::SaslHandshake => {
                let r = SaslHandshakeResponse::default()
                    .with_mechanisms(vec![StrBytes::from_static_str("PLAIN")]);
                encode_response(ApiKey::SaslHandshake, v, corr, &r)
                    .map(Some)
                    .map_err(|_| ())
            }
            ApiKey::SaslAuthenticate => {
                self.logins.fetch_add(1, Ordering::SeqCst);
                self.expires = Some(Instant::now() + self.lifetime);
                let r = SaslAuthenticateResponse::default()
                    .with_session_lifetime_ms(self.lifetime.as_millis() as i64);
                encode_response(ApiKey::SaslAuthenticate, v, corr, &r)
                    .map(Some)
                    .map_err(|_| ())
            }
            ApiKey::ApiVersions => Ok(None),
            _ if self.expires.is_some_and(|at| Instant::now() < at) => Ok(None),
            _ => Err(()),
        }
    }
}

fn serve(
    mut stream: TcpStream,
    addr: SocketAddr,
    topics: Arc<Mutex<FakeTopics>>,
    mut session: Option<Session>,
    polls: &LongPolls,
) {
    loop {
        let mut size = [0u8; 4];
        if stream.read_exact(&mut size).is_err() {
            return;
        }
        let mut frame = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
        if stream.read_exact(&mut frame).is_err() {
            return;
        }
        let Ok((header, body)) = parse_header(&Bytes::from(frame)) else {
            return;
        };
        let (reply, hold_ms) = match session.as_mut().map_or(Ok(None), |s| s.handle(&header)) {
            Ok(Some(reply)) => (Some(reply), 0),
            Ok(None) => {
                let long_polls = polls.on.load(Ordering::SeqCst);
                match answer(&header, body, addr, &topics.lock().unwrap(), long_polls) {
                    Some((frame, hold_ms)) => (Some(frame), hold_ms),
                    None => (None, 0),
                }
            }
            Err(()) => return,
        };
        if hold_ms > 0 {
            polls.hold(hold_ms, &stream);
        }
        match reply {
            Some(bytes) if stream.write_all(&bytes).is_ok() => {}
            _ => return,
        }
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// The response frame, and how long to hold it (a long poll that found no records).
fn answer(
    header: &RequestHeader,
    body: Bytes,
    addr: SocketAddr,
    topics: &FakeTopics,
    long_polls: bool,
) -> Option<(Bytes, i32)> {
    let (v, corr) = (header.api_version, header.correlation_id);
    let mut hold_ms = 0;
    let frame = match header.api_key {
        ApiKey::ApiVersions => {
            let keys = [
                (ApiKey::ApiVersions, 0, 3),
                (ApiKey::Metadata, 1, 12),
                (ApiKey::Fetch, 4, 12),
                (ApiKey::ListOffsets, 1, 7),
                (ApiKey::DescribeConfigs, 1, 4),
                (ApiKey::SaslHandshake, 0, 1),
                (ApiKey::SaslAuthenticate, 0, 1),
            ];
            let api_keys = keys
                .iter()
                .map(|(k, min, max)| {
                    ApiVersion::default()
                        .with_api_key(*k as i16)
                        .with_min_version(*min)
                        .with_max_version(*max)
                })
                .collect();
            let r = ApiVersionsResponse::default().with_api_keys(api_keys);
            encode_response(ApiKey::ApiVersions, v, corr, &r)
        }
        ApiKey::Metadata => {
            let _: MetadataRequest = decode_body(header, body).ok()?;
            encode_response(ApiKey::Metadata, v, corr, &metadata(addr, topics, v))
        }
        ApiKey::ListOffsets => {
            let r: ListOffsetsRequest = decode_body(header, body).ok()?;
            encode_response(ApiKey::ListOffsets, v, corr, &list_offsets(&r, topics, v))
        }
        ApiKey::DescribeConfigs => {
            let _: DescribeConfigsRequest = decode_body(header, body).ok()?;
            encode_response(
                ApiKey::DescribeConfigs,
                v,
                corr,
                &DescribeConfigsResponse::default(),
            )
        }
        ApiKey::Fetch => {
            let r: FetchRequest = decode_body(header, body).ok()?;
            let response = fetch(&r, topics);
            if long_polls && no_records(&response) {
                hold_ms = r.max_wait_ms.clamp(0, 1_000);
            }
            encode_response(ApiKey::Fetch, v, corr, &response)
        }
        _ => return None,
    };
    frame.ok().map(|f| (f, hold_ms))
}

fn metadata(addr: SocketAddr, topics: &FakeTopics, version: i16) -> MetadataResponse {
    let broker = MetadataResponseBroker::default()
        .with_node_id(FAKE_NODE.into())
        .with_host(StrBytes::from_string(addr.ip().to_string()))
        .with_port(i32::from(addr.port()));
    let topics = topics
        .iter()
        .enumerate()
        .map(|(i, (t, logs))| {
            let partitions = logs
                .iter()
                .enumerate()
                .map(|(p, log)| {
                    let partition = MetadataResponsePartition::default()
                        .with_partition_index(p as i32)
                        .with_leader_id(FAKE_NODE.into())
                        .with_replica_nodes(vec![FAKE_NODE.into()])
                        .with_isr_nodes(vec![FAKE_NODE.into()]);
                    if version >= 7 {
                        partition.with_leader_epoch(log.leader_epoch.unwrap_or(log.latest_epoch()))
                    } else {
                        partition
                    }
                })
                .collect();
            let topic = MetadataResponseTopic::default()
                .with_name(Some(name(t)))
                .with_partitions(partitions);
            if version >= 10 {
                topic.with_topic_id(uuid_for(i))
            } else {
                topic
            }
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_controller_id(FAKE_NODE.into())
        .with_topics(topics)
}

fn uuid_for(i: usize) -> shadowlink_protocol::fetch::Uuid {
    shadowlink_protocol::fetch::Uuid::from_u128(
        0xfa4e_0000_0000_0000_0000_0000_0000_0000 + i as u128 + 1,
    )
}

fn list_offsets(
    request: &ListOffsetsRequest,
    topics: &FakeTopics,
    version: i16,
) -> ListOffsetsResponse {
    let topics = request
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let log = topics
                        .get(t.name.as_str())
                        .and_then(|l| l.get(p.partition_index as usize));
                    let (offset, timestamp, epoch) =
                        log.map_or((-1, -1, -1), |log| log.list_offset(p.timestamp));
                    let answer = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_offset(offset)
                        .with_timestamp(timestamp);
                    match version >= 4 {
                        true => answer.with_leader_epoch(epoch),
                        false => answer,
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

impl LongPolls {
    /// Holds a fetch on `stream`, then counts a request already waiting behind it.
    fn hold(&self, ms: i32, stream: &TcpStream) {
        self.held.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(ms as u64));
        let _ = stream.set_nonblocking(true);
        let long = ms >= 100;
        if long && stream.peek(&mut [0u8; 1]).is_ok_and(|n| n > 0) {
            self.queued_behind.fetch_add(1, Ordering::SeqCst);
        }
        let _ = stream.set_nonblocking(false);
    }
}

fn no_records(response: &FetchResponse) -> bool {
    let partitions = response.responses.iter().flat_map(|t| &t.partitions);
    partitions
        .into_iter()
        .all(|p| p.records.as_ref().is_none_or(|r| r.is_empty()))
}

fn fetch(request: &FetchRequest, topics: &FakeTopics) -> FetchResponse {
    let responses = request
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let log = topics
                        .get(t.topic.as_str())
                        .and_then(|l| l.get(p.partition as usize));
                    fetch_partition(p, request.isolation_level, log)
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    FetchResponse::default().with_responses(responses)
}

fn fetch_partition(
    p: &fetch_request::FetchPartition,
    isolation_level: i8,
    log: Option<&FakeLog>,
) -> PartitionData {
    let data = PartitionData::default().with_partition_index(p.partition);
    let Some(log) = log else {
        return data.with_error_code(3);
    };
    if log.fetch_error != 0 {
        return data.with_error_code(log.fetch_error);
    }
    let end = log.end_offset();
    let stable = log.last_stable.unwrap_or(end).min(end);
    let data = data
        .with_high_watermark(end)
        .with_last_stable_offset(stable)
        .with_log_start_offset(log.log_start);
    // KIP-320: the follower's last fetched epoch ends earlier on the leader, so the
    // follower must truncate to where the two logs agree.
    if p.last_fetched_epoch >= 0 {
        let (epoch, end_offset) = log.end_of_epoch(p.last_fetched_epoch);
        if epoch < p.last_fetched_epoch || end_offset < p.fetch_offset {
            return data.with_diverging_epoch(
                EpochEndOffset::default()
                    .with_epoch(epoch)
                    .with_end_offset(end_offset),
            );
        }
    }
    if p.fetch_offset > end || p.fetch_offset < log.log_start {
        return data.with_error_code(1);
    }
    // Whole batches from the one holding the fetch offset, up to the partition's byte
    // limit but at least one (KIP-74).
    let mut records: Vec<u8> = Vec::new();
    let visible = if isolation_level == 1 { stable } else { end };
    let visible = log
        .served_before
        .map_or(visible, |before| visible.min(before));
    let wanted = log.batches.iter().filter(|b| {
        RecordBatch::parse((*b).clone())
            .is_ok_and(|b| b.last_offset() >= p.fetch_offset && b.next_offset() <= visible)
    });
    for batch in wanted {
        if !records.is_empty() && records.len() + batch.len() > p.partition_max_bytes as usize {
            break;
        }
        records.extend_from_slice(batch);
    }
    data.with_records(Some(Bytes::from(records)))
}
