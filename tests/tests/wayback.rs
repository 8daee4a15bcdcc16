//! The way back after a failover: region A returns having written while cut off, finds
//! its topics fenced by B's failover, fails them back (saving what it wrote meanwhile)
//! and then mirrors B byte for byte; a switchover later returns ownership without loss.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use base64::Engine;
use kafka_protocol::records::RecordBatchDecoder;
use serde_json::Value;
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::wait_identical;
use shadowlink_tests::{
    eventually, free_port, python, shadowlink, topic_state, Link, Node, NodeConfig,
};

const PARTITIONS: i32 = 2;

/// The tests here run one at a time: each kills and restarts nodes of a pair and waits
/// on the other's link, and several pairs at once on a small machine starve them.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// A node of the pair on `port`, owning `owns` and linked to the peer at `peer`.
fn node_config(port: u16, owns: &str, link_from: &str, peer: SocketAddr) -> NodeConfig {
    let pattern = format!("{link_from}_*");
    NodeConfig::owner()
        .listen(format!("127.0.0.1:{port}"))
        .admin()
        .topic(owns, PARTITIONS)
        .add_link(
            Link::new(&format!("from-{link_from}"), peer)
                .include(&[&pattern])
                .metadata_interval(Duration::from_millis(300)),
        )
}

/// Produces keys `key-{start}..` with an idempotent confluent-kafka producer.
fn produce(node: &Node, topic: &str, start: usize, count: usize) -> Result<()> {
    let out = python(
        "produce_owned.py",
        &[
            "confluent",
            &node.kafka.to_string(),
            topic,
            &count.to_string(),
            "--partitions",
            &PARTITIONS.to_string(),
            "--start",
            &start.to_string(),
        ],
    )?;
    ensure!(
        out.trim() == count.to_string(),
        "{topic}: acknowledged {out}"
    );
    Ok(())
}

fn keys(range: std::ops::Range<usize>) -> BTreeSet<String> {
    range.map(|i| format!("key-{i}")).collect()
}

/// Every record key the node holds in `topic`, checking no key appears twice.
fn stored_keys(node: &Node, topic: &str) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for p in 0..PARTITIONS {
        for (_, mut bytes) in RawClient::connect(node.kafka)?.read_batches(topic, p, 0)? {
            let set = RecordBatchDecoder::decode(&mut bytes)
                .map_err(|e| anyhow::anyhow!("{topic}-{p}: {e}"))?;
            for r in set.records.iter().filter(|r| !r.control) {
                let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default());
                ensure!(out.insert(key.to_string()), "{topic}: {key} stored twice");
            }
        }
    }
    Ok(out)
}

fn admin(node: &Node) -> Result<String> {
    Ok(node.admin.context("admin listener")?.to_string())
}

/// The keys of every line of a diverged file, checking each line's fields.
fn diverged_keys(file: &Path, topic: &str) -> Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(file).with_context(|| file.display().to_string())?;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let record: Value = serde_json::from_str(line)?;
        ensure!(record["topic"] == topic, "{line}");
        ensure!(record["offset"].as_i64().is_some() && record["timestamp"].is_i64());
        let key = record["key"].as_str().context("key")?;
        let key = base64::engine::general_purpose::STANDARD.decode(key)?;
        let value = record["value"].as_str().context("value")?;
        let value = base64::engine::general_purpose::STANDARD.decode(value)?;
        let key = String::from_utf8(key)?;
        ensure!(
            value == key.replace("key", "value").into_bytes(),
            "{line}: the value is not the one produced with the key"
        );
        out.insert(key);
    }
    Ok(out)
}

/// Produces one batch to partition 0 with Produce v9: the error code and message.
fn raw_produce(node: SocketAddr, topic: &str, key: &str) -> Result<(i16, String)> {
    use shadowlink_protocol::batch::testing::build_batch;
    let records = build_batch(0, 0, &[(Some(key.as_bytes()), Some(b"v".as_slice()))], 1);
    let p = RawClient::connect(node)?.produce_answer(topic, 0, records)?;
    let message = p.error_message.as_ref().map(|m| m.to_string());
    Ok((p.error_code, message.unwrap_or_default()))
}

struct Pair {
    a: Node,
    b: Node,
}

/// A owns `a_orders` (40 records, mirrored to B); A dies; B fails it over and takes 20
/// more; A comes back cut off from B and takes 10; then A is restarted reaching B.
fn diverged_pair() -> Result<Pair> {
    let (port_a, port_b) = (free_port(), free_port());
    let addr = |port: u16| -> SocketAddr { ([127, 0, 0, 1], port).into() };
    let config_a = node_config(port_a, "a_orders", "b", addr(port_b));
    let mut a = Node::start(&config_a)?;
    let b = Node::start(&node_config(port_b, "b_payments", "a", addr(port_a)))?;
    produce(&a, "a_orders", 0, 40)?;
    wait_identical(a.kafka, b.kafka, "a_orders", PARTITIONS)?;

    a.process.kill9();
    let failover = shadowlink(&[
        "failover",
        "--admin",
        &admin(&b)?,
        "--link",
        "from-a",
        "--topic",
        "a_orders",
    ])?
    .stdout("failover")?;
    ensure!(failover.contains("failed_over"), "{failover}");
    produce(&b, "a_orders", 1000, 20)?;

    // A returns while B is unreachable: its link points nowhere, producers carry on.
    // Port 1 is privileged: no test node listens there.
    a.rewrite_config(&node_config(port_a, "a_orders", "b", addr(1)))?;
    a.restart()?;
    produce(&a, "a_orders", 2000, 10)?;
    a.rewrite_config(&config_a)?;
    a.restart()?;
    Ok(Pair { a, b })
}

