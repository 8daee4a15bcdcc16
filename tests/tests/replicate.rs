//! shadowlink against a real tansu broker, records produced by librdkafka
//! (confluent-kafka): mirrors must be byte-identical to the source at the same offsets.

use std::time::Duration;

use anyhow::Result;
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::{self, create_topic, produce};
use shadowlink_tests::{eventually, python, until, NodeConfig, Tansu};

#[test]
fn every_codec_is_mirrored_byte_identical_and_filters_apply() -> Result<()> {
    let source = Tansu::start()?;
    scenario::every_codec(source.addr)?;
    Ok(())
}

#[test]
fn kill_nine_mid_replication_then_resume_without_gap_or_duplicate() -> Result<()> {
    let source = Tansu::start()?;
    scenario::kill_and_resume(source.addr)
}

#[test]
fn topic_configs_are_synced_from_the_source() -> Result<()> {
    let source = Tansu::start()?;
    let settings = [
        "retention.ms=3600000",
        "cleanup.policy=delete",
        "max.message.bytes=2000000",
    ];
    create_topic(source.addr, "a_configured", 1, &settings)?;
    produce(source.addr, "a_configured", 5, "none", 1, 0)?;
    let node = shadowlink_tests::Node::start(&NodeConfig::linked_to(source.addr))?;
    let expected: Vec<String> = {
        let mut v: Vec<String> = settings.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };
    until(
        Duration::from_secs(30),
        || {
            let out = python(
                "admin.py",
                &[&node.kafka.to_string(), "configs", "a_configured"],
            )?;
            Ok(out.lines().map(str::to_string).collect::<Vec<_>>())
        },
        |got| *got == expected,
    )?;
    Ok(())
}

#[test]
fn the_mirror_enforces_retention_synced_from_the_source() -> Result<()> {
    let source = Tansu::start()?;
    create_topic(source.addr, "a_short", 1, &["retention.ms=1500"])?;
    produce(source.addr, "a_short", 300, "none", 1, 0)?;
    let config = NodeConfig::linked_to(source.addr)
        .segment_bytes(2048)
        .retention_interval(Duration::from_millis(200));
    let node = shadowlink_tests::Node::start(&config)?;
    // Everything arrives, then whole old segments go once they are older than 1.5 s.
    let start = eventually(Duration::from_secs(30), || {
        let mut mirror = RawClient::connect(node.kafka)?;
        let end = mirror.list_offset("a_short", 0, -1)?;
        let start = mirror.list_offset("a_short", 0, -2)?;
        Ok((end == 300 && start > 0).then_some(start))
    })?;
    assert!(start < 300, "the active segment is kept");
    // The source itself still has everything: the mirror trimmed on its own.
    assert_eq!(
        RawClient::connect(source.addr)?.list_offset("a_short", 0, -2)?,
        0
    );
    let kept = RawClient::connect(node.kafka)?.read_batches("a_short", 0, start)?;
    assert!(
        !kept.is_empty() && kept[0].0 <= start,
        "reads from the new log start work"
    );
    Ok(())
}

#[test]
fn a_recreated_source_topic_fails_its_mirror_and_leaves_the_rest_running() -> Result<()> {
    let source = Tansu::start()?;
    for topic in ["a_gone", "a_stays"] {
        create_topic(source.addr, topic, 1, &[])?;
        produce(source.addr, topic, 40, "none", 1, 0)?;
    }
    let node = shadowlink_tests::Node::start(&NodeConfig::linked_to(source.addr))?;
    scenario::wait_identical(source.addr, node.kafka, "a_gone", 1)?;
    let before = RawClient::connect(node.kafka)?.read_batches("a_gone", 0, 0)?;

    python("admin.py", &[&source.bootstrap(), "delete", "a_gone"])?;
    create_topic(source.addr, "a_gone", 1, &[])?;
    produce(source.addr, "a_gone", 7, "gzip", 1, 1000)?;
    produce(source.addr, "a_stays", 40, "none", 1, 40)?;

    scenario::wait_identical(source.addr, node.kafka, "a_stays", 1)?;
    let meta_path = node.data_dir.join("topics/a_gone/topic.json");
    let meta = eventually(Duration::from_secs(20), || {
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path)?)?;
        Ok((meta["state"] == "failed").then_some(meta))
    })?;
    let reason = meta["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("re-created"), "{reason}");
    // The mirror keeps exactly what it had; the new topic's records are not mixed in.
    assert_eq!(
        RawClient::connect(node.kafka)?.read_batches("a_gone", 0, 0)?,
        before
    );
    Ok(())
}
