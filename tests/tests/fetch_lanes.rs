//! Several Fetch requests in flight per source broker: the link deals a broker's
//! partitions out over lanes, each with its own connection, so the source answers one
//! lane while the node receives and writes another's, and no partition is fetched by two
//! requests at once.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use shadowlink_protocol::batch::testing::build_batch;
use shadowlink_tests::fake::{FakeBroker, FakeLog};
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::{eventually, Node, NodeConfig};

const TOPIC: &str = "a_lanes";
const PARTITIONS: usize = 8;

/// Batches `offsets` of partition `partition`, one record each, values naming both.
fn batches(partition: usize, offsets: std::ops::Range<i64>) -> Vec<Bytes> {
    offsets
        .map(|o| {
            let value = format!("p{partition}-{o}-{:-<300}", "");
            build_batch(o, 0, &[(None, Some(value.as_bytes()))], 1_000 + o)
        })
        .collect()
}

/// Whether every partition of the mirror holds exactly `expected`'s batches, in order.
fn mirrored_all(node: &Node, expected: &[Vec<Bytes>]) -> Result<Option<()>> {
    let mut client = RawClient::connect(node.kafka)?;
    for (partition, want) in expected.iter().enumerate() {
        let got = client.read_batches(TOPIC, partition as i32, 0)?;
        let got: Vec<Bytes> = got.into_iter().map(|(_, b)| b).collect();
        if &got != want {
            return Ok(None);
        }
    }
    Ok(Some(()))
}

#[test]
fn a_source_broker_answers_several_fetches_at_once_each_for_other_partitions() -> Result<()> {
    let mut expected: Vec<Vec<Bytes>> = (0..PARTITIONS).map(|p| batches(p, 0..40)).collect();
    let logs = expected.iter().map(|b| FakeLog {
        batches: b.clone(),
        ..FakeLog::default()
    });
    // The fake offers no fetch sessions, so each lane falls back to full fetches.
    let source = FakeBroker::start(BTreeMap::from([(TOPIC.to_string(), logs.collect())]))?;
    // Each Fetch is held a while, as a busy source's would be: one request at a time
    // would never overlap another.
    source.delay_fetches(Duration::from_millis(50));
    // A few batches per request, so every partition takes several fetches in order.
    let config = NodeConfig::linked_to(source.addr).link(|l| l.partition_max_bytes(2048));
    let node = Node::start(&config)?;
    eventually(Duration::from_secs(60), || mirrored_all(&node, &expected))?;

    // Records appended meanwhile follow in order on every partition.
    source.edit(|topics| {
        let logs = topics.get_mut(TOPIC).unwrap();
        for (partition, log) in logs.iter_mut().enumerate() {
            let more = batches(partition, 40..60);
            log.batches.extend(more.clone());
            expected[partition].extend(more);
        }
    });
    eventually(Duration::from_secs(60), || mirrored_all(&node, &expected))?;
    let most = source.most_concurrent_fetches();
    assert!(most >= 2, "at most {most} fetch in flight at once");
    assert_eq!(
        source.overlapping_fetches(),
        0,
        "a partition in two requests"
    );
    Ok(())
}

#[test]
fn with_one_fetch_in_flight_the_source_never_answers_two_at_once() -> Result<()> {
    let expected: Vec<Vec<Bytes>> = (0..PARTITIONS).map(|p| batches(p, 0..10)).collect();
    let logs = expected.iter().map(|b| FakeLog {
        batches: b.clone(),
        ..FakeLog::default()
    });
    let source = FakeBroker::start(BTreeMap::from([(TOPIC.to_string(), logs.collect())]))?;
    source.delay_fetches(Duration::from_millis(20));
    let config = NodeConfig::linked_to(source.addr)
        .link(|l| l.partition_max_bytes(2048).fetches_in_flight(1));
    let node = Node::start(&config)?;
    eventually(Duration::from_secs(60), || mirrored_all(&node, &expected))?;
    assert_eq!(source.most_concurrent_fetches(), 1);
    Ok(())
}
