//! Partitions under steady load: a confluent-kafka idempotent producer writes a steady
//! record rate spread evenly over N partitions of a topic one node owns; a second node
//! mirrors it. Every second the bench asks both nodes for every partition's end offset
//! (ListOffsets latest) and reports, over the run, the largest lag of any partition in
//! records and in seconds.
//!
//! Lag in seconds: at each sample, a partition whose mirror end is below its source end
//! lags by at least the time since the first sample in which the source end was above
//! that mirror end (so it has a one-sample resolution and never overstates).
//!
//! The mirror fetches again as soon as an answer arrives, so the nodes' CPU follows how
//! many fetches they make: the bench also counts the Fetch requests the source answered
//! (its `/metrics`) and gives each node's CPU per fetch, and how many partitions the
//! source's fetch sessions read to answer them. `--fetch-min-bytes` and
//! `--fetch-max-wait-ms` set the link's `fetch_min_bytes` and `fetch_max_wait`, which
//! trade fewer fetches for the time records wait at the source.
//!
//! `--quiet-consumers N` adds N clients, each long-polling the 8 empty partitions of
//! another topic of the source without a fetch session (as librdkafka and kafka-python
//! fetch: `min_bytes` 1, 500 ms), and reports the partitions the source read for such
//! fetches and its CPU with them; the appends of the load must not make them read.
//! With `--quiet-sessions` they fetch in KIP-227 sessions instead, as Java consumers do.
//!
//! `cargo run --release -p shadowlink-benches --bin partitions_under_load -- [--partitions N]
//! [--rate R] [--seconds S] [--metadata-interval-ms M] [--fetch-min-bytes B]
//! [--fetch-max-wait-ms W] [--quiet-consumers N [--quiet-sessions]]` (defaults: 1000 partitions, 5000 records/s, 60 s, and the
//! link's defaults: a metadata interval of 10 s, 1 byte, 500 ms; the earlier runs in
//! BENCHMARKS.md used the test harness's 300 ms metadata interval).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use shadowlink_benches::{cpu_seconds, load_average, print_command_and_machine, rss_mb};
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::create_topic;
use shadowlink_tests::{http_get, Client, Link, Node, NodeConfig};

const TOPIC: &str = "a_load";
/// Goal: no partition lags more than this.
const GOAL_LAG_SECONDS: f64 = 1.0;

/// A steady produce rate spread over many partitions of a node, mirrored by another.
#[derive(clap::Parser)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    partitions: i32,
    /// Records produced per second, over all partitions.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// How long the load runs.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// The mirror's link `metadata_interval`, in milliseconds; the default is the
    /// link's own default. Each refresh looks at every partition once.
    #[arg(long, default_value_t = 10_000)]
    metadata_interval_ms: u64,
    /// The mirror's link `fetch_min_bytes`.
    #[arg(long, default_value_t = 1)]
    fetch_min_bytes: i32,
    /// The mirror's link `fetch_max_wait`, in milliseconds.
    #[arg(long, default_value_t = 500)]
    fetch_max_wait_ms: u64,
    /// Sessionless consumers long-polling a quiet topic of the source.
    #[arg(long, default_value_t = 0)]
    quiet_consumers: usize,
    /// The quiet consumers fetch in KIP-227 sessions, as Java consumers do.
    #[arg(long)]
    quiet_sessions: bool,
}

/// The source's topic the quiet consumers wait on; the link does not mirror it.
const QUIET: &str = "quiet";
const QUIET_PARTITIONS: i32 = 8;

/// A consumer waiting on the empty [`QUIET`] topic until `stop`, counting the answers it
/// gets: without a fetch session, or in one (`session`).
fn quiet_consumer(
    addr: SocketAddr,
    session: bool,
    stop: Arc<AtomicBool>,
    answers: Arc<AtomicU64>,
) -> JoinHandle<Result<()>> {
    std::thread::spawn(move || {
        let mut client = RawClient::connect(addr)?;
        let partitions = (0..QUIET_PARTITIONS).map(|p| {
            FetchPartition::default()
                .with_partition(p)
                .with_partition_max_bytes(1 << 20)
        });
        let topic = FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(QUIET)))
            .with_partitions(partitions.collect());
        let request = FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(8 << 20)
            .with_session_id(0)
            .with_session_epoch(if session { 0 } else { -1 })
            .with_topics(vec![topic]);
        let opened: FetchResponse = client.call(ApiKey::Fetch, 12, &request)?;
        let mut request = match session {
            true if opened.session_id == 0 => bail!("the node opened no fetch session"),
            true => (request.clone())
                .with_session_id(opened.session_id)
                .with_topics(vec![]),
            false => request,
        };
        while !stop.load(Ordering::Relaxed) {
            if session {
                request.session_epoch += 1;
            }
            let response: FetchResponse = client.call(ApiKey::Fetch, 12, &request)?;
            if response.error_code != 0 {
                bail!(
                    "a quiet consumer's fetch failed: error {}",
                    response.error_code
                );
            }
            answers.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    })
}

