//! A single-member etcd on loopback ports with its own data directory, for cluster tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{free_port, relay_stderr, wait_for_port, Process};

/// Debian's etcd-server puts it here; `scripts/install-test-deps` installs it.
const ETCD: &str = "/usr/bin/etcd";

pub struct Etcd {
    process: Option<Process>,
    pub client: SocketAddr,
    peer: SocketAddr,
    data_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd; fails, naming the installer, when it is not installed.
    pub fn start() -> Result<Etcd> {
        if !Path::new(ETCD).exists() {
            bail!("{ETCD} is missing: run scripts/install-test-deps (it installs etcd-server)");
        }
        let dir = tempfile::tempdir()?;
        let client: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let peer: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let mut etcd = Etcd {
            process: None,
            client,
            peer,
            data_dir: dir.path().join("etcd"),
            _dir: dir,
        };
        etcd.resume()?;
        Ok(etcd)
    }

    /// The URL nodes list in `cluster.endpoints`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.client)
    }

    /// Stops etcd with SIGKILL, as a crashed or unreachable coordinator; its data stays.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill9();
        }
    }

    /// Starts etcd again on the same ports and data directory.
    pub fn resume(&mut self) -> Result<()> {
        let (client, peer) = (
            format!("http://{}", self.client),
            format!("http://{}", self.peer),
        );
        let mut child = Command::new(ETCD)
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .args([format!("--listen-client-urls={client}")])
            .args([format!("--advertise-client-urls={client}")])
            .args([format!("--listen-peer-urls={peer}")])
            .args([format!("--initial-advertise-peer-urls={peer}")])
            .args([format!("--initial-cluster=test={peer}")])
            .args(["--log-level=warn", "--logger=zap"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {ETCD}"))?;
        let logs = relay_stderr(&mut child, format!("etcd:{}", self.client.port()));
        self.process = Some(Process {
            child,
            name: "etcd".into(),
            logs,
        });
        wait_for_port(self.client, Duration::from_secs(20))
    }
}
