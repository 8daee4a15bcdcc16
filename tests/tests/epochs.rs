//! Leader epochs (KIP-320) as clients see them on a mirror: requests carrying a stale or
//! unknown epoch are refused, the advertised epoch never goes backwards (not across a
//! restart, not at failover), and a consumer detects a truncation of what it read.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::batch::testing::build_batch;
use shadowlink_protocol::batch::RecordBatch;
use shadowlink_tests::fake::{FakeBroker, FakeLog};
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::mirrored;
use shadowlink_tests::{
    eventually, free_port, python, shadowlink, until, Client, Node, NodeConfig,
};

const FENCED_LEADER_EPOCH: i16 = 74;
const UNKNOWN_LEADER_EPOCH: i16 = 75;

/// One single-record batch per offset in `offsets`, all in leader epoch `epoch`.
fn batches(offsets: std::ops::Range<i64>, epoch: i32, tag: &str) -> Vec<Bytes> {
    offsets
        .map(|o| {
            let value = format!("{tag}-{o}");
            build_batch(o, epoch, &[(None, Some(value.as_bytes()))], 1_000 + o)
        })
        .collect()
}

fn source_with(topic: &str, log: FakeLog) -> Result<FakeBroker> {
    FakeBroker::start(BTreeMap::from([(topic.to_string(), vec![log])]))
}

/// Epoch 0 at offsets 0..10, then epoch `later` at 10..15: a log before its leader
/// changes.
fn before_the_change(later: i32) -> Vec<Bytes> {
    let tail = batches(10..15, later, &format!("e{later}"));
    batches(0..10, 0, "e0").into_iter().chain(tail).collect()
}

/// The new leader's log: `before` up to offset `agreed`, then epoch `epoch` up to 20.
fn after_the_change(before: &[Bytes], agreed: usize, epoch: i32) -> Vec<Bytes> {
    let tail = batches(agreed as i64..20, epoch, &format!("e{epoch}"));
    before[..agreed].iter().cloned().chain(tail).collect()
}

/// A scripted source holding `batches` in `topic`-0.
fn scripted(topic: &str, batches: &[Bytes]) -> Result<FakeBroker> {
    let log = FakeLog {
        batches: batches.to_vec(),
        ..FakeLog::default()
    };
    source_with(topic, log)
}

/// A scripted source holding [`before_the_change`]`(later)` in `topic`-0, and a node
/// that has mirrored all of it.
fn mirrored_before_the_change(topic: &str, later: i32) -> Result<(FakeBroker, Node, Vec<Bytes>)> {
    let before = before_the_change(later);
    let source = scripted(topic, &before)?;
    let node = Node::start(&NodeConfig::linked_to(source.addr))?;
    eventually(Duration::from_secs(30), || mirrored(&node, topic, &before))?;
    Ok((source, node, before))
}

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// The leader epoch the node's Metadata reports for `topic`-0.
fn metadata_epoch(node: &Node, topic: &str) -> Result<i32> {
    let request = MetadataRequest::default().with_topics(None);
    let response: MetadataResponse =
        RawClient::connect(node.kafka)?.call(ApiKey::Metadata, 9, &request)?;
    let topic = response
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(topic))
        .with_context(|| format!("{topic} not in metadata"))?;
    Ok(topic.partitions[0].leader_epoch)
}

/// Fetch v12 of `topic`-0 with `partition`'s fields and a 1 MiB limit.
fn fetch_v12(node: &Node, topic: &str, partition: FetchPartition) -> Result<PartitionData> {
    let partition = partition
        .with_partition(0)
        .with_partition_max_bytes(1 << 20);
    let request = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![partition])]);
    let response: FetchResponse =
        RawClient::connect(node.kafka)?.call(ApiKey::Fetch, 12, &request)?;
    (response.responses.into_iter())
        .flat_map(|t| t.partitions)
        .next()
        .context("no partition in the response")
}

