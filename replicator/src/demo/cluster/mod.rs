//! `shadowlink demo --nodes N`: region B as a cluster of N nodes coordinated by etcd,
//! surviving the loss of one. Region A is one node in this process owning `a_*`; B's
//! nodes are `shadowlink run` child processes of this binary, each a replica (RF 2) of
//! some `a_*` partitions, fetching them from A itself. A producer writes to A and a
//! consumer reads B through one bootstrap node while a node that leads partitions is
//! killed with SIGKILL. The demo measures how long until leadership moved and the
//! consumer read again, waits for the replacement replicas, and checks that every
//! record A acknowledged was read from B exactly once at its offset and that each
//! replacement replica is byte-identical to A.

mod check;
mod consumer;
mod etcd;
mod nodes;
mod routes;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use shadowlink::config::Config;
use shadowlink::daemon::Daemon;

use super::pair::{TempDir, A_TOPICS, PARTITIONS};
use super::workload::{lock, Shared, Task, TopicPartition};
use check::Measured;
use consumer::{RoutedConsumer, SharedReads};
use etcd::Etcd;
use nodes::{NodeProcess, LEASE_TTL, REPLICATION_FACTOR};
use routes::Routes;

/// How long the region may take to place every partition, after a start or a loss.
const SETTLE: Duration = Duration::from_secs(60);
/// Load before the kill, and after leadership moved.
const BEFORE_KILL: Duration = Duration::from_secs(4);
const AFTER_MOVE: Duration = Duration::from_secs(3);
/// More nodes than this add nothing on one machine but load.
const MAX_NODES: usize = 7;
/// The node's id for region A: B's nodes are 1..=N.
const SOURCE_ID: i32 = 100;

/// Runs the demo with `nodes` nodes in region B on its own runtime. Every child process
/// is killed, and the data directory removed, before this returns.
pub fn run(nodes: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        (3..=MAX_NODES).contains(&nodes),
        "--nodes {nodes}: the cluster demo runs 3 to {MAX_NODES} nodes (with 2, a lost node \
         leaves no node to place a replacement replica on)"
    );
    let dir = TempDir::new()?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    let outcome = runtime.block_on(demo(dir.path(), nodes));
    drop(runtime);
    drop(dir);
    outcome
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?)
}

async fn demo(dir: &Path, nodes: usize) -> anyhow::Result<()> {
    let etcd = Etcd::start(dir).await?;
    println!("etcd: {} (cluster coordination of region B)", etcd.endpoint);
    let source = Daemon::start(Config::parse(&source_config(&dir.join("region-a")))?)
        .await
        .context("cannot start region A")?;
    let source_addr = source.kafka_addr.to_string();
    println!(
        "region A: kafka {source_addr} (one node; owns {}, {PARTITIONS} partitions each)",
        A_TOPICS.join(", ")
    );
    let mut region = Vec::new();
    let started = start_region(dir, nodes, &etcd.endpoint, &source_addr, &mut region).await;
    let outcome = match started {
        Ok(()) => drill(&source_addr, &mut region).await,
        Err(e) => Err(e),
    };
    drop(region);
    source.shutdown().await.context("stopping region A")?;
    drop(etcd);
    outcome
}

fn source_config(data_dir: &Path) -> String {
    let mut text = format!(
        "data_dir = {data_dir:?}\nnode_id = {SOURCE_ID}\n\
         [kafka]\nlisten = \"127.0.0.1:0\"\n\
         [storage]\npersist = \"100ms\"\n"
    );
    for topic in A_TOPICS {
        text.push_str(&format!(
            "[[topics]]\nname = \"{topic}\"\npartitions = {PARTITIONS}\n"
        ));
    }
    text
}

async fn start_region(
    dir: &Path,
    nodes: usize,
    etcd: &str,
    source: &str,
    out: &mut Vec<NodeProcess>,
) -> anyhow::Result<()> {
    for id in 1..=nodes as i32 {
        let node = NodeProcess::start(dir, id, etcd, source).await?;
        println!(
            "region B node {id}: kafka {}  admin http://{}  (cluster {}, RF {REPLICATION_FACTOR}, lease TTL {LEASE_TTL:?})",
            node.kafka, node.admin, nodes::CLUSTER
        );
        out.push(node);
    }
    Ok(())
}

/// The Kafka addresses of the nodes in `ids`.
fn addrs<'a>(region: &'a [NodeProcess], ids: &BTreeSet<i32>) -> Vec<&'a str> {
    let live = region.iter().filter(|n| ids.contains(&n.id));
    live.map(|n| n.kafka.as_str()).collect()
}

