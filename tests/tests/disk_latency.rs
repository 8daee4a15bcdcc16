//! Reads never wait behind the disk: while a producer writes partition 0 with
//! `persist = "always"` (or an interval) on a slow disk, a consumer of partition 1 keeps
//! its latency.
//!
//! The slow disk is `storage.fault_fsync_delay`, which makes every fsync of partition
//! data sleep first (no slow block device can be made where the tests run). Its delay
//! is twice the latency bound, so any consumer request that queued behind an fsync
//! would show it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::batch::testing::BatchBuilder;
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::{Node, NodeConfig};

const TOPIC: &str = "disk-latency";
const FSYNC_DELAY: Duration = Duration::from_millis(200);
const LATENCY_BOUND: Duration = Duration::from_millis(100);
const PRODUCE_FOR: Duration = Duration::from_secs(10);
const RECORDS_PER_BATCH: usize = 100;
/// The two drills run one at a time: each measures a latency bound, and on a small
/// machine the other's node and clients would compete for the same cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn config(persist: &str) -> NodeConfig {
    NodeConfig::new()
        .persist(persist)
        .fault_fsync_delay(FSYNC_DELAY)
        .topic(TOPIC, 2)
}

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_string(TOPIC.to_string()))
}

/// Produces one batch of `RECORDS_PER_BATCH` records with acks=all; returns its base
/// offset.
fn produce(client: &mut RawClient, partition: i32, n: usize) -> Result<i64> {
    let values: Vec<Vec<u8>> = (0..RECORDS_PER_BATCH)
        .map(|i| format!("batch-{n}-record-{i}").into_bytes())
        .collect();
    let refs: Vec<_> = values.iter().map(|v| (None, Some(v.as_slice()))).collect();
    let batch = BatchBuilder::new(0)
        .leader_epoch(-1)
        .timestamp(1_700_000_000_000)
        .records(&refs)
        .build();
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name())
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request)?;
    let p = &response.responses[0].partition_responses[0];
    ensure!(
        p.error_code == 0,
        "produce to partition {partition}: error {}",
        p.error_code
    );
    Ok(p.base_offset)
}

/// What the producer of partition 0 achieved.
struct Produced {
    batches: usize,
    fastest_ack: Duration,
}

fn run_producer(addr: SocketAddr) -> Result<Produced> {
    let mut client = RawClient::connect(addr)?;
    let started = Instant::now();
    let mut produced = Produced {
        batches: 0,
        fastest_ack: Duration::MAX,
    };
    while started.elapsed() < PRODUCE_FOR {
        let sent = Instant::now();
        let base = produce(&mut client, 0, produced.batches)?;
        produced.fastest_ack = produced.fastest_ack.min(sent.elapsed());
        ensure!(
            base == (produced.batches * RECORDS_PER_BATCH) as i64,
            "batch {} landed at {base}",
            produced.batches
        );
        produced.batches += 1;
    }
    Ok(produced)
}

/// A consumer's requests for partition 1: Fetch from the start and Metadata for the
/// topic. Returns how many records the fetch read.
fn fetch(client: &mut RawClient, version: i16) -> Result<usize> {
    let request = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name())
            .with_partitions(vec![FetchPartition::default()
                .with_partition(1)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let response: FetchResponse = client.call(ApiKey::Fetch, version, &request)?;
    let p = &response.responses[0].partitions[0];
    ensure!(
        p.error_code == 0,
        "fetch partition 1: error {}",
        p.error_code
    );
    let records = p.records.clone().unwrap_or_default();
    let mut count = 0;
    for batch in shadowlink_protocol::batch::BatchWalker::new(records) {
        count += usize::try_from(batch?.record_count()).unwrap_or(0);
    }
    Ok(count)
}

fn metadata(client: &mut RawClient, version: i16) -> Result<()> {
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic_name())),
    ]));
    let response: MetadataResponse = client.call(ApiKey::Metadata, version, &request)?;
    let partitions = response.topics.first().map_or(0, |t| t.partitions.len());
    ensure!(partitions == 2, "Metadata lists {partitions} partitions");
    Ok(())
}

