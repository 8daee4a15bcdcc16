//! Idle partitions at scale: N empty partitions owned by one node and mirrored by another,
//! once with KIP-227 fetch sessions and once with the link's `fetch_sessions = false`, in
//! the same run. For each: how long until every partition is mirrored and confirmed
//! (set-up), each node's CPU over an idle window (from `/proc/PID/stat`) and its RSS.
//!
//! Each topic keeps Kafka's default `retention.ms` (7 days), as a Kafka source reports it,
//! so both nodes' retention passes weigh every partition against a limit.
//!
//! With `--restarts`, the mirror with sessions is then restarted twice on its data: once
//! stopped with SIGTERM, once killed with SIGKILL, each timed until its listener is up
//! and until every partition is confirmed again; with `--cold`, the mirror's data
//! directory is evicted from the page cache before each start. With `--records K`, each
//! partition holds K one-record batches (about 260 bytes each, or `--record-bytes B`)
//! before the mirror starts.
//!
//! `cargo run --release -p shadowlink-benches --bin idle_partitions -- [--partitions N]
//! [--idle-seconds S] [--retention-interval-seconds R] [--restarts [--cold]] [--records K
//! [--record-bytes B]]` (defaults: 10000 partitions, 30 s, the node's 60 s, no restarts,
//! no records).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde_json::Value;
use shadowlink_benches::{
    cpu_seconds, evict_from_page_cache, load_average, print_command_and_machine, rss_mb,
};
use shadowlink_protocol::batch::testing::BatchBuilder;
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::padded_batch;
use shadowlink_tests::{Link, Node, NodeConfig};

/// Partitions per source topic, so metadata looks like a real cluster's.
const PER_TOPIC: usize = 200;
/// Partitions per CreateTopics request: `kafka.max_partitions_per_request`'s default.
const PER_REQUEST: usize = 1000;

/// N idle partitions owned by one node and mirrored by another.
#[derive(clap::Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    partitions: usize,
    /// The idle window each node's CPU is measured over, in seconds.
    #[arg(long, default_value_t = 30)]
    idle_seconds: u64,
    /// Both nodes' `storage.retention_interval`: a shorter one puts several retention
    /// passes in the idle window.
    #[arg(long, default_value_t = 60)]
    retention_interval_seconds: u64,
    /// Restarts the mirror with sessions after its idle window, gracefully and after a
    /// kill, and times each.
    #[arg(long)]
    restarts: bool,
    /// Evicts the mirror's data directory from the page cache before each restart.
    #[arg(long)]
    cold: bool,
    /// One-record batches produced to each partition before the mirror starts.
    #[arg(long, default_value_t = 0)]
    records: usize,
    /// The value size of those records; 0 for the 260-byte records of the default.
    #[arg(long, default_value_t = 0)]
    record_bytes: usize,
}

fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    let (partitions, idle) = (args.partitions, Duration::from_secs(args.idle_seconds));
    let retention = Duration::from_secs(args.retention_interval_seconds);
    print_command_and_machine();
    println!("load average at start: {}", load_average());
    let source = start_source(partitions, retention)?;
    fill(&source, partitions, args.records, args.record_bytes)?;
    let restarts = args.restarts.then_some(args.cold);
    let with = run(&source, partitions, idle, (true, restarts), retention)?;
    let without = run(&source, partitions, idle, (false, None), retention)?;
    println!("load average at end: {}", load_average());
    println!();
    println!(
        "{partitions} idle partitions, idle window {} s, retention passes every {} s",
        idle.as_secs(),
        retention.as_secs()
    );
    println!("| | sessions | no sessions | ratio (no sessions / sessions) |");
    println!("|---|---|---|---|");
    let rows: [(&str, Figure); 5] = [
        ("set-up (s)", |f| f.setup.as_secs_f64()),
        ("mirror CPU (% of a core)", |f| f.mirror_cpu),
        ("source CPU (% of a core)", |f| f.source_cpu),
        ("mirror RSS (MB)", |f| f.mirror_rss_mb),
        ("source RSS (MB)", |f| f.source_rss_mb),
    ];
    for (name, figure) in rows {
        let (a, b) = (figure(&with), figure(&without));
        println!("| {name} | {a:.2} | {b:.2} | {:.1} |", b / a);
    }
    Ok(())
}

