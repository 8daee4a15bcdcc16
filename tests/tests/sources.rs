//! Sources as people run them: logs that start past offset 0 (retention, DeleteRecords),
//! links that start at the latest offset, topics that flicker out of Metadata.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Result};
use bytes::Bytes;
use shadowlink_protocol::batch::testing::build_batch;
use shadowlink_tests::fake::{FakeBroker, FakeLog};
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::{create_topic, produce};
use shadowlink_tests::{eventually, python, Node, NodeConfig, Tansu};

/// Batches of `per_batch` records each, covering `offsets`.
fn batches(offsets: std::ops::Range<i64>, per_batch: i64, tag: &str) -> Vec<Bytes> {
    offsets
        .step_by(per_batch as usize)
        .map(|base| {
            let values: Vec<String> = (base..base + per_batch)
                .map(|o| format!("{tag}-{o}"))
                .collect();
            let records: Vec<_> = values
                .iter()
                .map(|v| (Some(b"k".as_slice()), Some(v.as_bytes())))
                .collect();
            build_batch(base, 0, &records, 1_000 + base)
        })
        .collect()
}

fn source_of(topic: &str, log: FakeLog) -> Result<FakeBroker> {
    FakeBroker::start(BTreeMap::from([(topic.to_string(), vec![log])]))
}

/// (log start, log end) of partition 0 as the node answers ListOffsets.
fn bounds(node: &Node, topic: &str) -> Result<(i64, i64)> {
    let mut client = RawClient::connect(node.kafka)?;
    Ok((
        client.list_offset(topic, 0, -2)?,
        client.list_offset(topic, 0, -1)?,
    ))
}

/// Waits until the mirror spans exactly `want` and serves exactly `expected` from its
/// log start.
fn wait_mirror(node: &Node, topic: &str, want: (i64, i64), expected: &[Bytes]) -> Result<()> {
    eventually(Duration::from_secs(30), || {
        if bounds(node, topic)? != want {
            return Ok(None);
        }
        let got: Vec<Bytes> = RawClient::connect(node.kafka)?
            .read_batches(topic, 0, want.0)?
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        Ok((got == expected).then_some(()))
    })
}

fn skipped_line(node: &Node, from: i64, to: i64) -> bool {
    node.process.logged(&[
        "WARN",
        "mirror restarts at a later offset",
        &format!("skipped_from={from}"),
        &format!("skipped_to={to}"),
    ])
}

#[test]
fn earliest_on_a_source_whose_log_start_moved_begins_there() -> Result<()> {
    // Ten batches of four records; retention moved the log start inside the batch 12..=15.
    let data = batches(0..40, 4, "r");
    let source = source_of(
        "a_trimmed",
        FakeLog {
            batches: data.clone(),
            log_start: 14,
            ..FakeLog::default()
        },
    )?;
    let mut node = Node::start(&NodeConfig::linked_to(source.addr))?;
    wait_mirror(&node, "a_trimmed", (14, 40), &data[3..])?;
    ensure!(skipped_line(&node, 0, 14), "no warning names offsets 0..14");
    ensure!(!node.process.logged(&["mirror partition stopped"]));

    // The restarted log survives a restart, and replication carries on from its end.
    node.restart()?;
    wait_mirror(&node, "a_trimmed", (14, 40), &data[3..])?;
    let more = batches(40..48, 4, "r");
    source.edit(|t| {
        t.get_mut("a_trimmed").unwrap()[0]
            .batches
            .extend(more.clone())
    });
    let all: Vec<Bytes> = data[3..].iter().chain(&more).cloned().collect();
    wait_mirror(&node, "a_trimmed", (14, 48), &all)?;
    Ok(())
}

#[test]
fn latest_on_a_non_empty_source_begins_at_its_end() -> Result<()> {
    let old = batches(0..20, 2, "old");
    let source = source_of(
        "a_live",
        FakeLog {
            batches: old,
            ..FakeLog::default()
        },
    )?;
    let config = NodeConfig::linked_to(source.addr).link(|l| l.start("latest"));
    let mut node = Node::start(&config)?;
    wait_mirror(&node, "a_live", (20, 20), &[])?;
    node.restart()?;
    wait_mirror(&node, "a_live", (20, 20), &[])?;

    let new = batches(20..30, 2, "new");
    source.edit(|t| t.get_mut("a_live").unwrap()[0].batches.extend(new.clone()));
    wait_mirror(&node, "a_live", (20, 30), &new)?;
    ensure!(!node.process.logged(&["mirror partition stopped"]));
    Ok(())
}

#[test]
fn a_mirror_overtaken_by_the_source_log_start_restarts_there() -> Result<()> {
    let first = batches(0..10, 2, "a");
    let source = source_of(
        "a_behind",
        FakeLog {
            batches: first.clone(),
            ..FakeLog::default()
        },
    )?;
    let mut node = Node::start(&NodeConfig::linked_to(source.addr))?;
    wait_mirror(&node, "a_behind", (0, 10), &first)?;

    // While the node is down the source writes on and its retention passes the mirror's
    // end: offsets 10..24 are gone before the node could copy them.
    node.process.kill9();
    let later = batches(10..30, 2, "b");
    source.edit(|t| {
        let log = &mut t.get_mut("a_behind").unwrap()[0];
        log.batches.extend(later.clone());
        log.batches.drain(..12);
        log.log_start = 24;
    });
    node.restart()?;
    wait_mirror(&node, "a_behind", (24, 30), &later[7..])?;
    ensure!(
        skipped_line(&node, 10, 24),
        "no warning names offsets 10..24"
    );
    ensure!(!node.process.logged(&["mirror partition stopped"]));
    node.restart()?;
    wait_mirror(&node, "a_behind", (24, 30), &later[7..])?;
    Ok(())
}

