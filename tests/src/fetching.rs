//! Fetch requests as a consumer sends them, over a raw connection, and the node's
//! metrics that show what serving them cost.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::raw::RawClient;
use crate::scenario::padded_batch;
use crate::Node;

/// Partitions read by incremental fetches of sessions.
pub const SESSION_READS: &str = "shadowlink_fetch_session_partitions_read_total";
/// Partitions read by full fetches.
pub const FULL_READS: &str = "shadowlink_fetch_full_partitions_read_total";

/// A topic name as a request carries it.
pub fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// A Fetch of `session_id` at `epoch` naming `partitions` of `topic` at their offsets.
pub fn fetch(session_id: i32, epoch: i32, topic: &str, partitions: &[(i32, i64)]) -> FetchRequest {
    let partitions: Vec<FetchPartition> = partitions
        .iter()
        .map(|&(p, offset)| {
            FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)
        })
        .collect();
    let topics = match partitions.is_empty() {
        true => vec![],
        false => vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(partitions)],
    };
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(200)
        .with_min_bytes(1)
        .with_max_bytes(8 << 20)
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(topics)
}

/// `request`, also forgetting `partitions` of `topic` from its session.
pub fn forgetting(request: FetchRequest, topic: &str, partitions: Vec<i32>) -> FetchRequest {
    request.with_forgotten_topics_data(vec![ForgottenTopic::default()
        .with_topic(name(topic))
        .with_partitions(partitions)])
}

/// What a response says per partition: (high watermark, record bytes), keyed by index.
pub fn answered(response: &FetchResponse) -> BTreeMap<i32, (i64, usize)> {
    let partitions = response.responses.iter().flat_map(|t| t.partitions.iter());
    partitions
        .map(|p| {
            let bytes = p.records.as_ref().map_or(0, |r| r.len());
            (p.partition_index, (p.high_watermark, bytes))
        })
        .collect()
}

/// Sends `request` as Fetch v12 and reads the answer.
pub fn send(client: &mut RawClient, request: &FetchRequest) -> Result<FetchResponse> {
    client.call(ApiKey::Fetch, 12, request)
}

/// A plain HTTP GET of the node's `/metrics`.
fn metrics(node: &Node) -> Result<String> {
    let addr = node.admin.context("the node has no admin listener")?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

/// The value of the sample `series` (name and labels exactly as exposed).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// The value of the node's metric `series`, which must be exposed.
pub fn metric(node: &Node, series: &str) -> Result<f64> {
    sample(&metrics(node)?, series).with_context(|| format!("no sample {series}"))
}

/// Produces `batches` one-record batches to `topic`'s first `partitions` partitions in
/// turn, one every `every`, from another thread.
pub fn trickle(
    node: &Node,
    topic: &'static str,
    batches: usize,
    partitions: usize,
    every: Duration,
) -> JoinHandle<Result<()>> {
    let addr = node.kafka;
    std::thread::spawn(move || {
        let mut client = RawClient::connect(addr)?;
        for i in 0..batches {
            std::thread::sleep(every);
            let batch = padded_batch(&format!("r{i}"), 1);
            let (code, _) = client.produce(topic, (i % partitions) as i32, batch)?;
            anyhow::ensure!(code == 0, "produce error {code}");
        }
        Ok(())
    })
}

/// The value of the node's counter `series`, 0 while it is not exposed (a labelled
/// counter appears at its first count).
pub fn counter(node: &Node, series: &str) -> Result<f64> {
    Ok(sample(&metrics(node)?, series).unwrap_or(0.0))
}
