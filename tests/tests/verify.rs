//! Checking a mirror: `shadowlink verify` compares it with the source batch by batch, the
//! background scrubber re-checks the CRC of what is stored, and `shadowlink pause` /
//! `resume` stop and restart fetching without losing the place.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use serde_json::Value;
use shadowlink_protocol::batch::testing::build_batch;
use shadowlink_tests::fake::{FakeBroker, FakeLog};
use shadowlink_tests::scenario::{create_topic, mirrored, produce, wait_identical};
use shadowlink_tests::{
    eventually, http_get, python, shadowlink, status_json, until, Node, NodeConfig, Ran, Tansu,
};

fn admin(node: &Node) -> Result<String> {
    Ok(node
        .admin
        .context("the node has an admin listener")?
        .to_string())
}

/// `shadowlink COMMAND --admin ADMIN --link from-a ARGS...`, run to the end.
fn on_link(node: &Node, command: &str, args: &[&str]) -> Result<Ran> {
    let admin = admin(node)?;
    let mut all = vec![command, "--admin", &admin, "--link", "from-a"];
    all.extend_from_slice(args);
    shadowlink(&all)
}

/// The value of the sample of `name` whose labels include `label`.
fn sample(node: &Node, name: &str, label: &str) -> Result<f64> {
    let addr = node.admin.context("the node has an admin listener")?;
    let (code, text) = http_get(addr, "/metrics")?;
    ensure!(code == 200, "/metrics answered {code}");
    let value = text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (labels, value) = rest.split_once("} ")?;
        labels.contains(label).then(|| value.trim().parse().ok())?
    });
    value.with_context(|| format!("no {name}{{{label}}} in /metrics"))
}

/// The segment files of `topic`-`partition` in the node's data directory, oldest first.
fn segments(data_dir: &Path, topic: &str, partition: i32) -> Result<Vec<PathBuf>> {
    let dir = data_dir
        .join("topics")
        .join(topic)
        .join(partition.to_string());
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    Ok(logs)
}

/// Flips one byte inside the last record of the first batch of `segment`; returns the
/// batch's base offset.
fn flip_record_byte(segment: &Path) -> Result<i64> {
    let mut bytes = std::fs::read(segment)?;
    ensure!(bytes.len() > 61, "{} holds no batch", segment.display());
    let base = i64::from_be_bytes(bytes[0..8].try_into()?);
    let length = i32::from_be_bytes(bytes[8..12].try_into()?) as usize;
    let last_record_byte = 12 + length - 2;
    bytes[last_record_byte] ^= 0x5a;
    std::fs::write(segment, bytes)?;
    Ok(base)
}

/// `shadowlink verify --format json` of the whole link: whether it succeeded, and the
/// partitions it reported.
fn verify_json(node: &Node) -> Result<(bool, Vec<Value>)> {
    let ran = on_link(node, "verify", &["--format", "json"])?;
    let report: Value = serde_json::from_str(&ran.stdout)
        .with_context(|| format!("verify printed no report: {}{}", ran.stdout, ran.stderr))?;
    let partitions = report["partitions"]
        .as_array()
        .context("partitions")?
        .clone();
    Ok((ran.success(), partitions))
}

fn linked(source: SocketAddr) -> NodeConfig {
    // Segments roll after every batch, so all but the newest are closed and left alone
    // by start-up recovery.
    NodeConfig::linked_to(source).admin().segment_bytes(1024)
}

