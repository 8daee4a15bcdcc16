//! Transactions on mirrors: the node derives open and aborted transactions from the
//! batches it stores, so `read_committed` consumers of a mirror see exactly what the
//! source committed, and `read_uncommitted` consumers see everything.
//!
//! The source is the scripted broker: it serves hand-built transactional batches and
//! end-transaction markers (a real test source drops aborted data) and reports its last
//! stable offset at its end, like a source whose transactions have all ended.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::Value;
use shadowlink_protocol::batch::testing::BatchBuilder;
use shadowlink_protocol::batch::BatchWalker;
use shadowlink_tests::fake::{FakeBroker, FakeLog};
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::{consume_isolation, mirrored};
use shadowlink_tests::{eventually, shadowlink, until, Node, NodeConfig};

const COMMITTING: i64 = 1001;
const ABORTING: i64 = 1002;
const LEFT_OPEN: i64 = 1003;

/// Makes records large enough that the node's smallest segments hold only a few, so the
/// aborted transaction spans segments.
const PADDING: &str = concat!(
    "................................................................",
    "................................................................",
    "................................................................",
    "................................................................",
    "................................................................",
    "................................................................",
);

/// The node, with segments as small as it allows.
fn node_config(source: std::net::SocketAddr) -> NodeConfig {
    NodeConfig::linked_to(source).segment_bytes(1024)
}

/// Every batch's timestamp, from its base offset.
fn stamp(base_offset: i64) -> i64 {
    1_000_000 + base_offset * 1_000
}

/// A source partition and what each kind of consumer must see of it.
#[derive(Clone)]
struct History {
    batches: Vec<Bytes>,
    /// `(offset, value)` of every data record, with whether it is committed.
    records: Vec<(i64, String, bool)>,
}

impl History {
    fn new() -> Self {
        History {
            batches: Vec::new(),
            records: Vec::new(),
        }
    }

    fn next_offset(&self) -> i64 {
        self.batches.last().map_or(0, |b| {
            let batch = shadowlink_protocol::batch::RecordBatch::parse(b.clone()).unwrap();
            batch.next_offset()
        })
    }

    /// `count` records of `producer_id` (`-1`: not transactional).
    fn data(&mut self, producer_id: i64, count: usize, committed: bool) -> &mut Self {
        let base = self.next_offset();
        let values: Vec<String> = (0..count)
            .map(|i| format!("p{producer_id}-{}-{PADDING}", base + i as i64))
            .collect();
        let records: Vec<_> = values.iter().map(|v| (None, Some(v.as_bytes()))).collect();
        let mut builder = BatchBuilder::new(base)
            .timestamp(stamp(base))
            .producer(producer_id, 0, 0)
            .records(&records);
        if producer_id >= 0 {
            builder = builder.transactional();
        }
        self.batches.push(builder.build());
        for (i, v) in values.into_iter().enumerate() {
            self.records.push((base + i as i64, v, committed));
        }
        self
    }

    fn marker(&mut self, producer_id: i64, commit: bool) -> &mut Self {
        let base = self.next_offset();
        let marker = BatchBuilder::new(base)
            .timestamp(stamp(base))
            .producer(producer_id, 0, -1)
            .marker(commit)
            .build();
        self.batches.push(marker);
        self
    }

    fn expected(&self, committed_only: bool) -> Vec<(i64, String)> {
        self.records
            .iter()
            .filter(|(_, _, committed)| *committed || !committed_only)
            .map(|(o, v, _)| (*o, v.clone()))
            .collect()
    }
}

/// Two producers interleaved, one committing and one aborting, then a plain record:
/// 0..=1 committing, 2..=3 aborting, 4 committing, 5 aborting, COMMIT at 6, ABORT at 7,
/// plain at 8.
fn interleaved() -> History {
    let mut h = History::new();
    h.data(COMMITTING, 2, true)
        .data(ABORTING, 2, false)
        .data(COMMITTING, 1, true)
        .data(ABORTING, 1, false)
        .marker(COMMITTING, true)
        .marker(ABORTING, false)
        .data(-1, 1, true);
    h
}

/// The interleaved history, then a transaction left open at 9 and a plain record at 10
/// that `read_committed` consumers must not see yet.
fn left_open() -> History {
    let mut h = interleaved();
    h.data(LEFT_OPEN, 1, false).data(-1, 1, false);
    h
}

const ENDED: &str = "a_txn_ended";
const OPEN: &str = "a_txn_open";

fn start_source() -> Result<(FakeBroker, History, History)> {
    let (ended, open) = (interleaved(), left_open());
    let log = |h: &History| {
        vec![FakeLog {
            batches: h.batches.clone(),
            ..FakeLog::default()
        }]
    };
    let source = FakeBroker::start(BTreeMap::from([
        (ENDED.to_string(), log(&ended)),
        (OPEN.to_string(), log(&open)),
    ]))?;
    Ok((source, ended, open))
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// ListOffsets latest for partition 0 at an isolation level.
fn latest(node: &Node, topic: &str, isolation_level: i8) -> Result<i64> {
    list_offset(node, topic, -1, isolation_level)
}

/// ListOffsets for partition 0: `timestamp` is -1 latest, -3 max timestamp, or a time.
fn list_offset(node: &Node, topic: &str, timestamp: i64, isolation_level: i8) -> Result<i64> {
    let mut client = RawClient::connect(node.kafka)?;
    let version = client.version(ApiKey::ListOffsets, 7)?;
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_isolation_level(isolation_level)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(timestamp)])]);
    let response: ListOffsetsResponse = client.call(ApiKey::ListOffsets, version, &request)?;
    let p = &response.topics[0].partitions[0];
    anyhow::ensure!(p.error_code == 0, "ListOffsets error {}", p.error_code);
    Ok(p.offset)
}

