//! Owned topics created on a three-node cluster (replication factor 2): through
//! CreateTopics on any node or `[[topics]]` in the shared config, recorded once in etcd,
//! led by one replica and copied by the other, so killing a leader loses nothing a
//! producer was told was written, and another region can mirror them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use anyhow::{ensure, Context, Result};
use shadowlink_protocol::batch::testing::build_batch;
use shadowlink_tests::cluster::{log_bytes, records, routes, Owners, Routes};
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::{eventually, until, Client, Node, NodeConfig};

const SETTLE: Duration = Duration::from_secs(60);
const NOT_LEADER_OR_FOLLOWER: i16 = 6;

fn unix_now() -> f64 {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
    now.map_or(0.0, |d| d.as_secs_f64())
}

/// Creates `topic` with kafka-python's admin client through `node`, then asks again:
/// the second answer must be TOPIC_ALREADY_EXISTS.
fn create(node: SocketAddr, topic: &str, partitions: i32, configs: &[&str]) -> Result<()> {
    let (node, partitions) = (node.to_string(), partitions.to_string());
    let mut args = vec![node.as_str(), topic, partitions.as_str(), "2"];
    args.extend(configs);
    let out = Client::Python.run("create_replicated.py", &args)?;
    let answers: Vec<&str> = out.lines().collect();
    ensure!(
        answers == ["OK", "TopicAlreadyExistsError"],
        "creating {topic} twice answered {answers:?}"
    );
    Ok(())
}

/// Runs produce_through.py (idempotent, acks=all) against `bootstrap` for `seconds`.
fn producer(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    seconds: u32,
) -> Result<std::process::Child> {
    let args = [
        bootstrap.to_string(),
        topic.to_string(),
        "--rate".into(),
        "200".into(),
        "--partitions".into(),
        partitions.to_string(),
        "--seconds".into(),
        seconds.to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Client::Python
        .command("produce_through.py", &args)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start produce_through.py")
}

/// Reads every partition from the start through `bootstrap` until `total` records.
fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    total: i64,
) -> Result<Vec<(i32, i64, String, f64)>> {
    let dir = tempfile::tempdir()?;
    let count_file = dir.path().join("count");
    std::fs::write(&count_file, total.to_string())?;
    let partitions = partitions.to_string();
    let args = [
        bootstrap,
        topic,
        partitions.as_str(),
        count_file.to_str().context("utf-8 path")?,
        "--timeout",
        "90",
    ];
    let consumer = Client::Python
        .command("consume_until.py", &args)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start consume_until.py")?;
    records(consumer, "consume_until.py")
}

/// Every acknowledged key read back once, at the offset it was acknowledged at.
fn check_acknowledged(
    acked: &[(i32, i64, String, f64)],
    read: &[(i32, i64, String, f64)],
) -> Result<()> {
    let by_position: BTreeMap<(i32, i64), &str> = read
        .iter()
        .map(|(p, o, k, _)| ((*p, *o), k.as_str()))
        .collect();
    ensure!(by_position.len() == read.len(), "a position was read twice");
    let mut copies: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, _, key, _) in read {
        *copies.entry(key.as_str()).or_default() += 1;
    }
    for (p, o, key, _) in acked {
        ensure!(
            by_position.get(&(*p, *o)) == Some(&key.as_str()),
            "{key}, acknowledged at {p}/{o}, is lost (found {:?})",
            by_position.get(&(*p, *o))
        );
        ensure!(copies[key.as_str()] == 1, "{key} was written twice");
    }
    Ok(())
}

