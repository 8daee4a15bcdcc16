//! End-to-end mirroring beside what a user would run instead, and serving beside tansu.
//!
//! `cd benches/baseline && cargo run --release -- [--mib N] [--partitions P] [--rounds R]
//! [--tansu]` (defaults: 1024 MiB of 1 KiB lz4 records over 8 partitions, 2 rounds, no
//! tansu). Debian's librdkafka 2.0.2 fails its ApiVersions exchange with tansu and sends
//! lz4-configured batches uncompressed; the bindings work with any newer librdkafka.so.1
//! on `LD_LIBRARY_PATH`, such as the one confluent-kafka's wheel ships. Needs
//! `scripts/install-test-deps` (tansu, the Python admin client) and Debian's
//! `librdkafka-dev`, which the `rdkafka` crate links dynamically.
//!
//! It loads a node's owned topic (and with `--tansu` a tansu topic) with a librdkafka
//! producer, then in each round, one after another so a busy machine slows them alike,
//! each after a `sync`:
//! - writes the node's stored byte count to a file: page cache only, then `fdatasync` at
//!   the node's default flush interval;
//! - node → node: a shadowlink node mirrors the source (`persist = "os"`, then the
//!   default), and a librdkafka consume→produce pipeline copies it into a second node;
//! - serving: a librdkafka consumer reads every record from the node;
//! - with `--tansu`, the same three from the tansu topic, the pipeline copying it into a
//!   second tansu.

mod disk;
mod kafka;
mod report;
mod runs;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use shadowlink_benches::{cpu_seconds, load_average, machine};

use report::{Case, Report};
use runs::Broker;

pub const TOPIC: &str = "a_bulk";
/// The node's default `storage.persist`.
const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

struct Args {
    mib: u64,
    partitions: usize,
    rounds: usize,
    tansu: bool,
}

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    match argv.get(1).map(String::as_str) {
        Some("pipeline") if argv.len() == 6 => {
            child(|| kafka::pipeline(&argv[2], &argv[3], &argv[4], &ends(&argv[5])?))
        }
        Some("consume") if argv.len() == 5 => {
            child(|| kafka::consume(&argv[2], &argv[3], &ends(&argv[4])?))
        }
        _ => bench(&args(&argv[1..])?),
    }
}

fn args(argv: &[String]) -> Result<Args> {
    let mut parsed = Args {
        mib: 1024,
        partitions: 8,
        rounds: 2,
        tansu: false,
    };
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        if arg == "--tansu" {
            parsed.tansu = true;
            continue;
        }
        let value = it.next().with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--mib" => parsed.mib = value.parse().context("--mib")?,
            "--partitions" => parsed.partitions = value.parse().context("--partitions")?,
            "--rounds" => parsed.rounds = value.parse().context("--rounds")?,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(parsed)
}

fn ends(list: &str) -> Result<Vec<i64>> {
    list.split(',').map(|e| e.parse().context("ENDS")).collect()
}

/// A child's last line tells the parent what it moved and its own CPU time, read before
/// it exits (afterwards its `/proc` entry is gone).
fn child(run: impl FnOnce() -> Result<kafka::Moved>) -> Result<()> {
    let moved = run()?;
    let cpu = cpu_seconds(std::process::id())?;
    println!(
        "moved records={} bytes={} cpu={cpu:.3}",
        moved.records, moved.bytes
    );
    Ok(())
}

fn bench(args: &Args) -> Result<()> {
    let command: Vec<String> = std::env::args().collect();
    println!("command: {}", command.join(" "));
    println!("machine: {}", machine());
    // The library loaded at run time, which LD_LIBRARY_PATH may make newer than Debian's.
    println!("librdkafka: {}", rdkafka::util::get_rdkafka_version().1);
    let records = args.mib * (1 << 20) / kafka::VALUE_BYTES as u64;
    let node = Broker::start(false, args.partitions)?;
    let node_ends = load(&node, records, args.partitions)?;
    let stored = log_bytes(node.data_dir().context("the source is a node")?)?;
    let tansu = match args.tansu {
        true => {
            let tansu = Broker::start(true, args.partitions)?;
            let ends = load(&tansu, records, args.partitions)?;
            Some((tansu, ends))
        }
        false => None,
    };
    let mut report = Report::new(records * kafka::VALUE_BYTES as u64, stored);
    let scratch = tempfile::tempdir()?;
    for round in 1..=args.rounds {
        println!("round {round}, load average {}", load_average());
        settle()?;
        let plain = disk::measure(scratch.path(), stored, DEFAULT_FLUSH_INTERVAL)?;
        report.plain(plain);
        let mut run = |case: Case, measure: &dyn Fn() -> Result<runs::Measured>| -> Result<()> {
            settle()?;
            shadowlink_benches::free_recently(scratch.path(), stored)?;
            let measured = measure().with_context(|| format!("{case:?}"))?;
            report.add(round, case, measured);
            Ok(())
        };
        run(Case::NodeMirrorOs, &|| {
            runs::mirror(&node, &node_ends, Some("os"))
        })?;
        run(Case::NodeMirrorDefault, &|| {
            runs::mirror(&node, &node_ends, None)
        })?;
        run(Case::NodePipeline, &|| runs::pipeline(&node, &node_ends))?;
        run(Case::ServeNode, &|| runs::serve(&node, &node_ends))?;
        if let Some((tansu, ends)) = &tansu {
            run(Case::TansuMirrorOs, &|| {
                runs::mirror(tansu, ends, Some("os"))
            })?;
            run(Case::TansuMirrorDefault, &|| {
                runs::mirror(tansu, ends, None)
            })?;
            run(Case::TansuPipeline, &|| runs::pipeline(tansu, ends))?;
            run(Case::ServeTansu, &|| runs::serve(tansu, ends))?;
        }
    }
    println!("load average at the end: {}", load_average());
    report.print();
    Ok(())
}

/// Writes back every dirty page first, so no run pays for the previous one's writeback.
fn settle() -> Result<()> {
    let status = Command::new("sync").status().context("running sync")?;
    if !status.success() {
        bail!("sync failed: {status}");
    }
    Ok(())
}

fn load(broker: &Broker, records: u64, partitions: usize) -> Result<Vec<i64>> {
    let started = Instant::now();
    let ends = kafka::load(&broker.addr().to_string(), TOPIC, partitions, records)?;
    let kind = match broker {
        Broker::Node(_) => "node",
        Broker::Tansu(_) => "tansu",
    };
    println!(
        "loaded {records} records of {} B into {kind} in {:.1?}, ends {ends:?}",
        kafka::VALUE_BYTES,
        started.elapsed()
    );
    Ok(ends)
}

/// Bytes of record batches the node stores: the sizes of its segment files.
fn log_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            total += log_bytes(&path)?;
        } else if path.extension().is_some_and(|e| e == "log") {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}
