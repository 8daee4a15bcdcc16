//! Owned topics: real producers write to a node that owns its topics (no links), offsets
//! are contiguous, idempotent retries are written once, also across a restart.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProduceRequest, ProduceResponse, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::batch::testing::BatchBuilder;
use shadowlink_protocol::batch::RecordBatch;
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::{create_topic, CODECS};
use shadowlink_tests::{node_js, python, Link, Node, NodeConfig};

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// Every stored batch of every partition, checking offsets run 0, 1, 2... without a gap
/// and every batch is in the node's epoch 0; returns the record count.
fn contiguous_records(node: SocketAddr, topic: &str, partitions: i32) -> Result<i64> {
    let mut total = 0;
    for p in 0..partitions {
        let mut next = 0;
        for (base, bytes) in RawClient::connect(node)?.read_batches(topic, p, 0)? {
            let batch = RecordBatch::parse(bytes)?;
            ensure!(
                base == next,
                "{topic}-{p}: batch at {base}, expected {next}"
            );
            ensure!(batch.validate_crc().is_ok(), "{topic}-{p}@{base}: bad CRC");
            ensure!(
                batch.partition_leader_epoch() == 0,
                "{topic}-{p}@{base}: epoch"
            );
            next = batch.next_offset();
            total += i64::from(batch.record_count());
        }
    }
    Ok(total)
}

fn consumed(node: SocketAddr, topic: &str, expected: usize, partitions: i32) -> Result<usize> {
    let out = python(
        "consume.py",
        &[
            &node.to_string(),
            topic,
            &expected.to_string(),
            "--partitions",
            &partitions.to_string(),
        ],
    )?;
    Ok(out.trim().parse()?)
}

fn produce_with(
    client: &str,
    node: SocketAddr,
    topic: &str,
    count: usize,
    codec: &str,
) -> Result<()> {
    let out = python(
        "produce_owned.py",
        &[
            client,
            &node.to_string(),
            topic,
            &count.to_string(),
            "--compression",
            codec,
            "--partitions",
            "3",
        ],
    )?;
    ensure!(
        out.trim() == count.to_string(),
        "{client} acknowledged {out}"
    );
    Ok(())
}

#[test]
fn an_idempotent_librdkafka_producer_writes_every_codec_at_contiguous_offsets() -> Result<()> {
    let node = Node::start(&NodeConfig::owner())?;
    for codec in CODECS {
        let topic = format!("b_{codec}");
        create_topic(node.kafka, &topic, 3, &[])?;
        produce_with("confluent", node.kafka, &topic, 600, codec)?;
        assert_eq!(contiguous_records(node.kafka, &topic, 3)?, 600, "{topic}");
        assert_eq!(consumed(node.kafka, &topic, 600, 3)?, 600, "{topic}");
    }
    // The batches carry the node's producer id, allocated by InitProducerId.
    let (_, bytes) = RawClient::connect(node.kafka)?.read_batches("b_none", 0, 0)?[0].clone();
    assert!(RecordBatch::parse(bytes)?.producer_id() >= 0);
    Ok(())
}

/// Runs tests/js/produce.js (kafkajs) and returns its stdout.
fn kafkajs_produce(node: SocketAddr, topic: &str, count: usize) -> Result<String> {
    node_js(
        "produce.js",
        &[&node.to_string(), topic, &count.to_string(), "3"],
    )
}

#[test]
fn kafka_python_and_kafkajs_produce_to_owned_topics() -> Result<()> {
    let node = Node::start(&NodeConfig::owner())?;
    create_topic(node.kafka, "b_kafka_python", 3, &[])?;
    produce_with("kafka-python", node.kafka, "b_kafka_python", 300, "gzip")?;
    assert_eq!(contiguous_records(node.kafka, "b_kafka_python", 3)?, 300);
    assert_eq!(consumed(node.kafka, "b_kafka_python", 300, 3)?, 300);

    create_topic(node.kafka, "b_kafkajs", 3, &[])?;
    assert_eq!(kafkajs_produce(node.kafka, "b_kafkajs", 300)?.trim(), "300");
    assert_eq!(contiguous_records(node.kafka, "b_kafkajs", 3)?, 300);
    assert_eq!(consumed(node.kafka, "b_kafkajs", 300, 3)?, 300);
    Ok(())
}

fn init_producer_id(client: &mut RawClient, transactional: Option<&str>) -> Result<(i16, i64)> {
    let version = client.version(ApiKey::InitProducerId, 4)?;
    let request = InitProducerIdRequest::default()
        .with_transactional_id(
            transactional.map(|t| TransactionalId(StrBytes::from_string(t.into()))),
        )
        .with_transaction_timeout_ms(60_000)
        .with_producer_id((-1).into())
        .with_producer_epoch(-1);
    let response: InitProducerIdResponse =
        client.call(ApiKey::InitProducerId, version, &request)?;
    Ok((response.error_code, response.producer_id.0))
}

/// Produces one idempotent batch of `records` records at `sequence`: (error, base offset).
fn produce_batch(
    client: &mut RawClient,
    topic: &str,
    producer_id: i64,
    sequence: i32,
    records: usize,
) -> Result<(i16, i64)> {
    let values: Vec<Vec<u8>> = (0..records)
        .map(|i| format!("seq-{}", sequence as usize + i).into_bytes())
        .collect();
    let refs: Vec<_> = values.iter().map(|v| (None, Some(v.as_slice()))).collect();
    let batch = BatchBuilder::new(0)
        .leader_epoch(-1)
        .timestamp(1_700_000_000_000)
        .producer(producer_id, 0, sequence)
        .records(&refs)
        .build();
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request)?;
    let p = &response.responses[0].partition_responses[0];
    Ok((p.error_code, p.base_offset))
}