#[test]
fn killing_the_leader_of_a_created_topic_loses_nothing_acknowledged() -> Result<()> {
    const TOPIC: &str = "orders";
    const PARTITIONS: i32 = 3;
    let mut region = Owners::start(3, |c| c)?;
    create(
        region.node(1)?.kafka,
        TOPIC,
        PARTITIONS,
        &["retention.ms=3600000"],
    )?;
    let placed = region.placed(TOPIC, &[1, 2, 3], 2, PARTITIONS)?;
    for route in placed.partitions.values() {
        ensure!(
            route.isr == route.replicas && route.leader_epoch == 0,
            "a new partition placed as {route:?}"
        );
    }
    let configs = Client::Python.run(
        "admin.py",
        &[&region.node(3)?.kafka.to_string(), "configs", TOPIC],
    )?;
    ensure!(
        configs.lines().any(|l| l == "retention.ms=3600000"),
        "DescribeConfigs through node 3 answered {configs}"
    );
    // A replica that does not lead partition 0 refuses writes to it.
    let victim = placed.partitions[&0].leader;
    let follower = *(placed.partitions[&0].replicas.iter())
        .find(|n| **n != victim)
        .context("no follower")?;
    let batch = build_batch(0, 0, &[(None, Some(b"stray".as_slice()))], 1_000);
    let (code, _) = RawClient::connect(region.node(follower)?.kafka)?.produce(TOPIC, 0, batch)?;
    ensure!(
        code == NOT_LEADER_OR_FOLLOWER,
        "a follower answered Produce with {code}"
    );

    let survivors: Vec<i32> = (1..=3).filter(|n| *n != victim).collect();
    // Through a node that survives, not the one the topic was created through if it can.
    let through = *survivors.last().context("no survivor")?;
    let writes = producer(&region.bootstrap(&[through])?, TOPIC, PARTITIONS, 12)?;
    std::thread::sleep(Duration::from_secs(3));
    let killed_at = unix_now();
    region.node_mut(victim)?.process.kill9();
    until(
        SETTLE,
        || routes(region.node(survivors[0])?.kafka, TOPIC),
        |r| r.partitions.values().all(|route| route.leader != victim),
    )?;
    let acked = records(writes, "produce_through.py")?;
    let after = region.placed(TOPIC, &survivors, 2, PARTITIONS)?;
    let led: BTreeSet<i32> = placed.led_by(victim).into_iter().collect();
    for p in &led {
        let (was, now) = (&placed.partitions[p], &after.partitions[p]);
        ensure!(
            was.isr.contains(&now.leader) && now.leader_epoch > was.leader_epoch,
            "partition {p} moved from {was:?} to {now:?}"
        );
    }
    let moved_writes = (acked.iter())
        .filter(|(p, _, _, t)| led.contains(p) && *t > killed_at + 0.5)
        .count();
    ensure!(
        moved_writes > 0,
        "no write to {led:?} was acknowledged after the kill"
    );

    let mut total = 0;
    for (p, route) in &after.partitions {
        total +=
            RawClient::connect(region.node(route.leader)?.kafka)?.list_offset(TOPIC, *p, -1)?;
    }
    let read = read_all(&region.bootstrap(&survivors)?, TOPIC, PARTITIONS, total)?;
    ensure!(read.len() as i64 == total, "read {} of {total}", read.len());
    check_acknowledged(&acked, &read)?;
    replacements_converge(&region, &placed, &after)?;
    println!(
        "{} acknowledged writes, {moved_writes} to the moved partitions after the kill, all read back once",
        acked.len()
    );
    Ok(())
}

/// Each replica added in place of a lost one ends byte-identical to its leader.
fn replacements_converge(region: &Owners, before: &Routes, after: &Routes) -> Result<()> {
    let mut replaced = 0;
    for (p, now) in &after.partitions {
        let was = &before.partitions[p];
        for added in now.replicas.iter().filter(|r| !was.replicas.contains(r)) {
            let (leader, copy) = (region.node(now.leader)?, region.node(*added)?);
            let same = || {
                Ok((
                    log_bytes(leader, "orders", *p)?,
                    log_bytes(copy, "orders", *p)?,
                ))
            };
            let (bytes, _) = until(SETTLE, same, |(l, c)| !l.is_empty() && l == c)?;
            println!(
                "partition {p}: replacement node {added} holds the leader's {} bytes",
                bytes.len()
            );
            replaced += 1;
        }
    }
    ensure!(
        replaced > 0,
        "no replica was replaced: {before:?} -> {after:?}"
    );
    Ok(())
}

