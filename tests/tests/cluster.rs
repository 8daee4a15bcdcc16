//! A region's shadow as three nodes coordinated by etcd, replication factor 2, against a
//! tansu source: clients route themselves from any node's Metadata, a node killed under
//! load hands its partitions over without losing or repeating a record, and a stopped
//! etcd changes nothing that is served.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use shadowlink_tests::cluster::{records, routes, Region, Routes, LEASE_TTL, SETTLE};
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::produce;
use shadowlink_tests::{http_get, http_post, node_js, python, status_json, until, Client, Node};

const TOPIC: &str = "a_orders";
const PARTITIONS: i32 = 6;

/// The source's batches of every partition, to compare a node's with.
fn source_batches(source: SocketAddr) -> Result<Vec<Vec<(i64, bytes::Bytes)>>> {
    (0..PARTITIONS)
        .map(|p| RawClient::connect(source)?.read_batches(TOPIC, p, 0))
        .collect()
}

/// Records `consume_partitions.py` reads from every partition through `bootstrap`.
fn consumed_through(bootstrap: &str, expected: usize) -> Result<usize> {
    let mut args = vec![
        bootstrap.to_string(),
        TOPIC.to_string(),
        expected.to_string(),
    ];
    args.extend((0..PARTITIONS).map(|p| p.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Ok(python("consume_partitions.py", &args)?.trim().parse()?)
}

#[test]
fn every_partition_is_read_through_any_nodes_bootstrap() -> Result<()> {
    let region = Region::start(TOPIC, PARTITIONS)?;
    produce(region.source.addr, TOPIC, 600, "none", PARTITIONS, 0)?;
    let routes = region.settled(&[1, 2, 3])?;
    // 12 replicas over 3 nodes.
    let load = routes.replicas_per_node();
    ensure!(load.values().all(|n| *n == 4), "unbalanced: {load:?}");
    // Once placed, every replica mirrors its partitions to the source's end and no other
    // node fetches them. (Nodes that started first may hold data of partitions placed
    // elsewhere once the others joined: that data stays, unfetched.)
    produce(region.source.addr, TOPIC, 600, "none", PARTITIONS, 600)?;
    for (id, node) in &region.nodes {
        let held = |p: usize| routes.partitions[&(p as i32)].replicas.contains(id);
        until(
            SETTLE,
            || mirrored_ends(node),
            |ends| {
                let at = |p: usize, end: i64| if held(p) { end == 200 } else { end <= 100 };
                ends.iter().enumerate().all(|(p, end)| at(p, *end))
            },
        )?;
    }
    for node in region.nodes.values() {
        let read = consumed_through(&node.kafka.to_string(), 1200)?;
        ensure!(read == 1200, "read {read} of 1200 through {}", node.kafka);
    }
    let kafkajs = node_js(
        "consume.js",
        &[
            &region.node(2)?.kafka.to_string(),
            TOPIC,
            "1200",
            "cluster-js",
        ],
    )?;
    ensure!(
        kafkajs.lines().count() == 1200,
        "kafkajs read {}",
        kafkajs.lines().count()
    );
    // Each partition is served, byte for byte, by its leader only.
    let expected = source_batches(region.source.addr)?;
    for (p, route) in &routes.partitions {
        for (id, node) in &region.nodes {
            let read = RawClient::connect(node.kafka)?.read_batches(TOPIC, *p, 0);
            match (*id == route.leader, read) {
                (true, Ok(batches)) => ensure!(batches == expected[*p as usize], "{p} differs"),
                (false, Err(e)) => ensure!(format!("{e}").contains("error 6"), "{e}"),
                (lead, other) => {
                    let batches = other.map(|b| b.len());
                    bail!("node {id} (leader: {lead}) of {p} answered {batches:?} batches")
                }
            }
        }
    }
    // Fail-back would make one node the only holder of writes: it is refused (failover
    // is carried out through etcd: `cluster_failover.rs`; created owned topics are
    // replicated: `cluster_owned.rs`).
    let admin = region.node(1)?.admin.context("admin")?;
    let (code, body) = http_post(admin, "/v1/links/from-a/failback", "{}")?;
    ensure!(
        code == 409 && body.contains("not available on a cluster node"),
        "fail-back on a cluster node answered {code}: {body}"
    );
    Ok(())
}

/// Each partition's mirrored high watermark on `node`, from `/v1/status`.
fn mirrored_ends(node: &Node) -> Result<Vec<i64>> {
    let status = status_json(node)?;
    let partitions = status["links"][0]["topics"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == TOPIC))
        .and_then(|t| t["partitions"].as_array())
        .context("no partitions in /v1/status")?;
    let mut ends = vec![0; PARTITIONS as usize];
    for p in partitions {
        let index = p["partition"].as_u64().context("partition")? as usize;
        *ends.get_mut(index).context("partition index")? = p["dst_hwm"].as_i64().unwrap_or(0);
    }
    Ok(ends)
}

/// A background confluent-kafka consumer of every partition through `bootstrap`; it
/// stops once it has read as many records as `count_file` says.
fn start_consumer(bootstrap: &str, count_file: &std::path::Path) -> Result<Child> {
    let partitions = PARTITIONS.to_string();
    let path = count_file.to_str().context("utf-8 path")?;
    let args = [
        bootstrap,
        TOPIC,
        partitions.as_str(),
        path,
        "--timeout",
        "180",
    ];
    Client::Python
        .command("consume_until.py", &args)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start consume_until.py")
}

fn start_producer(source: SocketAddr, seconds: u32) -> Result<Child> {
    let (source, seconds) = (source.to_string(), seconds.to_string());
    let partitions = PARTITIONS.to_string();
    let args = [
        source.as_str(),
        TOPIC,
        "--rate",
        "200",
        "--partitions",
        partitions.as_str(),
        "--seconds",
        seconds.as_str(),
    ];
    Client::Python
        .command("produce_steady.py", &args)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start produce_steady.py")
}

/// The node other than `gone` that now holds a partition `gone` held and it did not.
fn replacement(before: &Routes, after: &Routes, gone: i32) -> Option<i32> {
    before.partitions.iter().find_map(|(p, was)| {
        let (old, new) = (&was.replicas, &after.partitions.get(p)?.replicas);
        let added = new.iter().find(|n| !old.contains(n));
        added.filter(|_| old.contains(&gone)).copied()
    })
}

#[test]
fn a_node_killed_under_load_hands_over_without_loss_or_duplicates() -> Result<()> {
    let mut region = Region::start(TOPIC, PARTITIONS)?;
    produce(region.source.addr, TOPIC, 300, "none", PARTITIONS, 0)?;
    let before = region.settled(&[1, 2, 3])?;
    // The assigner itself: its death must also hand the assigner role over.
    let victim = *region
        .nodes
        .iter()
        .find(|(_, node)| node.process.logged(&["elected assigner"]))
        .context("no node was elected assigner")?
        .0;
    ensure!(
        before.leaders().values().any(|l| *l == victim),
        "{victim} leads nothing"
    );
    let dir = tempfile::tempdir()?;
    let count_file = dir.path().join("count");
    let consumer = start_consumer(&region.bootstrap(), &count_file)?;
    let producer = start_producer(region.source.addr, 14)?;
    // Load runs for a while before the kill, and keeps running after it.
    std::thread::sleep(Duration::from_secs(4));
    let killed_at = Instant::now();
    region
        .nodes
        .get_mut(&victim)
        .context("victim")?
        .process
        .kill9();
    let survivors: Vec<i32> = region
        .nodes
        .keys()
        .copied()
        .filter(|n| *n != victim)
        .collect();
    until(
        SETTLE,
        || routes(region.node(survivors[0])?.kafka, TOPIC),
        |r| r.partitions.values().all(|r| r.leader != victim),
    )?;
    let moved = killed_at.elapsed();
    println!(
        "leadership moved off node {victim} {} ms after kill -9 (lease TTL {LEASE_TTL})",
        moved.as_millis()
    );
    let after = region.settled(&survivors)?;
    let acked = records(producer, "produce_steady.py")?;
    let total = 300 + acked.len();
    std::fs::write(&count_file, total.to_string())?;
    let read = records(consumer, "consume_until.py")?;
    let positions: BTreeSet<(i32, i64)> = read.iter().map(|(p, o, _, _)| (*p, *o)).collect();
    ensure!(
        positions.len() == read.len(),
        "{} records read twice",
        read.len() - positions.len()
    );
    ensure!(read.len() == total, "read {} of {total}", read.len());
    let by_position: BTreeMap<(i32, i64), &str> = read
        .iter()
        .map(|(p, o, k, _)| ((*p, *o), k.as_str()))
        .collect();
    for (p, o, key, _) in &acked {
        ensure!(
            by_position.get(&(*p, *o)) == Some(&key.as_str()),
            "{key} at {p}/{o} lost"
        );
    }
    // The replacement replica alone serves the region once the other survivor stops:
    // it must serve exactly the source's bytes.
    let filled = replacement(&before, &after, victim).context("no replacement replica")?;
    let other = survivors
        .iter()
        .copied()
        .find(|n| *n != filled)
        .context("survivor")?;
    region
        .nodes
        .get_mut(&other)
        .context("other")?
        .process
        .terminate(Duration::from_secs(20))?;
    until(
        SETTLE,
        || routes(region.node(filled)?.kafka, TOPIC),
        |r| r.partitions.values().all(|r| r.leader == filled),
    )?;
    let expected = source_batches(region.source.addr)?;
    let served = until(
        SETTLE,
        || {
            let node = region.node(filled)?.kafka;
            (0..PARTITIONS)
                .map(|p| RawClient::connect(node)?.read_batches(TOPIC, p, 0))
                .collect::<Result<Vec<_>>>()
        },
        |served| *served == expected,
    );
    served.context("the replacement replica differs from the source")?;
    Ok(())
}

/// Whether `/readyz` names the coordination outage.
fn coordination_reported(node: &Node) -> Result<bool> {
    let (_, body) = http_get(node.admin.context("admin")?, "/readyz")?;
    Ok(body.contains("cluster coordination unavailable"))
}

#[test]
fn a_stopped_etcd_changes_no_leadership_while_serving_and_mirroring_go_on() -> Result<()> {
    let mut region = Region::start(TOPIC, PARTITIONS)?;
    produce(region.source.addr, TOPIC, 300, "none", PARTITIONS, 0)?;
    let before = region.settled(&[1, 2, 3])?;
    region.etcd.stop();
    for node in region.nodes.values() {
        until(SETTLE, || coordination_reported(node), |said| *said)?;
    }
    produce(region.source.addr, TOPIC, 300, "none", PARTITIONS, 300)?;
    // Longer than the lease TTL: had leases run out meanwhile, leadership would move.
    std::thread::sleep(Duration::from_secs(8));
    for node in region.nodes.values() {
        ensure!(
            routes(node.kafka, TOPIC)? == before,
            "node {} changed routes",
            node.kafka
        );
        let read = consumed_through(&node.kafka.to_string(), 600)?;
        ensure!(
            read == 600,
            "read {read} of 600 through {} without etcd",
            node.kafka
        );
    }
    region.etcd.resume()?;
    for node in region.nodes.values() {
        until(SETTLE, || coordination_reported(node), |said| !*said)?;
    }
    // Back with etcd, the nodes keep the assignment they had.
    ensure!(
        region.settled(&[1, 2, 3])? == before,
        "routes changed after etcd returned"
    );
    Ok(())
}
