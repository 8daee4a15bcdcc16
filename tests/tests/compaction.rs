//! Compacted topics (`cleanup.policy=compact`): the node's own compacted topics are
//! cleaned in the background until a consumer from offset 0 sees each key's latest
//! value once, and deleted keys not at all once `delete.retention.ms` has passed.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use kafka_protocol::records::RecordBatchDecoder;
use shadowlink_protocol::batch::RecordBatch;
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::{eventually, http_get, python, shadowlink, Node, NodeConfig};

use bytes::Bytes;

/// `(offset, key, value)`; `None` for a tombstone's value.
type Record = (i64, String, Option<String>);

const TOPIC_CONFIGS: &[&str] = &[
    "cleanup.policy=compact",
    "min.cleanable.dirty.ratio=0.01",
    "min.compaction.lag.ms=0",
    "segment.ms=1000",
    "delete.retention.ms=2000",
];

/// An owner with 16 KiB segments, checking its compacted topics every 200 ms.
fn owner() -> NodeConfig {
    NodeConfig::owner()
        .admin()
        .segment_bytes(16 * 1024)
        .storage_entry("cleaner_interval", "\"200ms\"")
}

fn create(client: &str, node: &Node, topic: &str) -> Result<()> {
    let mut args = vec!["create", client, &*node.kafka.to_string(), topic]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    args.extend(TOPIC_CONFIGS.iter().map(|c| c.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = python("compacted.py", &args)?;
    ensure!(out.trim() == "OK", "create {topic}: {out}");
    Ok(())
}

/// Writes `updates` records over `keys` keys from record `start`, then a tombstone for
/// each of the first `deleted` keys (see `tests/py/compacted.py`).
fn produce(
    node: &Node,
    topic: &str,
    start: u64,
    updates: u64,
    keys: u64,
    deleted: u64,
) -> Result<()> {
    let (bootstrap, start_text) = (node.kafka.to_string(), start.to_string());
    let (updates_text, keys_text, deleted_text) =
        (updates.to_string(), keys.to_string(), deleted.to_string());
    let out = python(
        "compacted.py",
        &[
            "produce",
            "confluent",
            &bootstrap,
            topic,
            &updates_text,
            &keys_text,
            &deleted_text,
            "--start",
            &start_text,
        ],
    )?;
    let acked: u64 = out.trim().parse().with_context(|| out.clone())?;
    ensure!(
        acked == updates + deleted,
        "{acked} acknowledged of {}",
        updates + deleted
    );
    Ok(())
}

/// Each key's latest value once every record below `end` was written: `None` for the
/// deleted keys, whose tombstones came last.
fn latest(end: u64, keys: u64, deleted: u64) -> BTreeMap<String, Option<String>> {
    (0..keys)
        .map(|k| {
            let last = (0..end)
                .rev()
                .find(|i| i % keys == k)
                .expect("every key written");
            let value = (k >= deleted).then(|| format!("value-{last}"));
            (format!("key-{k}"), value)
        })
        .collect()
}

/// Every record the node serves from offset 0, read with a raw client (CRCs checked).
fn stored(node: &Node, topic: &str) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for (_, bytes) in RawClient::connect(node.kafka)?.read_batches(topic, 0, 0)? {
        let batch = RecordBatch::parse(bytes.clone())?;
        ensure!(
            batch.validate_crc().is_ok(),
            "bad CRC at {}",
            batch.base_offset()
        );
        if batch.is_control() {
            continue;
        }
        for r in RecordBatchDecoder::decode(&mut bytes.clone())?.records {
            let text =
                |b: Option<bytes::Bytes>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
            out.push((
                r.offset,
                text(r.key).context("a record without key")?,
                text(r.value),
            ));
        }
    }
    Ok(out)
}

/// What a fully cleaned log holds: each live key's latest record, once, in offset order.
fn converged(records: &[Record], want: &BTreeMap<String, Option<String>>) -> bool {
    let live = want.values().filter(|v| v.is_some()).count();
    records.len() == live
        && records
            .iter()
            .all(|(_, key, value)| value.is_some() && want.get(key) == Some(value))
}

/// Whether reading the log to its end gives every key its latest value: compaction may
/// have removed older records and tombstones, but never a key's latest record.
fn last_values_are_latest(records: &[Record], want: &BTreeMap<String, Option<String>>) -> bool {
    let mut last: BTreeMap<&str, &Option<String>> = BTreeMap::new();
    for (_, key, value) in records {
        last.insert(key, value);
    }
    want.iter()
        .all(|(key, value)| match last.get(key.as_str()) {
            Some(seen) => *seen == value,
            None => value.is_none(),
        })
}

fn wait_converged(
    node: &Node,
    topic: &str,
    want: &BTreeMap<String, Option<String>>,
) -> Result<Vec<Record>> {
    eventually(Duration::from_secs(120), || {
        let records = stored(node, topic)?;
        Ok(converged(&records, want).then_some(records))
    })
    .with_context(|| format!("{topic} never converged to each live key's latest value"))
}

fn log_bytes(partition_dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(partition_dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "log") {
            total += std::fs::metadata(&path)?.len();
        }
    }
    Ok(total)
}

