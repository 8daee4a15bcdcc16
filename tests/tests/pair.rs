//! Two shadowlink nodes alone form a reciprocal pair: each owns its prefix and shadows the
//! other's. Both directions are byte-identical; after region A dies, B fails `a_*` over,
//! producers carry on at the same offsets and consumer groups resume where they committed.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use shadowlink_protocol::batch::RecordBatch;
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::wait_identical;
use shadowlink_tests::{free_port, python, shadowlink, until, Link, Node, NodeConfig};

fn node_config(
    port: u16,
    owns: &[(&str, i32)],
    link_from: &str,
    peer: u16,
    schemas: bool,
) -> NodeConfig {
    let config = owns.iter().fold(
        NodeConfig::owner()
            .listen(format!("127.0.0.1:{port}"))
            .admin(),
        |config, (name, partitions)| config.topic(name, *partitions),
    );
    let pattern = format!("{link_from}_*");
    config.add_link(
        Link::new(&format!("from-{link_from}"), format!("127.0.0.1:{peer}"))
            .include(&[&pattern])
            .groups(&["*"])
            .mirror_schemas(schemas)
            .metadata_interval(Duration::from_millis(300))
            .group_interval(Duration::from_millis(300)),
    )
}

fn produce(node: &Node, topic: &str, count: usize, partitions: i32) -> Result<()> {
    let out = python(
        "produce_owned.py",
        &[
            "confluent",
            &node.kafka.to_string(),
            topic,
            &count.to_string(),
            "--partitions",
            &partitions.to_string(),
        ],
    )?;
    ensure!(
        out.trim() == count.to_string(),
        "{topic}: acknowledged {out}"
    );
    Ok(())
}

/// (records, max leader epoch) of a partition, checking its offsets run without a gap.
fn contiguous(node: &Node, topic: &str, partition: i32) -> Result<(i64, i32)> {
    let (mut next, mut epoch) = (0, -1);
    for (base, bytes) in RawClient::connect(node.kafka)?.read_batches(topic, partition, 0)? {
        let batch = RecordBatch::parse(bytes)?;
        ensure!(
            base == next,
            "{topic}-{partition}: batch at {base}, expected {next}"
        );
        next = batch.next_offset();
        epoch = epoch.max(batch.partition_leader_epoch());
    }
    Ok((next, epoch))
}

fn failover(node: &Node, args: &[&str]) -> Result<String> {
    failover_link(node, "from-a", args)
}

fn failover_link(node: &Node, link: &str, args: &[&str]) -> Result<String> {
    let admin = node.admin.context("admin listener")?.to_string();
    let mut all = vec!["failover", "--admin", &admin, "--link", link];
    all.extend_from_slice(args);
    shadowlink(&all)?.stdout("failover")
}

#[test]
fn a_reciprocal_pair_mirrors_both_ways_and_fails_over_without_loss() -> Result<()> {
    let (port_a, port_b) = (free_port(), free_port());
    let mut a = Node::start(&node_config(
        port_a,
        &[("a_orders", 2), ("_schemas", 1)],
        "b",
        port_b,
        false,
    ))?;
    let b = Node::start(&node_config(
        port_b,
        &[("b_payments", 2)],
        "a",
        port_a,
        true,
    ))?;

    produce(&a, "a_orders", 100, 2)?;
    produce(&a, "_schemas", 5, 1)?;
    produce(&b, "b_payments", 60, 2)?;
    wait_identical(a.kafka, b.kafka, "a_orders", 2)?;
    wait_identical(a.kafka, b.kafka, "_schemas", 1)?;
    wait_identical(b.kafka, a.kafka, "b_payments", 2)?;

    // A consumer group of region A commits; region B's link copies the commits.
    let at = a.kafka.to_string();
    python(
        "group_admin.py",
        &[
            &at,
            "commit",
            "orders-app",
            "a_orders:0:20",
            "a_orders:1:35",
        ],
    )?;
    let bt = b.kafka.to_string();
    let expected = vec!["a_orders 0 20".to_string(), "a_orders 1 35".to_string()];
    until(
        Duration::from_secs(30),
        || python("group_admin.py", &[&bt, "offsets", "orders-app"]),
        |out| out.lines().map(str::to_string).collect::<Vec<_>>() == expected,
    )?;

    // Region A dies; B takes over a_* (but not _schemas, which is its own decision).
    let before: Vec<(i64, i32)> = (0..2)
        .map(|p| contiguous(&b, "a_orders", p))
        .collect::<Result<_>>()?;
    a.process.kill9();
    let report = failover(&b, &["--all"])?;
    assert!(
        report.contains("a_orders") && !report.contains("_schemas"),
        "{report}"
    );
    python("produce_refused.py", &["confluent", &bt, "_schemas"])?;

    produce(&b, "a_orders", 40, 2)?;
    for (p, (mirrored_end, mirrored_epoch)) in before.iter().enumerate() {
        let (end, epoch) = contiguous(&b, "a_orders", p as i32)?;
        assert_eq!(
            end,
            mirrored_end + 20,
            "a_orders-{p} continues at the mirrored end"
        );
        assert!(
            epoch > *mirrored_epoch,
            "a_orders-{p}: new batches in a higher epoch"
        );
    }
    // The group resumes on B exactly where it had committed on A.
    let out = python("group_admin.py", &[&bt, "offsets", "orders-app"])?;
    assert_eq!(
        out.lines().map(str::to_string).collect::<Vec<_>>(),
        expected
    );

    // Failing over _schemas is the separate, explicit step.
    failover(&b, &["--topic", "_schemas"])?;
    produce(&b, "_schemas", 1, 1)?;
    assert_eq!(contiguous(&b, "_schemas", 0)?.0, 6);
    Ok(())
}

