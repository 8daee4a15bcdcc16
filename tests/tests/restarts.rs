//! A planned stop leaves each partition with a large active segment closed cleanly, so
//! the next start loads that segment from its indexes instead of reading it whole; a
//! killed node leaves no such promise, and its next start checks every batch. Either
//! way the node serves the same bytes after the restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Result};
use bytes::Bytes;
use shadowlink_protocol::batch::testing::BatchBuilder;
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::{Node, NodeConfig};

const TOPIC: &str = "b_large";
/// Past the 16 MiB from which a log's close is worth a `clean-close` file.
const BATCHES: usize = 1_100;
const STOP: Duration = Duration::from_secs(30);

fn clean_close_file(node: &Node, partition: i32) -> PathBuf {
    (node.data_dir.join("topics").join(TOPIC))
        .join(partition.to_string())
        .join("clean-close")
}

/// Produces 16 KiB batches to partition 0 and a few small ones to partition 1.
fn produce(node: &Node) -> Result<()> {
    let mut client = RawClient::connect(node.kafka)?;
    let value = vec![0x6bu8; 16 * 1024 - 100];
    for n in 0..BATCHES {
        let batch = BatchBuilder::new(0)
            .timestamp(1_700_000_000_000 + n as i64)
            .records(&[(None, Some(&value[..]))])
            .build();
        let (error, offset) = client.produce(TOPIC, 0, batch)?;
        ensure!(
            (error, offset) == (0, n as i64),
            "batch {n}: {error}, {offset}"
        );
    }
    for _ in 0..3 {
        let batch = BatchBuilder::new(0)
            .records(&[(None, Some(b"small"))])
            .build();
        client.produce(TOPIC, 1, batch)?;
    }
    Ok(())
}

fn served(node: &Node, partition: i32) -> Result<Vec<(i64, Bytes)>> {
    RawClient::connect(node.kafka)?.read_batches(TOPIC, partition, 0)
}

fn exists(path: &Path) -> bool {
    path.try_exists().unwrap_or(false)
}

#[test]
fn a_planned_stop_closes_large_logs_cleanly_and_a_start_serves_them_unchanged() -> Result<()> {
    let mut node = Node::start(&NodeConfig::new().persist("os").topic(TOPIC, 2))?;
    produce(&node)?;
    let before = (served(&node, 0)?, served(&node, 1)?);
    ensure!(before.0.len() == BATCHES && before.1.len() == 3);

    node.stop_gracefully(STOP)?;
    ensure!(
        exists(&clean_close_file(&node, 0)),
        "no clean-close file after a stop"
    );
    ensure!(
        !exists(&clean_close_file(&node, 1)),
        "a small log is scanned, not closed with a file"
    );

    node.start_again()?;
    ensure!(
        !exists(&clean_close_file(&node, 0)),
        "a start takes the file before anything is written"
    );
    ensure!((served(&node, 0)?, served(&node, 1)?) == before);

    node.restart()?;
    ensure!(
        !exists(&clean_close_file(&node, 0)),
        "a kill leaves no file"
    );
    ensure!((served(&node, 0)?, served(&node, 1)?) == before);
    Ok(())
}