/// One figure of a run, for the table.
type Figure = fn(&Figures) -> f64;

/// What one configuration cost.
struct Figures {
    setup: Duration,
    mirror_cpu: f64,
    source_cpu: f64,
    mirror_rss_mb: f64,
    source_rss_mb: f64,
}

/// The node owning the idle partitions, created through CreateTopics as an operator
/// would: a node with tens of thousands of partitions in its config takes longer to start
/// than the harness waits. Each request creates [`PER_REQUEST`] partitions (the node's
/// default limit per request), so the figure is the node's, not a client's start-up.
fn start_source(partitions: usize, retention: Duration) -> Result<Node> {
    let config = NodeConfig::new()
        .persist("os")
        .retention_interval(retention)
        .max_partitions(partitions as i64 + PER_TOPIC as i64)
        .admin();
    let source = Node::start(&config)?;
    let started = Instant::now();
    let mut client = RawClient::connect(source.kafka)?;
    let topics: Vec<(String, usize)> = (0..partitions.div_ceil(PER_TOPIC))
        .map(|i| {
            (
                format!("idle_{i:04}"),
                PER_TOPIC.min(partitions - i * PER_TOPIC),
            )
        })
        .collect();
    for request in topics.chunks(PER_REQUEST / PER_TOPIC) {
        create_topics(&mut client, request)?;
    }
    println!(
        "source created {partitions} partitions in {:.1?}",
        started.elapsed()
    );
    Ok(source)
}

/// Produces `records` one-record batches to each of the source's partitions, of
/// `record_bytes` each if not 0.
fn fill(source: &Node, partitions: usize, records: usize, record_bytes: usize) -> Result<()> {
    if records == 0 {
        return Ok(());
    }
    let started = Instant::now();
    let mut client = RawClient::connect(source.kafka)?;
    let value = vec![0x5au8; record_bytes];
    let batch = |r: usize| match record_bytes {
        0 => padded_batch(&format!("r{r}"), 1),
        _ => BatchBuilder::new(0)
            .records(&[(None, Some(&value[..]))])
            .build(),
    };
    for i in 0..partitions {
        let (topic, partition) = (format!("idle_{:04}", i / PER_TOPIC), (i % PER_TOPIC) as i32);
        for r in 0..records {
            let (code, _) = client.produce(&topic, partition, batch(r))?;
            if code != 0 {
                bail!("produce to {topic}/{partition}: error {code}");
            }
        }
    }
    println!(
        "source took {records} records in each partition in {:.1?}",
        started.elapsed()
    );
    Ok(())
}

fn create_topics(client: &mut RawClient, topics: &[(String, usize)]) -> Result<()> {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(600_000)
        .with_topics(
            topics
                .iter()
                .map(|(name, count)| {
                    CreatableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.clone())))
                        .with_num_partitions(*count as i32)
                        .with_replication_factor(1)
                        .with_configs(vec![CreatableTopicConfig::default()
                            .with_name(StrBytes::from_static_str("retention.ms"))
                            .with_value(Some(StrBytes::from_static_str("604800000")))])
                })
                .collect(),
        );
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 5, &request)?;
    for topic in &response.topics {
        if topic.error_code != 0 {
            bail!("CreateTopics {}: error {}", topic.name.0, topic.error_code);
        }
    }
    Ok(())
}

