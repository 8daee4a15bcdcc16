//! Metadata files fail small: a corrupt `topic.json`, `log-start-offset`,
//! `max-producer-id` or `producer-ids.json` takes only its topic, partition or producer
//! id allocation offline, named with the file in `/v1/status` and `shadowlink status`,
//! while the node starts and serves everything else. Missing files the node can rebuild
//! or safely default are not failures at all.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, MetadataRequest, MetadataResponse,
};
use serde_json::Value;
use shadowlink_protocol::batch::RecordBatch;
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::{python, shadowlink, Node, NodeConfig};

fn config() -> NodeConfig {
    NodeConfig::owner().admin().topic("b_declared", 2)
}

fn produce(node: &Node, topic: &str, count: usize, partitions: i32) -> Result<()> {
    let count = count.to_string();
    let out = python(
        "produce_owned.py",
        &[
            "confluent",
            &node.kafka.to_string(),
            topic,
            &count,
            "--partitions",
            &partitions.to_string(),
        ],
    )?;
    ensure!(out.trim() == count, "{topic}: {out} acknowledged");
    Ok(())
}

/// Records a real consumer reads from `partitions` of `topic`.
fn consume(node: &Node, topic: &str, expected: usize, partitions: &[i32]) -> Result<usize> {
    let mut args = vec![
        node.kafka.to_string(),
        topic.to_string(),
        expected.to_string(),
    ];
    args.extend(partitions.iter().map(i32::to_string));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Ok(python("consume_partitions.py", &args)?.trim().parse()?)
}

/// `shadowlink status` against the node, in `format` (text or json).
fn status(node: &Node, format: &str) -> Result<String> {
    let admin = node.admin.context("no admin listener")?;
    shadowlink(&["status", "--admin", &admin.to_string(), "--format", format])?
        .stdout("shadowlink status")
}

fn corrupt(path: &Path, bytes: &[u8]) -> Result<()> {
    ensure!(path.exists(), "{} does not exist", path.display());
    Ok(std::fs::write(path, bytes)?)
}

/// Metadata's error codes: (topic error, per partition (index, error)).
fn metadata(node: SocketAddr, topic: &str) -> Result<(i16, Vec<(i32, i16)>)> {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;
    let mut client = RawClient::connect(node)?;
    let version = client.version(ApiKey::Metadata, 12)?;
    let name = TopicName(StrBytes::from_string(topic.to_string()));
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(name)),
    ]));
    let response: MetadataResponse = client.call(ApiKey::Metadata, version, &request)?;
    let t = response.topics.first().context("no topic")?;
    let mut partitions: Vec<(i32, i16)> = t
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.error_code))
        .collect();
    partitions.sort_unstable();
    Ok((t.error_code, partitions))
}

fn init_producer_id(node: SocketAddr) -> Result<(i16, i64)> {
    let mut client = RawClient::connect(node)?;
    let version = client.version(ApiKey::InitProducerId, 4)?;
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id((-1).into())
        .with_producer_epoch(-1);
    let response: InitProducerIdResponse =
        client.call(ApiKey::InitProducerId, version, &request)?;
    Ok((response.error_code, response.producer_id.0))
}

/// The largest producer id of any batch the node serves.
fn max_stored_producer_id(node: &Node) -> Result<i64> {
    let mut client = RawClient::connect(node.kafka)?;
    let mut max = -1;
    for (topic, partitions) in [("b_declared", 2), ("b_created", 4), ("b_healthy", 2)] {
        for p in 0..partitions {
            for (_, bytes) in client.read_batches(topic, p, 0)? {
                max = max.max(RecordBatch::parse(bytes)?.producer_id());
            }
        }
    }
    Ok(max)
}

/// The `offline` entry of the status for `topic` (and `partition`, or the whole topic).
fn offline_error(status: &Value, topic: &str, partition: Option<i32>) -> Option<String> {
    status["offline"].as_array()?.iter().find_map(|o| {
        let matches = o["topic"] == topic && o["partition"].as_i64() == partition.map(i64::from);
        matches.then(|| o["error"].as_str().unwrap_or_default().to_string())
    })
}

