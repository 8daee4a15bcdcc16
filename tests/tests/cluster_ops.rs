//! Operating a cluster node: a node restarted while etcd is down serves the assignment it
//! kept on disk; nodes reach etcd over mutual TLS and as an etcd user, and a wrong CA is
//! reported; the data of a replica moved to other nodes is removed after a grace period.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use shadowlink_tests::cluster::{routes, Routes, SETTLE};
use shadowlink_tests::etcd::Etcd;
use shadowlink_tests::pki::Pki;
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::{create_topic, produce};
use shadowlink_tests::{http_get, python, until, Node, NodeConfig, Tansu};

const TOPIC: &str = "a_orders";
const PARTITIONS: i32 = 6;

/// A node of cluster `region-b` mirroring `a_*` from `source`, with etcd at `endpoint`.
fn member(id: i32, source: SocketAddr, endpoint: &str) -> NodeConfig {
    NodeConfig::linked_to(source)
        .admin()
        .node_id(id)
        .cluster("region-b", endpoint, "3s", 2)
}

/// Waits until every node of `nodes` gives the same settled routes.
fn settled(nodes: &BTreeMap<i32, Node>) -> Result<Routes> {
    let live: BTreeSet<i32> = nodes.keys().copied().collect();
    let replicas = live.len().min(2);
    let seen = until(
        SETTLE,
        || {
            nodes
                .values()
                .map(|n| routes(n.kafka, TOPIC))
                .collect::<Result<Vec<_>>>()
        },
        |seen| {
            seen.windows(2).all(|w| w[0] == w[1]) && seen[0].settled(&live, replicas, PARTITIONS)
        },
    )?;
    seen.into_iter().next().context("no node")
}

/// The partitions' batches as `node` (or the source) serves them.
fn batches(node: SocketAddr, partitions: &[i32]) -> Result<Vec<Vec<(i64, bytes::Bytes)>>> {
    let read = |p: &i32| RawClient::connect(node)?.read_batches(TOPIC, *p, 0);
    partitions.iter().map(read).collect()
}

/// `/readyz` of a node: its status code and body.
fn readyz(node: &Node) -> Result<(u16, String)> {
    http_get(node.admin.context("admin")?, "/readyz")
}

fn coordination_reported(node: &Node) -> Result<bool> {
    Ok(readyz(node)?.1.contains("cluster coordination unavailable"))
}

