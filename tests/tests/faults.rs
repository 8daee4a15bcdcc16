//! Faults a real broker cannot be made to show on cue, from a scripted source: a corrupt
//! batch, a leader change that rewrote the source log (KIP-320), transient leader errors.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use shadowlink_protocol::batch::testing::build_batch;
use shadowlink_tests::fake::{FakeBroker, FakeLog};
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::mirrored;
use shadowlink_tests::{eventually, until, Node, NodeConfig};

/// One single-record batch per offset in `offsets`, all in leader epoch `epoch`.
fn batches(offsets: std::ops::Range<i64>, epoch: i32, tag: &str) -> Vec<Bytes> {
    offsets
        .map(|o| {
            let value = format!("{tag}-{o}");
            build_batch(
                o,
                epoch,
                &[(Some(b"k".as_slice()), Some(value.as_bytes()))],
                1_000 + o,
            )
        })
        .collect()
}

fn log(batches: Vec<Bytes>) -> Vec<FakeLog> {
    vec![FakeLog {
        batches,
        ..FakeLog::default()
    }]
}

#[test]
fn a_corrupt_batch_holds_back_only_its_partition_until_it_arrives_intact() -> Result<()> {
    let intact = batches(0..10, 0, "bad");
    let mut bad = intact.clone();
    let mut flipped = bad[5].to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x55;
    bad[5] = Bytes::from(flipped);
    let good = batches(0..10, 0, "good");
    let source = FakeBroker::start(BTreeMap::from([
        ("a_bad".to_string(), log(bad.clone())),
        ("a_good".to_string(), log(good.clone())),
    ]))?;
    let node = Node::start(&NodeConfig::linked_to(source.addr))?;

    eventually(Duration::from_secs(30), || mirrored(&node, "a_good", &good))?;
    eventually(Duration::from_secs(30), || {
        mirrored(&node, "a_bad", &bad[..5])
    })?;
    eventually(Duration::from_secs(10), || {
        Ok(node
            .process
            .logged(&["corrupt batch fetched", "a_bad-0", "offset 5", "CRC"])
            .then_some(()))
    })?;

    // The held-back partition takes nothing past the corrupt batch; the healthy one
    // carries on.
    let more = batches(10..15, 0, "good");
    source.edit(|t| {
        t.get_mut("a_good").unwrap()[0].batches.extend(more.clone());
        t.get_mut("a_bad").unwrap()[0]
            .batches
            .extend(batches(10..15, 0, "bad"));
    });
    let all_good: Vec<Bytes> = good.iter().chain(&more).cloned().collect();
    eventually(Duration::from_secs(30), || {
        mirrored(&node, "a_good", &all_good)
    })?;
    assert_eq!(
        RawClient::connect(node.kafka)?.list_offset("a_bad", 0, -1)?,
        5
    );

    // The source serves the batch intact again: the partition continues by itself.
    source.edit(|t| t.get_mut("a_bad").unwrap()[0].batches[5] = intact[5].clone());
    let all_bad: Vec<Bytes> = intact
        .iter()
        .cloned()
        .chain(batches(10..15, 0, "bad"))
        .collect();
    eventually(Duration::from_secs(30), || {
        mirrored(&node, "a_bad", &all_bad)
    })?;
    assert!(node
        .process
        .logged(&["batch fetched intact after a corrupt copy", "a_bad"]));
    Ok(())
}

#[test]
fn a_diverged_source_log_is_followed_after_truncation() -> Result<()> {
    // Epoch 0 wrote 0..10 and epoch 1 wrote 10..15; all of it reaches the mirror.
    let before: Vec<Bytes> = batches(0..10, 0, "e0")
        .into_iter()
        .chain(batches(10..15, 1, "e1"))
        .collect();
    let source = FakeBroker::start(BTreeMap::from([("a_log".to_string(), log(before.clone()))]))?;
    let node = Node::start(&NodeConfig::linked_to(source.addr))?;
    eventually(Duration::from_secs(30), || {
        mirrored(&node, "a_log", &before)
    })?;

    // An unclean leader change: the new leader had epoch 1 only up to offset 12, and
    // writes 12.. in epoch 2. Offsets 12..15 of the mirror no longer exist anywhere.
    let after: Vec<Bytes> = before[..12]
        .iter()
        .cloned()
        .chain(batches(12..20, 2, "e2"))
        .collect();
    source.edit(|t| t.get_mut("a_log").unwrap()[0].batches = after.clone());

    eventually(Duration::from_secs(30), || mirrored(&node, "a_log", &after))?;
    assert!(node
        .process
        .logged(&["truncated", "discarded_from=12", "discarded_to=15"]));
    Ok(())
}

