//! Groups with no members whose offsets stop changing expire after
//! `groups.offsets_retention` (Kafka's `offsets.retention.minutes`), on disk too.

use std::time::Duration;

use anyhow::Result;
use shadowlink_tests::{python, until, Node, NodeConfig};

fn offsets(kafka: &str, group: &str) -> Result<String> {
    python("group_admin.py", &[kafka, "offsets", group])
}

#[test]
fn an_idle_group_expires_after_the_retention_and_stays_gone_after_a_restart() -> Result<()> {
    let owner = NodeConfig::owner().topic("b_owned", 1);
    let config = owner
        .clone()
        .offsets_retention(Duration::from_secs(5))
        .group_retention_check_interval(Duration::from_millis(100));
    let mut node = Node::start(&config)?;
    let kafka = node.kafka.to_string();
    let produced = python("produce_owned.py", &["confluent", &kafka, "b_owned", "10"])?;
    assert_eq!(produced.trim(), "10");
    python(
        "group_admin.py",
        &[&kafka, "commit", "idle-group", "b_owned:0:7"],
    )?;
    assert_eq!(offsets(&kafka, "idle-group")?.trim(), "b_owned 0 7");

    until(
        Duration::from_secs(30),
        || python("group_admin.py", &[&kafka, "list"]),
        |listed| !listed.contains("idle-group"),
    )?;
    assert_eq!(offsets(&kafka, "idle-group")?.trim(), "");
    assert!(node.process.logged(&["group expired", "idle-group"]));

    // With the default retention of 7 days, a group file left behind would be back.
    node.rewrite_config(&owner)?;
    node.restart()?;
    let kafka = node.kafka.to_string();
    let listed = python("group_admin.py", &[&kafka, "list"])?;
    assert!(!listed.contains("idle-group"), "{listed}");
    assert_eq!(offsets(&kafka, "idle-group")?.trim(), "");
    Ok(())
}