async fn drill(source: &str, region: &mut [NodeProcess]) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let live: BTreeSet<i32> = region.iter().map(|n| n.id).collect();
    let before = routes::wait_for(&addrs(region, &live), SETTLE, |r| {
        r.settled(&live, REPLICATION_FACTOR)
    })
    .await?;
    println!("region B placed every a_* partition (any node's Metadata says the same):");
    print_routes(&before);
    let acked = Shared::default();
    let reads = SharedReads::default();
    let producer = Task::producer(source, "a", &A_TOPICS, &acked);
    let bootstrap = &region[0];
    println!(
        "producing to A; a consumer reads region B through node {}'s bootstrap only",
        bootstrap.id
    );
    let consumer = RoutedConsumer::start(&bootstrap.kafka, &reads);
    let line = || progress(t0, &acked, &reads);
    super::run_for(BEFORE_KILL, &[&producer], line).await;
    let outcome = lose_a_node(region, &before, &live, &reads, &producer, line).await;
    producer.finish().await.context("region A's producer")?;
    let result = match outcome {
        Ok(measured) => check::closing(region, &acked, &reads, measured).await,
        Err(e) => Err(e),
    };
    consumer.finish().await;
    result?;
    println!("demo finished in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// Kills the node leading the most partitions, measures how long until every survivor
/// names new leaders and until the consumer read each of those partitions again, and
/// waits until the replacement replicas are placed.
async fn lose_a_node(
    region: &mut [NodeProcess],
    before: &Routes,
    live: &BTreeSet<i32>,
    reads: &SharedReads,
    producer: &Task,
    line: impl Fn(),
) -> anyhow::Result<Measured> {
    let (victim, led, killed_at) = kill_a_leader(region, before, live).await?;
    let names: Vec<String> = led.iter().map(ToString::to_string).collect();
    let survivors: BTreeSet<i32> = live.iter().copied().filter(|n| *n != victim).collect();
    let survivor_addrs = addrs(region, &survivors);
    routes::wait_for(&survivor_addrs, SETTLE, |r| {
        r.partitions.values().all(|(l, _)| survivors.contains(l))
    })
    .await?;
    let moved = killed_at.elapsed();
    println!(
        "leadership of {} moved off node {victim} {:.2} s after the kill (lease TTL {} s)",
        names.join(", "),
        moved.as_secs_f64(),
        LEASE_TTL.as_secs()
    );
    let read_again = wait_read_again(reads, &led, killed_at).await?;
    println!(
        "the consumer read every one of them again {:.2} s after the kill",
        read_again.as_secs_f64()
    );
    let after = routes::wait_for(&survivor_addrs, SETTLE, |r| {
        r.settled(&survivors, REPLICATION_FACTOR)
    })
    .await?;
    let replacements = after.replacements(before, victim);
    println!(
        "replacement replicas placed {:.2} s after the kill, filling from A:",
        killed_at.elapsed().as_secs_f64()
    );
    print_routes(&after);
    super::run_for(AFTER_MOVE, &[producer], line).await;
    Ok(Measured {
        victim,
        moved,
        read_again,
        killed_at,
        replacements,
    })
}

/// Kills the node leading the most partitions with SIGKILL; returns it, the partitions
/// it led and when it was gone.
async fn kill_a_leader(
    region: &mut [NodeProcess],
    before: &Routes,
    live: &BTreeSet<i32>,
) -> anyhow::Result<(i32, Vec<TopicPartition>, Instant)> {
    let victim = *live
        .iter()
        .max_by_key(|id| (before.led_by(**id).len(), **id))
        .context("no node in region B")?;
    let led = before.led_by(victim);
    let names: Vec<String> = led.iter().map(ToString::to_string).collect();
    let bootstrap = region.first().map_or(0, |n| n.id);
    let role = if victim == bootstrap {
        " (and is the consumer's bootstrap node)"
    } else {
        ""
    };
    println!(
        "killing node {victim} with SIGKILL: it leads {}{role}",
        names.join(", ")
    );
    let node = region.iter_mut().find(|n| n.id == victim);
    let killed_at = Instant::now();
    node.context("the victim")?.kill9().await?;
    Ok((victim, led, killed_at))
}

/// Waits until the consumer has read each of `led` after `killed_at`.
async fn wait_read_again(
    reads: &SharedReads,
    led: &[TopicPartition],
    killed_at: Instant,
) -> anyhow::Result<Duration> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let latest = {
            let reads = consumer::lock(reads);
            let after = led.iter().map(|tp| {
                let at = reads.last_read.get(tp).copied();
                at.filter(|at| *at > killed_at)
            });
            after.collect::<Option<Vec<Instant>>>()
        };
        if let Some(max) = latest.and_then(|at| at.into_iter().max()) {
            return Ok(max - killed_at);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the consumer did not read the moved partitions again within {SETTLE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn print_routes(routes: &Routes) {
    for (tp, (leader, replicas)) in &routes.partitions {
        println!("  {tp}: leader node {leader}, replicas {replicas:?}");
    }
}

fn progress(t0: Instant, acked: &Shared, reads: &SharedReads) {
    let produced = lock(acked).acked_count("a_");
    let read = consumer::lock(reads).count();
    println!(
        "[{:>4.1}s] acknowledged by A {produced:>6} | read from region B {read:>6} | not read yet {:>5}",
        t0.elapsed().as_secs_f64(),
        produced.saturating_sub(read)
    );
}
