//! The two in-process nodes: a temporary data directory, their configs, and starting
//! them on free loopback ports.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};

use shadowlink::config::Config;
use shadowlink::daemon::{Daemon, StartError};

/// Topics region A owns (B shadows them through its link `from-a`).
pub const A_TOPICS: [&str; 2] = ["a_orders", "a_shipments"];
/// Topics region B owns (A shadows them through its link `from-b`).
pub const B_TOPICS: [&str; 2] = ["b_inventory", "b_payments"];
pub const PARTITIONS: i32 = 2;

/// A directory under the system's temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> anyhow::Result<TempDir> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path =
            std::env::temp_dir().join(format!("shadowlink-demo-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// One node's config: its owned topics and a link pulling `peer_prefix*` from `peer`.
fn config(
    data_dir: &Path,
    node_id: i32,
    port: u16,
    owned: &[&str],
    link: &str,
    peer: u16,
    peer_prefix: &str,
) -> String {
    let mut text = format!(
        "data_dir = {data_dir:?}\n\
         node_id = {node_id}\n\
         [kafka]\nlisten = \"127.0.0.1:{port}\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [storage]\npersist = \"100ms\"\nretention_interval = \"1s\"\n"
    );
    for topic in owned {
        text.push_str(&format!(
            "[[topics]]\nname = \"{topic}\"\npartitions = {PARTITIONS}\n"
        ));
    }
    text.push_str(&format!(
        "[[links]]\nname = \"{link}\"\nbootstrap = [\"127.0.0.1:{peer}\"]\n\
         include = [\"{peer_prefix}*\"]\nmetadata_interval = \"200ms\"\n\
         config_interval = \"1s\"\nprogress_interval = \"1s\"\n"
    ));
    text
}

/// Starts region A and region B, each linking from the other; returns them and A's
/// config, to start A again later. Ports are picked first (both configs need both); a
/// port taken in between is retried with new ones.
pub async fn start(dir: &Path) -> anyhow::Result<(Daemon, Daemon, Config)> {
    let (a_dir, b_dir) = (dir.join("region-a"), dir.join("region-b"));
    for attempt in 1..=5 {
        let (pa, pb) = (free_port()?, free_port()?);
        if pa == pb {
            continue;
        }
        // Distinct broker ids, as for any two nodes one client may reach: clients key
        // brokers by id.
        let a_config = Config::parse(&config(&a_dir, 1, pa, &A_TOPICS, "from-b", pb, "b_"))?;
        let b = Config::parse(&config(&b_dir, 2, pb, &B_TOPICS, "from-a", pa, "a_"))?;
        let a = match Daemon::start(a_config.clone()).await {
            Ok(a) => a,
            Err(StartError::Listen { .. }) if attempt < 5 => continue,
            Err(e) => return Err(e).context("cannot start region A"),
        };
        match Daemon::start(b).await {
            Ok(b) => return Ok((a, b, a_config)),
            Err(StartError::Listen { .. }) if attempt < 5 => a.shutdown().await?,
            Err(e) => {
                let _ = a.shutdown().await;
                return Err(e).context("cannot start region B");
            }
        }
    }
    bail!("no free loopback ports for the two nodes")
}

/// Starts a stopped node again on its data directory and port. The port was just
/// released, so a bind that fails is retried for a few seconds.
pub async fn restart(config: &Config) -> anyhow::Result<Daemon> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Daemon::start(config.clone()).await {
            Ok(node) => return Ok(node),
            Err(StartError::Listen { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).context("cannot start the node again"),
        }
    }
}

/// Waits until each node holds the other's topics as shadows.
pub async fn wait_linked(a: &Daemon, b: &Daemon) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a_ready = B_TOPICS.iter().all(|t| a.store.topic(t).is_some());
        let b_ready = A_TOPICS.iter().all(|t| b.store.topic(t).is_some());
        if a_ready && b_ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the links did not create their shadow topics within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