/// Every partition's latest offset on the node at `addr`.
fn end_offsets(client: &mut RawClient, partitions: i32) -> Result<Vec<i64>> {
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(
                (0..partitions)
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_timestamp(-1)
                    })
                    .collect(),
            )]);
    let response: ListOffsetsResponse = client.call(ApiKey::ListOffsets, 4, &request)?;
    let mut ends = vec![-1; partitions as usize];
    for p in response.topics.iter().flat_map(|t| t.partitions.iter()) {
        if p.error_code == 0 {
            if let Some(end) = ends.get_mut(p.partition_index as usize) {
                *end = p.offset;
            }
        }
    }
    Ok(ends)
}

/// The largest lags seen, and what each sample saw.
#[derive(Default)]
struct Lags {
    max_records: i64,
    max_seconds: f64,
    samples: usize,
    /// Per partition: `(time, source end)` of the samples whose end the mirror may not
    /// have reached yet, oldest first.
    pending: BTreeMap<usize, VecDeque<(Instant, i64)>>,
}

impl Lags {
    fn sample(&mut self, now: Instant, source: &[i64], mirror: &[i64]) {
        self.samples += 1;
        for (p, (&src, &dst)) in source.iter().zip(mirror).enumerate() {
            self.max_records = self.max_records.max(src - dst);
            let pending = self.pending.entry(p).or_default();
            pending.push_back((now, src));
            while pending.front().is_some_and(|&(_, end)| end <= dst) {
                pending.pop_front();
            }
            if let Some(&(since, _)) = pending.front() {
                let lag = now.duration_since(since).as_secs_f64();
                self.max_seconds = self.max_seconds.max(lag);
            }
        }
    }
}

/// The node's counter `series` (name and labels as exposed), from its admin listener's
/// `/metrics`; 0 before it was first counted.
fn counter(node: &Node, series: &str) -> Result<f64> {
    let Some(admin) = node.admin else {
        bail!("the node has no admin listener");
    };
    let (_, text) = http_get(admin, "/metrics")?;
    let line = text.lines().find(|l| {
        l.strip_prefix(series)
            .is_some_and(|rest| rest.starts_with(' '))
    });
    let value = line.and_then(|l| l.rsplit(' ').next()?.parse().ok());
    Ok(value.unwrap_or(0.0))
}

/// Fetch requests the node has answered.
const FETCHES: &str = "shadowlink_kafka_requests_total{api=\"Fetch\"}";
/// Partitions the node's fetch sessions read, each read of each partition counted.
const SESSION_READS: &str = "shadowlink_fetch_session_partitions_read_total";
/// Partitions the node read for fetches without a session.
const FULL_READS: &str = "shadowlink_fetch_full_partitions_read_total";

fn start(a: &Args) -> Result<(Node, Node)> {
    let partitions = a.partitions;
    let limit = i64::from(partitions) + 100;
    let source = Node::start(
        &NodeConfig::new()
            .max_partitions(limit)
            .max_partitions_per_request(limit)
            .admin(),
    )?;
    create_topic(source.kafka, TOPIC, partitions, &[])?;
    if a.quiet_consumers > 0 {
        create_topic(source.kafka, QUIET, QUIET_PARTITIONS, &[])?;
    }
    let link = Link::new("from-a", source.kafka)
        .include(&["a_*"])
        .metadata_interval(Duration::from_millis(a.metadata_interval_ms))
        .fetch_min_bytes(a.fetch_min_bytes)
        .fetch_max_wait(Duration::from_millis(a.fetch_max_wait_ms));
    let mirror = NodeConfig::new().persist("os").add_link(link);
    let mirror = Node::start(&mirror.max_partitions(limit))?;
    Ok((source, mirror))
}