/// The value of the series `series` (name and labels) in a `/metrics` text.
fn metric(text: &str, series: &str) -> Result<u64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .with_context(|| format!("no {series} in /metrics"))
}

fn consume(client: &str, node: &Node, topic: &str) -> Result<Vec<Record>> {
    let out = python(
        "compacted.py",
        &["consume", client, &node.kafka.to_string(), topic],
    )?;
    let rows: Vec<(i64, String, Option<String>)> = serde_json::from_str(out.trim())?;
    Ok(rows)
}

#[test]
fn an_owned_compacted_topic_keeps_each_keys_latest_value_for_every_client() -> Result<()> {
    let node = Node::start(&owner())?;
    let topic = "table";
    create("confluent", &node, topic)?;
    let (updates, keys, deleted) = (100_000, 1_000, 100);
    produce(&node, topic, 0, updates, keys, deleted)?;
    let want = latest(updates, keys, deleted);
    let records = wait_converged(&node, topic, &want)?;
    // Offsets never moved: the latest update of key k was record 99,000 + k.
    ensure!(
        records.first().map(|r| r.0) == Some(99_100),
        "{:?}",
        records.first()
    );
    for client in ["confluent", "kafka-python"] {
        let seen = consume(client, &node, topic)?;
        ensure!(
            seen == records,
            "{client} read {} records, not the {} stored",
            seen.len(),
            records.len()
        );
    }
    let written: u64 = (0..updates)
        .map(|i| format!("key-{}value-{i}", i % keys).len() as u64)
        .sum();
    let on_disk = log_bytes(&node.data_dir.join("topics").join(topic).join("0"))?;
    ensure!(
        on_disk * 20 < written,
        "{on_disk} bytes on disk for {written} bytes of records"
    );
    let admin = node.admin.context("admin listener")?;
    let (_, metrics) = http_get(admin, "/metrics")?;
    let reclaimed = metrics
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "shadowlink_cleaner_bytes_reclaimed_total{{topic=\"{topic}\"}}"
            ))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .context("no reclaimed bytes metric")?;
    ensure!(reclaimed > written / 2, "reclaimed {reclaimed}");
    let (_, status) = http_get(admin, "/v1/status")?;
    let status: serde_json::Value = serde_json::from_str(&status)?;
    let report = &status["compaction"][0];
    ensure!(
        report["topic"] == topic && report["passes"].as_u64() > Some(0),
        "{status}"
    );
    Ok(())
}

/// Milliseconds in [0, bound) from the clock: a kill lands at an unplanned moment.
fn random_below(bound: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u64::from(nanos) % bound
}

/// Waits until a cleaning pass of `partition_dir` is writing its output.
fn wait_for_a_pass(partition_dir: &Path) -> Result<()> {
    eventually(Duration::from_secs(30), || {
        let writing = std::fs::read_dir(partition_dir)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .any(|n| n.ends_with(".cleaned"));
        Ok(writing.then_some(()))
    })
    .context("no cleaning pass started")
}

