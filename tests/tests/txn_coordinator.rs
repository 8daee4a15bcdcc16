//! The transaction coordinator of owned topics, seen by real clients: transactional
//! producers commit, abort and hang; zombies are fenced; read_committed consumers of the
//! node and of a mirror of it see exactly what was committed.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use shadowlink_protocol::batch::{ControlType, RecordBatch};
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::wait_identical;
use shadowlink_tests::{node_js, python, until, Node, NodeConfig};

/// Every batch of partition 0, as stored.
fn batches(node: &Node, topic: &str) -> Result<Vec<RecordBatch>> {
    RawClient::connect(node.kafka)?
        .read_batches(topic, 0, 0)?
        .into_iter()
        .map(|(_, bytes)| Ok(RecordBatch::parse(bytes)?))
        .collect()
}

/// The log end offset of partition 0.
fn log_end(node: &Node, topic: &str) -> Result<i64> {
    Ok(batches(node, topic)?
        .last()
        .map_or(0, RecordBatch::next_offset))
}

/// The control type of every marker of partition 0, in offset order.
fn markers(node: &Node, topic: &str) -> Result<Vec<Option<ControlType>>> {
    Ok(batches(node, topic)?
        .iter()
        .filter(|b| b.is_control())
        .map(RecordBatch::control_type)
        .collect())
}

/// Values read from partition 0 by `client` (confluent or kafka-python) at `isolation`
/// until its position reaches `end`.
fn read_py(
    node: &Node,
    topic: &str,
    end: i64,
    client: &str,
    isolation: &str,
) -> Result<Vec<String>> {
    let out = python(
        "consume_isolation.py",
        &[
            &node.kafka.to_string(),
            topic,
            &end.to_string(),
            "--client",
            client,
            "--isolation",
            isolation,
        ],
    )?;
    out.lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line)?;
            Ok(record["value"].as_str().context("value")?.to_string())
        })
        .collect()
}

/// Values kcat reads from partition 0 at read_committed, up to the end it sees.
fn read_kcat(node: &Node, topic: &str) -> Result<Vec<String>> {
    let out = Command::new("timeout")
        .args([
            "60",
            "kcat",
            "-C",
            "-b",
            &node.kafka.to_string(),
            "-t",
            topic,
        ])
        .args(["-p", "0", "-o", "beginning", "-e", "-q", "-f", "%s\\n"])
        .args(["-X", "isolation.level=read_committed"])
        .output()
        .context("kcat runs")?;
    if !out.status.success() {
        bail!("kcat failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .map(str::to_string)
        .collect())
}

/// Values kafkajs reads at read_committed (`readUncommitted: false`) in a new group,
/// once it has `expected` of them.
fn read_kafkajs(node: &Node, topic: &str, expected: usize, group: &str) -> Result<Vec<String>> {
    let out = node_js(
        "consume.js",
        &[&node.kafka.to_string(), topic, &expected.to_string(), group],
    )?;
    out.lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line)?;
            let hex = record["value"].as_str().context("value")?;
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()?;
            Ok(String::from_utf8(bytes)?)
        })
        .collect()
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[test]
fn committed_aborted_and_abandoned_transactions_read_exactly_on_the_node_and_its_mirror(
) -> Result<()> {
    let topic = "a_txn";
    let a = Node::start(&NodeConfig::owner().topic(topic, 1))?;
    let b = Node::start(&NodeConfig::linked_to(a.kafka))?;
    let (aborted, committed, open) = (5, 7, 4);
    let out = python(
        "txn_produce.py",
        &[
            &a.kafka.to_string(),
            topic,
            "--id",
            "orders-tx",
            "--timeout-ms",
            "3000",
            "--abort",
            &aborted.to_string(),
            "--commit",
            &committed.to_string(),
            "--open",
            &open.to_string(),
        ],
    )?;
    assert_eq!(out.trim(), "done");
    // The abandoned transaction is aborted by its timeout: every record and one marker
    // per transaction.
    let end = (aborted + committed + open + 3) as i64;
    until(
        Duration::from_secs(30),
        || log_end(&a, topic),
        |e| *e == end,
    )?;
    assert_eq!(
        markers(&a, topic)?,
        [ControlType::Abort, ControlType::Commit, ControlType::Abort].map(Some)
    );
    wait_identical(a.kafka, b.kafka, topic, 1)?;

    let expected = values("committed", committed);
    let all = [
        values("aborted", aborted),
        values("committed", committed),
        values("open", open),
    ]
    .concat();
    for (name, node) in [("A", &a), ("B", &b)] {
        for client in ["confluent", "kafka-python"] {
            let got = read_py(node, topic, end, client, "read_committed")?;
            assert_eq!(got, expected, "{client} read_committed on {name}");
            let got = read_py(node, topic, end, client, "read_uncommitted")?;
            assert_eq!(got, all, "{client} read_uncommitted on {name}");
        }
        assert_eq!(read_kcat(node, topic)?, expected, "kcat on {name}");
        let group = format!("kafkajs-{name}");
        let got = read_kafkajs(node, topic, committed, &group)?;
        assert_eq!(got, expected, "kafkajs on {name}");
    }
    Ok(())
}

#[test]
fn a_second_producer_of_a_transactional_id_fences_the_first() -> Result<()> {
    let topic = "fenced";
    let node = Node::start(&NodeConfig::owner().topic(topic, 1))?;
    let out = python(
        "txn_zombie.py",
        &[&node.kafka.to_string(), topic, "--id", "zombie-tx"],
    )?;
    let outcome: Value = serde_json::from_str(out.trim())?;
    let error = &outcome["zombie_commit_error"];
    let name = error["name"]
        .as_str()
        .context("the zombie's commit failed")?;
    assert!(
        ["_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"].contains(&name),
        "{outcome}"
    );
    assert_eq!(error["fatal"], Value::Bool(true), "{outcome}");
    let end = log_end(&node, topic)?;
    let got = read_py(&node, topic, end, "confluent", "read_committed")?;
    assert_eq!(got, values("fresh", 3));
    // The zombie's flushed record was aborted when the newer producer initialised; its
    // later record never reached the log.
    let stored = read_py(&node, topic, end, "confluent", "read_uncommitted")?;
    assert_eq!(
        stored,
        [vec!["zombie-0".to_string()], values("fresh", 3)].concat()
    );
    Ok(())
}