/// Verify finds a mirror identical to its source; a byte flipped on disk in a closed
/// segment is then reported by verify at its batch and found by the scrubber.
#[test]
fn verify_matches_a_mirror_then_names_a_flipped_byte_and_the_scrubber_finds_it() -> Result<()> {
    let source = Tansu::start()?;
    create_topic(source.addr, "a_verify", 2, &[])?;
    produce(source.addr, "a_verify", 200, "none", 2, 0)?;
    produce(source.addr, "a_verify", 200, "lz4", 2, 200)?;
    let mut node = Node::start(&linked(source.addr))?;
    wait_identical(source.addr, node.kafka, "a_verify", 2)?;

    let (ok, partitions) = verify_json(&node)?;
    ensure!(ok, "verify of an identical mirror failed: {partitions:?}");
    ensure!(partitions.len() == 2, "{partitions:?}");
    for p in &partitions {
        let batches = p["batches"].as_u64().context("batches")?;
        ensure!(batches >= 2 && p["bytes"].as_u64() > Some(0), "{p}");
        ensure!(p["matched"].as_u64() == Some(batches), "{p}");
        ensure!(p["first_mismatch"].is_null() && p["error"].is_null(), "{p}");
        ensure!(p["mirror_end"] == p["source_hwm"], "{p}");
    }
    let text = on_link(&node, "verify", &[])?.stdout("verify")?;
    ensure!(
        text.contains("2 partition(s) of link from-a: 2 identical, 0 differ"),
        "{text}"
    );
    ensure!(sample(&node, "shadowlink_verified_bytes_total", "check=\"verify\"")? > 0.0);

    node.process.terminate(Duration::from_secs(20))?;
    let logs = segments(&node.data_dir, "a_verify", 0)?;
    ensure!(logs.len() >= 2, "one segment only: {logs:?}");
    let damaged = flip_record_byte(&logs[0])?;
    node.restart()?;

    let (ok, partitions) = verify_json(&node)?;
    ensure!(!ok, "verify succeeded on a damaged mirror: {partitions:?}");
    let p0 = &partitions[0];
    ensure!(p0["partition"] == 0, "{partitions:?}");
    ensure!(
        p0["first_mismatch"]["offset"].as_i64() == Some(damaged),
        "{p0}"
    );
    let what = p0["first_mismatch"]["what"].as_str().unwrap_or_default();
    ensure!(
        what.starts_with("bytes") && what.contains("fails its CRC"),
        "{p0}"
    );
    ensure!(p0["mismatched"] == 1, "{p0}");
    ensure!(partitions[1]["first_mismatch"].is_null(), "{partitions:?}");
    let ran = on_link(
        &node,
        "verify",
        &["--topic", "a_verify", "--partition", "0"],
    )?;
    ensure!(!ran.success(), "{}", ran.stdout);
    ensure!(
        ran.stdout
            .contains(&format!("MISMATCH at offset {damaged}: bytes")),
        "{}",
        ran.stdout
    );

    // The scrubber finds the same batch on its own, once however many passes see it.
    let scrubbed = || sample(&node, "shadowlink_verified_bytes_total", "check=\"scrub\"");
    eventually(Duration::from_secs(30), || {
        let found = sample(
            &node,
            "shadowlink_verify_mismatches_total",
            "check=\"scrub\"",
        )?;
        Ok((found >= 1.0).then_some(()))
    })?;
    let before = scrubbed()?;
    eventually(Duration::from_secs(30), || {
        Ok((scrubbed()? > before).then_some(()))
    })?;
    let status = status_json(&node)?;
    let listed = status["scrub"]["mismatches"].as_array().context("scrub")?;
    ensure!(listed.len() == 1, "{status}");
    ensure!(
        listed[0]["topic"] == "a_verify" && listed[0]["partition"] == 0,
        "{status}"
    );
    ensure!(listed[0]["offset"].as_i64() == Some(damaged), "{status}");
    ensure!(
        node.process
            .logged(&["stored batch fails its CRC", "a_verify"]),
        "the scrubber logged no mismatch"
    );
    Ok(())
}

/// One single-record batch per offset in `offsets`, valued `{tag}-{offset}`.
fn batches(offsets: std::ops::Range<i64>, tag: &str) -> Vec<Bytes> {
    offsets
        .map(|o| {
            let value = format!("{tag}-{o}");
            build_batch(
                o,
                0,
                &[(Some(b"k".as_slice()), Some(value.as_bytes()))],
                1_000 + o,
            )
        })
        .collect()
}