#[test]
fn latest_on_a_tansu_topic_mirrors_only_what_comes_after() -> Result<()> {
    let source = Tansu::start()?;
    create_topic(source.addr, "a_tail", 1, &[])?;
    // tansu answers ListOffsets latest with its last batch's base offset + 1, so the
    // 1000th record goes in a batch of its own for the answer to be the log end.
    produce(source.addr, "a_tail", 999, "none", 1, 0)?;
    let bootstrap = source.addr.to_string();
    let one = ["--start", "999", "--batch-size", "1"];
    python(
        "produce.py",
        &[&[bootstrap.as_str(), "a_tail", "1"], &one[..]].concat(),
    )?;
    ensure!(RawClient::connect(source.addr)?.list_offset("a_tail", 0, -1)? == 1_000);
    let config = NodeConfig::linked_to(source.addr).link(|l| l.start("latest"));
    let node = Node::start(&config)?;
    wait_mirror(&node, "a_tail", (1_000, 1_000), &[])?;

    produce(source.addr, "a_tail", 100, "none", 1, 1_000)?;
    let expected: Vec<Bytes> = RawClient::connect(source.addr)?
        .read_batches("a_tail", 0, 1_000)?
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    let records: i64 = expected
        .iter()
        .map(|b| {
            let batch = shadowlink_protocol::batch::RecordBatch::parse(b.clone()).unwrap();
            i64::from(batch.last_offset_delta()) + 1
        })
        .sum();
    ensure!(
        records == 100,
        "the source holds {records} records past 1000"
    );
    wait_mirror(&node, "a_tail", (1_000, 1_100), &expected)?;
    Ok(())
}

/// The source's Metadata loses the topic and finds it again, over and over, during a
/// first sync that keeps the writer busy (large batches, a slow fsync per append) and
/// while the topic grows; the mirror must stay exactly the source's log, written by one
/// writer.
#[test]
fn a_topic_flickering_in_source_metadata_keeps_one_writer() -> Result<()> {
    let big = "x".repeat(1_000_000);
    let batch_of = |o: i64| {
        let value = format!("{o}-{big}");
        build_batch(o, 0, &[(None, Some(value.as_bytes()))], 1_000 + o)
    };
    let backlog: Vec<Bytes> = (0..100).map(batch_of).collect();
    let source = Arc::new(source_of(
        "a_flicker",
        FakeLog {
            batches: backlog.clone(),
            ..FakeLog::default()
        },
    )?);
    let config = NodeConfig::linked_to(source.addr)
        .persist("always")
        .fault_fsync_delay(Duration::from_millis(150))
        .link(|l| {
            l.metadata_interval(Duration::from_millis(100))
                .partition_max_bytes(16777216)
        });
    let node = Node::start(&config)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flicker = {
        let (source, stop) = (source.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut hidden: Option<Vec<FakeLog>> = None;
            while !stop.load(Ordering::Relaxed) {
                source.edit(|t| hidden = t.remove("a_flicker"));
                std::thread::sleep(Duration::from_millis(60));
                source.edit(|t| {
                    if let Some(logs) = hidden.take() {
                        t.insert("a_flicker".to_string(), logs);
                    }
                });
                std::thread::sleep(Duration::from_millis(fastrand_ms()));
            }
            if let Some(logs) = hidden {
                source.edit(|t| {
                    t.insert("a_flicker".to_string(), logs);
                });
            }
        })
    };
    let mut all = backlog;
    for _ in 0..30 {
        let b = batch_of(all.len() as i64);
        let mut landed = false;
        source.edit(|t| {
            if let Some(logs) = t.get_mut("a_flicker") {
                logs[0].batches.push(b.clone());
                landed = true;
            }
        });
        if landed {
            all.push(b);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    flicker.join().expect("flicker thread");
    wait_mirror(&node, "a_flicker", (0, all.len() as i64), &all)?;
    ensure!(!node.process.logged(&["mirror partition stopped"]));
    Ok(())
}

/// 20–180 ms: hidden and visible spells of varied length, so the link sees the topic
/// vanish both between fetches and with fetches and writes in flight.
fn fastrand_ms() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    20 + u64::from(nanos % 160)
}

#[test]
fn source_topics_with_names_kafka_rejects_are_skipped() -> Result<()> {
    let data = batches(0..4, 2, "ok");
    let long = format!("a_{}", "l".repeat(248));
    let bad = ["a_../../escape", "a_sp ace", long.as_str()];
    let mut topics = BTreeMap::from([(
        "a_ok".to_string(),
        vec![FakeLog {
            batches: data.clone(),
            ..FakeLog::default()
        }],
    )]);
    for name in bad {
        let log = FakeLog {
            batches: data.clone(),
            ..FakeLog::default()
        };
        topics.insert(name.to_string(), vec![log]);
    }
    let source = FakeBroker::start(topics)?;
    let node = Node::start(&NodeConfig::linked_to(source.addr))?;
    wait_mirror(&node, "a_ok", (0, 4), &data)?;
    for name in bad {
        eventually(Duration::from_secs(10), || {
            Ok(node
                .process
                .logged(&["WARN", "source topic skipped", &format!("{name:?}")])
                .then_some(()))
        })?;
        ensure!(
            RawClient::connect(node.kafka)?
                .list_offset(name, 0, -1)
                .is_err(),
            "{name} was mirrored"
        );
    }
    let topics = std::fs::read_dir(node.data_dir.join("topics"))?.count();
    ensure!(topics == 1, "{topics} topic directories, not 1");
    ensure!(!node.data_dir.join("escape").exists());
    Ok(())
}
