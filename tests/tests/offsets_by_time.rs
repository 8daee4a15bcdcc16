//! Offsets by time on a mirror whose log start the source's retention moved into the
//! middle of a batch: kafka-python and librdkafka get the source's answers.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use kafka_protocol::records::Compression;
use serde_json::Value;
use shadowlink_protocol::batch::testing::build_stamped_batch;
use shadowlink_tests::fake::{FakeBroker, FakeLog};
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::{eventually, python, until, Node, NodeConfig};

const BASE_TS: i64 = 1_700_000_000_000;
/// Records per batch, and their timestamps' offsets within the batch's second: not in
/// offset order, so a batch's first record is not always its oldest.
const SHAPE: [i64; 4] = [300, 100, 400, 200];

/// `(offset, timestamp)` of every record of `batches` batches of [`SHAPE`].
fn records(batches: i64) -> Vec<(i64, i64)> {
    (0..batches * 4)
        .map(|o| (o, BASE_TS + (o / 4) * 1_000 + SHAPE[(o % 4) as usize]))
        .collect()
}

/// One uncompressed batch per four records, as a producer would write them.
fn batch(records: &[(i64, i64)]) -> Bytes {
    build_stamped_batch(records, 0, Compression::None, |offset| {
        Bytes::from(format!("v{offset}"))
    })
}

/// The first record at or above `log_start` stamped at or after `target`.
fn expected(records: &[(i64, i64)], log_start: i64, target: i64) -> Value {
    records
        .iter()
        .find(|&&(o, ts)| o >= log_start && ts >= target)
        .map_or(Value::Null, |&(o, ts)| serde_json::json!([o, ts]))
}

fn lookup(client: &str, bootstrap: &str, targets: &[String]) -> Result<Vec<Value>> {
    let mut args = vec![client, bootstrap, "a_times"];
    args.extend(targets.iter().map(String::as_str));
    Ok(serde_json::from_str(&python(
        "offsets_for_times.py",
        &args,
    )?)?)
}

/// librdkafka reports no timestamp with offsets_for_times: compare offsets alone.
fn offsets_only(answers: &[Value]) -> Vec<Value> {
    answers
        .iter()
        .map(|a| a.get(0).cloned().unwrap_or(Value::Null))
        .collect()
}

#[test]
fn offsets_for_times_on_a_mirror_match_the_source_above_a_mid_batch_log_start() -> Result<()> {
    let all = records(6);
    let batches: Vec<Bytes> = all.chunks(4).map(batch).collect();
    let source = FakeBroker::start(BTreeMap::from([(
        "a_times".to_string(),
        vec![FakeLog {
            batches: batches.clone(),
            ..FakeLog::default()
        }],
    )]))?;
    let node = Node::start(&NodeConfig::linked_to(source.addr))?;
    eventually(Duration::from_secs(30), || {
        let got = RawClient::connect(node.kafka)?.read_batches("a_times", 0, 0)?;
        Ok((got.into_iter().map(|(_, b)| b).collect::<Vec<_>>() == batches).then_some(()))
    })?;
    // Retention at the source moves its log start into the second batch (offsets 4..8).
    let log_start = 6;
    source.edit(|t| t.get_mut("a_times").unwrap()[0].log_start = log_start);
    until(
        Duration::from_secs(30),
        || RawClient::connect(node.kafka)?.list_offset("a_times", 0, -2),
        |start| *start == log_start,
    )?;

    // Before everything; the oldest record, below the log start; inside the straddling
    // batch; between records; exact stamps; inside later batches; after the newest.
    let targets: Vec<i64> = [
        0, 100, 1_050, 1_150, 1_300, 1_350, 2_000, 2_250, 2_350, 4_400, 5_401,
    ]
    .iter()
    .map(|t| BASE_TS + t)
    .chain([0])
    .collect();
    let targets: Vec<String> = targets.iter().map(i64::to_string).collect();
    let wanted: Vec<Value> = targets
        .iter()
        .map(|t| expected(&all, log_start, t.parse().unwrap()))
        .collect();
    // Inside the third batch, the first record that recent is its third.
    assert_eq!(wanted[8], serde_json::json!([10, BASE_TS + 2_400]));

    let source_addr = source.addr.to_string();
    let node_addr = node.kafka.to_string();
    let from_source = lookup("kafka-python", &source_addr, &targets)?;
    assert_eq!(from_source, wanted, "the scripted source answers as Kafka");
    assert_eq!(lookup("kafka-python", &node_addr, &targets)?, from_source);

    let mut with_max = targets.clone();
    with_max.push("max".to_string());
    let from_source = lookup("librdkafka", &source_addr, &with_max)?;
    let from_node = lookup("librdkafka", &node_addr, &with_max)?;
    assert_eq!(
        offsets_only(&from_source[..targets.len()]),
        offsets_only(&wanted)
    );
    assert_eq!(offsets_only(&from_node), offsets_only(&from_source));
    // KIP-734: the newest record, not the last offset of its batch.
    let newest = serde_json::json!([22, BASE_TS + 5_400]);
    assert_eq!(from_source.last(), Some(&newest));
    assert_eq!(from_node.last(), Some(&newest));
    Ok(())
}
