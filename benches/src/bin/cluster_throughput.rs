//! Mirror throughput of a region with 1, 2 and 3 clustered nodes, in the same run: a
//! source node owns N partitions filled with X bytes; then, for each size, a fresh etcd
//! and a region of that many nodes (replication factor `min(2, nodes)`) mirror the whole
//! topic from scratch. The figure is the wall-clock time from launching the region's
//! nodes until every replica the final assignment names holds the source's end, as
//! source MB/s (X over that time) and replica MB/s (X times the replication factor over
//! that time, what the region wrote), each with its ratio to the 1-node run.
//!
//! `cargo run --release -p shadowlink-benches --bin cluster_throughput -- [--partitions N]
//! [--megabytes X] [--max-nodes M]` (defaults: 12 partitions, 256 MB, 3 nodes). Nodes run
//! the `shadowlink` binary the test harness builds, which has the `cluster` feature; etcd
//! is Debian's `/usr/bin/etcd`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use shadowlink_benches::{load_average, print_command_and_machine};
use shadowlink_tests::etcd::Etcd;
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::padded_batch;
use shadowlink_tests::{status_json, Node, NodeConfig};

const TOPIC: &str = "a_bulk";
/// Records per produced batch (about 110 KB with the padded values).
const BATCH_RECORDS: usize = 500;
const LEASE_TTL: &str = "3s";
const TIMEOUT: Duration = Duration::from_secs(1800);
const POLL: Duration = Duration::from_millis(200);

/// Mirror throughput of 1 to M clustered nodes over the same source.
#[derive(clap::Parser)]
struct Args {
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    /// Bytes the source holds over all partitions, in MB (10^6 bytes).
    #[arg(long, default_value_t = 256)]
    megabytes: u64,
    /// The largest region measured; every size from 1 up is run.
    #[arg(long, default_value_t = 3)]
    max_nodes: i32,
}

/// One region size's result.
struct Run {
    nodes: i32,
    rf: usize,
    time: Duration,
    /// Replica copies begun on a node the final assignment did not keep them on.
    strays: usize,
}

fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    print_command_and_machine();
    println!("load average at start: {}", load_average());
    let source = Node::start(
        &NodeConfig::new()
            .persist("os")
            .topic(TOPIC, args.partitions),
    )?;
    let started = Instant::now();
    let (ends, bytes) = fill(source.kafka, args.partitions, args.megabytes * 1_000_000)?;
    println!(
        "source: {} partitions, {:.1} MB in {} records, filled in {:.1} s",
        args.partitions,
        bytes as f64 / 1e6,
        ends.iter().sum::<i64>(),
        started.elapsed().as_secs_f64()
    );
    let mut runs = Vec::new();
    for nodes in 1..=args.max_nodes {
        let run = mirror(source.kafka, nodes, &ends)?;
        println!(
            "{nodes} node(s), RF {}: every replica caught up in {:.2} s (load average {})",
            run.rf,
            run.time.as_secs_f64(),
            load_average()
        );
        runs.push(run);
    }
    println!("load average at end: {}", load_average());
    print_table(&runs, bytes);
    Ok(())
}

/// Produces padded batches round-robin until the source holds `target` bytes; returns
/// each partition's end offset and the bytes written.
fn fill(source: SocketAddr, partitions: i32, target: u64) -> Result<(Vec<i64>, u64)> {
    let mut client = RawClient::connect(source)?;
    let mut ends = vec![0; partitions as usize];
    let mut bytes = 0;
    let mut n = 0;
    while bytes < target {
        let partition = n % partitions;
        let batch = padded_batch(&format!("{partition}-{n}"), BATCH_RECORDS);
        bytes += batch.len() as u64;
        let (error, base) = client.produce(TOPIC, partition, batch)?;
        ensure!(
            error == 0,
            "produce to {TOPIC}-{partition} answered {error}"
        );
        ends[partition as usize] = base + BATCH_RECORDS as i64;
        n += 1;
    }
    Ok((ends, bytes))
}

