//! A single-member etcd on loopback ports with its own data directory, for cluster tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::pki::Pki;
use crate::{free_port, http_post, relay_stderr, wait_for_port, Process};

/// Debian's etcd-server puts it here; `scripts/install-test-deps` installs it.
const ETCD: &str = "/usr/bin/etcd";

pub struct Etcd {
    process: Option<Process>,
    pub client: SocketAddr,
    peer: SocketAddr,
    data_dir: PathBuf,
    tls: Option<Tls>,
    _dir: tempfile::TempDir,
}

/// etcd's TLS: its certificate, and with `client_cert_auth` (etcd's
/// `--client-cert-auth`) the CA client certificates must chain to.
struct Tls {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    client_cert_auth: bool,
    /// A plain listener on loopback for setting etcd up through its JSON gateway.
    setup: SocketAddr,
}

impl Etcd {
    /// Starts etcd; fails, naming the installer, when it is not installed.
    pub fn start() -> Result<Etcd> {
        let mut etcd = Etcd::unstarted()?;
        etcd.resume()?;
        Ok(etcd)
    }

    /// Starts etcd serving clients over TLS with `pki`'s server certificate, and with
    /// `client_cert_auth` refusing clients without a certificate `pki`'s CA signed.
    pub fn start_tls(pki: &Pki, client_cert_auth: bool) -> Result<Etcd> {
        let mut etcd = Etcd::unstarted()?;
        etcd.tls = Some(Tls {
            cert: pki.path("server.pem"),
            key: pki.path("server.key"),
            ca: pki.ca(),
            client_cert_auth,
            setup: format!("127.0.0.1:{}", free_port()).parse()?,
        });
        etcd.resume()?;
        Ok(etcd)
    }

    /// Its ports and data directory, not running yet; fails, naming the installer, when
    /// etcd is not installed.
    fn unstarted() -> Result<Etcd> {
        if !Path::new(ETCD).exists() {
            bail!("{ETCD} is missing: run scripts/install-test-deps (it installs etcd-server)");
        }
        let dir = tempfile::tempdir()?;
        Ok(Etcd {
            process: None,
            client: format!("127.0.0.1:{}", free_port()).parse()?,
            peer: format!("127.0.0.1:{}", free_port()).parse()?,
            data_dir: dir.path().join("etcd"),
            tls: None,
            _dir: dir,
        })
    }

    /// The value of `key`, read through etcd's JSON gateway (a plain etcd only).
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = serde_json::json!({ "key": b64.encode(key) }).to_string();
        let (code, answer) = http_post(self.client, "/v3/kv/range", &body)?;
        if code != 200 {
            bail!("etcd range {key}: {code} {answer}");
        }
        let answer: serde_json::Value = serde_json::from_str(&answer)?;
        let Some(value) = answer["kvs"][0]["value"].as_str() else {
            return Ok(None);
        };
        Ok(Some(String::from_utf8(b64.decode(value)?)?))
    }

    /// The URL nodes list in `cluster.endpoints`.
    pub fn endpoint(&self) -> String {
        match self.tls {
            Some(_) => format!("https://{}", self.client),
            None => format!("http://{}", self.client),
        }
    }

    /// Turns on etcd's authentication with the user `root` (etcd's superuser) and
    /// `password`. Needs a TLS etcd: it is set up through its plain loopback listener.
    pub fn enable_auth(&self, password: &str) -> Result<()> {
        let setup = self
            .tls
            .as_ref()
            .context("enable_auth needs start_tls")?
            .setup;
        let user = serde_json::json!({ "name": "root", "password": password }).to_string();
        let steps = [
            ("/v3/auth/role/add", r#"{"name":"root"}"#.to_string()),
            ("/v3/auth/user/add", user),
            (
                "/v3/auth/user/grant",
                r#"{"user":"root","role":"root"}"#.into(),
            ),
            ("/v3/auth/enable", "{}".into()),
        ];
        for (path, body) in steps {
            let (code, answer) = http_post(setup, path, &body)?;
            if code != 200 {
                bail!("etcd {path}: {code} {answer}");
            }
        }
        Ok(())
    }

    /// Stops etcd with SIGKILL, as a crashed or unreachable coordinator; its data stays.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill9();
        }
    }

    /// Starts etcd again on the same ports and data directory.
    pub fn resume(&mut self) -> Result<()> {
        let (client, peer) = (self.endpoint(), format!("http://{}", self.peer));
        let mut tls_args = Vec::new();
        let mut listen = client.clone();
        if let Some(tls) = &self.tls {
            tls_args.push(format!("--cert-file={}", tls.cert.display()));
            tls_args.push(format!("--key-file={}", tls.key.display()));
            if tls.client_cert_auth {
                tls_args.push(format!("--trusted-ca-file={}", tls.ca.display()));
                tls_args.push("--client-cert-auth".into());
            }
            listen = format!("{client},http://{}", tls.setup);
        }
        let mut child = Command::new(ETCD)
            .args(&tls_args)
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .args([format!("--listen-client-urls={listen}")])
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
