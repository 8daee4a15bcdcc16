//! One timed run of each thing compared: a shadowlink node mirroring a source, the
//! librdkafka pipeline copying it into a second broker, a consumer reading a broker.
//!
//! CPU is user + system time from `/proc/PID/stat`, all threads of a process. A mirror
//! run counts the mirroring node's whole life (it starts with the clock). A pipeline run
//! counts the pipeline process's whole life (it reads its own stat after its last
//! acknowledgement) plus what its target broker spent while the clock ran. The source's
//! CPU during the run is measured and shown, never counted.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use shadowlink_benches::cpu_seconds;
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::create_topic;
use shadowlink_tests::{Link, Node, NodeConfig, Tansu};

use crate::TOPIC;

const MIRRORED_WITHIN: Duration = Duration::from_secs(1800);

/// A broker the benchmark started, a node or tansu; killed when dropped.
pub enum Broker {
    Node(Node),
    Tansu(Tansu),
}

impl Broker {
    pub fn addr(&self) -> SocketAddr {
        match self {
            Broker::Node(n) => n.kafka,
            Broker::Tansu(t) => t.addr,
        }
    }

    pub fn pid(&self) -> u32 {
        match self {
            Broker::Node(n) => n.process.pid(),
            Broker::Tansu(t) => t.process.pid(),
        }
    }

    /// A node's data directory; tansu keeps its data in memory.
    pub fn data_dir(&self) -> Option<&std::path::Path> {
        match self {
            Broker::Node(n) => Some(&n.data_dir),
            Broker::Tansu(_) => None,
        }
    }

    /// A node with `persist = "os"` owning its topics, or a tansu with in-memory storage,
    /// holding an empty [`TOPIC`] with `partitions` partitions.
    pub fn start(tansu: bool, partitions: usize) -> Result<Broker> {
        let broker = match tansu {
            true => Broker::Tansu(Tansu::start()?),
            false => Broker::Node(Node::start(&NodeConfig::new().persist("os"))?),
        };
        create_topic(broker.addr(), TOPIC, partitions as i32, &[])?;
        Ok(broker)
    }
}

/// The figures of one run.
pub struct Measured {
    pub wall: Duration,
    /// The CPU-seconds this run is charged with (see the module's note).
    pub cpu: f64,
    /// CPU-seconds of the other side, shown beside: the source while mirroring, the
    /// consumer while serving.
    pub other_cpu: f64,
}

/// A node with one link to `source` and `persist` (the daemon's default when `None`),
/// timed from its start until it holds every record up to `ends`.
pub fn mirror(source: &Broker, ends: &[i64], persist: Option<&str>) -> Result<Measured> {
    let mut config =
        NodeConfig::new().add_link(Link::new("from-a", source.addr()).include(&["a_*"]));
    if let Some(persist) = persist {
        config = config.persist(persist);
    }
    let source_before = cpu_seconds(source.pid())?;
    let started = Instant::now();
    let node = Node::start(&config)?;
    wait_ends(node.kafka, ends)?;
    let wall = started.elapsed();
    Ok(Measured {
        wall,
        cpu: cpu_seconds(node.process.pid())?,
        other_cpu: cpu_seconds(source.pid())? - source_before,
    })
}

/// The librdkafka pipeline from `source` into a fresh broker of the same kind, timed from
/// the pipeline's start until every record is acknowledged by the target.
pub fn pipeline(source: &Broker, ends: &[i64]) -> Result<Measured> {
    let target = Broker::start(matches!(source, Broker::Tansu(_)), ends.len())?;
    let source_before = cpu_seconds(source.pid())?;
    let target_before = cpu_seconds(target.pid())?;
    let started = Instant::now();
    let (records, pipeline_cpu) = child(&[
        "pipeline",
        &source.addr().to_string(),
        &target.addr().to_string(),
        TOPIC,
        &join(ends),
    ])?;
    let wall = started.elapsed();
    let target_cpu = cpu_seconds(target.pid())? - target_before;
    check_records(records, ends)?;
    if let Broker::Node(node) = &target {
        wait_ends(node.kafka, ends)?;
    }
    Ok(Measured {
        wall,
        cpu: pipeline_cpu + target_cpu,
        other_cpu: cpu_seconds(source.pid())? - source_before,
    })
}

/// A librdkafka consumer reading every record of `server`; the server's CPU is counted.
pub fn serve(server: &Broker, ends: &[i64]) -> Result<Measured> {
    let before = cpu_seconds(server.pid())?;
    let started = Instant::now();
    let (records, consumer_cpu) =
        child(&["consume", &server.addr().to_string(), TOPIC, &join(ends)])?;
    let wall = started.elapsed();
    check_records(records, ends)?;
    Ok(Measured {
        wall,
        cpu: cpu_seconds(server.pid())? - before,
        other_cpu: consumer_cpu,
    })
}

fn check_records(records: u64, ends: &[i64]) -> Result<()> {
    let expected: i64 = ends.iter().sum();
    if records as i64 != expected {
        bail!("moved {records} records where the source holds {expected}");
    }
    Ok(())
}

fn join(ends: &[i64]) -> String {
    ends.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs this program as a child with `args`; returns the records it moved and its CPU
/// seconds, from its last line `moved records=N cpu=S`.
fn child(args: &[&str]) -> Result<(u64, f64)> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .context("running the librdkafka child")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("{} failed ({}): {stdout}", args[0], out.status);
    }
    let line = stdout.lines().last().context("the child printed nothing")?;
    let field = |name: &str| -> Result<&str> {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .with_context(|| format!("no {name} in {line:?}"))
    };
    Ok((field("records=")?.parse()?, field("cpu=")?.parse()?))
}

/// Polls the node's ListOffsets until every partition's log end reaches `ends`.
pub fn wait_ends(addr: SocketAddr, ends: &[i64]) -> Result<()> {
    let deadline = Instant::now() + MIRRORED_WITHIN;
    let mut client: Option<RawClient> = None;
    while Instant::now() < deadline {
        if client.is_none() {
            client = RawClient::connect(addr).ok();
        }
        if let Some(c) = client.as_mut() {
            match reached(c, ends) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(_) => client = None,
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{addr} did not hold every record within {MIRRORED_WITHIN:?}")
}

fn reached(client: &mut RawClient, ends: &[i64]) -> Result<bool> {
    for (p, end) in ends.iter().enumerate() {
        if client.list_offset(TOPIC, p as i32, -1)? < *end {
            return Ok(false);
        }
    }
    Ok(true)
}
