//! End-to-end mirror throughput against a real tansu broker, with a baseline in the same
//! run: how fast one plain client can read the same data from the same broker.
//!
//! `cargo run --release -p shadowlink-benches --bin mirror_throughput -- [MIB] [PARTITIONS]`
//! (defaults: 1024 MiB over 4 partitions). Needs `scripts/install-test-deps` first.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::create_topic;
use shadowlink_tests::{python, Node, NodeConfig, Tansu};

const VALUE_BYTES: usize = 10_000;
const TOPIC: &str = "a_bulk";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(Ok(1024), |a| a.parse()).context("MIB")?;
    let partitions: i32 = args
        .next()
        .map_or(Ok(4), |a| a.parse())
        .context("PARTITIONS")?;
    let records = mib * 1024 * 1024 / VALUE_BYTES;

    let source = Tansu::start()?;
    create_topic(source.addr, TOPIC, partitions, &[])?;
    let started = Instant::now();
    python(
        "produce.py",
        &[
            &source.bootstrap(),
            TOPIC,
            &records.to_string(),
            "--partitions",
            &partitions.to_string(),
            "--value-bytes",
            &VALUE_BYTES.to_string(),
        ],
    )?;
    println!(
        "produced {records} records of {VALUE_BYTES} B in {:.1?}",
        started.elapsed()
    );

    // Baseline: one client pulling every partition, sequentially, from the source.
    let started = Instant::now();
    let mut bytes = 0usize;
    let mut ends = Vec::new();
    for p in 0..partitions {
        let batches = RawClient::connect(source.addr)?.read_batches(TOPIC, p, 0)?;
        bytes += batches.iter().map(|(_, b)| b.len()).sum::<usize>();
        ends.push(next_offset(&batches));
    }
    let baseline = started.elapsed();

    // shadowlink: from start to the last partition fully mirrored.
    let started = Instant::now();
    let node = Node::start(&NodeConfig::linked_to(source.addr))?;
    wait_mirrored(&node, &ends, Duration::from_secs(900))?;
    let mirror = started.elapsed();

    let mb = bytes as f64 / 1e6;
    println!("record bytes: {mb:.0} MB in {partitions} partitions");
    println!(
        "baseline, one client reading the source: {:.2?} = {:.0} MB/s",
        baseline,
        mb / baseline.as_secs_f64()
    );
    println!(
        "shadowlink, start to fully mirrored on disk: {:.2?} = {:.0} MB/s",
        mirror,
        mb / mirror.as_secs_f64()
    );
    println!(
        "ratio shadowlink/baseline throughput: {:.2}",
        baseline.as_secs_f64() / mirror.as_secs_f64()
    );
    Ok(())
}

fn next_offset(batches: &[(i64, bytes::Bytes)]) -> i64 {
    batches
        .last()
        .and_then(|(_, b)| shadowlink_protocol::batch::RecordBatch::parse(b.clone()).ok())
        .map_or(0, |b| b.next_offset())
}

fn wait_mirrored(node: &Node, ends: &[i64], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let mut client = RawClient::connect(node.kafka)?;
        let done = ends.iter().enumerate().all(|(p, end)| {
            client
                .list_offset(TOPIC, p as i32, -1)
                .is_ok_and(|o| o >= *end)
        });
        if done {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("not mirrored within {timeout:?}")
}
