//! Failover in a three-node shadow (replication factor 2, a tansu source): the link's
//! topics become owned partitions whose leader takes writes and whose other replica
//! follows it; `acks=all` waits for that replica, so killing a leader loses nothing a
//! producer was told was written.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::batch::testing::build_batch;
use shadowlink_tests::cluster::{records, routes, signal_process, Region, Routes};
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::produce;
use shadowlink_tests::{http_post, until, Client};

const TOPIC: &str = "a_orders";
const SETTLE: Duration = Duration::from_secs(60);

/// Fails every topic of link `from-a` over through node 1's admin API; returns each
/// partition's new leader epoch.
fn fail_over(region: &Region) -> Result<BTreeMap<i32, i32>> {
    let admin = region.node(1)?.admin.context("admin")?;
    let (code, body) = http_post(admin, "/v1/links/from-a/failover", r#"{"all": true}"#)?;
    ensure!(code == 200, "failover answered {code}: {body}");
    let report: serde_json::Value = serde_json::from_str(&body)?;
    let topic = report
        .as_array()
        .and_then(|t| t.iter().find(|t| t["topic"] == TOPIC))
        .context("the report names no a_orders")?;
    ensure!(topic["state"] == "failed_over", "{topic}");
    let mut epochs = BTreeMap::new();
    for p in topic["partitions"].as_array().context("partitions")? {
        let index = p["partition"].as_i64().context("partition")? as i32;
        let epoch = p["leader_epoch"].as_i64().context("leader_epoch")? as i32;
        epochs.insert(index, epoch);
    }
    Ok(epochs)
}

/// Waits until every node of `live` routes the topic alike: `partitions` partitions,
/// each led by one of them on two replicas, in the epoch `epochs` gives it when given.
fn settled(
    region: &Region,
    live: &[i32],
    partitions: usize,
    epochs: Option<&BTreeMap<i32, i32>>,
) -> Result<Routes> {
    let wanted: BTreeSet<i32> = live.iter().copied().collect();
    let mut seen = until(
        SETTLE,
        || {
            live.iter()
                .map(|id| routes(region.node(*id)?.kafka, TOPIC))
                .collect::<Result<Vec<_>>>()
        },
        |seen| {
            let agreed = seen.windows(2).all(|w| w[0] == w[1]);
            agreed
                && seen[0].partitions.len() == partitions
                && seen[0].partitions.iter().all(|(p, r)| {
                    wanted.contains(&r.leader)
                        && r.replicas.len() == 2
                        && epochs.is_none_or(|e| e.get(p) == Some(&r.leader_epoch))
                })
        },
    )?;
    Ok(seen.remove(0))
}

/// Waits until each partition's leader holds `records` records mirrored from the source.
fn mirrored(region: &Region, routes: &Routes, records: i64) -> Result<()> {
    for (p, route) in &routes.partitions {
        let leader = region.node(route.leader)?.kafka;
        let end = || RawClient::connect(leader)?.list_offset(TOPIC, *p, -1);
        until(SETTLE, end, |end| *end == records)?;
    }
    Ok(())
}

fn unix_now() -> f64 {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
    now.map_or(0.0, |d| d.as_secs_f64())
}

#[test]
fn killing_a_failed_over_leader_loses_nothing_acknowledged() -> Result<()> {
    const PARTITIONS: i32 = 3;
    let mut region = Region::start_with(TOPIC, PARTITIONS, 3, "3s")?;
    produce(region.source.addr, TOPIC, 300, "none", PARTITIONS, 0)?;
    let before = settled(&region, &[1, 2, 3], 3, None)?;
    mirrored(&region, &before, 100)?;
    let epochs = fail_over(&region)?;
    let owned = settled(&region, &[1, 2, 3], 3, Some(&epochs))?;
    ensure!(
        owned.leaders() == before.leaders(),
        "failover moved leaders: {owned:?}"
    );
    let args = [
        region.bootstrap(),
        TOPIC.to_string(),
        "--rate".into(),
        "200".into(),
        "--partitions".into(),
        PARTITIONS.to_string(),
        "--seconds".into(),
        "14".into(),
        "--key-prefix".into(),
        "owned-".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let producer = Client::Python
        .command("produce_through.py", &args)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start produce_through.py")?;
    // Writes run for a while before the kill, and keep running after it. The follower
    // of partition 0 is stopped for a moment before its leader dies: writes the leader
    // took meanwhile are on no other replica, so none of them may have been acknowledged.
    std::thread::sleep(Duration::from_secs(3));
    let victim = owned.partitions[&0].leader;
    let follower = *(owned.partitions[&0].isr.iter())
        .find(|n| **n != victim)
        .context("no follower in sync")?;
    let follower_pid = region.node(follower)?.process.pid();
    signal_process(follower_pid, "-STOP")?;
    std::thread::sleep(Duration::from_secs(1));
    let killed_at = unix_now();
    region.node_mut(victim)?.process.kill9();
    signal_process(follower_pid, "-CONT")?;
    let survivors: Vec<i32> = (1..=3).filter(|n| *n != victim).collect();
    let moved_at = Instant::now();
    until(
        SETTLE,
        || routes(region.node(survivors[0])?.kafka, TOPIC),
        |r| r.partitions.values().all(|route| route.leader != victim),
    )?;
    println!(
        "leadership of node {victim}'s owned partitions moved {} ms after the kill was seen",
        moved_at.elapsed().as_millis()
    );
    let acked = records(producer, "produce_through.py")?;
    let after = settled(&region, &survivors, 3, None)?;
    for (p, route) in &after.partitions {
        let was = &owned.partitions[p];
        if was.leader == victim {
            ensure!(
                was.isr.contains(&route.leader) && route.leader_epoch > was.leader_epoch,
                "partition {p} moved from {was:?} to {route:?}"
            );
        }
    }
    let led: BTreeSet<i32> = (owned.partitions.iter())
        .filter(|(_, r)| r.leader == victim)
        .map(|(p, _)| *p)
        .collect();
    let written_after = acked
        .iter()
        .filter(|(p, _, _, t)| led.contains(p) && *t > killed_at + 0.5)
        .count();
    ensure!(
        written_after > 0,
        "no write to {led:?} was acknowledged after the kill"
    );
    // Everything the new leaders hold, read back through the survivors.
    let mut total = 0;
    for (p, route) in &after.partitions {
        let leader = region.node(route.leader)?.kafka;
        total += RawClient::connect(leader)?.list_offset(TOPIC, *p, -1)?;
    }
    let dir = tempfile::tempdir()?;
    let count_file = dir.path().join("count");
    std::fs::write(&count_file, total.to_string())?;
    let bootstrap: Vec<String> = (survivors.iter())
        .map(|id| Ok(region.node(*id)?.kafka.to_string()))
        .collect::<Result<_>>()?;
    let consumer = Client::Python
        .command(
            "consume_until.py",
            &[
                &bootstrap.join(","),
                TOPIC,
                &PARTITIONS.to_string(),
                count_file.to_str().context("utf-8 path")?,
                "--timeout",
                "90",
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start consume_until.py")?;
    let read = records(consumer, "consume_until.py")?;
    ensure!(read.len() as i64 == total, "read {} of {total}", read.len());
    let by_position: BTreeMap<(i32, i64), &str> = read
        .iter()
        .map(|(p, o, k, _)| ((*p, *o), k.as_str()))
        .collect();
    ensure!(by_position.len() == read.len(), "a position was read twice");
    let mut copies: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, _, key, _) in &read {
        *copies.entry(key.as_str()).or_default() += 1;
    }
    for (p, o, key, _) in &acked {
        ensure!(
            by_position.get(&(*p, *o)) == Some(&key.as_str()),
            "{key}, acknowledged at {p}/{o}, is lost (found {:?})",
            by_position.get(&(*p, *o))
        );
        ensure!(copies[key.as_str()] == 1, "{key} was written twice");
    }
    println!(
        "{} acknowledged writes, {written_after} of them to the moved partitions after the kill, all read back once",
        acked.len()
    );
    Ok(())
}

/// Produce v9 of one batch with acks=all and `timeout_ms`: the partition's error code.
fn produce_acks_all(
    client: &mut RawClient,
    partition: i32,
    batch: Bytes,
    timeout_ms: i32,
) -> Result<i16> {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request)?;
    let answer = response
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .context("empty Produce response")?;
    Ok(answer.error_code)
}

#[test]
fn acks_all_waits_for_the_in_sync_follower() -> Result<()> {
    const REQUEST_TIMED_OUT: i16 = 7;
    const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    // A lease far longer than the follower is stopped: etcd keeps it in sync.
    let region = Region::start_with(TOPIC, 1, 3, "20s")?;
    produce(region.source.addr, TOPIC, 10, "none", 1, 0)?;
    let before = settled(&region, &[1, 2, 3], 1, None)?;
    mirrored(&region, &before, 10)?;
    let epochs = fail_over(&region)?;
    let owned = settled(&region, &[1, 2, 3], 1, Some(&epochs))?;
    let route = &owned.partitions[&0];
    let follower = *route
        .isr
        .iter()
        .find(|n| **n != route.leader)
        .context("no follower in sync")?;
    let leader = region.node(route.leader)?.kafka;
    let batch = |n: i64| build_batch(0, 0, &[(None, Some(format!("v{n}").as_bytes()))], 1_000);
    let mut client = RawClient::connect(leader)?;
    // NOT_LEADER_OR_FOLLOWER, retriable, until the leader has taken the partition over.
    let first = || produce_acks_all(&mut RawClient::connect(leader)?, 0, batch(0), 10_000);
    until(SETTLE, first, |code| *code != NOT_LEADER_OR_FOLLOWER).and_then(|code| {
        ensure!(
            code == 0,
            "acks=all with the follower running answered {code}"
        );
        Ok(())
    })?;

    let pid = region.node(follower)?.process.pid();
    signal_process(pid, "-STOP")?;
    let started = Instant::now();
    let code = produce_acks_all(&mut client, 0, batch(1), 2_000);
    let waited = started.elapsed();
    let pending = std::thread::spawn(move || {
        let mut client = RawClient::connect(leader)?;
        let started = Instant::now();
        let code = produce_acks_all(&mut client, 0, batch(2), 30_000)?;
        anyhow::Ok((code, started.elapsed()))
    });
    std::thread::sleep(Duration::from_secs(1));
    let answered_while_stopped = pending.is_finished();
    signal_process(pid, "-CONT")?;
    let code = code?;
    ensure!(
        code == REQUEST_TIMED_OUT && waited >= Duration::from_secs(2),
        "with the follower stopped, acks=all answered {code} after {waited:?}"
    );
    ensure!(
        !answered_while_stopped,
        "acks=all was answered while the follower was stopped"
    );
    let (code, took) = pending.join().map_err(|_| anyhow::anyhow!("panicked"))??;
    ensure!(
        code == 0,
        "acks=all answered {code} after the follower resumed"
    );
    println!("acks=all answered {took:?} after it was sent, once the follower resumed");
    Ok(())
}
