//! Consumer groups on a three-node region (RF 2, tansu source, one etcd): one node
//! coordinates each group whichever node a client asks, the others send the client
//! there, and a group's committed offsets outlive its coordinator because a commit is
//! acknowledged only once etcd holds it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use anyhow::{ensure, Context, Result};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::Value;
use shadowlink_tests::cluster::{Region, SETTLE};
use shadowlink_tests::python;
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::produce;
use shadowlink_tests::until;

const TOPIC: &str = "a_orders";
const PARTITIONS: i32 = 3;
const RECORDS: usize = 600;
const NOT_COORDINATOR: i16 = 16;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// The node `node` names as `group`'s coordinator, with the address it gives.
fn coordinator(node: SocketAddr, group: &str) -> Result<(i32, String)> {
    let request = FindCoordinatorRequest::default().with_key(text(group));
    let response: FindCoordinatorResponse =
        RawClient::connect(node)?.call(ApiKey::FindCoordinator, 3, &request)?;
    ensure!(
        response.error_code == 0,
        "FindCoordinator({group}) at {node}: error {}",
        response.error_code
    );
    let address = format!("{}:{}", response.host.as_str(), response.port);
    Ok((response.node_id.0, address))
}

/// Commits `offset` for partition `p` outside any generation; the partition's error code.
fn commit(node: SocketAddr, group: &str, p: i32, offset: i64) -> Result<i16> {
    let partition = OffsetCommitRequestPartition::default()
        .with_partition_index(p)
        .with_committed_offset(offset);
    let topic = OffsetCommitRequestTopic::default()
        .with_name(TopicName(text(TOPIC)))
        .with_partitions(vec![partition]);
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![topic]);
    let response: OffsetCommitResponse =
        RawClient::connect(node)?.call(ApiKey::OffsetCommit, 7, &request)?;
    let code = response.topics.first().and_then(|t| t.partitions.first());
    Ok(code.context("no partition in the answer")?.error_code)
}

/// `group`'s committed offsets at `node` by partition, or the group's error code.
fn committed(node: SocketAddr, group: &str) -> Result<Result<BTreeMap<i32, i64>, i16>> {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(text(TOPIC)))
            .with_partition_indexes((0..PARTITIONS).collect())]));
    let response: OffsetFetchResponse =
        RawClient::connect(node)?.call(ApiKey::OffsetFetch, 7, &request)?;
    if response.error_code != 0 {
        return Ok(Err(response.error_code));
    }
    let partitions = response.topics.iter().flat_map(|t| t.partitions.iter());
    let offsets = partitions.filter(|p| p.committed_offset >= 0);
    Ok(Ok(offsets
        .map(|p| (p.partition_index, p.committed_offset))
        .collect()))
}

/// The error codes JoinGroup, SyncGroup and Heartbeat get for `group` at `node`.
fn membership_codes(node: SocketAddr, group: &str) -> Result<[i16; 3]> {
    let mut client = RawClient::connect(node)?;
    let protocol = JoinGroupRequestProtocol::default().with_name(text("range"));
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_session_timeout_ms(6000)
        .with_rebalance_timeout_ms(6000)
        .with_protocol_type(text("consumer"))
        .with_protocols(vec![protocol]);
    let joined: JoinGroupResponse = client.call(ApiKey::JoinGroup, 5, &join)?;
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_member_id(text("m"))
        .with_generation_id(1);
    let synced: SyncGroupResponse = client.call(ApiKey::SyncGroup, 3, &sync)?;
    let beat = HeartbeatRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_member_id(text("m"))
        .with_generation_id(1);
    let beaten: HeartbeatResponse = client.call(ApiKey::Heartbeat, 3, &beat)?;
    Ok([joined.error_code, synced.error_code, beaten.error_code])
}

#[test]
fn every_node_names_one_coordinator_per_group_and_the_others_send_clients_there() -> Result<()> {
    let region = Region::start(TOPIC, PARTITIONS)?;
    region.settled(&[1, 2, 3])?;
    let mut used = BTreeSet::new();
    for g in 0..12 {
        let group = format!("group-{g}");
        let named: Vec<(i32, String)> = region
            .nodes
            .values()
            .map(|node| coordinator(node.kafka, &group))
            .collect::<Result<_>>()?;
        ensure!(named.windows(2).all(|w| w[0] == w[1]), "{group}: {named:?}");
        let (id, address) = &named[0];
        let expected = region.node(*id)?.kafka.to_string();
        ensure!(
            *address == expected,
            "{group}: node {id} named at {address}"
        );
        used.insert(*id);
    }
    ensure!(used.len() > 1, "every group on node {used:?}");
    let group = "group-0";
    let (id, _) = coordinator(region.node(1)?.kafka, group)?;
    let at = region.node(id)?.kafka;
    ensure!(
        commit(at, group, 0, 7)? == 0,
        "the coordinator refused a commit"
    );
    for (other, node) in region.nodes.iter().filter(|(n, _)| **n != id) {
        let refused = commit(node.kafka, group, 0, 9)?;
        ensure!(refused == NOT_COORDINATOR, "node {other} commit: {refused}");
        let fetched = committed(node.kafka, group)?;
        ensure!(
            fetched == Err(NOT_COORDINATOR),
            "node {other} fetch: {fetched:?}"
        );
        let codes = membership_codes(node.kafka, group)?;
        ensure!(
            codes == [NOT_COORDINATOR; 3],
            "node {other} join, sync, heartbeat: {codes:?}"
        );
    }
    let kept = committed(at, group)?;
    ensure!(kept == Ok(BTreeMap::from([(0, 7)])), "{kept:?}");
    Ok(())
}

