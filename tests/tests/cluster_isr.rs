//! The in-sync set of a failed-over partition in a three-node shadow (replication
//! factor 2, a tansu source): a follower that stops fetching leaves the set after
//! `replica_lag_time`, so `acks=all` writes are acknowledged again, and rejoins once it
//! has caught up, as does a replacement replica; consumers read only up to the high watermark, what every member of
//! the set holds.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use shadowlink_tests::cluster::{fetch_at, produce_one, signal, Region, Routes};
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::produce;
use shadowlink_tests::{until, NodeConfig};

const TOPIC: &str = "a_orders";
const SETTLE: Duration = Duration::from_secs(60);
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const ACKS_ALL: i16 = -1;
const ACKS_ONE: i16 = 1;
const READ_UNCOMMITTED: i8 = 0;

/// A failed-over one-partition region: (region, leader, follower, bystander). The lease
/// outlasts every stop of a follower and every wait for `acks=all`, so only the lag
/// moves the in-sync set. The follower is never the assigner: a stopped assigner applies
/// no change to the set until its lease ends, as a stopped Kafka controller does.
fn owned_region(replica_lag_time: &str) -> Result<(Region, i32, i32, i32)> {
    let lag = format!("\"{replica_lag_time}\"");
    let configure = |config: NodeConfig| config.cluster_entry("replica_lag_time", &lag);
    let mut region = Region::start_configured(TOPIC, 1, 3, "40s", configure)?;
    produce(region.source.addr, TOPIC, 10, "none", 1, 0)?;
    let mut mirrored = region.settled(&[1, 2, 3])?;
    let placed = &mirrored.partitions[&0];
    let assigner = region.assigner()?;
    if placed.leader != assigner && placed.replicas.contains(&assigner) {
        // The assigner would be the follower. While the leader is stopped, the assigner,
        // its only other replica, takes the partition over; the leader then comes back
        // as a plain member and the partition stays where it is.
        let leader = placed.leader;
        println!(
            "node {assigner}, the assigner, follows: node {leader} stops until {assigner} leads"
        );
        region.node_mut(leader)?.stop_gracefully(SETTLE)?;
        let live: Vec<i32> = (1..=3).filter(|n| *n != leader).collect();
        let moved = |r: &Routes| r.partitions[&0].leader == assigner;
        until(SETTLE, || region.settled(&live), moved)?;
        region.node_mut(leader)?.start_again()?;
        mirrored = region.settled(&[1, 2, 3])?;
    }
    let placed = &mirrored.partitions[&0];
    ensure!(
        placed.leader == assigner || !placed.replicas.contains(&assigner),
        "node {assigner}, the assigner, still follows the partition"
    );
    let leader = region.node(mirrored.partitions[&0].leader)?.kafka;
    let end = || RawClient::connect(leader)?.list_offset(TOPIC, 0, -1);
    until(SETTLE, end, |end| *end == 10)?;
    let owned = region.fail_over(&[1, 2, 3])?;
    let route = &owned.partitions[&0];
    let follower = *(route.isr.iter())
        .find(|n| **n != route.leader)
        .context("no follower in the in-sync set")?;
    let bystander = (1..=3)
        .find(|n| *n != route.leader && *n != follower)
        .context("no third node")?;
    // The leader answers NOT_LEADER_OR_FOLLOWER until it has taken the partition over.
    let addr = region.node(route.leader)?.kafka;
    let first = || produce_one(addr, TOPIC, 0, ACKS_ALL, 10_000, "first");
    let (code, _) = until(SETTLE, first, |(code, _)| *code != NOT_LEADER_OR_FOLLOWER)?;
    ensure!(code == 0, "the first acks=all write answered {code}");
    Ok((region, route.leader, follower, bystander))
}