#[test]
fn transient_leader_errors_are_retried() -> Result<()> {
    let data = batches(0..20, 0, "x");
    let source = FakeBroker::start(BTreeMap::from([(
        "a_flaky".to_string(),
        vec![FakeLog {
            batches: data.clone(),
            fetch_error: 6, // NOT_LEADER_OR_FOLLOWER
            ..FakeLog::default()
        }],
    )]))?;
    let node = Node::start(&NodeConfig::linked_to(source.addr))?;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        RawClient::connect(node.kafka)?.list_offset("a_flaky", 0, -1)?,
        0
    );
    source.edit(|t| t.get_mut("a_flaky").unwrap()[0].fetch_error = 0);
    eventually(Duration::from_secs(30), || {
        mirrored(&node, "a_flaky", &data)
    })?;
    Ok(())
}

#[test]
fn the_mirror_log_start_follows_the_source() -> Result<()> {
    let data = batches(0..20, 0, "r");
    let source = FakeBroker::start(BTreeMap::from([("a_trim".to_string(), log(data.clone()))]))?;
    let node = Node::start(&NodeConfig::linked_to(source.addr))?;
    eventually(Duration::from_secs(30), || mirrored(&node, "a_trim", &data))?;
    assert_eq!(
        RawClient::connect(node.kafka)?.list_offset("a_trim", 0, -2)?,
        0
    );

    // Retention or DeleteRecords at the source moves its log start to 12.
    source.edit(|t| t.get_mut("a_trim").unwrap()[0].log_start = 12);
    until(
        Duration::from_secs(30),
        || RawClient::connect(node.kafka)?.list_offset("a_trim", 0, -2),
        |start| *start == 12,
    )?;
    let kept = RawClient::connect(node.kafka)?.read_batches("a_trim", 0, 12)?;
    assert_eq!(kept.first().map(|(o, _)| *o), Some(12));
    assert_eq!(kept.len(), 8);
    Ok(())
}

#[test]
fn partitions_added_at_the_source_are_mirrored_and_a_shrink_fails_the_topic() -> Result<()> {
    let first = batches(0..5, 0, "p0");
    let source = FakeBroker::start(BTreeMap::from([("a_grow".to_string(), log(first.clone()))]))?;
    let node = Node::start(&NodeConfig::linked_to(source.addr))?;
    eventually(Duration::from_secs(30), || {
        mirrored(&node, "a_grow", &first)
    })?;

    let second = batches(0..7, 0, "p1");
    source.edit(|t| {
        t.get_mut("a_grow").unwrap().push(FakeLog {
            batches: second.clone(),
            ..FakeLog::default()
        })
    });
    eventually(Duration::from_secs(30), || {
        let got: Vec<Bytes> = RawClient::connect(node.kafka)?
            .read_batches("a_grow", 1, 0)?
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        Ok((got == second).then_some(()))
    })?;

    // Partitions never shrink in Kafka; a source that shows fewer is not the same topic.
    source.edit(|t| {
        t.get_mut("a_grow").unwrap().pop();
    });
    let meta_path = node.data_dir.join("topics/a_grow/topic.json");
    let reason = eventually(Duration::from_secs(20), || {
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path)?)?;
        Ok((meta["state"] == "failed").then(|| meta["reason"].to_string()))
    })?;
    assert!(reason.contains("shrank from 2 to 1"), "{reason}");
    Ok(())
}

/// The leader epoch the node's Metadata reports for `topic`-0.
fn metadata_epoch(node: &Node, topic: &str) -> Result<i32> {
    use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
    let response: MetadataResponse = RawClient::connect(node.kafka)?.call(
        ApiKey::Metadata,
        9,
        &MetadataRequest::default().with_topics(None),
    )?;
    let topic = response
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(topic))
        .ok_or_else(|| anyhow::anyhow!("{topic} not in metadata"))?;
    Ok(topic.partitions[0].leader_epoch)
}