/// One read_committed fetch of partition 0 from `offset`, as the node answers it.
#[derive(Debug, PartialEq)]
struct CommittedFetch {
    high_watermark: i64,
    last_stable_offset: i64,
    aborted: Vec<(i64, i64)>,
    /// Base offsets of the batches returned.
    bases: Vec<i64>,
}

fn fetch_committed(node: &Node, topic: &str, offset: i64) -> Result<CommittedFetch> {
    fetch_committed_gathering(node.kafka, topic, offset, 0, 0)
}

/// A `read_committed` Fetch from `offset` that waits up to `max_wait_ms` for `min_bytes`.
fn fetch_committed_gathering(
    node: SocketAddr,
    topic: &str,
    offset: i64,
    min_bytes: i32,
    max_wait_ms: i32,
) -> Result<CommittedFetch> {
    let mut client = RawClient::connect(node)?;
    let version = client.version(ApiKey::Fetch, 12)?;
    let request = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(1 << 20)
        .with_isolation_level(1)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let response: FetchResponse = client.call(ApiKey::Fetch, version, &request)?;
    let p = &response.responses[0].partitions[0];
    anyhow::ensure!(p.error_code == 0, "Fetch error {}", p.error_code);
    let bases = BatchWalker::new(p.records.clone().unwrap_or_default())
        .map(|b| b.map(|b| b.base_offset()))
        .collect::<Result<_, _>>()?;
    let aborted = p.aborted_transactions.as_deref().unwrap_or_default();
    Ok(CommittedFetch {
        high_watermark: p.high_watermark,
        last_stable_offset: p.last_stable_offset,
        aborted: aborted
            .iter()
            .map(|a| (a.producer_id.0, a.first_offset))
            .collect(),
        bases,
    })
}

fn wait_mirrored(node: &Node, topic: &str, h: &History) -> Result<()> {
    eventually(Duration::from_secs(30), || {
        mirrored(node, topic, &h.batches)
    })
}

/// What the node answers about transactions on both topics.
fn answers(node: &Node) -> Result<Vec<(i64, i64, CommittedFetch, CommittedFetch)>> {
    [ENDED, OPEN]
        .iter()
        .map(|topic| {
            Ok((
                latest(node, topic, 0)?,
                latest(node, topic, 1)?,
                fetch_committed(node, topic, 0)?,
                fetch_committed(node, topic, 8)?,
            ))
        })
        .collect()
}

#[test]
fn read_committed_consumers_of_a_mirror_see_exactly_the_committed_records() -> Result<()> {
    let (source, ended, open) = start_source()?;
    let node = Node::start(&node_config(source.addr))?;
    wait_mirrored(&node, ENDED, &ended)?;
    wait_mirrored(&node, OPEN, &open)?;

    // Every transaction ended: the LSO is the high watermark.
    assert_eq!((latest(&node, ENDED, 0)?, latest(&node, ENDED, 1)?), (9, 9));
    let whole = fetch_committed(&node, ENDED, 0)?;
    assert_eq!(whole.last_stable_offset, 9);
    assert_eq!(whole.aborted, vec![(ABORTING, 2)]);
    assert_eq!(whole.bases, vec![0, 2, 4, 5, 6, 7, 8]);
    // Past the ABORT marker no aborted transaction overlaps.
    assert!(fetch_committed(&node, ENDED, 8)?.aborted.is_empty());

    // A transaction left open at 9 holds the LSO there, below the high watermark.
    assert_eq!((latest(&node, OPEN, 0)?, latest(&node, OPEN, 1)?), (11, 9));
    let open_fetch = fetch_committed(&node, OPEN, 0)?;
    assert_eq!(
        (open_fetch.high_watermark, open_fetch.last_stable_offset),
        (11, 9)
    );
    assert_eq!(open_fetch.bases, vec![0, 2, 4, 5, 6, 7, 8]);
    assert!(fetch_committed(&node, OPEN, 9)?.bases.is_empty());
    // Lookups by time see the log as ending at the LSO under read_committed.
    for (timestamp, uncommitted, committed) in [(stamp(8), 8, 8), (stamp(9), 9, -1), (-3, 10, -1)] {
        assert_eq!(list_offset(&node, OPEN, timestamp, 0)?, uncommitted);
        assert_eq!(list_offset(&node, OPEN, timestamp, 1)?, committed);
    }

    for client in ["confluent", "kafka-python"] {
        for (topic, h, lso, hw) in [(ENDED, &ended, 9, 9), (OPEN, &open, 9, 11)] {
            let committed = consume_isolation(&node, topic, lso, client, "read_committed")?;
            assert_eq!(
                committed,
                h.expected(true),
                "{client} {topic} read_committed"
            );
            let all = consume_isolation(&node, topic, hw, client, "read_uncommitted")?;
            assert_eq!(all, h.expected(false), "{client} {topic} read_uncommitted");
        }
    }
    Ok(())
}