#[test]
fn the_drill_in_the_other_direction_b_dies_and_a_takes_over() -> Result<()> {
    let (port_a, port_b) = (free_port(), free_port());
    let a = Node::start(&node_config(port_a, &[("a_orders", 1)], "b", port_b, false))?;
    let mut b = Node::start(&node_config(
        port_b,
        &[("b_payments", 2)],
        "a",
        port_a,
        false,
    ))?;
    produce(&b, "b_payments", 50, 2)?;
    produce(&a, "a_orders", 10, 1)?;
    wait_identical(b.kafka, a.kafka, "b_payments", 2)?;
    wait_identical(a.kafka, b.kafka, "a_orders", 1)?;
    let before: Vec<i64> = (0..2)
        .map(|p| Ok(contiguous(&a, "b_payments", p)?.0))
        .collect::<Result<_>>()?;

    b.process.kill9();
    failover_link(&a, "from-b", &["--all"])?;
    produce(&a, "b_payments", 30, 2)?;
    for (p, end) in before.iter().enumerate() {
        assert_eq!(contiguous(&a, "b_payments", p as i32)?.0, end + 15);
    }
    // A's own topic is untouched by the takeover.
    assert_eq!(contiguous(&a, "a_orders", 0)?.0, 10);
    Ok(())
}

/// The pair beside two real clusters: each node shadows the other region's tansu.
#[test]
fn nodes_beside_two_tansu_clusters_fail_over_when_a_cluster_dies() -> Result<()> {
    use shadowlink_tests::scenario::{create_topic, produce as produce_at};
    let (mut cluster_a, cluster_b) = (
        shadowlink_tests::Tansu::start()?,
        shadowlink_tests::Tansu::start()?,
    );
    create_topic(cluster_a.addr, "a_orders", 2, &[])?;
    create_topic(cluster_b.addr, "b_payments", 2, &[])?;
    produce_at(cluster_a.addr, "a_orders", 80, "zstd", 2, 0)?;
    produce_at(cluster_b.addr, "b_payments", 40, "lz4", 2, 0)?;
    let beside = |link_from: &str, peer: std::net::SocketAddr| {
        node_config(0, &[], link_from, peer.port(), false)
    };
    let node_a = Node::start(&beside("b", cluster_b.addr))?;
    let node_b = Node::start(&beside("a", cluster_a.addr))?;
    wait_identical(cluster_a.addr, node_b.kafka, "a_orders", 2)?;
    wait_identical(cluster_b.addr, node_a.kafka, "b_payments", 2)?;

    cluster_a.process.kill9();
    failover(&node_b, &["--topic", "a_orders"])?;
    produce(&node_b, "a_orders", 20, 2)?;
    for p in 0..2 {
        assert_eq!(
            contiguous(&node_b, "a_orders", p)?.0,
            50,
            "40 mirrored, then 10 produced"
        );
    }
    Ok(())
}
