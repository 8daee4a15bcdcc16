//! Shadow topics are read-only: real producers are refused with POLICY_VIOLATION and
//! nothing is written; malformed frames cost one connection, never the node.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use anyhow::Result;
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::{create_topic, produce, wait_identical};
use shadowlink_tests::{python, Node, NodeConfig, Tansu};

fn mirrored_node() -> Result<(Tansu, Node)> {
    let source = Tansu::start()?;
    create_topic(source.addr, "a_orders", 1, &[])?;
    produce(source.addr, "a_orders", 50, "none", 1, 0)?;
    let node = Node::start(&NodeConfig::linked_to(source.addr))?;
    wait_identical(source.addr, node.kafka, "a_orders", 1)?;
    Ok((source, node))
}

#[test]
fn producers_are_refused_with_policy_violation_and_nothing_is_written() -> Result<()> {
    let (source, node) = mirrored_node()?;
    let before = RawClient::connect(node.kafka)?.read_batches("a_orders", 0, 0)?;
    for client in ["confluent", "kafka-python"] {
        // The script fails unless the client reports POLICY_VIOLATION.
        python(
            "produce_refused.py",
            &[client, &node.kafka.to_string(), "a_orders"],
        )?;
    }
    // Clients show only the code; the broker's message (Produce v8+) names the link and
    // the way out.
    let message = raw_produce_error(node.kafka, "a_orders")?;
    assert!(
        message.contains("read-only shadow of link from-a")
            && message.contains("shadowlink failover --link from-a --topic a_orders"),
        "{message}"
    );
    let after = RawClient::connect(node.kafka)?.read_batches("a_orders", 0, 0)?;
    assert_eq!(before, after, "a refused produce changed the mirror");
    wait_identical(source.addr, node.kafka, "a_orders", 1)?;
    Ok(())
}

#[test]
fn admin_writes_are_refused_with_policy_violation_and_change_nothing() -> Result<()> {
    let (source, node) = mirrored_node()?;
    let before = RawClient::connect(node.kafka)?.read_batches("a_orders", 0, 0)?;
    let out = python("admin_refused.py", &[&node.kafka.to_string(), "a_orders"])?;
    for op in [
        "delete_records",
        "create_partitions",
        "delete_topics",
        "alter_configs",
        "incremental_alter_configs",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{op}:")))
            .unwrap_or_default();
        assert!(line.contains("POLICY_VIOLATION"), "{op}: {out}");
    }
    // The messages that clients show name the link and the way out.
    assert!(out.contains("read-only shadow of link from-a"), "{out}");
    assert_eq!(
        RawClient::connect(node.kafka)?.read_batches("a_orders", 0, 0)?,
        before
    );
    wait_identical(source.addr, node.kafka, "a_orders", 1)?;
    Ok(())
}

/// Produces one batch with Produce v9 and returns the partition's error message.
fn raw_produce_error(node: std::net::SocketAddr, topic: &str) -> Result<String> {
    use shadowlink_protocol::batch::testing::build_batch;
    let records = build_batch(0, 0, &[(Some(b"k".as_slice()), Some(b"v".as_slice()))], 1);
    let p = RawClient::connect(node)?.produce_answer(topic, 0, records)?;
    assert_eq!(p.error_code, 44, "POLICY_VIOLATION");
    Ok(p.error_message
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default())
}

/// Frames a real client never sends: garbage, truncated, oversized, unknown keys.
fn malformed_frames() -> Vec<Vec<u8>> {
    let mut frames = vec![
        vec![0, 0, 0, 0],                               // empty frame
        vec![0, 0, 0, 3, 0, 1, 2],                      // shorter than a header
        vec![0x7f, 0xff, 0xff, 0xff],                   // 2 GiB declared
        vec![0xff, 0xff, 0xff, 0xfe],                   // negative size
        vec![0, 0, 0, 8, 0x7f, 0x00, 0, 0, 0, 0, 0, 1], // unknown api key
        vec![0, 0, 0, 8, 0, 3, 0x7f, 0, 0, 0, 0, 1],    // Metadata v32512
        // Metadata v1 whose topic array claims 2^31-1 entries.
        vec![
            0, 0, 0, 14, 0, 3, 0, 1, 0, 0, 0, 7, 0, 0, 0x7f, 0xff, 0xff, 0xff,
        ],
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..200 {
        let len = (seed % 40) as usize + 8;
        let mut f = (len as u32).to_be_bytes().to_vec();
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            f.push(seed as u8);
        }
        frames.push(f);
    }
    frames
}

#[test]
fn thousands_of_malformed_frames_leave_the_node_serving() -> Result<()> {
    let (_source, node) = mirrored_node()?;
    let expected = RawClient::connect(node.kafka)?.read_batches("a_orders", 0, 0)?;
    let frames = malformed_frames();
    let mut sent = 0;
    for round in 0..10 {
        for frame in &frames {
            let mut s = TcpStream::connect(node.kafka)?;
            s.set_write_timeout(Some(Duration::from_secs(2)))?;
            // The node may close first; a failed write is part of the test, not an error.
            let _ = s.write_all(frame);
            sent += 1;
        }
        // A healthy connection in the middle of the abuse still works.
        if round % 3 == 0 {
            assert_eq!(
                RawClient::connect(node.kafka)?.read_batches("a_orders", 0, 0)?,
                expected
            );
        }
    }
    assert!(sent >= 2000, "sent {sent} frames");
    // And a real client still consumes everything.
    let out = python("consume.py", &[&node.kafka.to_string(), "a_orders", "50"])?;
    assert_eq!(out.trim(), "50");
    assert_eq!(
        RawClient::connect(node.kafka)?.read_batches("a_orders", 0, 0)?,
        expected
    );
    Ok(())
}

#[test]
fn the_listener_caps_connections_and_closes_idle_ones() -> Result<()> {
    use std::io::Read;
    let node = Node::start(
        &NodeConfig::new()
            .max_connections(3)
            .idle_timeout(Duration::from_secs(2)),
    )?;
    // How long until the node closes `s`, reading with a 5 s limit.
    let closed_after = |mut s: TcpStream| -> Result<Duration> {
        let started = std::time::Instant::now();
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        match s.read(&mut [0u8; 1]) {
            Ok(0) | Err(_) => Ok(started.elapsed()),
            Ok(_) => anyhow::bail!("the node sent bytes unasked"),
        }
    };
    let held: Vec<RawClient> = (0..3)
        .map(|_| RawClient::connect(node.kafka))
        .collect::<Result<_>>()?;
    let fourth = closed_after(TcpStream::connect(node.kafka)?)?;
    assert!(
        fourth < Duration::from_secs(1),
        "a fourth connection is closed at once, not after {fourth:?}"
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    RawClient::connect(node.kafka)?;

    // A client that goes quiet for longer than the idle timeout is disconnected.
    let quiet = closed_after(TcpStream::connect(node.kafka)?)?;
    assert!(
        quiet >= Duration::from_millis(1500) && quiet < Duration::from_millis(4500),
        "closed after {quiet:?}, expected about the 2 s idle timeout"
    );
    Ok(())
}