/// What the source deleted after the mirror copied it is reported as gone, not as a
/// mismatch; a batch the source holds different under the same offsets is a mismatch
/// named by its CRC.
#[test]
fn verify_reports_what_the_source_deleted_as_gone_and_a_rewritten_batch_by_its_crc() -> Result<()> {
    let data = batches(0..20, "r");
    let source = FakeBroker::start(BTreeMap::from([(
        "a_kept".to_string(),
        vec![FakeLog {
            batches: data.clone(),
            ..FakeLog::default()
        }],
    )]))?;
    let node = Node::start(&NodeConfig::linked_to(source.addr).admin())?;
    eventually(Duration::from_secs(30), || mirrored(&node, "a_kept", &data))?;
    // Paused, the mirror keeps what the source deletes from now on.
    on_link(&node, "pause", &[])?.stdout("pause")?;
    source.edit(|t| t.get_mut("a_kept").expect("a_kept")[0].log_start = 12);

    let (ok, partitions) = verify_json(&node)?;
    ensure!(ok, "{partitions:?}");
    let p = &partitions[0];
    ensure!(
        p["gone_at_source"] == serde_json::json!({"from": 0, "to": 12}),
        "{p}"
    );
    ensure!(p["source_start"] == 12 && p["mirror_start"] == 0, "{p}");
    ensure!(p["batches"] == 8 && p["matched"] == 8, "{p}");

    let rewritten = batches(15..16, "x").remove(0);
    source.edit(|t| t.get_mut("a_kept").expect("a_kept")[0].batches[15] = rewritten);
    let (ok, partitions) = verify_json(&node)?;
    ensure!(!ok, "{partitions:?}");
    let p = &partitions[0];
    ensure!(p["first_mismatch"]["offset"] == 15, "{p}");
    let what = p["first_mismatch"]["what"].as_str().unwrap_or_default();
    ensure!(what.starts_with("CRC: source 0x"), "{p}");
    ensure!(p["matched"] == 7 && p["mismatched"] == 1, "{p}");
    let refused = on_link(&node, "verify", &["--partition", "3"])?;
    ensure!(refused.stderr.contains("400"), "{}", refused.stderr);
    let refused = on_link(&node, "verify", &["--topic", "b_elsewhere"])?;
    ensure!(
        refused.stderr.contains("not a shadow topic"),
        "{}",
        refused.stderr
    );
    Ok(())
}

/// The status of `topic` in the only link's report.
fn topic_status(status: &Value, topic: &str) -> Result<Value> {
    let topics = status["links"][0]["topics"].as_array().context("topics")?;
    topics
        .iter()
        .find(|t| t["name"] == topic)
        .cloned()
        .with_context(|| format!("no {topic} in {status}"))
}

/// Waits until `topic`'s only partition is reported `lag` records behind, still ending
/// at `dst_hwm`, for at least two seconds: the source's new records are known to the
/// node and were not fetched.
fn wait_lagging(node: &Node, topic: &str, lag: i64, dst_hwm: i64) -> Result<Value> {
    let partition = |status: &Value| -> Result<Value> {
        Ok(topic_status(status, topic)?["partitions"][0].clone())
    };
    let status = until(
        Duration::from_secs(30),
        || status_json(node),
        |status| {
            partition(status).is_ok_and(|p| {
                let behind = p["lag"].as_i64() == Some(lag) || p["dst_hwm"] != dst_hwm;
                behind && p["lag_seconds"].as_f64().is_some_and(|s| s >= 2.0)
            })
        },
    )?;
    let p = partition(&status)?;
    ensure!(p["dst_hwm"] == dst_hwm, "{topic} was fetched: {p}");
    ensure!(p["lag"] == lag, "{p}");
    Ok(status)
}

/// Produces `count` records from `start`, one per batch: tansu answers ListOffsets
/// latest with its last batch's base offset + 1, which is then its high watermark, as
/// a Kafka broker answers.
fn produce_singly(source: SocketAddr, topic: &str, count: usize, start: usize) -> Result<()> {
    let (count, start) = (count.to_string(), start.to_string());
    let bootstrap = source.to_string();
    let args = [
        &bootstrap,
        topic,
        &count,
        "--start",
        &start,
        "--batch-size",
        "1",
    ];
    let acked = python("produce.py", &args)?;
    ensure!(
        acked.trim() == count,
        "{topic}: {count} produced, {acked} acknowledged"
    );
    Ok(())
}

