//! The replication scenarios against Redpanda in a container (testcontainers).
//!
//! Needs a Docker engine, so the tests are ignored (and counted as skipped, with the
//! reason) unless `SHADOWLINK_IT_REDPANDA=1 scripts/test` asks for them.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use shadowlink_tests::scenario::{self, produce, wait_identical};
use shadowlink_tests::{free_port, python, wait_for_port};
use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage, ImageExt};

const IMAGE: &str = "redpandadata/redpanda";
const TAG: &str = "v24.3.5";

/// A single-node Redpanda whose advertised address is the host port it is mapped to.
fn start_redpanda() -> Result<(Container<GenericImage>, SocketAddr)> {
    let port = free_port();
    let container = GenericImage::new(IMAGE, TAG)
        .with_exposed_port(ContainerPort::Tcp(9092))
        .with_wait_for(WaitFor::message_on_stderr("Successfully started Redpanda!"))
        .with_mapped_port(port, ContainerPort::Tcp(9092))
        .with_cmd([
            "redpanda",
            "start",
            "--mode",
            "dev-container",
            "--smp",
            "1",
            "--kafka-addr",
            "0.0.0.0:9092",
            "--advertise-kafka-addr",
            &format!("127.0.0.1:{port}"),
        ])
        .start()
        .context("cannot start Redpanda (is a Docker engine running?)")?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    wait_for_port(addr, Duration::from_secs(60))?;
    Ok((container, addr))
}

#[test]
#[ignore = "needs a Docker engine: SHADOWLINK_IT_REDPANDA=1 scripts/test runs it"]
fn redpanda_every_codec_and_partition_increase() -> Result<()> {
    let (_redpanda, source) = start_redpanda()?;
    let node = scenario::every_codec(source)?;
    // Redpanda supports CreatePartitions: a grown source topic grows its mirror.
    python(
        "admin.py",
        &[&source.to_string(), "add-partitions", "a_late", "5"],
    )?;
    produce(source, "a_late", 100, "zstd", 5, 90)?;
    wait_identical(source, node.kafka, "a_late", 5)
}

#[test]
#[ignore = "needs a Docker engine: SHADOWLINK_IT_REDPANDA=1 scripts/test runs it"]
fn redpanda_kill_nine_and_resume() -> Result<()> {
    let (_redpanda, source) = start_redpanda()?;
    scenario::kill_and_resume(source)
}