type Record = (i32, i64);

/// Runs `consume_group.py single`: one confluent-kafka member of `group`, bootstrapped at
/// `bootstrap`, reads `count` records, commits synchronously after them, and polls
/// `idle` seconds more (a record beyond `count` would show up) before it closes.
fn consume(bootstrap: SocketAddr, group: &str, count: usize, idle: &str) -> Result<Vec<Record>> {
    let count = count.to_string();
    let bootstrap = bootstrap.to_string();
    let args = [
        bootstrap.as_str(),
        group,
        "single",
        "--topics",
        TOPIC,
        "--count",
        count.as_str(),
        "--idle",
        idle,
    ];
    let output: Value = serde_json::from_str(&python("consume_group.py", &args)?)?;
    let records = output["records"].as_array().context("no records")?;
    records
        .iter()
        .map(|r| {
            let p = i32::try_from(r[1].as_i64().context("partition")?)?;
            Ok((p, r[2].as_i64().context("offset")?))
        })
        .collect()
}

/// Where each partition's next record is after `records` were read from the start.
fn positions(records: &[Record]) -> BTreeMap<i32, i64> {
    let mut next = BTreeMap::new();
    for (p, o) in records {
        let at = next.entry(*p).or_insert(0);
        *at = (*at).max(o + 1);
    }
    next
}

#[test]
fn committed_offsets_survive_a_kill_9_of_the_groups_coordinator() -> Result<()> {
    let mut region = Region::start(TOPIC, PARTITIONS)?;
    produce(region.source.addr, TOPIC, RECORDS, "none", PARTITIONS, 0)?;
    region.settled(&[1, 2, 3])?;
    let group = "resumes";
    let first = consume(region.node(1)?.kafka, group, RECORDS / 2, "0")?;
    let commits = positions(&first);
    let (victim, _) = coordinator(region.node(1)?.kafka, group)?;
    let stored = committed(region.node(victim)?.kafka, group)?;
    ensure!(stored == Ok(commits.clone()), "{stored:?} != {commits:?}");
    region.node_mut(victim)?.process.kill9();
    let survivors: Vec<i32> = (1..=3).filter(|n| *n != victim).collect();
    region.settled(&survivors)?;
    let (successor, _) = coordinator(region.node(survivors[0])?.kafka, group)?;
    ensure!(successor != victim, "node {victim} still coordinates");
    let rest = RECORDS - first.len();
    let second = consume(region.node(survivors[1])?.kafka, group, rest, "3")?;
    for (p, (from, read)) in first_offsets(&second) {
        let resumed = commits.get(&p).copied().unwrap_or(0);
        ensure!(
            from == resumed,
            "partition {p} resumed at {from}, committed {resumed} ({read} read)"
        );
    }
    let all: Vec<Record> = first.iter().chain(&second).copied().collect();
    let distinct: BTreeSet<Record> = all.iter().copied().collect();
    ensure!(distinct.len() == all.len(), "records read twice");
    let per_partition = (RECORDS / PARTITIONS as usize) as i64;
    let expected: BTreeSet<Record> = (0..PARTITIONS)
        .flat_map(|p| (0..per_partition).map(move |o| (p, o)))
        .collect();
    ensure!(distinct == expected, "records skipped or extra");
    Ok(())
}

/// Per partition, the first offset read and how many records were.
fn first_offsets(records: &[Record]) -> BTreeMap<i32, (i64, usize)> {
    let mut first: BTreeMap<i32, (i64, usize)> = BTreeMap::new();
    for (p, o) in records {
        let entry = first.entry(*p).or_insert((*o, 0));
        entry.0 = entry.0.min(*o);
        entry.1 += 1;
    }
    first
}

#[test]
fn a_commit_while_etcd_is_stopped_is_refused_with_a_retriable_error() -> Result<()> {
    let mut region = Region::start(TOPIC, PARTITIONS)?;
    region.settled(&[1, 2, 3])?;
    let group = "etcd-away";
    let (id, _) = coordinator(region.node(2)?.kafka, group)?;
    let at = region.node(id)?.kafka;
    ensure!(commit(at, group, 0, 5)? == 0, "refused with etcd up");
    region.etcd.stop();
    let refused = commit(at, group, 0, 9)?;
    ensure!(
        refused == COORDINATOR_NOT_AVAILABLE,
        "a commit etcd never saw answered {refused}"
    );
    let kept = committed(at, group)?;
    ensure!(kept == Ok(BTreeMap::from([(0, 5)])), "while away: {kept:?}");
    region.etcd.resume()?;
    until(SETTLE, || commit(at, group, 0, 9), |code| *code == 0)?;
    let now = committed(at, group)?;
    ensure!(now == Ok(BTreeMap::from([(0, 9)])), "after: {now:?}");
    Ok(())
}