#[test]
fn a_returning_owner_is_fenced_fails_back_and_mirrors_the_survivor() -> Result<()> {
    let _serial = one_at_a_time();
    let Pair { a, b, .. } = diverged_pair()?;

    // A's link sees B writing a_orders in a newer epoch: A stops taking writes for it.
    eventually(Duration::from_secs(30), || {
        Ok((topic_state(&a, "a_orders")?.as_deref() == Some("fenced_by_failover")).then_some(()))
    })?;
    python(
        "produce_refused.py",
        &["confluent", &a.kafka.to_string(), "a_orders"],
    )?;
    let (code, message) = raw_produce(a.kafka, "a_orders", "refused")?;
    ensure!(
        code == 44,
        "POLICY_VIOLATION expected, got {code}: {message}"
    );
    ensure!(message.contains("failed over to link from-b"), "{message}");

    let report = shadowlink(&["failback", "--admin", &admin(&a)?, "--link", "from-b"])?
        .stdout("failback")?;
    let rows: Vec<Vec<&str>> = report
        .lines()
        .filter(|l| l.starts_with("a_orders "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    ensure!(rows.len() == PARTITIONS as usize, "{report}");
    for row in &rows {
        // TOPIC PARTITION STATE FAILOVER_POINT LOG_END_BEFORE DIVERGED_RECORDS
        ensure!(row[2..] == ["demoted", "20", "25", "5"], "{report}");
    }
    ensure!(
        report.contains("total: 10 diverged records saved"),
        "{report}"
    );
    let file = report
        .lines()
        .find_map(|l| l.split(" saved to ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .context("the report names the file")?;
    ensure!(Path::new(file).starts_with(&a.data_dir), "{file}");
    ensure!(diverged_keys(Path::new(file), "a_orders")? == keys(2000..2010));
    let batches = Path::new(file).with_extension("batches");
    ensure!(
        std::fs::metadata(&batches)?.len() > 0,
        "{}",
        batches.display()
    );

    // A now follows B byte for byte, and every acknowledged record is on B or in the file.
    wait_identical(b.kafka, a.kafka, "a_orders", PARTITIONS)?;
    let on_b = stored_keys(&b, "a_orders")?;
    ensure!(on_b == &keys(0..40) | &keys(1000..1020), "{on_b:?}");
    eventually(Duration::from_secs(30), || {
        Ok((topic_state(&a, "a_orders")?.as_deref() == Some("active")).then_some(()))
    })?;
    // A refuses producers as a shadow of B now.
    let message = wait_shadow(&a)?;
    ensure!(
        message.contains("read-only shadow of link from-b"),
        "{message}"
    );
    produce(&b, "a_orders", 3000, 6)?;
    wait_identical(b.kafka, a.kafka, "a_orders", PARTITIONS)?;

    // A planned switchover returns a_orders to A with nothing lost and offsets kept.
    let report = switchover(&b, "from-a", &a, "from-b")?;
    ensure!(report.contains("records at risk: 0"), "{report}");
    produce(&a, "a_orders", 4000, 10)?;
    wait_identical(a.kafka, b.kafka, "a_orders", PARTITIONS)?;
    let on_a = stored_keys(&a, "a_orders")?;
    let acknowledged = [
        keys(0..40),
        keys(1000..1020),
        keys(3000..3006),
        keys(4000..4010),
    ];
    ensure!(
        on_a == acknowledged.iter().flatten().cloned().collect(),
        "{on_a:?}"
    );
    ensure!(on_a.is_disjoint(&keys(2000..2010)));
    Ok(())
}

fn switchover(from: &Node, from_link: &str, to: &Node, to_link: &str) -> Result<String> {
    shadowlink_tests::switchover((from, from_link), (to, to_link), &["a_orders"])
}

/// A POST of a JSON body to a node's admin listener: status and body.
fn post(node: &Node, path: &str, body: &str) -> Result<(u16, String)> {
    shadowlink_tests::http_post(node.admin.context("admin listener")?, path, body)
}

const TOPICS: &str = r#"{"topics":["a_orders"]}"#;

/// Step 1 of a switchover on `owner`, as a CLI that then died would leave it.
fn release(owner: &Node) -> Result<String> {
    let (code, body) = post(owner, "/v1/switchover/release", TOPICS)?;
    ensure!(code == 200, "release: {code} {body}");
    Ok(body)
}

/// Steps 1 and 2: `owner` stops writes and `mirror` takes ownership through `link`.
fn release_and_take(owner: &Node, mirror: &Node, link: &str) -> Result<()> {
    let released = release(owner)?;
    let take = format!(r#"{{"topics":{released},"timeout_ms":8000}}"#);
    let (code, body) = post(mirror, &format!("/v1/links/{link}/switchover/take"), &take)?;
    ensure!(code == 200, "take: {code} {body}");
    Ok(())
}

/// Waits until a produce of one record keyed `key` to a_orders-0 gets `code` (0 once it
/// is written).
fn wait_produce_code(node: &Node, code: i16, key: &str) -> Result<String> {
    let mut last = (0, String::new());
    eventually(Duration::from_secs(30), || {
        last = raw_produce(node.kafka, "a_orders", key)?;
        Ok((last.0 == code).then(|| last.1.clone()))
    })
    .with_context(|| format!("{} never answered {code}: {last:?}", node.kafka))
}

/// Waits until a produce to a_orders-0 on `node` is refused as to a shadow (the topic
/// was demoted); returns the refusal's message.
fn wait_shadow(node: &Node) -> Result<String> {
    let mut last = (0, String::new());
    eventually(Duration::from_secs(30), || {
        last = raw_produce(node.kafka, "a_orders", "refused")?;
        let (code, message) = &last;
        Ok((*code == 44 && message.contains("shadow")).then(|| message.clone()))
    })
    .with_context(|| format!("{} never became a shadow: {last:?}", node.kafka))
}

#[test]
fn a_switchover_interrupted_by_a_crash_of_either_node_completes_with_one_writer() -> Result<()> {
    let _serial = one_at_a_time();
    let (port_a, port_b) = (free_port(), free_port());
    let addr = |port: u16| -> SocketAddr { ([127, 0, 0, 1], port).into() };
    let mut a = Node::start(&node_config(port_a, "a_orders", "b", addr(port_b)))?;
    let mut b = Node::start(&node_config(port_b, "b_payments", "a", addr(port_a)))?;
    produce(&a, "a_orders", 0, 40)?;
    wait_identical(a.kafka, b.kafka, "a_orders", PARTITIONS)?;

    // A (the owner) dies right after it stopped writes: it comes back still refusing them,
    // retriably, and the switchover run again completes.
    release(&a)?;
    a.process.kill9();
    a.restart()?;
    let (code, _) = raw_produce(a.kafka, "a_orders", "refused")?;
    ensure!(
        code == 6,
        "NOT_LEADER_OR_FOLLOWER expected from a stopped owner, got {code}"
    );
    let report = switchover(&a, "from-b", &b, "from-a")?;
    ensure!(report.contains("records at risk: 0"), "{report}");
    let message = wait_shadow(&a)?;
    ensure!(
        message.contains("read-only shadow of link from-b"),
        "{message}"
    );
    wait_produce_code(&b, 0, "raw-1")?;
    produce(&b, "a_orders", 1000, 10)?;
    wait_identical(b.kafka, a.kafka, "a_orders", PARTITIONS)?;

    // Back to A; A (the new owner) dies right after it took ownership: it comes back the
    // owner, and the switchover run again finishes on B.
    release_and_take(&b, &a, "from-b")?;
    a.process.kill9();
    a.restart()?;
    let report = switchover(&b, "from-a", &a, "from-b")?;
    ensure!(report.contains("records at risk: 0"), "{report}");
    wait_shadow(&b)?;
    wait_produce_code(&a, 0, "raw-2")?;
    produce(&a, "a_orders", 2000, 10)?;
    wait_identical(a.kafka, b.kafka, "a_orders", PARTITIONS)?;

    // To B; A (the old owner) dies after B took ownership: it comes back stopped and
    // demotes itself on seeing B's epoch.
    release_and_take(&a, &b, "from-a")?;
    a.process.kill9();
    a.restart()?;
    wait_shadow(&a)?;
    wait_produce_code(&b, 0, "raw-3")?;
    produce(&b, "a_orders", 3000, 10)?;

    // Back to A; A (the new owner) dies after B stopped writes: it comes back a shadow,
    // and the switchover run again completes.
    release(&b)?;
    a.process.kill9();
    a.restart()?;
    let report = switchover(&b, "from-a", &a, "from-b")?;
    ensure!(report.contains("records at risk: 0"), "{report}");
    wait_shadow(&b)?;
    wait_produce_code(&a, 0, "raw-4")?;
    produce(&a, "a_orders", 4000, 10)?;
    wait_identical(a.kafka, b.kafka, "a_orders", PARTITIONS)?;

    let on_a = stored_keys(&a, "a_orders")?;
    let mut acknowledged: BTreeSet<String> = [
        keys(0..40),
        keys(1000..1010),
        keys(2000..2010),
        keys(3000..3010),
        keys(4000..4010),
    ]
    .into_iter()
    .flatten()
    .collect();
    acknowledged.extend((1..=4).map(|i| format!("raw-{i}")));
    ensure!(on_a == acknowledged, "{on_a:?}");
    b.process.kill9();
    Ok(())
}