/// Pausing a topic stops its fetches while the link's other topics flow and its lag is
/// still reported; a paused link stays paused across a restart; resume catches up.
#[test]
fn pause_holds_the_mirror_reports_lag_survives_a_restart_and_resume_catches_up() -> Result<()> {
    let source = Tansu::start()?;
    for topic in ["a_paused", "a_flowing", "a_handed"] {
        create_topic(source.addr, topic, 1, &[])?;
        produce(source.addr, topic, 50, "none", 1, 0)?;
    }
    let mut node = Node::start(&NodeConfig::linked_to(source.addr).admin())?;
    for topic in ["a_paused", "a_flowing", "a_handed"] {
        wait_identical(source.addr, node.kafka, topic, 1)?;
    }
    on_link(&node, "failover", &["--topic", "a_handed"])?.stdout("failover")?;
    let refused = on_link(&node, "pause", &["--topic", "a_handed"])?;
    ensure!(
        !refused.success() && refused.stderr.contains("400"),
        "{refused:?}"
    );
    ensure!(refused.stderr.contains("failed over"), "{}", refused.stderr);
    let refused = on_link(&node, "pause", &["--topic", "b_elsewhere"])?;
    ensure!(
        refused.stderr.contains("not a shadow topic of link"),
        "{}",
        refused.stderr
    );

    let paused = on_link(&node, "pause", &["--topic", "a_paused"])?.stdout("pause")?;
    ensure!(
        paused == "link from-a: running, topics paused: a_paused\n",
        "{paused}"
    );
    produce_singly(source.addr, "a_paused", 50, 50)?;
    produce_singly(source.addr, "a_flowing", 50, 50)?;
    wait_identical(source.addr, node.kafka, "a_flowing", 1)?;
    let status = wait_lagging(&node, "a_paused", 50, 50)?;
    ensure!(
        topic_status(&status, "a_paused")?["paused"] == true,
        "{status}"
    );
    ensure!(
        topic_status(&status, "a_flowing")?["paused"] == false,
        "{status}"
    );
    ensure!(status["links"][0]["paused_topics"] == serde_json::json!(["a_paused"]));
    let lag = sample(&node, "shadowlink_shadow_lag", "topic=\"a_paused\"")?;
    ensure!(lag == 50.0, "shadowlink_shadow_lag of a_paused is {lag}");

    let paused = on_link(&node, "pause", &[])?.stdout("pause")?;
    ensure!(paused == "link from-a: paused\n", "{paused}");
    node.restart()?;
    produce_singly(source.addr, "a_flowing", 50, 100)?;
    let status = wait_lagging(&node, "a_flowing", 50, 100)?;
    ensure!(status["links"][0]["paused"] == true, "{status}");
    let p = &topic_status(&status, "a_paused")?["partitions"][0];
    ensure!(p["lag"] == 50 && p["dst_hwm"] == 50, "{status}");
    let text = shadowlink(&["status", "--admin", &admin(&node)?])?.stdout("status")?;
    ensure!(text.contains("connected (paused)"), "{text}");
    let refused = on_link(&node, "resume", &["--topic", "a_paused"])?;
    ensure!(
        refused.stderr.contains("paused as a whole"),
        "{}",
        refused.stderr
    );

    let resumed = on_link(&node, "resume", &[])?.stdout("resume")?;
    ensure!(
        resumed == "link from-a: running, no topic paused\n",
        "{resumed}"
    );
    wait_identical(source.addr, node.kafka, "a_flowing", 1)?;
    wait_identical(source.addr, node.kafka, "a_paused", 1)?;
    let status = status_json(&node)?;
    ensure!(status["links"][0]["paused"] == false, "{status}");
    ensure!(
        topic_status(&status, "a_paused")?["paused"] == false,
        "{status}"
    );
    Ok(())
}
