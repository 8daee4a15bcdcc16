//! The demo's own etcd: one member on free loopback ports, with its data directory under
//! the demo's, killed when the demo ends.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

/// Where Debian's `etcd-server` package installs it, when it is not on `PATH`.
const DEBIAN_ETCD: &str = "/usr/bin/etcd";
const STARTUP: Duration = Duration::from_secs(20);

pub struct Etcd {
    /// The URL the nodes list in `cluster.endpoints`.
    pub endpoint: String,
    _child: Child,
}

/// `etcd` on `PATH`, else Debian's; the error says how to install it.
fn find() -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file());
    match on_path {
        Some(etcd) => Ok(etcd),
        None if Path::new(DEBIAN_ETCD).is_file() => Ok(PathBuf::from(DEBIAN_ETCD)),
        None => bail!(
            "`demo --nodes` needs etcd, found neither on PATH nor at {DEBIAN_ETCD}: \
             install it with `apt install etcd-server` (or scripts/install-test-deps)"
        ),
    }
}

impl Etcd {
    /// Starts etcd with its data and log under `dir`, and waits until it answers.
    pub async fn start(dir: &Path) -> anyhow::Result<Etcd> {
        let etcd = find()?;
        let (client, peer) = (super::free_addr()?, super::free_addr()?);
        let (client, peer) = (format!("http://{client}"), format!("http://{peer}"));
        let log = dir.join("etcd.log");
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = Command::new(&etcd)
            .arg("--name=demo")
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=demo={peer}"))
            .args(["--log-level=warn", "--logger=zap"])
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", etcd.display()))?;
        let address = client.trim_start_matches("http://").to_string();
        let deadline = Instant::now() + STARTUP;
        while tokio::net::TcpStream::connect(&address).await.is_err() {
            if let Some(status) = child.try_wait()? {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                bail!("etcd exited ({status}) at start: {}", tail.join(" | "));
            }
            if Instant::now() > deadline {
                bail!("etcd did not answer on {address} within {STARTUP:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Etcd {
            endpoint: client,
            _child: child,
        })
    }
}
