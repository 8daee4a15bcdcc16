//! Topics older than the v2 batch format: v0 and v1 messages, compressed wrappers
//! included, followed by v2 batches after an upgrade in place. The node mirrors them
//! byte-identical at their offsets and serves them to a client that still reads them.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};
use shadowlink_protocol::batch::testing::{
    build_batch, build_gzip_wrapper, build_legacy_message, RecordRef,
};
use shadowlink_protocol::batch::{MAGIC_V0, MAGIC_V1};
use shadowlink_tests::fake::{FakeBroker, FakeLog};
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::{create_topic, identical};
use shadowlink_tests::{eventually, python, Node, NodeConfig};

/// A record as kafka-python reports it: offset, hex key, hex value, timestamp.
type Seen = (i64, Option<String>, Option<String>, Option<i64>);

/// The source log, and every record in it.
struct History {
    entries: Vec<Bytes>,
    records: Vec<Seen>,
}

impl History {
    /// Records for the next `count` offsets; the i-th is stamped `timestamp(i)`.
    fn keyed(
        &mut self,
        count: usize,
        tag: &str,
        timestamp: impl Fn(i64) -> Option<i64>,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let first = self.records.len();
        (first..first + count)
            .map(|o| {
                let (key, value) = (format!("k{tag}-{o}"), format!("v{tag}-{o}"));
                let ts = timestamp((o - first) as i64);
                let seen = (
                    o as i64,
                    Some(hex(key.as_bytes())),
                    Some(hex(value.as_bytes())),
                    ts,
                );
                self.records.push(seen);
                (key.into_bytes(), value.into_bytes())
            })
            .collect()
    }

    fn next_offset(&self) -> i64 {
        self.records.len() as i64
    }
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

fn refs(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<RecordRef<'_>> {
    records
        .iter()
        .map(|(k, v)| (Some(k.as_slice()), Some(v.as_slice())))
        .collect()
}

/// v0 messages at 0 and 1, a gzip v0 wrapper for 2..=4, v1 messages at 5 and 6, a gzip
/// v1 wrapper for 7..=10 (relative inner offsets), then v2 batches at 11..=12 and 13.
fn history() -> History {
    let mut h = History {
        entries: Vec::new(),
        records: Vec::new(),
    };
    for _ in 0..2 {
        let o = h.next_offset();
        let r = h.keyed(1, "v0", |_| None);
        let message = build_legacy_message(o, MAGIC_V0, -1, Some(&r[0].0), Some(&r[0].1));
        h.entries.push(message);
    }
    let r = h.keyed(3, "v0z", |_| None);
    h.entries.push(build_gzip_wrapper(
        h.next_offset() - 1,
        MAGIC_V0,
        &refs(&r),
        -1,
    ));
    for _ in 0..2 {
        let o = h.next_offset();
        let r = h.keyed(1, "v1", |_| Some(1_000 + o));
        let message = build_legacy_message(o, MAGIC_V1, 1_000 + o, Some(&r[0].0), Some(&r[0].1));
        h.entries.push(message);
    }
    let r = h.keyed(4, "v1z", |i| Some(2_000 + i));
    h.entries.push(build_gzip_wrapper(
        h.next_offset() - 1,
        MAGIC_V1,
        &refs(&r),
        2_000,
    ));
    for (epoch, count) in [(0, 2), (1, 1)] {
        let base = h.next_offset();
        let r = h.keyed(count, "v2", |_| Some(3_000));
        h.entries.push(build_batch(base, epoch, &refs(&r), 3_000));
    }
    h
}

/// The mirror's entries as served, with their offsets.
fn served(node: &Node, topic: &str, from: i64) -> Result<Vec<(i64, Bytes)>> {
    RawClient::connect(node.kafka)?.read_batches(topic, 0, from)
}

#[test]
fn legacy_messages_then_v2_batches_are_mirrored_byte_identical_and_consumed() -> Result<()> {
    let h = history();
    let source = FakeBroker::start(BTreeMap::from([(
        "a_legacy".to_string(),
        vec![FakeLog {
            batches: h.entries.clone(),
            ..FakeLog::default()
        }],
    )]))?;
    let node = Node::start(&NodeConfig::linked_to(source.addr))?;
    eventually(Duration::from_secs(30), || {
        identical(source.addr, node.kafka, "a_legacy", 1)
    })?;
    let mirrored: Vec<Bytes> = served(&node, "a_legacy", 0)?
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(mirrored, h.entries);

    // A fetch inside the v1 wrapper (offsets 7..=10) starts with that whole wrapper.
    let from_8 = served(&node, "a_legacy", 8)?;
    assert_eq!(from_8.first(), Some(&(10, h.entries[5].clone())));
    assert_eq!(from_8.len(), 3);
    assert_eq!(
        RawClient::connect(node.kafka)?.list_offset("a_legacy", 0, -1)?,
        14
    );

    let count = h.records.len().to_string();
    let out = python(
        "consume_kafka_python.py",
        &[&node.kafka.to_string(), "a_legacy", &count],
    )?;
    assert_eq!(dumped(&out)?, h.records);
    // librdkafka reads them too (it reports v0's missing timestamps as -1).
    let out = python(
        "consume.py",
        &[&node.kafka.to_string(), "a_legacy", &count, "--dump"],
    )?;
    let without_timestamps = |records: Vec<Seen>| -> Vec<Seen> {
        records
            .into_iter()
            .map(|(o, k, v, _)| (o, k, v, None))
            .collect()
    };
    assert_eq!(
        without_timestamps(dumped(&out)?),
        without_timestamps(h.records.clone())
    );
    Ok(())
}

/// The JSON lines a consumer script printed.
fn dumped(out: &str) -> Result<Vec<Seen>> {
    out.lines()
        .map(|line| {
            let r: Value = serde_json::from_str(line)?;
            let text = |v: &Value| v.as_str().map(str::to_string);
            let offset = r["offset"].as_i64().unwrap_or(-1);
            Ok((
                offset,
                text(&r["key"]),
                text(&r["value"]),
                r["timestamp"].as_i64(),
            ))
        })
        .collect()
}

/// Produce v3 and later carry only v2 batches; Kafka answers INVALID_RECORD otherwise.
#[test]
fn a_legacy_message_set_produced_to_an_owned_topic_is_refused() -> Result<()> {
    let node = Node::start(&NodeConfig::new())?;
    create_topic(node.kafka, "b_owned", 1, &[])?;
    let mut client = RawClient::connect(node.kafka)?;
    let messages = [
        build_legacy_message(0, MAGIC_V1, 1_000, Some(b"k"), Some(b"v")),
        build_gzip_wrapper(
            1,
            MAGIC_V1,
            &[(None, Some(b"a")), (None, Some(b"b"))],
            1_000,
        ),
        build_legacy_message(0, MAGIC_V0, -1, None, Some(b"v")),
    ];
    for records in messages {
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("b_owned")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records))])]);
        let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request)?;
        let p = &response.responses[0].partition_responses[0];
        let message = p.error_message.as_ref().map(|m| m.to_string());
        assert_eq!(
            json!([p.error_code, p.base_offset]),
            json!([87, -1]),
            "{message:?}"
        );
        assert!(message.is_some_and(|m| m.contains("magic")));
    }
    assert_eq!(client.list_offset("b_owned", 0, -1)?, 0);
    Ok(())
}
