//! Disks that refuse writes: a full file system (a small tmpfs mounted as the node's
//! data directory, so the test needs root) and an fsync that fails
//! (`storage.fault_fsync_fail_after`).
//!
//! A full disk stops mirror appends with an error per partition in `/v1/status`, makes
//! produce to owned topics fail with KAFKA_STORAGE_ERROR (an acknowledgement only ever
//! for stored data), leaves reads working, and everything resumes by itself once space
//! returns. A failed fsync poisons the partition until the node restarts.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::{padded_batch, wait_identical};
use shadowlink_tests::{eventually, http_get, status_json, until, Node, NodeConfig};

const KAFKA_STORAGE_ERROR: i16 = 56;
/// How often the node retries a partition a full disk stopped (`mirror::HEAL_INTERVAL`).
const HEAL_INTERVAL: Duration = Duration::from_secs(1);

/// A tmpfs mounted for the test, unmounted (and its mount point removed) on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Result<Tmpfs> {
        std::fs::create_dir_all(path)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .context("cannot run mount")?;
        if !out.status.success() {
            bail!(
                "cannot mount a {size} tmpfs at {} for the disk-full drill (it needs root, \
                 as on CI): {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Writes zeros to `dir/filler` until the file system is full; returns the file.
fn fill(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path)?;
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => return Err(e.into()),
        }
    }
    // Whatever a partial page still holds.
    while file.write(&[0u8; 512]).is_ok_and(|n| n > 0) {}
    Ok(path)
}

fn produce(node: SocketAddr, topic: &str, batches: std::ops::Range<usize>) -> Result<()> {
    let mut client = RawClient::connect(node)?;
    for n in batches {
        let (code, _) = client.produce(topic, 0, padded_batch(&format!("{topic}-{n}"), 20))?;
        ensure!(code == 0, "produce {n} to {topic}: error {code}");
    }
    Ok(())
}

/// Base offsets of the batches `topic`-0 holds on `node`.
fn stored(node: SocketAddr, topic: &str) -> Result<BTreeSet<i64>> {
    Ok(RawClient::connect(node)?
        .read_batches(topic, 0, 0)?
        .into_iter()
        .map(|(base, _)| base)
        .collect())
}

/// The mirror partition's entry in `/v1/status`.
fn partition_status(node: &Node, topic: &str) -> Result<serde_json::Value> {
    let status = status_json(node)?;
    let topics = status["links"][0]["topics"].as_array().context("topics")?;
    let topic = topics
        .iter()
        .find(|t| t["name"] == topic)
        .with_context(|| format!("{topic} in {status}"))?;
    Ok(topic["partitions"][0].clone())
}

#[test]
fn a_full_disk_stops_writes_with_clear_errors_and_everything_resumes_when_space_returns(
) -> Result<()> {
    let source = Node::start(&NodeConfig::owner().topic("a_orders", 1))?;
    produce(source.kafka, "a_orders", 0..10)?;
    let mut disk = None;
    let node = Node::start_prepared(
        &NodeConfig::linked_to(source.kafka)
            .admin()
            .topic("b_local", 1),
        |dir| {
            disk = Some(Tmpfs::mount(dir, "8m")?);
            Ok(())
        },
    )?;
    let admin = node.admin.context("admin")?;
    wait_identical(source.kafka, node.kafka, "a_orders", 1)?;
    produce(node.kafka, "b_local", 0..5)?;

    let filler = fill(&node.data_dir)?;
    // The mirror partition stops with the disk's error, and says so.
    produce(source.kafka, "a_orders", 10..60)?;
    let p = until(
        Duration::from_secs(30),
        || partition_status(&node, "a_orders"),
        |p| {
            p["last_error"]
                .to_string()
                .contains("No space left on device")
        },
    )?;
    let error = p["last_error"].to_string();
    assert!(error.contains("a_orders-0"), "{error}");
    let (code, body) = http_get(admin, "/readyz")?;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("topic a_orders failed"), "{body}");

    // Produce to an owned topic: acknowledged only when stored. A partial page may
    // still take a batch or two, then the disk refuses.
    let mut client = RawClient::connect(node.kafka)?;
    let mut acked = Vec::new();
    let refused =
        (5..100).find_map(
            |n| match client.produce("b_local", 0, padded_batch("full", 20)) {
                Ok((0, base)) => {
                    acked.push(base);
                    None
                }
                Ok((code, _)) => Some(Ok((n, code))),
                Err(e) => Some(Err(e)),
            },
        );
    let (_, code) = refused.context("the full disk never refused a produce")??;
    assert_eq!(code, KAFKA_STORAGE_ERROR);
    let before_refusal = stored(node.kafka, "b_local")?;
    for base in &acked {
        assert!(before_refusal.contains(base), "acked {base} is not stored");
    }
    // Reads keep working.
    assert!(stored(node.kafka, "a_orders")?.len() >= 10);
    assert!(before_refusal.len() >= 5);

    std::fs::remove_file(&filler)?;
    wait_identical(source.kafka, node.kafka, "a_orders", 1)?;
    let end = eventually(Duration::from_secs(30), || {
        let (code, base) = client.produce("b_local", 0, padded_batch("after", 20))?;
        Ok((code == 0).then_some(base))
    })?;
    let after = stored(node.kafka, "b_local")?;
    assert!(after.is_superset(&before_refusal) && after.contains(&end));
    eventually(Duration::from_secs(30), || {
        Ok((http_get(admin, "/readyz")?.0 == 200).then_some(()))
    })?;
    assert!(node
        .process
        .logged(&["mirror partition writes again", "a_orders"]));
    drop(node);
    drop(disk);
    Ok(())
}

#[test]
fn a_failed_fsync_poisons_the_partition_and_tells_the_operator_to_restart() -> Result<()> {
    // Each produce with persist = "always" fsyncs the segment; the fourth fsync fails.
    let node = Node::start(
        &NodeConfig::owner()
            .admin()
            .fault_fsync_fail_after(3)
            .topic("b_local", 1),
    )?;
    let mut client = RawClient::connect(node.kafka)?;
    let codes: Vec<i16> = (0..6)
        .map(|n| {
            Ok(client
                .produce("b_local", 0, padded_batch(&format!("n{n}"), 5))?
                .0)
        })
        .collect::<Result<_>>()?;
    let first_failure = codes
        .iter()
        .position(|&c| c != 0)
        .context("no produce failed")?;
    assert!(first_failure >= 1, "{codes:?}");
    assert!(
        codes[first_failure..]
            .iter()
            .all(|&c| c == KAFKA_STORAGE_ERROR),
        "every produce after the failed fsync is refused: {codes:?}"
    );
    // Still refused once a write failure would have been healed: nothing heals a
    // failed fsync in place.
    std::thread::sleep(2 * HEAL_INTERVAL);
    assert_eq!(
        client.produce("b_local", 0, padded_batch("later", 5))?.0,
        KAFKA_STORAGE_ERROR
    );
    assert!(node.process.logged(&["fsync failed", "restart"]));
    let status = status_json(&node)?;
    let offline = status["not_ready"].to_string();
    assert!(offline.contains("b_local-0"), "{status}");
    let (code, body) = http_get(node.admin.context("admin")?, "/readyz")?;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("restart"), "{body}");
    Ok(())
}