/// Every file under `dir` whose name ends with `suffix`.
fn files(dir: &std::path::Path, suffix: &str) -> Result<Vec<std::path::PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            found.extend(files(&path, suffix)?);
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    Ok(found)
}

#[test]
fn a_restarted_node_answers_the_same_with_or_without_its_index_file() -> Result<()> {
    let (source, ended, open) = start_source()?;
    let mut node = Node::start(&node_config(source.addr))?;
    wait_mirrored(&node, ENDED, &ended)?;
    wait_mirrored(&node, OPEN, &open)?;
    let before = answers(&node)?;
    let segments = files(&node.data_dir, ".log")?.len();
    assert!(
        segments >= 6,
        "the transactions span segments: {segments} for two partitions"
    );

    node.restart()?;
    wait_mirrored(&node, OPEN, &open)?;
    assert_eq!(answers(&node)?, before, "after kill -9");

    node.process.kill9();
    let indexes = files(&node.data_dir, "/txn-index")?;
    assert_eq!(indexes.len(), 2, "one per mirrored partition: {indexes:?}");
    for file in indexes {
        std::fs::remove_file(file)?;
    }
    node.restart()?;
    wait_mirrored(&node, OPEN, &open)?;
    assert_eq!(answers(&node)?, before, "after losing the index files");
    let committed = consume_isolation(&node, OPEN, 9, "confluent", "read_committed")?;
    assert_eq!(committed, open.expected(true));
    Ok(())
}

/// A transaction left open at the source holds back neither the copy nor what comes
/// after it: the link reads as a follower does, to the source's high watermark, so the
/// mirror reaches the source's end and no lag piles up behind the open transaction.
#[test]
fn a_transaction_hanging_open_at_the_source_holds_back_nothing() -> Result<()> {
    use shadowlink_protocol::batch::testing::build_batch;
    let batches: Vec<Bytes> = (0..20)
        .map(|o| build_batch(o, 0, &[(None, Some(b"v".as_slice()))], 1_000 + o))
        .collect();
    let source = FakeBroker::start(BTreeMap::from([(
        "a_hung".to_string(),
        vec![FakeLog {
            batches,
            last_stable: Some(12),
            ..FakeLog::default()
        }],
    )]))?;
    let node = Node::start(&NodeConfig::linked_to(source.addr).admin())?;
    let partition = |node: &Node| -> Result<Value> {
        let admin = node.admin.context("no admin listener")?.to_string();
        let json =
            shadowlink(&["status", "--admin", &admin, "--format", "json"])?.stdout("status")?;
        let status: Value = serde_json::from_str(&json)?;
        Ok(status["links"][0]["topics"][0]["partitions"][0].clone())
    };
    let caught_up = until(
        Duration::from_secs(30),
        || partition(&node),
        |p| p["dst_hwm"] == 20 && p["src_hwm"] == 20,
    )?;
    ensure!(caught_up["src_lso"] == 12, "{caught_up}");
    ensure!(caught_up["lag"] == 0, "{caught_up}");
    Ok(())
}

/// A `read_committed` fetch gathering toward its `min_bytes` is answered once a marker
/// makes records the node stored earlier readable, though the marker itself brings
/// fewer bytes than the fetch waits for.
#[test]
fn a_marker_making_stored_records_readable_answers_a_gathering_read_committed_fetch() -> Result<()>
{
    const TOPIC: &str = "a_txn_late";
    let mut open = History::new();
    open.data(COMMITTING, 2, true);
    let source = FakeBroker::start(BTreeMap::from([(
        TOPIC.to_string(),
        vec![FakeLog {
            batches: open.batches.clone(),
            ..FakeLog::default()
        }],
    )]))?;
    let node = Node::start(&node_config(source.addr))?;
    wait_mirrored(&node, TOPIC, &open)?;
    assert!(fetch_committed(&node, TOPIC, 0)?.bases.is_empty());

    let data = open.batches[0].len();
    let mut committed = open.clone();
    committed.marker(COMMITTING, true);
    assert!(committed.batches[1].len() < data);
    let addr = node.kafka;
    let started = std::time::Instant::now();
    let waiting =
        std::thread::spawn(move || fetch_committed_gathering(addr, TOPIC, 0, data as i32, 15_000));
    std::thread::sleep(Duration::from_millis(500));
    source.edit(|topics| topics.get_mut(TOPIC).unwrap()[0].batches = committed.batches.clone());
    let answer = waiting.join().expect("the fetching thread")?;
    let took = started.elapsed();
    assert_eq!(answer.bases, vec![0, 2]);
    assert_eq!(answer.last_stable_offset, 3);
    assert!(took < Duration::from_secs(8), "answered after {took:?}");
    Ok(())
}