/// Records confluent-kafka reads from `partitions` through `bootstrap`, up to `expected`.
fn consumed(bootstrap: SocketAddr, partitions: &[i32], expected: usize) -> Result<usize> {
    let mut args = vec![
        bootstrap.to_string(),
        TOPIC.to_string(),
        expected.to_string(),
    ];
    args.extend(partitions.iter().map(|p| p.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Ok(python("consume_partitions.py", &args)?.trim().parse()?)
}

#[test]
fn a_node_restarted_while_etcd_is_down_serves_the_assignment_it_kept() -> Result<()> {
    let mut etcd = Etcd::start()?;
    let source = Tansu::start()?;
    create_topic(source.addr, TOPIC, PARTITIONS, &[])?;
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        let node = Node::start(&member(id, source.addr, &etcd.endpoint()))?;
        nodes.insert(id, node);
    }
    produce(source.addr, TOPIC, 300, "none", PARTITIONS, 0)?;
    let before = settled(&nodes)?;
    let id = before.partitions[&0].leader;
    let led = before.led_by(id);
    let expected = batches(source.addr, &led)?;
    let node = |nodes: &BTreeMap<i32, Node>| nodes.get(&id).map(|n| n.kafka).context("node");
    until(SETTLE, || batches(node(&nodes)?, &led), |b| *b == expected)?;

    etcd.stop();
    let restarted = nodes.get_mut(&id).context("node")?;
    until(SETTLE, || coordination_reported(restarted), |said| *said)?;
    restarted.restart()?;
    // Straight from the disk: no etcd has answered this process.
    ensure!(
        coordination_reported(restarted)?,
        "{:?}",
        readyz(restarted)?
    );
    let after = routes(restarted.kafka, TOPIC)?;
    ensure!(
        after == before,
        "restarted with {after:?}, before {before:?}"
    );
    // It mirrors what it holds, and consumers read what it leads from it alone.
    produce(source.addr, TOPIC, 300, "none", PARTITIONS, 300)?;
    let expected = batches(source.addr, &led)?;
    until(SETTLE, || batches(node(&nodes)?, &led), |b| *b == expected)?;
    let want = 100 * led.len();
    let read = consumed(node(&nodes)?, &led, want)?;
    ensure!(
        read == want,
        "read {read} of {want} from node {id} without etcd"
    );

    // Back with etcd, the node follows the assignments written after the one it kept.
    etcd.resume()?;
    let restarted = nodes.get(&id).context("node")?;
    until(SETTLE, || coordination_reported(restarted), |said| !*said)?;
    let other = *nodes.keys().find(|n| **n != id).context("other")?;
    let mut gone = nodes.remove(&other).context("other")?;
    gone.process.terminate(Duration::from_secs(20))?;
    let now = settled(&nodes)?;
    ensure!(!now.brokers.contains(&other), "{now:?}");
    Ok(())
}

/// `tls = { ... }` for `[cluster]`: trust `ca`, and present `pki`'s client certificate.
fn etcd_tls(ca: &Path, client: Option<&Pki>) -> String {
    let mut entries = vec![format!("ca = {}", quoted(ca))];
    if let Some(pki) = client {
        entries.push(format!("cert = {}", quoted(&pki.path("client.pem"))));
        entries.push(format!("key = {}", quoted(&pki.path("client.key"))));
    }
    format!("{{ {} }}", entries.join(", "))
}

fn quoted(path: &Path) -> String {
    serde_json::Value::String(path.display().to_string()).to_string()
}

/// Waits until `node` leads every partition alone, as the only member of its cluster.
fn serves_alone(node: &Node) -> Result<()> {
    let alone = BTreeSet::from([1]);
    until(
        SETTLE,
        || routes(node.kafka, TOPIC),
        |r| r.settled(&alone, 1, PARTITIONS),
    )?;
    until(SETTLE, || readyz(node), |(code, _)| *code == 200)?;
    Ok(())
}

#[test]
fn a_node_reaches_etcd_over_mutual_tls_and_reports_a_ca_it_cannot_verify() -> Result<()> {
    let pki = Pki::new()?;
    let stranger = Pki::new()?;
    let etcd = Etcd::start_tls(&pki, true)?;
    let source = Tansu::start()?;
    create_topic(source.addr, TOPIC, PARTITIONS, &[])?;
    let trusted = member(1, source.addr, &etcd.endpoint())
        .cluster_entry("tls", &etcd_tls(&pki.ca(), Some(&pki)));
    let node = Node::start(&trusted)?;
    serves_alone(&node)?;

    // etcd's certificate does not chain to the CA this node trusts.
    let wrong_ca = member(2, source.addr, &etcd.endpoint())
        .cluster_entry("tls", &etcd_tls(&stranger.ca(), Some(&pki)));
    let refused = Node::start(&wrong_ca)?;
    let (code, body) = until(
        SETTLE,
        || readyz(&refused),
        |(_, body)| body.contains("certificate"),
    )?;
    ensure!(code == 503, "{code} {body}");
    ensure!(
        body.contains("cluster coordination unavailable")
            && body.contains("invalid peer certificate"),
        "{body}"
    );
    let said = [
        "cluster coordination unavailable",
        "invalid peer certificate",
    ];
    until(SETTLE, || Ok(refused.process.logged(&said)), |said| *said)?;
    ensure!(routes(node.kafka, TOPIC)?.brokers == BTreeSet::from([1]));
    Ok(())
}

#[test]
fn a_node_authenticates_to_etcd_as_a_user_and_reports_a_wrong_password() -> Result<()> {
    let pki = Pki::new()?;
    let etcd = Etcd::start_tls(&pki, false)?;
    etcd.enable_auth("etcd-s3cret")?;
    let source = Tansu::start()?;
    create_topic(source.addr, TOPIC, PARTITIONS, &[])?;
    let user = |id: i32| {
        member(id, source.addr, &etcd.endpoint())
            .cluster_entry("tls", &etcd_tls(&pki.ca(), None))
            .cluster_entry("username", "\"root\"")
    };
    let config = user(1).cluster_entry("password_env", "\"ETCD_PASSWORD\"");
    let node = Node::start_with_env(&config, &[("ETCD_PASSWORD", "etcd-s3cret")])?;
    serves_alone(&node)?;

    let dir = tempfile::tempdir()?;
    let wrong = dir.path().join("password");
    std::fs::write(&wrong, "guessed\n")?;
    let config = user(2).cluster_entry("password_file", &quoted(&wrong));
    let refused = Node::start(&config)?;
    let (code, body) = until(
        SETTLE,
        || readyz(&refused),
        |(_, body)| body.contains("authentication failed"),
    )?;
    ensure!(code == 503, "{code} {body}");
    ensure!(routes(node.kafka, TOPIC)?.brokers == BTreeSet::from([1]));
    Ok(())
}

/// Bytes of record data in partition `p`'s segments under `node`'s data directory.
fn segment_bytes(node: &Node, p: i32) -> Result<u64> {
    let dir = node.data_dir.join("topics").join(TOPIC).join(p.to_string());
    let mut total = 0;
    for entry in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
        let entry = entry?;
        if entry.path().extension().is_some_and(|e| e == "log") {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

#[test]
fn a_replica_moved_to_a_joining_node_is_removed_after_the_grace() -> Result<()> {
    const GRACE: Duration = Duration::from_secs(20);
    let etcd = Etcd::start()?;
    let source = Tansu::start()?;
    create_topic(source.addr, TOPIC, PARTITIONS, &[])?;
    let grace = format!("\"{}s\"", GRACE.as_secs());
    let config = |id: i32| {
        member(id, source.addr, &etcd.endpoint()).cluster_entry("retired_replica_grace", &grace)
    };
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        nodes.insert(id, Node::start(&config(id))?);
    }
    produce(source.addr, TOPIC, 600, "none", PARTITIONS, 0)?;
    let before = settled(&nodes)?;
    // Every replica has its partitions' data on disk.
    for (p, route) in &before.partitions {
        for r in &route.replicas {
            let node = nodes.get(r).context("replica")?;
            until(SETTLE, || segment_bytes(node, *p), |bytes| *bytes > 0)?;
        }
    }
    let joined_at = Instant::now();
    nodes.insert(4, Node::start(&config(4))?);
    let after = settled(&nodes)?;
    let (p, old) = before
        .partitions
        .iter()
        .find_map(|(p, was)| {
            let (replicas, new) = (&was.replicas, &after.partitions.get(p)?.replicas);
            let left = replicas.iter().find(|r| !new.contains(r))?;
            Some((*p, *left))
        })
        .context("no replica moved to node 4")?;
    let old_node = nodes.get(&old).context("old replica")?;
    let kept: Vec<i32> = after
        .partitions
        .iter()
        .filter(|(_, r)| r.replicas.contains(&old))
        .map(|(p, _)| *p)
        .collect();
    // Within the grace the moved replica's data is still there.
    let bytes = segment_bytes(old_node, p)?;
    ensure!(
        joined_at.elapsed() < GRACE,
        "settling took longer than the grace"
    );
    ensure!(
        bytes > 0,
        "partition {p} emptied on node {old} within the grace"
    );
    until(
        SETTLE + GRACE,
        || segment_bytes(old_node, p),
        |bytes| *bytes == 0,
    )?;
    ensure!(
        joined_at.elapsed() >= GRACE,
        "partition {p} removed from node {old} before the grace"
    );
    // The line is written just after the files go.
    let removal = format!("partition={p}");
    let said = [
        "removed the data of a replica moved to other nodes",
        &removal,
    ];
    until(SETTLE, || Ok(old_node.process.logged(&said)), |said| *said)?;
    // What it still holds stays, and is still served byte for byte by its leaders.
    for q in &kept {
        ensure!(
            segment_bytes(old_node, *q)? > 0,
            "node {old} lost partition {q}"
        );
    }
    let all: Vec<i32> = (0..PARTITIONS).collect();
    let expected = batches(source.addr, &all)?;
    for (q, route) in &after.partitions {
        let node = nodes.get(&route.leader).context("leader")?.kafka;
        let want = vec![expected[*q as usize].clone()];
        until(SETTLE, || batches(node, &[*q]), |served| *served == want)?;
    }
    Ok(())
}