/// Fetch v12 of `topic`-0 at offset 0 with `current` as the client's leader epoch:
/// (error code, bytes of records).
fn fetch(node: &Node, topic: &str, current: i32) -> Result<(i16, usize)> {
    let asked = FetchPartition::default()
        .with_current_leader_epoch(current)
        .with_fetch_offset(0);
    let p = fetch_v12(node, topic, asked)?;
    Ok((p.error_code, p.records.as_ref().map_or(0, Bytes::len)))
}

/// ListOffsets v7 of `topic`-0 at `timestamp` with `current` as the client's leader
/// epoch: (error code, offset, leader epoch).
fn list_offset(node: &Node, topic: &str, current: i32, timestamp: i64) -> Result<(i16, i64, i32)> {
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_current_leader_epoch(current)
                .with_timestamp(timestamp)])]);
    let response: ListOffsetsResponse =
        RawClient::connect(node.kafka)?.call(ApiKey::ListOffsets, 7, &request)?;
    let p = &response.topics[0].partitions[0];
    Ok((p.error_code, p.offset, p.leader_epoch))
}

fn end_of_epoch(node: &Node, topic: &str, current: i32, epoch: i32) -> Result<(i16, i32, i64)> {
    RawClient::connect(node.kafka)?.end_of_epoch(topic, 0, current, epoch)
}

#[test]
fn fetch_list_offsets_and_offset_for_leader_epoch_fence_stale_and_unknown_epochs() -> Result<()> {
    let data: Vec<Bytes> = batches(0..3, 1, "e1")
        .into_iter()
        .chain(batches(3..5, 3, "e3"))
        .collect();
    let source = source_with(
        "a_fence",
        FakeLog {
            batches: data.clone(),
            ..FakeLog::default()
        },
    )?;
    let node = Node::start(&NodeConfig::linked_to(source.addr))?;
    eventually(Duration::from_secs(30), || {
        mirrored(&node, "a_fence", &data)
    })?;
    assert_eq!(metadata_epoch(&node, "a_fence")?, 3);

    // -1: no check, as for clients that do not know epochs.
    assert_eq!(fetch(&node, "a_fence", -1)?.0, 0);
    assert_eq!(list_offset(&node, "a_fence", -1, -1)?, (0, 5, 3));
    // Each offset found comes with the epoch it was written in.
    assert_eq!(list_offset(&node, "a_fence", -1, -2)?, (0, 0, 1));
    assert_eq!(list_offset(&node, "a_fence", -1, 1_001)?, (0, 1, 1));
    assert_eq!(list_offset(&node, "a_fence", -1, 1_003)?, (0, 3, 3));
    assert_eq!(end_of_epoch(&node, "a_fence", -1, 3)?, (0, 3, 5));
    // The partition's epoch: served.
    let (code, bytes) = fetch(&node, "a_fence", 3)?;
    assert_eq!((code, bytes), (0, data.iter().map(Bytes::len).sum()));
    assert_eq!(list_offset(&node, "a_fence", 3, -1)?, (0, 5, 3));
    assert_eq!(end_of_epoch(&node, "a_fence", 3, 3)?, (0, 3, 5));
    // Older: the client's metadata is stale.
    assert_eq!(fetch(&node, "a_fence", 2)?, (FENCED_LEADER_EPOCH, 0));
    assert_eq!(list_offset(&node, "a_fence", 2, -1)?.0, FENCED_LEADER_EPOCH);
    assert_eq!(end_of_epoch(&node, "a_fence", 2, 3)?.0, FENCED_LEADER_EPOCH);
    // Newer: this node has not seen that epoch yet.
    assert_eq!(fetch(&node, "a_fence", 4)?, (UNKNOWN_LEADER_EPOCH, 0));
    assert_eq!(
        list_offset(&node, "a_fence", 4, -1)?.0,
        UNKNOWN_LEADER_EPOCH
    );
    assert_eq!(
        end_of_epoch(&node, "a_fence", 4, 3)?.0,
        UNKNOWN_LEADER_EPOCH
    );
    Ok(())
}

fn failover(node: &Node, topic: &str) -> Result<()> {
    let admin = node.admin.context("the node has an admin listener")?;
    shadowlink(&[
        "failover",
        "--admin",
        &admin.to_string(),
        "--link",
        "from-a",
        "--topic",
        topic,
    ])?
    .stdout("failover")?;
    Ok(())
}