#[test]
fn a_retried_batch_is_written_once_even_after_a_restart() -> Result<()> {
    let mut node = Node::start(&NodeConfig::owner())?;
    create_topic(node.kafka, "b_payments", 1, &[])?;
    let mut client = RawClient::connect(node.kafka)?;
    let (code, pid) = init_producer_id(&mut client, None)?;
    assert_eq!(code, 0);
    assert_eq!(produce_batch(&mut client, "b_payments", pid, 0, 3)?, (0, 0));
    // The same batch again (a retry after a lost response): the original offset.
    assert_eq!(produce_batch(&mut client, "b_payments", pid, 0, 3)?, (0, 0));
    assert_eq!(produce_batch(&mut client, "b_payments", pid, 3, 2)?, (0, 3));
    // A gap in the sequence: OUT_OF_ORDER_SEQUENCE_NUMBER, nothing written.
    assert_eq!(produce_batch(&mut client, "b_payments", pid, 9, 1)?.0, 45);

    node.restart()?;
    let mut client = RawClient::connect(node.kafka)?;
    assert_eq!(produce_batch(&mut client, "b_payments", pid, 3, 2)?, (0, 3));
    assert_eq!(produce_batch(&mut client, "b_payments", pid, 5, 1)?, (0, 5));
    let batches = RawClient::connect(node.kafka)?.read_batches("b_payments", 0, 0)?;
    let offsets: Vec<i64> = batches.iter().map(|(base, _)| *base).collect();
    assert_eq!(offsets, vec![0, 3, 5], "every batch exactly once");
    // Ids handed out after a restart never repeat one before it.
    let (_, next_pid) = init_producer_id(&mut client, None)?;
    assert!(next_pid > pid, "{next_pid} after {pid}");
    Ok(())
}

fn create_raw(
    client: &mut RawClient,
    topic: CreatableTopic,
    validate_only: bool,
) -> Result<(i16, String)> {
    let version = client.version(ApiKey::CreateTopics, 7)?;
    let request = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(5000)
        .with_validate_only(validate_only);
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, version, &request)?;
    let t = response.topics.first().context("no topic result")?;
    let message = t
        .error_message
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    Ok((t.error_code, message))
}

fn creatable(topic: &str, partitions: i32, configs: &[(&str, &str)]) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        )
}

#[test]
fn create_topics_and_init_producer_id_refuse_what_the_node_cannot_do() -> Result<()> {
    let node = Node::start(&NodeConfig::owner())?;
    let mut client = RawClient::connect(node.kafka)?;
    // validate_only creates nothing.
    assert_eq!(
        create_raw(&mut client, creatable("b_x", 2, &[]), true)?.0,
        0
    );
    assert!(client.read_batches("b_x", 0, 0).is_err());
    let configs = [("max.message.bytes", "200"), ("retention.ms", "60000")];
    assert_eq!(
        create_raw(&mut client, creatable("b_x", 2, &configs), false)?.0,
        0
    );
    assert_eq!(
        create_raw(&mut client, creatable("b_x", 2, &[]), false)?.0,
        36
    );
    assert_eq!(
        create_raw(&mut client, creatable("../evil", 1, &[]), false)?.0,
        17
    );
    assert_eq!(
        create_raw(&mut client, creatable("b_y", 0, &[]), false)?.0,
        37
    );
    let (code, message) = create_raw(
        &mut client,
        creatable("b_y", 1, &[("segment.bytes", "1")]),
        false,
    )?;
    assert_eq!(code, 40, "{message}");
    let out = python("admin.py", &[&node.kafka.to_string(), "configs", "b_x"])?;
    assert!(out.contains("max.message.bytes=200"), "{out}");
    // max.message.bytes is enforced: MESSAGE_TOO_LARGE.
    let (_, pid) = init_producer_id(&mut client, None)?;
    assert_eq!(produce_batch(&mut client, "b_x", pid, 0, 20)?.0, 10);
    assert_eq!(produce_batch(&mut client, "b_x", pid, 0, 1)?, (0, 0));
    // A transactional id gets its producer id from the transaction coordinator; an empty
    // one is INVALID_REQUEST, as Kafka answers it.
    let (code, txn_pid) = init_producer_id(&mut client, Some("txn-1"))?;
    assert_eq!(code, 0);
    assert_ne!(txn_pid, pid);
    assert_eq!(init_producer_id(&mut client, Some(""))?.0, 42);
    Ok(())
}

#[test]
fn declared_topics_are_owned_while_a_link_shadows_the_rest() -> Result<()> {
    let source = shadowlink_tests::Tansu::start()?;
    for topic in ["b_payments", "b_other"] {
        shadowlink_tests::scenario::create_topic(source.addr, topic, 3, &[])?;
        shadowlink_tests::scenario::produce(source.addr, topic, 30, "none", 3, 0)?;
    }
    let config = NodeConfig::owner().topic("b_payments", 3).add_link(
        Link::new("from-b", source.addr)
            .include(&["b_*"])
            .exclude(&["b_payments"])
            .metadata_interval(Duration::from_millis(300)),
    );
    let node = Node::start(&config)?;
    // The link shadows what this node does not own...
    shadowlink_tests::scenario::wait_identical(source.addr, node.kafka, "b_other", 3)?;
    // ...and leaves the declared topic to its producers: only their records are in it.
    produce_with("confluent", node.kafka, "b_payments", 90, "lz4")?;
    assert_eq!(contiguous_records(node.kafka, "b_payments", 3)?, 90);
    Ok(())
}
