//! shadowlink against a real tansu broker, records produced by librdkafka
//! (confluent-kafka): mirrors must be byte-identical to the source at the same offsets.

use std::time::Duration;

use anyhow::Result;
use shadowlink_tests::scenario::{self, create_topic, produce};
use shadowlink_tests::{eventually, python, Tansu};

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
    let node = shadowlink_tests::Node::start(&scenario::link_config(source.addr))?;
    let expected: Vec<String> = {
        let mut v: Vec<String> = settings.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };
    eventually(Duration::from_secs(30), || {
        let out = python(
            "admin.py",
            &[&node.kafka.to_string(), "configs", "a_configured"],
        )?;
        let got: Vec<String> = out.lines().map(str::to_string).collect();
        Ok((got == expected).then_some(()))
    })?;
    Ok(())
}