#[test]
fn the_source_epoch_survives_a_restart_and_failover_goes_above_it() -> Result<()> {
    // The source's leader changed twice since it wrote these epoch-2 batches.
    let data = batches(0..5, 2, "e2");
    let source = source_with(
        "a_floor",
        FakeLog {
            batches: data.clone(),
            leader_epoch: Some(5),
            ..FakeLog::default()
        },
    )?;
    let config = NodeConfig::linked_to(source.addr).admin();
    let mut node = Node::start(&config)?;
    eventually(Duration::from_secs(30), || {
        mirrored(&node, "a_floor", &data)
    })?;
    until(
        Duration::from_secs(30),
        || metadata_epoch(&node, "a_floor"),
        |epoch| *epoch == 5,
    )?;

    // Restart with the source out of reach: only what the node kept can answer.
    let gone: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    node.rewrite_config(&NodeConfig::linked_to(gone).admin())?;
    node.restart()?;
    assert_eq!(metadata_epoch(&node, "a_floor")?, 5);
    assert_eq!(list_offset(&node, "a_floor", 5, -1)?.0, 0);
    assert_eq!(end_of_epoch(&node, "a_floor", 5, 5)?, (0, 5, 5));
    assert_eq!(end_of_epoch(&node, "a_floor", 5, 2)?, (0, 2, 5));
    assert_eq!(fetch(&node, "a_floor", 5)?.0, 0);
    assert_eq!(fetch(&node, "a_floor", 4)?.0, FENCED_LEADER_EPOCH);

    // Failover: a new leader, above every epoch clients were ever told.
    failover(&node, "a_floor")?;
    assert_eq!(metadata_epoch(&node, "a_floor")?, 6);
    assert_eq!(end_of_epoch(&node, "a_floor", 6, 6)?, (0, 6, 5));
    assert_eq!(fetch(&node, "a_floor", 5)?.0, FENCED_LEADER_EPOCH);
    let kafka = node.kafka.to_string();
    let acked = python("produce_owned.py", &["confluent", &kafka, "a_floor", "3"])?;
    assert_eq!(acked.trim(), "3");
    let produced: Vec<(i64, i32)> = RawClient::connect(node.kafka)?
        .read_batches("a_floor", 0, 5)?
        .into_iter()
        .map(|(base, b)| Ok((base, RecordBatch::parse(b)?.partition_leader_epoch())))
        .collect::<Result<_>>()?;
    ensure!(!produced.is_empty(), "nothing produced after failover");
    assert!(produced.iter().all(|&(_, e)| e == 6), "{produced:?}");
    Ok(())
}