fn wait_listed(mirror: SocketAddr, partitions: i32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut client = RawClient::connect(mirror)?;
    while end_offsets(&mut client, partitions)?.contains(&-1) {
        if Instant::now() > deadline {
            bail!("the mirror did not list every partition in 300 s");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

fn main() -> Result<()> {
    let a = <Args as clap::Parser>::parse();
    print_command_and_machine();
    println!("load average at start: {}", load_average());
    let (source, mirror) = start(&a)?;
    wait_listed(mirror.kafka, a.partitions)?;
    let mut producer = Client::Python
        .command(
            "produce_steady.py",
            &[
                &source.kafka.to_string(),
                TOPIC,
                "--rate",
                &a.rate.to_string(),
                "--partitions",
                &a.partitions.to_string(),
                "--seconds",
                &a.seconds.to_string(),
            ],
        )
        .stdout(Stdio::null())
        .spawn()?;
    let (mut src, mut dst) = (
        RawClient::connect(source.kafka)?,
        RawClient::connect(mirror.kafka)?,
    );
    let cpu = (
        cpu_seconds(source.process.pid())?,
        cpu_seconds(mirror.process.pid())?,
    );
    let (stop, answers) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let quiet: Vec<_> = (0..a.quiet_consumers)
        .map(|_| {
            quiet_consumer(
                source.kafka,
                a.quiet_sessions,
                stop.clone(),
                answers.clone(),
            )
        })
        .collect();
    let fetches = counter(&source, FETCHES)?;
    let reads = counter(&source, SESSION_READS)?;
    let full_reads = counter(&source, FULL_READS)?;
    let answered = answers.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut lags = Lags::default();
    let mut first = vec![0; a.partitions as usize];
    let mut next = started + Duration::from_secs(1);
    while started.elapsed() < Duration::from_secs(a.seconds) {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += Duration::from_secs(1);
        let now = Instant::now();
        let source_ends = end_offsets(&mut src, a.partitions)?;
        let mirror_ends = end_offsets(&mut dst, a.partitions)?;
        if lags.samples == 0 {
            first.clone_from(&source_ends);
        }
        lags.sample(now, &source_ends, &mirror_ends);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let used = (
        cpu_seconds(source.process.pid())? - cpu.0,
        cpu_seconds(mirror.process.pid())? - cpu.1,
    );
    let fetches = counter(&source, FETCHES)? - fetches;
    let reads = counter(&source, SESSION_READS)? - reads;
    let full_reads = counter(&source, FULL_READS)? - full_reads;
    let answered = answers.load(Ordering::Relaxed) - answered;
    stop.store(true, Ordering::Relaxed);
    for consumer in quiet {
        consumer.join().expect("a quiet consumer thread")?;
    }
    let last = end_offsets(&mut src, a.partitions)?;
    let produced: i64 = last.iter().zip(&first).map(|(l, f)| l - f).sum();
    let _ = producer.wait();
    println!("load average at end: {}", load_average());
    println!();
    println!(
        "{} partitions, {} records/s asked ({:.0} achieved over the sampled {elapsed:.0} s), {} samples",
        a.partitions,
        a.rate,
        produced as f64 / elapsed,
        lags.samples
    );
    println!("| | value |");
    println!("|---|---|");
    println!(
        "| max lag of any partition (records) | {} |",
        lags.max_records
    );
    println!("| max lag of any partition (s) | {:.1} |", lags.max_seconds);
    println!(
        "| source CPU (% of a core) | {:.1} |",
        used.0 / elapsed * 100.0
    );
    println!(
        "| mirror CPU (% of a core) | {:.1} |",
        used.1 / elapsed * 100.0
    );
    println!(
        "| Fetch requests answered by the source (/s) | {:.0} |",
        fetches / elapsed
    );
    println!(
        "| partitions read by the source's fetch sessions (/s) | {:.0} |",
        reads / elapsed
    );
    if a.quiet_consumers > 0 {
        println!(
            "| answers to the {} quiet consumers (/s) | {:.1} |",
            a.quiet_consumers,
            answered as f64 / elapsed
        );
        println!(
            "| partitions read for fetches without a session (/s) | {:.0} |",
            full_reads / elapsed
        );
    }
    println!(
        "| source CPU per Fetch answered, its produce load included (µs) | {:.0} |",
        used.0 / fetches * 1e6
    );
    println!(
        "| mirror CPU per Fetch (µs) | {:.0} |",
        used.1 / fetches * 1e6
    );
    println!("| source RSS (MB) | {:.0} |", rss_mb(source.process.pid())?);
    println!("| mirror RSS (MB) | {:.0} |", rss_mb(mirror.process.pid())?);
    let met = lags.max_seconds <= GOAL_LAG_SECONDS;
    println!(
        "goal (no partition lags more than {GOAL_LAG_SECONDS} s): {}",
        if met { "met" } else { "not met" }
    );
    Ok(())
}