#[test]
fn a_stopped_follower_leaves_the_in_sync_set_after_the_lag_and_rejoins_caught_up() -> Result<()> {
    let (mut region, leader, follower, bystander) = owned_region("2s")?;
    let addr = region.node(leader)?.kafka;
    signal(region.node(follower)?, "-STOP")?;
    let started = Instant::now();
    let written = produce_one(addr, TOPIC, 0, ACKS_ALL, 15_000, "while-stopped");
    let waited = started.elapsed();
    let (code, offset) = written?;
    ensure!(
        code == 0,
        "with the follower stopped, acks=all answered {code} after {waited:?}"
    );
    // Answered only once the set shrank: the follower fetched up to the moment it
    // stopped, and the leader waited the lag from its last catching up.
    ensure!(
        waited >= Duration::from_secs(1),
        "acks=all answered after {waited:?}, before the lag"
    );
    let shrunk = region.isr_becomes(&[leader, bystander], 0, &[leader])?;
    ensure!(
        shrunk.partitions[&0].replicas.contains(&follower),
        "the follower was dropped as a lost node, not from the set: {shrunk:?}"
    );
    println!("acks=all answered {waited:?} after the follower stopped; set {shrunk:?}");
    let started = Instant::now();
    for n in 0..5 {
        let (code, _) = produce_one(addr, TOPIC, 0, ACKS_ALL, 20_000, &format!("alone-{n}"))?;
        ensure!(code == 0, "acks=all with the set shrunk answered {code}");
    }
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "five acks=all writes to the leader alone took {:?}",
        started.elapsed()
    );
    signal(region.node(follower)?, "-CONT")?;
    region.isr_becomes(&[1, 2, 3], 0, &[leader, follower])?;
    // In the set again: this write is acknowledged only once the follower holds it.
    let (code, last) = produce_one(addr, TOPIC, 0, ACKS_ALL, 20_000, "rejoined")?;
    ensure!(
        code == 0 && last > offset,
        "after the rejoin: {code} at {last}"
    );
    let held = RawClient::connect(addr)?.read_batches(TOPIC, 0, 0)?;
    ensure!(
        held.last().is_some_and(|(base, _)| *base == last),
        "the leader serves up to {:?}, not {last}",
        held.last().map(|(b, _)| b)
    );
    // The leader hands over on SIGTERM; the follower, in the set, leads next and
    // serves exactly the bytes the leader held.
    region.node_mut(leader)?.process.terminate(SETTLE)?;
    let moved = until(
        SETTLE,
        || region.routes(region.node(follower)?.kafka),
        |r| r.partitions.get(&0).is_some_and(|p| p.leader == follower),
    )?;
    println!("leadership moved to the follower: {moved:?}");
    let next = region.node(follower)?.kafka;
    let copied = until(
        SETTLE,
        || RawClient::connect(next)?.read_batches(TOPIC, 0, 0),
        |copied| copied.len() >= held.len(),
    )?;
    ensure!(
        copied == held,
        "the follower holds {} batches that differ from the leader's {}",
        copied.len(),
        held.len()
    );
    // The replacement replica fills itself from the new leader and then joins the set.
    let replaced = region.isr_becomes(&[follower, bystander], 0, &[follower, bystander])?;
    ensure!(
        replaced.partitions[&0].replicas.contains(&bystander),
        "{replaced:?}"
    );
    Ok(())
}

#[test]
fn a_consumer_reads_only_what_every_member_of_the_in_sync_set_holds() -> Result<()> {
    let (region, leader, follower, bystander) = owned_region("6s")?;
    let addr = region.node(leader)?.kafka;

    // The follower holds the write once it resumes: then, and not before, it is read.
    signal(region.node(follower)?, "-STOP")?;
    let (code, first) = produce_one(addr, TOPIC, 0, ACKS_ONE, 10_000, "unreplicated")?;
    ensure!(code == 0, "acks=1 answered {code}");
    hidden(addr, first)?;
    signal(region.node(follower)?, "-CONT")?;
    let seen = until(
        SETTLE,
        || fetch_at(addr, TOPIC, 0, first, READ_UNCOMMITTED),
        |f| !f.batches.is_empty(),
    )?;
    ensure!(
        seen.batches[0].0 == first && seen.high_watermark > first,
        "{seen:?}"
    );
    let routes = region.routes(addr)?;
    ensure!(
        routes.partitions[&0].isr.len() == 2,
        "the set shrank, so this did not show the follower's copy counted: {routes:?}"
    );

    // The follower stays stopped: the write is read once the set has dropped it.
    signal(region.node(follower)?, "-STOP")?;
    let (code, second) = produce_one(addr, TOPIC, 0, ACKS_ONE, 10_000, "dropped")?;
    ensure!(code == 0, "acks=1 answered {code}");
    hidden(addr, second)?;
    region.isr_becomes(&[leader, bystander], 0, &[leader])?;
    let read = fetch_at(addr, TOPIC, 0, second, READ_UNCOMMITTED)?;
    ensure!(
        read.batches.first().is_some_and(|(b, _)| *b == second),
        "with the set shrunk to the leader: {read:?}"
    );
    signal(region.node(follower)?, "-CONT")?;
    region.isr_becomes(&[1, 2, 3], 0, &[leader, follower])?;
    Ok(())
}

/// The record at `offset`, on the leader only, is neither fetched nor counted as the
/// log's end: the high watermark, the last stable offset and ListOffsets latest stop
/// before it, while what is below it is still read.
fn hidden(leader: std::net::SocketAddr, offset: i64) -> Result<()> {
    let at = fetch_at(leader, TOPIC, 0, offset, READ_UNCOMMITTED)?;
    ensure!(
        at.error_code == 0 && at.batches.is_empty() && at.high_watermark == offset,
        "an unreplicated write is visible: {at:?}"
    );
    ensure!(
        at.last_stable_offset <= at.high_watermark,
        "last stable offset above the high watermark: {at:?}"
    );
    let below = fetch_at(leader, TOPIC, 0, offset - 1, READ_UNCOMMITTED)?;
    ensure!(
        below.batches.iter().all(|(b, _)| *b < offset) && !below.batches.is_empty(),
        "the record below the write: {below:?}"
    );
    let latest = RawClient::connect(leader)?.list_offset(TOPIC, 0, -1)?;
    ensure!(
        latest == offset,
        "ListOffsets latest is {latest}, not {offset}"
    );
    Ok(())
}
