//! Consumer-offset sync: a group's commits on the source cluster are copied to the node,
//! so after a failover the group resumes where it stood on the source.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use shadowlink_tests::scenario::{create_topic, produce, wait_identical};
use shadowlink_tests::{python, until, Node, NodeConfig, Tansu};

fn offsets(at: SocketAddr, group: &str) -> Result<Vec<String>> {
    let out = python("group_admin.py", &[&at.to_string(), "offsets", group])?;
    Ok(out.lines().map(str::to_string).collect())
}

fn commit(at: SocketAddr, group: &str, offsets: &[&str]) -> Result<()> {
    let at = at.to_string();
    let mut args = vec![at.as_str(), "commit", group];
    args.extend_from_slice(offsets);
    python("group_admin.py", &args).map(|_| ())
}

#[test]
fn source_commits_reach_the_node_for_matching_groups_only() -> Result<()> {
    let source = Tansu::start()?;
    create_topic(source.addr, "a_orders", 3, &[])?;
    produce(source.addr, "a_orders", 300, "none", 3, 0)?;
    commit(
        source.addr,
        "billing",
        &["a_orders:0:40", "a_orders:1:7", "a_orders:2:100"],
    )?;
    commit(source.addr, "analytics", &["a_orders:0:5"])?;

    let config = NodeConfig::linked_to(source.addr).link(|l| {
        l.groups(&["bill*"])
            .group_interval(Duration::from_millis(300))
    });
    let node = Node::start(&config)?;
    wait_identical(source.addr, node.kafka, "a_orders", 3)?;

    let expected = vec!["a_orders 0 40", "a_orders 1 7", "a_orders 2 100"];
    until(
        Duration::from_secs(30),
        || offsets(node.kafka, "billing"),
        |got| *got == expected,
    )?;
    // A group outside the filter is not copied.
    assert!(offsets(node.kafka, "analytics")?.is_empty());

    // Later commits on the source follow.
    commit(source.addr, "billing", &["a_orders:0:55"])?;
    until(
        Duration::from_secs(30),
        || offsets(node.kafka, "billing"),
        |got| got.contains(&"a_orders 0 55".to_string()),
    )?;
    Ok(())
}