#[test]
fn kill_9_while_cleaning_leaves_a_readable_log_with_every_keys_latest_value() -> Result<()> {
    // A pass over a round's data takes seconds at this rate, so a kill lands inside it.
    let config = owner()
        .storage_entry("cleaner_interval", "\"100ms\"")
        .storage_entry("cleaner_bytes_per_second", "100000");
    let mut node = Node::start(&config)?;
    let topic = "killed";
    create("kafka-python", &node, topic)?;
    let partition_dir = node.data_dir.join("topics").join(topic).join("0");
    let (round, keys, deleted) = (10_000, 1_000, 100);
    for n in 0..5 {
        produce(&node, topic, n * round, round, keys, deleted)?;
        wait_for_a_pass(&partition_dir)?;
        std::thread::sleep(Duration::from_millis(random_below(300)));
        node.restart()?;
        let finished = eventually(Duration::from_secs(5), || {
            let p = &node.process;
            Ok((p.logged(&["discarding an interrupted cleaning"])
                || p.logged(&["finishing an interrupted segment swap"]))
            .then_some(()))
        });
        ensure!(
            finished.is_ok(),
            "after kill {n}: recovery found no interrupted pass"
        );
        // Offsets count updates and tombstones: round n wrote records up to this one.
        let want = latest((n + 1) * round, keys, deleted);
        let records = stored(&node, topic)?;
        ensure!(
            last_values_are_latest(&records, &want),
            "after kill {n}: a latest value is missing"
        );
        let end = RawClient::connect(node.kafka)?.list_offset(topic, 0, -1)?;
        ensure!(
            end == ((n + 1) * (round + deleted)) as i64,
            "after kill {n}: log end {end}"
        );
    }
    wait_converged(&node, topic, &latest(5 * round, keys, deleted))?;
    let leftovers = std::fs::read_dir(&partition_dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
        .count();
    ensure!(
        leftovers == 0,
        "{leftovers} files of an interrupted cleaning are left"
    );
    Ok(())
}

#[test]
fn a_failed_over_compacted_topic_keeps_being_cleaned_on_the_survivor() -> Result<()> {
    let mut a = Node::start(&owner())?;
    let topic = "a_table";
    create("kafka-python", &a, topic)?;
    let (round, keys, deleted) = (20_000, 500, 50);
    produce(&a, topic, 0, round, keys, deleted)?;
    let b = Node::start(
        &NodeConfig::linked_to(a.kafka)
            .admin()
            .segment_bytes(16 * 1024)
            .storage_entry("cleaner_interval", "\"200ms\""),
    )?;
    let source_end = RawClient::connect(a.kafka)?.list_offset(topic, 0, -1)?;
    eventually(Duration::from_secs(60), || {
        let end = RawClient::connect(b.kafka)?.list_offset(topic, 0, -1);
        Ok((end.ok() == Some(source_end)).then_some(()))
    })?;
    a.process.kill9();
    let admin = b.admin.context("admin listener")?.to_string();
    let args = [
        "failover", "--admin", &*admin, "--link", "from-a", "--topic", topic,
    ];
    shadowlink(&args)?.stdout("failover")?;
    produce(&b, topic, round, round, keys, deleted)?;
    // Record numbers continue from round, but offsets also count the first tombstones.
    let want = latest(2 * round, keys, deleted);
    let records = wait_converged(&b, topic, &want)?;
    ensure!(
        records.iter().all(|r| r.0 >= source_end),
        "mirrored records survived"
    );
    Ok(())
}

/// Every batch `node` serves of `topic`-0, as (base offset, bytes).
fn batches(node: &Node, topic: &str) -> Result<Vec<(i64, Bytes)>> {
    RawClient::connect(node.kafka)?.read_batches(topic, 0, 0)
}

#[test]
fn a_mirror_of_a_compacted_topic_converges_to_the_sources_compacted_batches() -> Result<()> {
    let a = Node::start(&owner())?;
    let topic = "a_mirrored";
    create("confluent", &a, topic)?;
    let b = Node::start(
        &NodeConfig::linked_to(a.kafka)
            .admin()
            .segment_bytes(16 * 1024)
            .link(|l| l.entry("compaction_check_interval", "\"1s\"")),
    )?;
    let (updates, keys, deleted) = (100_000, 1_000, 100);
    produce(&a, topic, 0, updates, keys, deleted)?;
    let source_end = RawClient::connect(a.kafka)?.list_offset(topic, 0, -1)?;
    eventually(Duration::from_secs(60), || {
        let end = RawClient::connect(b.kafka)?.list_offset(topic, 0, -1);
        Ok((end.ok() == Some(source_end)).then_some(()))
    })?;
    wait_converged(&a, topic, &latest(updates, keys, deleted))?;
    let started = std::time::Instant::now();
    let source = eventually(Duration::from_secs(120), || {
        let source = batches(&a, topic)?;
        Ok((batches(&b, topic)? == source).then_some(source))
    })
    .context("the mirror never served the source's compacted batches")?;
    let converged_after = started.elapsed();
    ensure!(source
        .iter()
        .all(|(_, b)| RecordBatch::parse(b.clone()).is_ok_and(|b| b.validate_crc().is_ok())));
    let partition = |node: &Node| node.data_dir.join("topics").join(topic).join("0");
    let (source_bytes, mirror_bytes) = (log_bytes(&partition(&a))?, log_bytes(&partition(&b))?);
    let (_, metrics) = http_get(b.admin.context("admin listener")?, "/metrics")?;
    let copied = metric(&metrics, "shadowlink_bytes_written_total{link=\"from-a\"}")?;
    let rechecked = metric(
        &metrics,
        "shadowlink_compaction_check_bytes_total{link=\"from-a\"}",
    )?;
    eprintln!(
        "source {source_bytes} B on disk; mirror copied {copied} B, holds {mirror_bytes} B; \
         {rechecked} B re-fetched by checks, converged {converged_after:?} after the source"
    );
    ensure!(
        mirror_bytes <= 2 * source_bytes + 16 * 1024,
        "mirror {mirror_bytes} B against source {source_bytes} B"
    );
    ensure!(
        copied > 10 * mirror_bytes,
        "copied {copied} B, holds {mirror_bytes} B"
    );
    Ok(())
}