/// A node holding three topics: one declared in the config, two created by clients.
fn node_with_topics() -> Result<Node> {
    let node = Node::start(&config())?;
    let bootstrap = node.kafka.to_string();
    python("admin.py", &[&bootstrap, "create", "b_created", "4"])?;
    python("admin.py", &[&bootstrap, "create", "b_healthy", "2"])?;
    produce(&node, "b_declared", 20, 2)?;
    produce(&node, "b_created", 40, 4)?;
    produce(&node, "b_healthy", 20, 2)?;
    Ok(node)
}

#[test]
fn corrupt_metadata_files_take_only_their_topic_or_partition_offline() -> Result<()> {
    let mut node = node_with_topics()?;
    node.process.terminate(std::time::Duration::from_secs(20))?;
    let topics = node.data_dir.join("topics");
    let topic_json = topics.join("b_declared/topic.json");
    let log_start = topics.join("b_created/1/log-start-offset");
    let max_producer_id = topics.join("b_created/2/max-producer-id");
    let producer_ids = node.data_dir.join("producer-ids.json");
    corrupt(&topic_json, b"{\"link\": \"\", \"source_")?;
    // Written only once records are deleted from the front; damaged all the same.
    std::fs::write(&log_start, b"12x")?;
    // Written at a segment's roll, which these small logs have not had; damaged all
    // the same.
    std::fs::write(&max_producer_id, b"-")?;
    corrupt(&producer_ids, b"{\"reserved_end\": ")?;
    // Rebuilt from the batch headers: no reason to take partition 0 offline.
    std::fs::write(topics.join("b_created/0/leader-epoch-checkpoint"), b"[[0,")?;
    node.restart()?;

    let report: Value = serde_json::from_str(&status(&node, "json")?)?;
    let named = |topic, partition, file: &Path| {
        let error = offline_error(&report, topic, partition)
            .with_context(|| format!("{topic} {partition:?} is not offline: {report}"))?;
        ensure!(
            error.contains(&file.display().to_string()),
            "{topic} {partition:?}: {error}"
        );
        Ok(())
    };
    named("b_declared", None, &topic_json)?;
    named("b_created", Some(1), &log_start)?;
    named("b_created", Some(2), &max_producer_id)?;
    assert_eq!(
        report["offline"].as_array().map(Vec::len),
        Some(3),
        "{report}"
    );
    let producer_ids_error = report["producer_ids_error"].as_str().unwrap_or_default();
    assert!(producer_ids_error.contains("producer-ids.json"), "{report}");
    assert_eq!(report["ready"], false);
    let not_ready = report["not_ready"].to_string();
    assert!(
        not_ready.contains("topic b_declared is offline")
            && not_ready.contains("partition b_created-1 is offline"),
        "{not_ready}"
    );
    let text = status(&node, "text")?;
    assert!(text.contains("OFFLINE_TOPIC"), "{text}");
    let row = |topic: &str, partition: &str, file: &Path| {
        text.lines().any(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.len() > 2
                && cells[0] == topic
                && cells[1] == partition
                && l.contains(&file.display().to_string())
        })
    };
    assert!(row("b_declared", "all", &topic_json), "{text}");
    assert!(row("b_created", "1", &log_start), "{text}");
    assert!(row("b_created", "2", &max_producer_id), "{text}");

    // Everything else is served as before.
    assert_eq!(consume(&node, "b_healthy", 20, &[0, 1])?, 20);
    assert_eq!(consume(&node, "b_created", 20, &[0, 3])?, 20);
    // The offline ones answer KAFKA_STORAGE_ERROR, not "unknown".
    assert_eq!(metadata(node.kafka, "b_declared")?.0, 56);
    let (topic_error, partitions) = metadata(node.kafka, "b_created")?;
    assert_eq!(topic_error, 0);
    assert_eq!(partitions, vec![(0, 0), (1, 56), (2, 56), (3, 0)]);
    let mut client = RawClient::connect(node.kafka)?;
    let fetch = client.read_batches("b_created", 1, 0).unwrap_err();
    assert!(fetch.to_string().contains("error 56"), "{fetch}");
    let list = client.list_offset("b_created", 2, -1).unwrap_err();
    assert!(list.to_string().contains("error 56"), "{list}");
    assert_eq!(init_producer_id(node.kafka)?.0, 56);
    // The name stays taken: nothing writes over what an operator may still recover.
    let out = python(
        "create_topics.py",
        &[&node.kafka.to_string(), "b_declared:1"],
    )?;
    assert!(out.contains("TOPIC_ALREADY_EXISTS"), "{out}");
    assert!(out.contains("cannot be opened"), "{out}");
    assert_eq!(std::fs::read(&topic_json)?, b"{\"link\": \"\", \"source_");
    Ok(())
}