#[test]
fn topics_declared_in_the_shared_config_are_created_once() -> Result<()> {
    const TOPIC: &str = "declared";
    let region = Owners::start(3, |c| c.topic(TOPIC, 3))?;
    let placed = region.placed(TOPIC, &[1, 2, 3], 2, 3)?;
    for route in placed.partitions.values() {
        ensure!(
            route.isr == route.replicas && route.leader_epoch == 0,
            "a declared partition placed as {route:?}"
        );
    }
    let creators: Vec<i32> = (region.nodes.iter())
        .filter(|(_, n)| n.process.logged(&["topic created in the cluster", TOPIC]))
        .map(|(id, _)| *id)
        .collect();
    ensure!(creators.len() == 1, "nodes {creators:?} created {TOPIC}");
    let leader = region.node(placed.partitions[&1].leader)?.kafka;
    let batch = build_batch(0, 0, &[(None, Some(b"declared".as_slice()))], 1_000);
    let (code, offset) = eventually(SETTLE, || {
        let answer = RawClient::connect(leader)?.produce(TOPIC, 1, batch.clone())?;
        Ok((answer.0 != NOT_LEADER_OR_FOLLOWER).then_some(answer))
    })?;
    ensure!(
        (code, offset) == (0, 0),
        "Produce to the leader answered {code} at {offset}"
    );
    let stored = RawClient::connect(leader)?.read_batches(TOPIC, 1, 0)?;
    ensure!(
        stored.len() == 1,
        "the leader holds {} batches",
        stored.len()
    );
    Ok(())
}

/// Every partition of `topic` holds the same batches on `mirror` as on its leader.
fn mirrors_leaders(
    region: &Owners,
    routes: &Routes,
    mirror: SocketAddr,
    topic: &str,
) -> Result<Option<usize>> {
    let mut batches = 0;
    for (p, route) in &routes.partitions {
        let expected =
            RawClient::connect(region.node(route.leader)?.kafka)?.read_batches(topic, *p, 0)?;
        let actual = RawClient::connect(mirror)?.read_batches(topic, *p, 0)?;
        if actual.len() < expected.len() {
            return Ok(None);
        }
        ensure!(actual == expected, "{topic}-{p} differs on the mirror");
        batches += expected.len();
    }
    Ok(Some(batches))
}

#[test]
fn another_region_mirrors_a_created_topic_through_a_leader_move() -> Result<()> {
    const TOPIC: &str = "a_owned";
    let mut region = Owners::start(3, |c| c)?;
    create(region.node(2)?.kafka, TOPIC, 2, &[])?;
    let placed = region.placed(TOPIC, &[1, 2, 3], 2, 2)?;
    let all = region.bootstrap(&[1, 2, 3])?;
    let acked = records(producer(&all, TOPIC, 2, 2)?, "produce_through.py")?;
    ensure!(!acked.is_empty(), "nothing was acknowledged");
    let bootstrap: Vec<String> = all.split(',').map(|a| format!("{a:?}")).collect();
    let config = NodeConfig::linked_to(region.node(1)?.kafka)
        .link(|l| l.entry("bootstrap", &format!("[{}]", bootstrap.join(", "))));
    let mirror = Node::start(&config)?;
    eventually(SETTLE, || {
        mirrors_leaders(&region, &placed, mirror.kafka, TOPIC)
    })?;

    let victim = placed.partitions[&0].leader;
    region.node_mut(victim)?.process.kill9();
    let survivors: Vec<i32> = (1..=3).filter(|n| *n != victim).collect();
    let moved = region.placed(TOPIC, &survivors, 2, 2)?;
    ensure!(
        moved.partitions[&0].leader_epoch == 1,
        "after the move: {moved:?}"
    );
    let more = records(
        producer(&region.bootstrap(&survivors)?, TOPIC, 2, 2)?,
        "produce_through.py",
    )?;
    ensure!(!more.is_empty(), "nothing was acknowledged after the move");
    let batches = eventually(SETTLE, || {
        let same = mirrors_leaders(&region, &moved, mirror.kafka, TOPIC)?;
        Ok(same.filter(|n| *n > 0))
    })?;
    let written = (acked.len() + more.len()) as i64;
    let mut end = 0;
    for p in 0..2 {
        end += RawClient::connect(mirror.kafka)?.list_offset(TOPIC, p, -1)?;
    }
    ensure!(
        end == written,
        "the mirror ends at {end} records of {written} written"
    );
    println!("{batches} batches mirrored byte-identical at their offsets across the leader move");
    Ok(())
}
