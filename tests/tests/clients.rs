//! Real clients read a mirror exactly as they read its source: the same records at the
//! same offsets (keys, values, headers, timestamps), and every producer is refused.

use std::process::Command;

use anyhow::Result;
use shadowlink_tests::scenario::{create_topic, produce, wait_identical};
use shadowlink_tests::{node_js, python, Node, NodeConfig, Tansu};

const RECORDS: usize = 240;
const PARTITIONS: i32 = 3;

fn mirrored(topic: &str, codec: &str) -> Result<(Tansu, Node)> {
    let source = Tansu::start()?;
    create_topic(source.addr, topic, PARTITIONS, &[])?;
    produce(source.addr, topic, RECORDS, codec, PARTITIONS, 0)?;
    let node = Node::start(&NodeConfig::linked_to(source.addr))?;
    wait_identical(source.addr, node.kafka, topic, PARTITIONS)?;
    Ok((source, node))
}

/// One JSON value per record line, so dumps from different languages compare by content.
fn records(text: &str) -> Result<Vec<serde_json::Value>> {
    text.lines().map(|l| Ok(serde_json::from_str(l)?)).collect()
}

fn dump(client: &str, bootstrap: &str, topic: &str) -> Result<Vec<serde_json::Value>> {
    records(&python(
        "dump.py",
        &[
            client,
            bootstrap,
            topic,
            &PARTITIONS.to_string(),
            &RECORDS.to_string(),
        ],
    )?)
}

#[test]
fn every_client_reads_the_mirror_exactly_as_the_source() -> Result<()> {
    let topic = "a_orders";
    // gzip: the one codec kafkajs decodes without plugins.
    let (source, node) = mirrored(topic, "gzip")?;
    let reference = dump("confluent", &source.bootstrap(), topic)?;
    assert_eq!(
        reference.len(),
        RECORDS,
        "the source itself reads back whole"
    );
    let mirror = node.kafka.to_string();
    for client in ["confluent", "kafka-python", "kcat"] {
        let got = dump(client, &mirror, topic)?;
        assert_eq!(
            got, reference,
            "{client} reads the mirror differently from the source"
        );
    }
    let got = records(&node_js(
        "consume.js",
        &[&mirror, topic, &RECORDS.to_string(), "kafkajs-reader"],
    )?)?;
    assert_eq!(
        got, reference,
        "kafkajs reads the mirror differently from the source"
    );
    Ok(())
}

#[test]
fn every_producer_is_refused_on_a_shadow_topic() -> Result<()> {
    let topic = "a_orders";
    let (source, node) = mirrored(topic, "none")?;
    let mirror = node.kafka.to_string();
    for client in ["confluent", "kafka-python"] {
        python("produce_refused.py", &[client, &mirror, topic])?;
    }
    let out = node_js("produce_refused.js", &[&mirror, topic])?;
    assert!(out.contains("POLICY_VIOLATION"), "{out}");
    let kcat = Command::new("kcat")
        .args([
            "-b",
            &mirror,
            "-P",
            "-t",
            topic,
            "-p",
            "0",
            "-X",
            "message.send.max.retries=0",
        ])
        .stdin(std::process::Stdio::piped())
        .output_with_input(b"must not be written\n")?;
    let stderr = String::from_utf8_lossy(&kcat.stderr);
    assert!(stderr.contains("Policy violation"), "kcat: {stderr}");
    // Nothing reached the mirror: it is still exactly the source.
    wait_identical(source.addr, node.kafka, topic, PARTITIONS)?;
    Ok(())
}

trait OutputWithInput {
    fn output_with_input(&mut self, input: &[u8]) -> std::io::Result<std::process::Output>;
}

impl OutputWithInput for Command {
    fn output_with_input(&mut self, input: &[u8]) -> std::io::Result<std::process::Output> {
        use std::io::Write;
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input)?;
        }
        child.wait_with_output()
    }
}

#[test]
fn kafkajs_group_members_share_a_pattern_subscription_and_resume_after_a_restart() -> Result<()> {
    let source = Tansu::start()?;
    for topic in ["a_orders", "a_events"] {
        create_topic(source.addr, topic, PARTITIONS, &[])?;
        produce(source.addr, topic, 90, "gzip", PARTITIONS, 0)?;
    }
    let mut node = Node::start(&NodeConfig::linked_to(source.addr))?;
    wait_identical(source.addr, node.kafka, "a_orders", PARTITIONS)?;
    wait_identical(source.addr, node.kafka, "a_events", PARTITIONS)?;

    let run = |node: &Node, expected: usize| -> Result<serde_json::Value> {
        let args = [
            &node.kafka.to_string(),
            "js-group",
            "^a_.*",
            &expected.to_string(),
            "3000",
            &(2 * PARTITIONS).to_string(),
        ];
        Ok(serde_json::from_str(node_js("group.js", &args)?.trim())?)
    };
    let first = run(&node, 180)?;
    assert_eq!(first["distinct"], 180, "{first}");
    assert_eq!(first["duplicates"], 0, "{first}");
    // The second member's join rebalances the group: the six partitions end up shared.
    let assigned: Vec<u64> = first["assigned"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_u64())
        .collect();
    assert!(
        assigned.len() == 2 && assigned.iter().all(|n| *n > 0),
        "{first}"
    );
    assert_eq!(assigned.iter().sum::<u64>(), 6, "{first}");

    // The group's commits survive a node restart: nothing is read twice.
    node.restart()?;
    produce(source.addr, "a_orders", 30, "gzip", PARTITIONS, 90)?;
    wait_identical(source.addr, node.kafka, "a_orders", PARTITIONS)?;
    let second = run(&node, 30)?;
    assert_eq!(
        second["distinct"], 30,
        "only the new records after the restart: {second}"
    );
    Ok(())
}