/// Slowest Fetch and slowest Metadata seen while `done` is false, and the fetch count.
fn run_consumer(addr: SocketAddr, done: &AtomicBool) -> Result<(Duration, Duration, usize)> {
    let mut client = RawClient::connect(addr)?;
    let fetch_version = client.version(ApiKey::Fetch, 12)?;
    let metadata_version = client.version(ApiKey::Metadata, 12)?;
    let (mut slowest_fetch, mut slowest_metadata, mut fetches) =
        (Duration::ZERO, Duration::ZERO, 0);
    while !done.load(Ordering::Acquire) {
        let sent = Instant::now();
        let records = fetch(&mut client, fetch_version)?;
        slowest_fetch = slowest_fetch.max(sent.elapsed());
        ensure!(records == RECORDS_PER_BATCH, "fetched {records} records");
        fetches += 1;
        let sent = Instant::now();
        metadata(&mut client, metadata_version)?;
        slowest_metadata = slowest_metadata.max(sent.elapsed());
        // A consumer's pace, not a tight loop that would starve the node of the CPU.
        thread::sleep(Duration::from_millis(5));
    }
    Ok((slowest_fetch, slowest_metadata, fetches))
}

/// What the producer and the consumer saw while running side by side.
struct Report {
    produced: Produced,
    slowest_fetch: Duration,
    slowest_metadata: Duration,
    fetches: usize,
}

/// Produces to partition 0 for `PRODUCE_FOR` while consuming partition 1, checks both
/// kept going and that partition 0 holds exactly what was acked.
fn produce_while_consuming(persist: &str) -> Result<Report> {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let node = Node::start(&config(persist))?;
    produce(&mut RawClient::connect(node.kafka)?, 1, 0)?;
    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let (addr, done) = (node.kafka, done.clone());
        thread::spawn(move || {
            // Whether it finished or failed, the consumer stops with it.
            let produced = run_producer(addr);
            done.store(true, Ordering::Release);
            produced
        })
    };
    let consumed = run_consumer(node.kafka, &done);
    done.store(true, Ordering::Release);
    let produced = producer.join().expect("producer thread")?;
    let (slowest_fetch, slowest_metadata, fetches) = consumed?;
    eprintln!(
        "persist {persist}: {} batches acked (fastest {:?}); {fetches} fetches, slowest \
         {slowest_fetch:?}, slowest Metadata {slowest_metadata:?}",
        produced.batches, produced.fastest_ack
    );
    let end = RawClient::connect(node.kafka)?
        .list_offset(TOPIC, 0, -1)
        .context("log end of partition 0")?;
    ensure!(end == (produced.batches * RECORDS_PER_BATCH) as i64);
    Ok(Report {
        produced,
        slowest_fetch,
        slowest_metadata,
        fetches,
    })
}

fn check_latency(report: &Report) -> Result<()> {
    ensure!(
        report.slowest_fetch < LATENCY_BOUND,
        "a fetch of partition 1 took {:?}",
        report.slowest_fetch
    );
    ensure!(
        report.slowest_metadata < LATENCY_BOUND,
        "a Metadata request took {:?}",
        report.slowest_metadata
    );
    ensure!(report.fetches >= 100, "only {} fetches ran", report.fetches);
    Ok(())
}

#[test]
fn a_consumer_keeps_its_latency_while_a_producer_fsyncs_another_partition() -> Result<()> {
    let report = produce_while_consuming("always")?;
    check_latency(&report)?;
    let produced = &report.produced;
    // Acks still wait for the fsync: the slow disk is in effect and `always` holds.
    ensure!(
        produced.fastest_ack >= FSYNC_DELAY,
        "an ack came after {:?}, before the fsync",
        produced.fastest_ack
    );
    let expected = PRODUCE_FOR.as_millis() / FSYNC_DELAY.as_millis();
    ensure!(
        produced.batches as u128 >= expected / 2,
        "only {} batches acked in {PRODUCE_FOR:?}",
        produced.batches
    );
    Ok(())
}

/// Interval persistence fsyncs from appends that find the interval passed and from the
/// node's flush timer; neither may hold the partition while the disk works.
#[test]
fn interval_fsyncs_do_not_hold_up_a_consumer_either() -> Result<()> {
    let report = produce_while_consuming("50ms")?;
    check_latency(&report)?;
    ensure!(
        report.produced.batches >= 20,
        "only {} batches acked in {PRODUCE_FOR:?}",
        report.produced.batches
    );
    Ok(())
}