/// One configuration's set-up and idle window, with or without sessions, and then its
/// restarts if asked for (`Some(cold)`).
fn run(
    source: &Node,
    partitions: usize,
    idle: Duration,
    (sessions, restarts): (bool, Option<bool>),
    retention: Duration,
) -> Result<Figures> {
    let label = if sessions { "sessions" } else { "no sessions" };
    let limit = partitions as i64 + PER_TOPIC as i64;
    let link = Link::new("from-a", source.kafka)
        .include(&["idle_*"])
        .fetch_sessions(sessions);
    let mirror_config = NodeConfig::new()
        .persist("os")
        .retention_interval(retention)
        .max_partitions(limit)
        .admin()
        .add_link(link);
    let started = Instant::now();
    let mut mirror = Node::start(&mirror_config)?;
    let admin = mirror.admin.context("the mirror has an admin listener")?;
    wait_confirmed(admin, partitions, Duration::from_secs(600))?;
    let setup = started.elapsed();
    println!("[{label}] every partition mirrored and confirmed in {setup:.1?}");
    std::thread::sleep(Duration::from_secs(2));
    let (mirror_pid, source_pid) = (mirror.process.pid(), source.process.pid());
    let before = (cpu_seconds(mirror_pid)?, cpu_seconds(source_pid)?);
    let window = Instant::now();
    std::thread::sleep(idle);
    let seconds = window.elapsed().as_secs_f64();
    let after = (cpu_seconds(mirror_pid)?, cpu_seconds(source_pid)?);
    let figures = Figures {
        setup,
        mirror_cpu: (after.0 - before.0) / seconds * 100.0,
        source_cpu: (after.1 - before.1) / seconds * 100.0,
        mirror_rss_mb: rss_mb(mirror_pid)?,
        source_rss_mb: rss_mb(source_pid)?,
    };
    println!(
        "[{label}] idle: mirror {:.2} % of a core, {:.0} MB RSS; source {:.2} % of a core, {:.0} MB RSS",
        figures.mirror_cpu, figures.mirror_rss_mb, figures.source_cpu, figures.source_rss_mb
    );
    if let Some(cold) = restarts {
        restart(&mut mirror, partitions, false, cold)?;
        restart(&mut mirror, partitions, true, cold)?;
    }
    Ok(figures)
}

/// Restarts `mirror` on its data, after SIGTERM or, with `kill`, SIGKILL, and prints how
/// long the stop took, and from the start until its listener was up and until every
/// partition was confirmed again. With `cold`, its data leaves the page cache first.
fn restart(mirror: &mut Node, partitions: usize, kill: bool, cold: bool) -> Result<()> {
    let how = format!(
        "{}{}",
        if kill { "killed" } else { "stopped" },
        if cold { ", cold" } else { "" }
    );
    let stopping = Instant::now();
    match kill {
        true => mirror.process.kill9(),
        false => mirror.stop_gracefully(Duration::from_secs(300))?,
    }
    let stopped = stopping.elapsed();
    if cold {
        evict_from_page_cache(&mirror.data_dir)?;
    }
    let started = Instant::now();
    mirror.start_again()?;
    let listening = started.elapsed();
    let admin = mirror.admin.context("the mirror has an admin listener")?;
    wait_confirmed(admin, partitions, Duration::from_secs(600))?;
    let confirmed = started.elapsed();
    println!(
        "[restart, {how}] stop {stopped:.1?}; start to listener {listening:.1?}, to every partition confirmed {confirmed:.1?}"
    );
    Ok(())
}

/// Waits until the mirror's status shows `partitions` partitions, each at the source's
/// high watermark as of a fetch response.
fn wait_confirmed(admin: SocketAddr, partitions: usize, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let status: Value = serde_json::from_str(&get(admin, "/v1/status")?)?;
        let all = status["links"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| l["topics"].as_array().into_iter().flatten())
            .flat_map(|t| t["partitions"].as_array().into_iter().flatten());
        let (mut seen, mut confirmed) = (0, 0);
        for p in all {
            seen += 1;
            if p["lag"].as_i64() == Some(0) && p["lag_seconds"].as_f64() == Some(0.0) {
                confirmed += 1;
            }
        }
        if seen == partitions && confirmed == partitions {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{confirmed} of {partitions} partitions confirmed ({seen} listed) after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A plain HTTP/1.0 GET of the admin listener.
fn get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (_, body) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
    Ok(body.to_string())
}