#[test]
fn the_node_reports_a_leader_epoch_never_below_the_source() -> Result<()> {
    let data = batches(0..5, 2, "e2");
    let source = FakeBroker::start(BTreeMap::from([("a_epoch".to_string(), log(data.clone()))]))?;
    let node = Node::start(&NodeConfig::linked_to(source.addr))?;
    eventually(Duration::from_secs(30), || {
        mirrored(&node, "a_epoch", &data)
    })?;
    assert_eq!(
        metadata_epoch(&node, "a_epoch")?,
        2,
        "the newest mirrored batch's epoch"
    );

    // Two leader changes at the source, nothing written since: clients must still see 4.
    source.edit(|t| t.get_mut("a_epoch").unwrap()[0].leader_epoch = Some(4));
    until(
        Duration::from_secs(30),
        || metadata_epoch(&node, "a_epoch"),
        |epoch| *epoch == 4,
    )?;
    Ok(())
}

/// A source without fetch sessions holds a fetch that finds nothing for its whole wait,
/// and answers a connection's requests in order. A partition held back by errors comes
/// back while the link long-polls a caught-up one: the rest of it must not wait out one
/// long poll per response.
#[test]
fn a_partition_catching_up_does_not_queue_behind_long_polls_for_a_caught_up_one() -> Result<()> {
    let backlog = backlog(30);
    let source = FakeBroker::start(BTreeMap::from([
        (
            "a_backlog".to_string(),
            vec![FakeLog {
                batches: backlog.clone(),
                fetch_error: 6, // NOT_LEADER_OR_FOLLOWER
                ..FakeLog::default()
            }],
        ),
        ("a_quiet".to_string(), log(Vec::new())),
    ]))?;
    source.hold_empty_fetches();
    // One batch per response: partition_max_bytes is below a batch (KIP-74).
    let config = NodeConfig::linked_to(source.addr).link(|l| l.partition_max_bytes(1024));
    let node = Node::start(&config)?;
    eventually(Duration::from_secs(30), || {
        Ok((source.fetches_held() >= 2).then_some(()))
    })?;
    source.edit(|t| t.get_mut("a_backlog").unwrap()[0].fetch_error = 0);
    // Its retry waits out at most one backoff (under 2 s here) and one long poll, about
    // 0.5 s in all here; queued behind long polls, its 30 responses took 15 s.
    let took = time_to_mirror(&node, "a_backlog", &backlog)?;
    assert!(took < Duration::from_secs(8), "caught up in {took:?}");
    assert_eq!(source.queued_behind_held_fetches(), 0);
    Ok(())
}

/// A partition with a slow disk sits out of fetches while its writer's queue is full; the
/// long poll for the caught-up rest of its broker must not keep it out for the whole
/// wait each time the queue drains.
#[test]
fn a_partition_whose_writer_is_behind_is_not_kept_out_by_a_long_poll() -> Result<()> {
    let backlog = backlog(80);
    let source = FakeBroker::start(BTreeMap::from([
        ("a_backlog".to_string(), log(backlog.clone())),
        ("a_quiet".to_string(), log(Vec::new())),
    ]))?;
    source.hold_empty_fetches();
    let config = NodeConfig::linked_to(source.addr)
        .persist("always")
        .fault_fsync_delay(Duration::from_millis(20))
        .link(|l| l.partition_max_bytes(1024));
    let node = Node::start(&config)?;
    // 80 fsyncs of 20 ms take about 1.8 s here; kept out for a 500 ms long poll each
    // time its queue of 4 drained, the partition took nearly 10 s.
    let took = time_to_mirror(&node, "a_backlog", &backlog)?;
    assert!(took < Duration::from_secs(5), "caught up in {took:?}");
    Ok(())
}

/// `n` batches of one 1.1 KB record: one per fetch response when `partition_max_bytes`
/// is 1024 (KIP-74).
fn backlog(n: i64) -> Vec<Bytes> {
    let value = vec![b'v'; 1_100];
    (0..n)
        .map(|o| build_batch(o, 0, &[(None, Some(value.as_slice()))], 1_000 + o))
        .collect()
}

/// How long from now until `node` mirrors `batches` of `topic`.
fn time_to_mirror(node: &Node, topic: &str, batches: &[Bytes]) -> Result<Duration> {
    let started = std::time::Instant::now();
    eventually(Duration::from_secs(60), || mirrored(node, topic, batches))?;
    Ok(started.elapsed())
}