#[test]
fn missing_metadata_files_are_rebuilt_or_safely_defaulted() -> Result<()> {
    let mut node = node_with_topics()?;
    node.process.terminate(std::time::Duration::from_secs(20))?;
    for p in 0..4 {
        let dir = node.data_dir.join(format!("topics/b_created/{p}"));
        for file in [
            "leader-epoch-checkpoint",
            "max-producer-id",
            "log-start-offset",
        ] {
            let _ = std::fs::remove_file(dir.join(file));
        }
    }
    std::fs::remove_file(node.data_dir.join("producer-ids.json"))?;
    node.restart()?;

    let report: Value = serde_json::from_str(&status(&node, "json")?)?;
    assert_eq!(report["offline"], Value::Array(vec![]), "{report}");
    assert_eq!(report["producer_ids_error"], Value::Null, "{report}");
    assert_eq!(consume(&node, "b_created", 40, &[0, 1, 2, 3])?, 40);
    // Producer ids stay above every id stored in a log, so a new producer's sequence
    // state never meets an old one's.
    let stored = max_stored_producer_id(&node)?;
    let (code, pid) = init_producer_id(node.kafka)?;
    assert_eq!(code, 0);
    assert!(
        stored >= 0 && pid > stored,
        "{pid} handed out, {stored} stored"
    );
    produce(&node, "b_created", 40, 4)?;
    assert_eq!(consume(&node, "b_created", 80, &[0, 1, 2, 3])?, 80);
    Ok(())
}

/// Every file of a partition directory with its length.
fn files(dir: &Path) -> Result<Vec<(String, u64)>> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        all.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.metadata()?.len(),
        ));
    }
    all.sort();
    Ok(all)
}

#[test]
fn a_link_does_not_write_offline_shadows_and_keeps_mirroring_the_rest() -> Result<()> {
    use shadowlink_tests::scenario::{create_topic, produce, wait_identical};
    let source = shadowlink_tests::Tansu::start()?;
    for topic in ["a_orders", "a_other"] {
        create_topic(source.addr, topic, 2, &[])?;
        produce(source.addr, topic, 20, "none", 2, 0)?;
    }
    let config = NodeConfig::linked_to(source.addr).admin();
    let mut node = Node::start(&config)?;
    wait_identical(source.addr, node.kafka, "a_orders", 2)?;
    wait_identical(source.addr, node.kafka, "a_other", 2)?;
    node.process.terminate(std::time::Duration::from_secs(20))?;
    let topics = node.data_dir.join("topics");
    corrupt(&topics.join("a_orders/topic.json"), b"[")?;
    std::fs::write(topics.join("a_other/0/log-start-offset"), b"x")?;
    let before = [
        files(&topics.join("a_orders/0"))?,
        files(&topics.join("a_other/0"))?,
    ];
    for topic in ["a_orders", "a_other"] {
        produce(source.addr, topic, 20, "none", 2, 20)?;
    }
    node.restart()?;

    // The healthy partition catches up, so the link has reconciled and fetched since.
    shadowlink_tests::eventually(std::time::Duration::from_secs(60), || {
        let expected = RawClient::connect(source.addr)?.read_batches("a_other", 1, 0)?;
        let actual = RawClient::connect(node.kafka)?.read_batches("a_other", 1, 0)?;
        Ok((actual == expected).then_some(()))
    })?;
    let after = [
        files(&topics.join("a_orders/0"))?,
        files(&topics.join("a_other/0"))?,
    ];
    assert_eq!(before, after, "an offline partition was written");
    assert_eq!(std::fs::read(topics.join("a_orders/topic.json"))?, b"[");
    let report: Value = serde_json::from_str(&status(&node, "json")?)?;
    assert!(
        offline_error(&report, "a_orders", None).is_some(),
        "{report}"
    );
    let other = report["links"][0]["topics"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "a_other"))
        .context("a_other in the link's status")?;
    assert_eq!(other["state"], "failed", "{other}");
    let reason = other["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("partition 0 is offline") && reason.contains("log-start-offset"),
        "{reason}"
    );
    Ok(())
}
