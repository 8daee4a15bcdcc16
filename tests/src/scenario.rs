//! Scenarios shared by the tests against each kind of source broker.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;

use crate::raw::RawClient;
use crate::{eventually, python, Node, NodeConfig};

/// Every compression codec a producer can choose.
pub const CODECS: &[&str] = &["none", "gzip", "snappy", "lz4", "zstd"];

/// Creates a topic through the Kafka protocol (librdkafka's AdminClient).
pub fn create_topic(
    source: SocketAddr,
    name: &str,
    partitions: i32,
    configs: &[&str],
) -> Result<()> {
    let bootstrap = source.to_string();
    let partitions = partitions.to_string();
    let mut args = vec![bootstrap.as_str(), "create", name, partitions.as_str()];
    args.extend_from_slice(configs);
    python("admin.py", &args).map(|_| ())
}

/// Produces `count` records (keys, headers and null values mixed) with librdkafka.
pub fn produce(
    source: SocketAddr,
    topic: &str,
    count: usize,
    codec: &str,
    partitions: i32,
    start: usize,
) -> Result<()> {
    let out = python(
        "produce.py",
        &[
            &source.to_string(),
            topic,
            &count.to_string(),
            "--compression",
            codec,
            "--partitions",
            &partitions.to_string(),
            "--start",
            &start.to_string(),
        ],
    )?;
    if out.trim() != count.to_string() {
        bail!(
            "{topic}: {count} records produced but {} acknowledged",
            out.trim()
        );
    }
    Ok(())
}

/// `Some(())` once every partition of `topic` holds the same batches at the same offsets
/// on both sides; an error names the first difference.
pub fn identical(
    source: SocketAddr,
    mirror: SocketAddr,
    topic: &str,
    partitions: i32,
) -> Result<Option<()>> {
    for p in 0..partitions {
        let expected = RawClient::connect(source)?.read_batches(topic, p, 0)?;
        let actual = RawClient::connect(mirror)?.read_batches(topic, p, 0)?;
        if expected.is_empty() {
            bail!("{topic}-{p} is empty at the source");
        }
        if actual.len() < expected.len() {
            return Ok(None);
        }
        if actual != expected {
            let at = expected.iter().zip(&actual).position(|(a, b)| a != b);
            bail!(
                "{topic}-{p}: mirror differs (source {} batches, mirror {}, first difference at batch {at:?})",
                expected.len(),
                actual.len()
            );
        }
    }
    Ok(Some(()))
}

/// `Some(())` once partition 0 of `topic` on the node holds exactly `expected`, byte for
/// byte, from offset 0.
pub fn mirrored(node: &Node, topic: &str, expected: &[Bytes]) -> Result<Option<()>> {
    let got: Vec<Bytes> = RawClient::connect(node.kafka)?
        .read_batches(topic, 0, 0)?
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    Ok((got == expected).then_some(()))
}

/// Waits until `topic` is identical on both sides.
pub fn wait_identical(
    source: SocketAddr,
    mirror: SocketAddr,
    topic: &str,
    partitions: i32,
) -> Result<()> {
    eventually(Duration::from_secs(60), || {
        identical(source, mirror, topic, partitions)
    })
}

/// Topics in every codec, plus filtered-out ones: mirrors are byte-identical, filtered
/// topics are absent, and a topic created later is picked up. Returns the running node.
pub fn every_codec(source: SocketAddr) -> Result<Node> {
    for codec in CODECS {
        let topic = format!("a_{codec}");
        create_topic(source, &topic, 2, &[])?;
        produce(source, &topic, 300, codec, 2, 0)?;
    }
    for other in ["a_scratch", "b_local"] {
        create_topic(source, other, 1, &[])?;
        produce(source, other, 10, "none", 1, 0)?;
    }
    let node = Node::start(&NodeConfig::linked_to(source))?;
    for codec in CODECS {
        wait_identical(source, node.kafka, &format!("a_{codec}"), 2)?;
    }
    for excluded in ["a_scratch", "b_local"] {
        match RawClient::connect(node.kafka)?.read_batches(excluded, 0, 0) {
            Err(e) if e.to_string().contains("error 3") => {}
            other => bail!("{excluded} should be unknown on the mirror, got {other:?}"),
        }
    }
    create_topic(source, "a_late", 3, &[])?;
    produce(source, "a_late", 90, "lz4", 3, 0)?;
    wait_identical(source, node.kafka, "a_late", 3)?;
    Ok(node)
}

/// kill -9 in the middle of a large copy, more records at the source, restart: the
/// mirror ends identical, with no gap and no duplicate.
pub fn kill_and_resume(source: SocketAddr) -> Result<()> {
    create_topic(source, "a_bulk", 2, &[])?;
    python(
        "produce.py",
        &[
            &source.to_string(),
            "a_bulk",
            "4000",
            "--partitions",
            "2",
            "--value-bytes",
            "2000",
        ],
    )?;
    let mut node = Node::start(&NodeConfig::linked_to(source))?;
    eventually(Duration::from_secs(30), || {
        let got = RawClient::connect(node.kafka)?.read_batches("a_bulk", 0, 0)?;
        Ok((!got.is_empty()).then_some(()))
    })?;
    node.process.kill9();
    produce(source, "a_bulk", 500, "zstd", 2, 4000)?;
    node.restart()?;
    wait_identical(source, node.kafka, "a_bulk", 2)
}

/// What `consume_isolation.py` read from partition 0 of `topic` with `client`
/// (confluent or kafka-python) at `isolation` until its position reached `end`, as
/// `(offset, value)`.
pub fn consume_isolation(
    node: &Node,
    topic: &str,
    end: i64,
    client: &str,
    isolation: &str,
) -> Result<Vec<(i64, String)>> {
    let end = end.to_string();
    let kafka = node.kafka.to_string();
    let args = [
        kafka.as_str(),
        topic,
        &end,
        "--client",
        client,
        "--isolation",
        isolation,
    ];
    let out = python("consume_isolation.py", &args)?;
    out.lines()
        .map(|line| {
            let r: serde_json::Value = serde_json::from_str(line)?;
            let offset = r["offset"].as_i64().context("offset")?;
            let value = r["value"].as_str().context("value")?.to_string();
            Ok((offset, value))
        })
        .collect()
}

/// A batch of `records` records with values `{tag}-{i}` padded to 200 bytes.
pub fn padded_batch(tag: &str, records: usize) -> Bytes {
    use shadowlink_protocol::batch::testing::BatchBuilder;
    let values: Vec<Vec<u8>> = (0..records)
        .map(|i| format!("{tag}-{i:-<200}").into_bytes())
        .collect();
    let refs: Vec<_> = values.iter().map(|v| (None, Some(v.as_slice()))).collect();
    BatchBuilder::new(0)
        .leader_epoch(-1)
        .timestamp(1_700_000_000_000)
        .records(&refs)
        .build()
}