/// A confluent-kafka consumer (`consume_truncation.py`) killed if the test ends early.
struct Consumer(std::process::Child);

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Epoch 0 wrote 0..10 and epoch 1 wrote 10..15; a consumer reads all 15 and pauses;
/// then an unclean leader change at the source keeps epoch 1 only up to 12 and writes
/// 12..20 in epoch 2. Returns the events the consumer printed after resuming.
fn consume_across_truncation(topic: &str, reset: &str) -> Result<Vec<serde_json::Value>> {
    let before = before_the_change(1);
    let source = scripted(topic, &before)?;
    let node = Node::start(&NodeConfig::linked_to(source.addr))?;
    eventually(Duration::from_secs(30), || mirrored(&node, topic, &before))?;

    let mut consumer = Consumer(
        Client::Python
            .command(
                "consume_truncation.py",
                &[&node.kafka.to_string(), topic, "15", reset],
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let mut out = BufReader::new(consumer.0.stdout.take().context("piped stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    ensure!(line.trim() == "read 15", "the consumer said {line:?}");

    let after = after_the_change(&before, 12, 2);
    source.edit(|t| t.get_mut(topic).unwrap()[0].batches = after.clone());
    eventually(Duration::from_secs(30), || mirrored(&node, topic, &after))?;
    until(
        Duration::from_secs(30),
        || metadata_epoch(&node, topic),
        |epoch| *epoch == 2,
    )?;

    writeln!(consumer.0.stdin.as_mut().context("piped stdin")?, "go")?;
    let events = out
        .lines()
        .map(|l| Ok(serde_json::from_str(&l?)?))
        .collect::<Result<Vec<serde_json::Value>>>()?;
    ensure!(consumer.0.wait()?.success(), "the consumer failed");
    Ok(events)
}

#[test]
fn a_consumer_of_truncated_records_is_fenced_and_rereads_from_the_divergence() -> Result<()> {
    let events = consume_across_truncation("a_trunc_reset", "earliest")?;
    // Without fencing it would carry on at 15 and never see the new 12..15.
    let first = events.first().context("no records after the truncation")?;
    assert_eq!(
        (first["offset"].as_i64(), first["value"].as_str()),
        (Some(12), Some("e2-12")),
        "{events:?}"
    );
    Ok(())
}

#[test]
fn a_consumer_without_a_reset_policy_is_told_of_the_truncation() -> Result<()> {
    let events = consume_across_truncation("a_trunc_error", "error")?;
    let first = events.first().context("no event after the truncation")?;
    let error = first["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("truncation detected"),
        "librdkafka reports the truncation: {events:?}"
    );
    Ok(())
}

/// Fetch v12 of `topic`-0 at `offset` by a fetcher whose last batch was in `epoch`:
/// (epoch, end offset) of the divergence the node reports, and bytes of records.
fn fetch_after(node: &Node, topic: &str, offset: i64, epoch: i32) -> Result<((i32, i64), usize)> {
    let asked = FetchPartition::default()
        .with_fetch_offset(offset)
        .with_last_fetched_epoch(epoch);
    let p = fetch_v12(node, topic, asked)?;
    ensure!(p.error_code == 0, "error {}", p.error_code);
    let diverging = (p.diverging_epoch.epoch, p.diverging_epoch.end_offset);
    Ok((diverging, p.records.as_ref().map_or(0, Bytes::len)))
}

#[test]
fn a_mirror_of_a_mirror_follows_its_sources_truncation() -> Result<()> {
    let topic = "a_chain";
    let (source, first, before) = mirrored_before_the_change(topic, 1)?;
    let second = Node::start(&NodeConfig::linked_to(first.kafka))?;
    eventually(Duration::from_secs(30), || {
        mirrored(&second, topic, &before)
    })?;

    // The source's leader changed: epoch 1 ends at 12, and epoch 2 replaced the rest.
    let after = after_the_change(&before, 12, 2);
    source.edit(|t| t.get_mut(topic).unwrap()[0].batches = after.clone());
    eventually(Duration::from_secs(30), || mirrored(&first, topic, &after))?;
    // A fetcher that read 10..15 in epoch 1 is told its log diverges at 12, and gets no
    // records; one in step gets its records.
    assert_eq!(fetch_after(&first, topic, 15, 1)?, ((1, 12), 0));
    let (diverging, bytes) = fetch_after(&first, topic, 12, 1)?;
    assert_eq!(diverging, (-1, -1));
    assert!(bytes > 0);
    // Without that answer the second mirror would keep e1-12..15 and go on at 15.
    eventually(Duration::from_secs(30), || mirrored(&second, topic, &after))?;
    Ok(())
}

#[test]
fn a_mirror_holding_an_epoch_its_source_lost_truncates_where_its_own_log_agrees() -> Result<()> {
    let topic = "a_lost_epoch";
    let (source, node, before) = mirrored_before_the_change(topic, 3)?;

    // The new leader never had epoch 3: its epoch 2 began at 10 and runs past the
    // mirror's end, so it answers (2, 20) and only the mirror's own log says where the
    // two agree: its epoch 0 ends at 10.
    let after = after_the_change(&before, 10, 2);
    source.edit(|t| t.get_mut(topic).unwrap()[0].batches = after.clone());
    eventually(Duration::from_secs(30), || mirrored(&node, topic, &after))?;
    Ok(())
}