/// A fresh etcd and `nodes` clustered nodes, launched together, mirroring the source
/// from scratch; timed until every assigned replica holds the source's end.
fn mirror(source: SocketAddr, nodes: i32, ends: &[i64]) -> Result<Run> {
    let etcd = Etcd::start()?;
    let rf = nodes.min(2) as usize;
    let name = format!("bench-{nodes}");
    let configs: Vec<NodeConfig> = (1..=nodes)
        .map(|id| {
            NodeConfig::linked_to(source).admin().node_id(id).cluster(
                &name,
                &etcd.endpoint(),
                LEASE_TTL,
                rf,
            )
        })
        .collect();
    let started = Instant::now();
    // Launched in parallel, so the first assignment already sees every node and no
    // node starts copying partitions that are then moved away.
    let region: Vec<Node> = std::thread::scope(|scope| {
        let handles: Vec<_> = configs
            .iter()
            .map(|c| scope.spawn(move || Node::start(c)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a node start panicked"))?
            })
            .collect::<Result<Vec<Node>>>()
    })?;
    let strays = loop {
        if let Some(strays) = caught_up(&region, ends, rf)? {
            break strays;
        }
        if started.elapsed() > TIMEOUT {
            bail!("{nodes} node(s) did not catch up within {TIMEOUT:?}");
        }
        std::thread::sleep(POLL);
    };
    Ok(Run {
        nodes,
        rf,
        time: started.elapsed(),
        strays,
    })
}

/// `Some(stray copies)` once every partition is placed on `rf` nodes, each of which
/// holds the source's end.
fn caught_up(region: &[Node], ends: &[i64], rf: usize) -> Result<Option<usize>> {
    let first = region.first().context("no node")?;
    let placed = replicas(first.kafka)?;
    if placed.len() != ends.len() || placed.values().any(|r| r.len() != rf) {
        return Ok(None);
    }
    let mut held: BTreeMap<(i32, i32), i64> = BTreeMap::new();
    for (id, node) in (1..).zip(region) {
        for (partition, end) in mirrored_ends(node)? {
            held.insert((id, partition), end);
        }
    }
    for (partition, replicas) in &placed {
        let end = ends[*partition as usize];
        let done = |id: &i32| held.get(&(*id, *partition)).is_some_and(|e| *e >= end);
        if !replicas.iter().all(done) {
            return Ok(None);
        }
    }
    let strays = held
        .iter()
        .filter(|((id, p), end)| **end > 0 && !placed[p].contains(id))
        .count();
    Ok(Some(strays))
}

/// Each partition's replicas, from Metadata on the node at `addr`.
fn replicas(addr: SocketAddr) -> Result<BTreeMap<i32, Vec<i32>>> {
    let mut client = RawClient::connect(addr)?;
    let version = client.version(ApiKey::Metadata, 9)?;
    let request = MetadataRequest::default().with_topics(None);
    let response: MetadataResponse = client.call(ApiKey::Metadata, version, &request)?;
    let topic = response
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == TOPIC));
    let partitions = topic.map(|t| t.partitions.as_slice()).unwrap_or_default();
    let placed = partitions.iter().filter(|p| p.leader_id.0 >= 0);
    Ok(placed
        .map(|p| {
            let replicas = p.replica_nodes.iter().map(|r| r.0).collect();
            (p.partition_index, replicas)
        })
        .collect())
}

/// Each partition's mirrored end on `node`, from `/v1/status`.
fn mirrored_ends(node: &Node) -> Result<Vec<(i32, i64)>> {
    let status = status_json(node)?;
    let topics = status["links"][0]["topics"].as_array();
    let topic = topics.and_then(|t| t.iter().find(|t| t["name"] == TOPIC));
    let Some(partitions) = topic.and_then(|t| t["partitions"].as_array()) else {
        return Ok(Vec::new());
    };
    let end = |p: &serde_json::Value| {
        let partition = p["partition"].as_i64()? as i32;
        Some((partition, p["dst_hwm"].as_i64()?))
    };
    Ok(partitions.iter().filter_map(end).collect())
}

fn print_table(runs: &[Run], bytes: u64) {
    let mb = bytes as f64 / 1e6;
    let base = runs.first().map_or(1.0, |r| mb / r.time.as_secs_f64());
    let base_replica = runs
        .first()
        .map_or(1.0, |r| mb * r.rf as f64 / r.time.as_secs_f64());
    println!();
    println!(
        "| nodes | RF | time (s) | source MB/s | ratio | replica MB/s | ratio | stray copies |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for run in runs {
        let secs = run.time.as_secs_f64();
        let (source, replica) = (mb / secs, mb * run.rf as f64 / secs);
        println!(
            "| {} | {} | {secs:.2} | {source:.1} | {:.2} | {replica:.1} | {:.2} | {} |",
            run.nodes,
            run.rf,
            source / base,
            replica / base_replica,
            run.strays
        );
    }
}
