//! Failover: with the source cluster gone, `shadowlink failover` makes shadow topics
//! writable; producers continue at the mirrored offsets, consumers read one contiguous log.

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use shadowlink_protocol::batch::RecordBatch;
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::{create_topic, produce, wait_identical};
use shadowlink_tests::{python, shadowlink, Node, NodeConfig, Tansu};

fn failover(admin: &str, args: &[&str]) -> Result<String> {
    let mut all = vec!["failover", "--admin", admin, "--link", "from-a"];
    all.extend_from_slice(args);
    shadowlink(&all)?.stdout("failover")
}

/// Every batch of `topic`-`partition`: (base offset, leader epoch, records), checking the
/// offsets run without a gap from 0.
fn batches(node: &Node, topic: &str, partition: i32) -> Result<Vec<(i64, i32, i32)>> {
    let mut next = 0;
    let mut out = Vec::new();
    for (base, bytes) in RawClient::connect(node.kafka)?.read_batches(topic, partition, 0)? {
        let batch = RecordBatch::parse(bytes)?;
        ensure!(
            base == next,
            "{topic}-{partition}: batch at {base}, expected {next}"
        );
        ensure!(
            batch.validate_crc().is_ok(),
            "{topic}-{partition}@{base}: bad CRC"
        );
        next = batch.next_offset();
        out.push((base, batch.partition_leader_epoch(), batch.record_count()));
    }
    Ok(out)
}

#[test]
fn failover_without_the_source_continues_offsets_and_keeps_the_rest_read_only() -> Result<()> {
    let mut source = Tansu::start()?;
    for topic in ["a_orders", "a_other"] {
        create_topic(source.addr, topic, 2, &[])?;
        produce(source.addr, topic, 60, "none", 2, 0)?;
    }
    let config = NodeConfig::linked_to(source.addr).admin();
    let node = Node::start(&config)?;
    let admin = node
        .admin
        .context("the node reports its admin listener")?
        .to_string();
    wait_identical(source.addr, node.kafka, "a_orders", 2)?;
    wait_identical(source.addr, node.kafka, "a_other", 2)?;

    // Region A is gone.
    source.process.kill9();
    let report = failover(&admin, &["--topic", "a_orders"])?;
    let rows: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("a_orders"))
        .collect();
    assert_eq!(rows.len(), 2, "{report}");
    for row in rows {
        let cells: Vec<&str> = row.split_whitespace().collect();
        // TOPIC PARTITION STATE NEXT_OFFSET SRC_HWM RECORDS_AT_RISK SECONDS_AT_RISK
        assert_eq!(&cells[2..6], ["failed_over", "30", "30", "0"], "{report}");
    }

    // Producers continue at the mirrored end, in an epoch above every mirrored one.
    let mirrored = batches(&node, "a_orders", 0)?;
    let out = python(
        "produce_owned.py",
        &[
            "confluent",
            &node.kafka.to_string(),
            "a_orders",
            "40",
            "--partitions",
            "2",
        ],
    )?;
    assert_eq!(out.trim(), "40");
    let mirrored_epoch = mirrored.iter().map(|b| b.1).max().unwrap_or(0);
    for p in 0..2 {
        let all = batches(&node, "a_orders", p)?;
        let records: i32 = all.iter().map(|b| b.2).sum();
        assert_eq!(
            records, 50,
            "a_orders-{p}: 30 mirrored then 20 produced here"
        );
        let new: Vec<_> = all.iter().filter(|b| b.0 >= 30).collect();
        assert!(
            !new.is_empty() && new.iter().all(|b| b.1 > mirrored_epoch),
            "{all:?}"
        );
    }
    let consumed = python(
        "consume.py",
        &[
            &node.kafka.to_string(),
            "a_orders",
            "100",
            "--partitions",
            "2",
        ],
    )?;
    assert_eq!(consumed.trim(), "100");

    // The status shows the one-way state; the topic not failed over is still read-only.
    let status = shadowlink(&["status", "--admin", &admin, "--format", "json"])?;
    let status: Value = serde_json::from_str(&status.stdout)?;
    let states: Vec<(String, String)> = status["links"][0]["topics"]
        .as_array()
        .context("topics")?
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or_default().to_string(),
                t["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(
        states.contains(&("a_orders".into(), "failed_over".into())),
        "{states:?}"
    );
    python(
        "produce_refused.py",
        &["confluent", &node.kafka.to_string(), "a_other"],
    )?;

    // Failing over the whole link takes the rest; a repeat is harmless.
    let report = failover(&admin, &["--all"])?;
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("a_other") && l.contains("failed_over")),
        "{report}"
    );
    let unknown = shadowlink(&["failover", "--admin", &admin, "--link", "nope", "--all"])?;
    assert!(!unknown.success());
    assert!(unknown.stderr.contains("link nope is not configured"));
    Ok(())
}

#[test]
fn a_failed_over_topic_stays_writable_after_a_restart_and_the_link_leaves_it() -> Result<()> {
    let source = Tansu::start()?;
    create_topic(source.addr, "a_orders", 1, &[])?;
    produce(source.addr, "a_orders", 20, "none", 1, 0)?;
    let config = NodeConfig::linked_to(source.addr).admin();
    let mut node = Node::start(&config)?;
    wait_identical(source.addr, node.kafka, "a_orders", 1)?;
    let admin = node.admin.context("admin")?.to_string();
    failover(&admin, &["--topic", "a_orders"])?;

    // The source is still up and gets more records: they must not reach the topic now.
    produce(source.addr, "a_orders", 20, "none", 1, 20)?;
    node.restart()?;
    let out = python(
        "produce_owned.py",
        &[
            "confluent",
            &node.kafka.to_string(),
            "a_orders",
            "5",
            "--partitions",
            "1",
        ],
    )?;
    assert_eq!(out.trim(), "5");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let records: i32 = batches(&node, "a_orders", 0)?.iter().map(|b| b.2).sum();
    assert_eq!(
        records, 25,
        "20 mirrored before failover, 5 produced after, none from the link"
    );
    Ok(())
}

#[test]
fn a_failed_over_topic_keeps_what_its_link_last_saw_of_the_source() -> Result<()> {
    let source = Tansu::start()?;
    create_topic(source.addr, "a_orders", 1, &[])?;
    produce(source.addr, "a_orders", 20, "none", 1, 0)?;
    let config = NodeConfig::linked_to(source.addr).admin();
    let node = Node::start(&config)?;
    wait_identical(source.addr, node.kafka, "a_orders", 1)?;
    let admin = node.admin.context("admin")?.to_string();
    failover(&admin, &["--topic", "a_orders"])?;

    // Several metadata refreshes pass: the link lets the topic go, and the status still
    // shows the source's end its records at risk were measured against.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let status = shadowlink(&["status", "--admin", &admin, "--format", "json"])?;
    let status: Value = serde_json::from_str(&status.stdout)?;
    let topic = (status["links"][0]["topics"].as_array())
        .and_then(|topics| topics.iter().find(|t| t["name"] == "a_orders"))
        .context("a_orders in the status")?;
    let partition = &topic["partitions"][0];
    assert_eq!(topic["state"], "failed_over", "{topic}");
    assert_eq!(partition["src_hwm"], 20, "{partition}");
    assert_eq!(partition["dst_hwm"], 20, "{partition}");
    Ok(())
}
