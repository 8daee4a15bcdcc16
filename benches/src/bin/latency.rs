//! End-to-end latency the mirror adds: a producer writes a steady byte rate of 1 KiB
//! records into a node's owned topic; one consumer reads it from that node and another,
//! the same client with the same settings, from a second node mirroring it. Each record
//! carries its send time, and each consumer reports the latency (time returned by poll -
//! send time) of every record after a warm-up. The difference between the two is what
//! the mirror adds.
//!
//! `cargo run --release -p shadowlink-benches --bin latency -- [--mb-per-s R]
//! [--seconds S] [--partitions P]` (defaults: 20 MB/s for 30 s into 1 partition). Needs
//! `scripts/install-test-deps` first.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use shadowlink_benches::{cpu_seconds, machine, print_command_and_machine};
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::create_topic;
use shadowlink_tests::{python, Client, Node, NodeConfig};

const TOPIC: &str = "a_latency";
const VALUE_BYTES: usize = 1024;
/// Goals: the mirror adds at most this much to the median and to the 99th percentile.
const GOAL_P50_MS: f64 = 1.0;
const GOAL_P99_MS: f64 = 5.0;

/// A steady produce rate into a node's owned topic, read on that node and on a mirror.
#[derive(clap::Parser)]
struct Args {
    /// Produce rate, MB of values per second.
    #[arg(long, default_value_t = 20.0)]
    mb_per_s: f64,
    /// How long the producer runs.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    #[arg(long, default_value_t = 1)]
    partitions: i32,
}

fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    print_command_and_machine();
    let source = Node::start(&NodeConfig::new().persist("os"))?;
    create_topic(source.kafka, TOPIC, args.partitions, &[])?;
    let mirror = Node::start(&NodeConfig::linked_to(source.kafka))?;
    wait_mirrored(&mirror, args.partitions)?;

    let records = (args.mb_per_s * 1e6 / VALUE_BYTES as f64 * args.seconds) as u64;
    let mut on_source = start_consumer(&source, records, args.partitions)?;
    let mut on_mirror = start_consumer(&mirror, records, args.partitions)?;
    let pids = [source.process.pid(), mirror.process.pid()];
    let cpu_before = [cpu_seconds(pids[0])?, cpu_seconds(pids[1])?];
    let started = Instant::now();
    let produced = python(
        "produce_timed.py",
        &[
            &source.kafka.to_string(),
            TOPIC,
            "--mb-per-s",
            &args.mb_per_s.to_string(),
            "--seconds",
            &args.seconds.to_string(),
            "--value-bytes",
            &VALUE_BYTES.to_string(),
            "--partitions",
            &args.partitions.to_string(),
        ],
    )?;
    let produced: Value = serde_json::from_str(produced.trim()).context("producer output")?;
    let source_figures = finish(&mut on_source, "source")?;
    let mirror_figures = finish(&mut on_mirror, "mirror")?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = [
        (cpu_seconds(pids[0])? - cpu_before[0]) / wall * 100.0,
        (cpu_seconds(pids[1])? - cpu_before[1]) / wall * 100.0,
    ];
    println!("producer: {produced}");
    println!("machine after: {}", machine());
    report(&source_figures, &mirror_figures, cpu);
    Ok(())
}

/// Waits until the mirror serves every partition of the topic.
fn wait_mirrored(mirror: &Node, partitions: i32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let mut client = RawClient::connect(mirror.kafka)?;
        if (0..partitions).all(|p| client.list_offset(TOPIC, p, -1).is_ok()) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the mirror did not serve {TOPIC} within 60 s")
}

/// A consumer process reading from `node`, once it says it is ready.
fn start_consumer(
    node: &Node,
    records: u64,
    partitions: i32,
) -> Result<(Child, BufReader<std::process::ChildStdout>)> {
    let mut child = Client::Python
        .command(
            "consume_latency.py",
            &[
                &node.kafka.to_string(),
                TOPIC,
                &records.to_string(),
                "--partitions",
                &partitions.to_string(),
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start consume_latency.py")?;
    let mut out = BufReader::new(child.stdout.take().context("no stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    if line.trim() != "ready" {
        bail!("consume_latency.py did not start: {line:?}");
    }
    Ok((child, out))
}

/// The consumer's figures once it has read everything (or given up).
fn finish(
    consumer: &mut (Child, BufReader<std::process::ChildStdout>),
    label: &str,
) -> Result<Value> {
    let mut line = String::new();
    consumer.1.read_line(&mut line)?;
    consumer.0.wait()?;
    serde_json::from_str(line.trim()).with_context(|| format!("{label} consumer output {line:?}"))
}

fn report(source: &Value, mirror: &Value, cpu: [f64; 2]) {
    let figure = |v: &Value, key: &str| v[key].as_f64().unwrap_or(f64::NAN);
    println!();
    println!(
        "records read: source {}, mirror {} (measured after warm-up: {}, {})",
        source["count"], mirror["count"], source["measured"], mirror["measured"]
    );
    println!(
        "node CPU over the run (% of a core): source {:.1}, mirror {:.1}",
        cpu[0], cpu[1]
    );
    println!("| latency (ms) | consumer on source | consumer on mirror | mirror - source |");
    println!("|---|---|---|---|");
    for (name, key) in [
        ("p50", "p50_ms"),
        ("p99", "p99_ms"),
        ("p99.9", "p999_ms"),
        ("max", "max_ms"),
    ] {
        let (s, m) = (figure(source, key), figure(mirror, key));
        println!("| {name} | {s:.2} | {m:.2} | {:.2} |", m - s);
    }
    let added = |key| figure(mirror, key) - figure(source, key);
    let verdict = |ok: bool| if ok { "met" } else { "not met" };
    println!(
        "goal p50 added <= {GOAL_P50_MS} ms: {}; goal p99 added <= {GOAL_P99_MS} ms: {}",
        verdict(added("p50_ms") <= GOAL_P50_MS),
        verdict(added("p99_ms") <= GOAL_P99_MS)
    );
}
