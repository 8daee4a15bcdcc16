//! Region B's nodes: each a `shadowlink run` child process of this binary, so that a
//! node can be killed with SIGKILL and its lease left to expire, as when a machine dies.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// The cluster's name in etcd, and the lease after which a silent node counts as lost.
pub const CLUSTER: &str = "demo-region-b";
pub const LEASE_TTL: Duration = Duration::from_secs(3);
pub const REPLICATION_FACTOR: usize = 2;
/// The link every node of region B has to region A.
pub const LINK: &str = "from-a";
const STARTUP: Duration = Duration::from_secs(30);

/// One running node of region B.
pub struct NodeProcess {
    pub id: i32,
    /// The Kafka listener, as the node advertises it.
    pub kafka: String,
    pub admin: String,
    child: Child,
    /// Held open: the node wrote its addresses there and must not meet a closed pipe.
    _stdout: Lines<BufReader<ChildStdout>>,
}

/// A node of cluster [`CLUSTER`] shadowing `a_*` from `source`, on free loopback ports.
fn config(data_dir: &Path, id: i32, etcd: &str, source: &str) -> String {
    format!(
        "data_dir = {data_dir:?}\n\
         node_id = {id}\n\
         [kafka]\nlisten = \"127.0.0.1:0\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [storage]\npersist = \"100ms\"\n\
         [cluster]\nname = \"{CLUSTER}\"\nendpoints = [\"{etcd}\"]\n\
         lease_ttl = \"{}s\"\nreplication_factor = {REPLICATION_FACTOR}\n\
         [[links]]\nname = \"{LINK}\"\nbootstrap = [\"{source}\"]\n\
         include = [\"a_*\"]\nstart = \"earliest\"\nmetadata_interval = \"200ms\"\n\
         config_interval = \"1s\"\nprogress_interval = \"1s\"\n",
        LEASE_TTL.as_secs()
    )
}

impl NodeProcess {
    /// Writes node `id`'s config under `dir`, starts it and reads the addresses it bound.
    /// Its log goes to the demo's stderr, at `warn` unless `RUST_LOG` says otherwise.
    pub async fn start(dir: &Path, id: i32, etcd: &str, source: &str) -> anyhow::Result<Self> {
        let node_dir = dir.join(format!("node-{id}"));
        std::fs::create_dir_all(&node_dir)
            .with_context(|| format!("cannot create {}", node_dir.display()))?;
        let path = node_dir.join("shadowlink.toml");
        std::fs::write(&path, config(&node_dir.join("data"), id, etcd, source))
            .with_context(|| format!("cannot write {}", path.display()))?;
        let exe = std::env::current_exe().context("cannot find this shadowlink binary")?;
        let mut command = Command::new(exe);
        command.arg("run").arg("--config").arg(&path);
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "warn");
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start node {id}"))?;
        let stdout = child.stdout.take().context("the node's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addresses = tokio::time::timeout(STARTUP, addresses(&mut lines)).await;
        let (kafka, admin) = match addresses {
            Ok(found) => found.with_context(|| format!("node {id} did not start"))?,
            Err(_) => bail!("node {id} did not report its addresses within {STARTUP:?}"),
        };
        Ok(NodeProcess {
            id,
            kafka,
            admin,
            child,
            _stdout: lines,
        })
    }

    /// SIGKILL: no lease revoked, nothing flushed; the node is gone once this returns.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        self.child
            .kill()
            .await
            .with_context(|| format!("cannot kill node {}", self.id))
    }
}

/// The `shadowlink kafka=` and `shadowlink admin=` lines `shadowlink run` prints once its
/// listeners are bound.
async fn addresses(lines: &mut Lines<BufReader<ChildStdout>>) -> anyhow::Result<(String, String)> {
    let (mut kafka, mut admin) = (None, None);
    while kafka.is_none() || admin.is_none() {
        let Some(line) = lines.next_line().await? else {
            bail!("it exited before binding its listeners");
        };
        if let Some(addr) = line.strip_prefix("shadowlink kafka=") {
            kafka = Some(addr.to_string());
        } else if let Some(addr) = line.strip_prefix("shadowlink admin=") {
            admin = Some(addr.to_string());
        }
    }
    Ok((kafka.unwrap_or_default(), admin.unwrap_or_default()))
}
