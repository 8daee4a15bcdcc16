//! Node → node mirror beside the plain writes of the same bytes, in the same run: a source
//! node owns P partitions filled with lz4 batches (1 KiB values, half random, so lz4
//! about halves them); then each round, for each node binary given, one after another:
//! a plain sequential write of the stored byte count to a new file (page cache only), a
//! new node with `persist = "os"` mirroring the whole topic, a write + `fdatasync` loop
//! of the same bytes at the node's default flush interval, and a new node with the
//! default `persist`. Each step comes after a `sync` and, with `--memory warm` (the
//! default), a write and delete of a scratch file (see `--memory`). A mirror is timed from its process start until
//! ListOffsets on it shows every partition's end; the ratio is the mirror's rate over the
//! plain write's of the same round.
//!
//! `cargo run --release -p shadowlink-benches --bin mirror_sync -- [--mib 256]
//! [--partitions 8] [--rounds 3] [--memory warm|as-found] [--bin NAME=PATH[@KEY=VALUE,...] ...]`. The source is the `shadowlink`
//! binary the test harness builds (`SHADOWLINK_BIN` overrides it), and so is the mirroring
//! node without `--bin`; with several `--bin`, each round runs them one after another.
//! After `@`, link settings for that binary: `fetches_in_flight`, `fetch_max_bytes` and
//! `partition_max_bytes`, and `fetch_sessions` (0 or 1).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use kafka_protocol::records::Compression;
use shadowlink_benches::{free_recently, load_average, print_command_and_machine};
use shadowlink_protocol::batch::testing::build_stamped_batch;
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::{shadowlink_bin, Node, NodeConfig};

const TOPIC: &str = "a_bulk";
const RECORDS_PER_BATCH: i64 = 1000;
const VALUE_BYTES: usize = 1024;
/// Distinct batches produced round-robin: the node gives each its own offsets.
const DISTINCT_BATCHES: usize = 16;
/// The node's default `persist`, and so the plain loop's sync interval.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
const CHUNK: usize = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(600);

#[derive(clap::Parser)]
struct Args {
    /// Stored bytes of lz4 batches the source holds, in MiB.
    #[arg(long, default_value_t = 256)]
    mib: u64,
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// A node binary to measure, as NAME=PATH or NAME=PATH@KEY=VALUE,... with link
    /// settings; repeat to interleave several.
    #[arg(long = "bin")]
    bins: Vec<String>,
    /// `warm`: right before each timed step, write and delete a scratch file a quarter
    /// larger than the bytes, so every step draws on memory the guest just freed.
    /// `as-found`: no such step; on a virtual machine whose balloon reports free pages
    /// to the host, a step then runs up to five times slower when it draws on pages
    /// freed more than about two seconds earlier, and the ratios swing with it.
    #[arg(long, default_value = "warm")]
    memory: Memory,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum Memory {
    Warm,
    AsFound,
}

/// A node binary and the link settings it runs with.
struct Binary {
    name: String,
    path: PathBuf,
    settings: Vec<(String, i64)>,
}

/// One mirror run's result.
struct Run {
    plain: Duration,
    mirror: Duration,
}

fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    print_command_and_machine();
    let bins = binaries(&args.bins)?;
    let source = Node::start(
        &NodeConfig::new()
            .persist("os")
            .topic(TOPIC, args.partitions),
    )?;
    let started = Instant::now();
    let (ends, bytes) = fill(source.kafka, args.partitions, args.mib << 20)?;
    println!(
        "source: {} partitions, {:.1} MB of lz4 batches, {} records, filled in {:.1} s",
        args.partitions,
        bytes as f64 / 1e6,
        ends.iter().sum::<i64>(),
        started.elapsed().as_secs_f64()
    );
    let scratch = tempfile::tempdir()?;
    println!("| round | binary | page-cache write | mirror `os` | ratio | write+fdatasync | mirror default | ratio | load |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for round in 1..=args.rounds {
        for bin in &bins {
            let prepare = || -> Result<()> {
                sync();
                if args.memory == Memory::Warm {
                    free_recently(scratch.path(), bytes)?;
                }
                Ok(())
            };
            prepare()?;
            let plain = plain_write(scratch.path(), bytes, None)?;
            prepare()?;
            let os = mirror(bin, source.kafka, &ends, "os")?;
            prepare()?;
            let synced = plain_write(scratch.path(), bytes, Some(FLUSH_INTERVAL))?;
            prepare()?;
            let default = mirror(bin, source.kafka, &ends, "100ms")?;
            let name = &bin.name;
            let os = Run { plain, mirror: os };
            let default = Run {
                plain: synced,
                mirror: default,
            };
            println!(
                "| {round} | {name} | {} | {} | {:.2} | {} | {} | {:.2} | {} |",
                rate(bytes, os.plain),
                rate(bytes, os.mirror),
                os.plain.as_secs_f64() / os.mirror.as_secs_f64(),
                rate(bytes, default.plain),
                rate(bytes, default.mirror),
                default.plain.as_secs_f64() / default.mirror.as_secs_f64(),
                load_average()
            );
        }
    }
    Ok(())
}

/// Each binary to measure.
fn binaries(given: &[String]) -> Result<Vec<Binary>> {
    if given.is_empty() {
        return Ok(vec![Binary {
            name: "this".into(),
            path: shadowlink_bin().to_path_buf(),
            settings: Vec::new(),
        }]);
    }
    given
        .iter()
        .map(|b| {
            let (name, path) = b.split_once('=').context("--bin takes NAME=PATH")?;
            let (path, settings) = path.split_once('@').unwrap_or((path, ""));
            let settings = settings
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| {
                    let (key, value) = s.split_once('=').context("a setting is KEY=VALUE")?;
                    Ok((key.to_string(), value.parse()?))
                })
                .collect::<Result<Vec<_>>>()?;
            ensure!(Path::new(path).exists(), "no binary at {path}");
            Ok(Binary {
                name: name.to_string(),
                path: PathBuf::from(path),
                settings,
            })
        })
        .collect()
}

fn rate(bytes: u64, took: Duration) -> String {
    let secs = took.as_secs_f64();
    format!("{secs:.3} s, {:.0} MB/s", bytes as f64 / 1e6 / secs)
}

fn sync() {
    let _ = Command::new("sync").status();
}

/// 1 KiB values whose first half is random and second half repeats, so lz4 halves them.
fn lz4_batches() -> Vec<Bytes> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..DISTINCT_BATCHES)
        .map(|_| {
            let values: Vec<Bytes> = (0..RECORDS_PER_BATCH)
                .map(|_| {
                    let mut value = vec![b'x'; VALUE_BYTES];
                    for chunk in value[..VALUE_BYTES / 2].chunks_mut(8) {
                        chunk.copy_from_slice(&random().to_le_bytes()[..chunk.len()]);
                    }
                    Bytes::from(value)
                })
                .collect();
            let records: Vec<(i64, i64)> = (0..RECORDS_PER_BATCH)
                .map(|o| (o, 1_700_000_000_000 + o))
                .collect();
            build_stamped_batch(&records, -1, Compression::Lz4, |o| {
                values[o as usize].clone()
            })
        })
        .collect()
}

/// Produces lz4 batches round-robin until the source holds `target` bytes; returns each
/// partition's end offset and the bytes stored.
fn fill(source: SocketAddr, partitions: i32, target: u64) -> Result<(Vec<i64>, u64)> {
    let batches = lz4_batches();
    let mut client = RawClient::connect(source)?;
    let mut ends = vec![0; partitions as usize];
    let (mut bytes, mut n) = (0u64, 0usize);
    while bytes < target {
        let partition = (n % partitions as usize) as i32;
        let batch = batches[n % batches.len()].clone();
        bytes += batch.len() as u64;
        let (error, base) = client.produce(TOPIC, partition, batch)?;
        ensure!(
            error == 0,
            "produce to {TOPIC}-{partition} answered {error}"
        );
        ends[partition as usize] = base + RECORDS_PER_BATCH;
        n += 1;
    }
    Ok((ends, bytes))
}

/// Writes `bytes` to a new file in `dir` in 1 MiB writes, with `fdatasync` after any
/// write `interval` after the last sync and at the end when given; removes it after.
fn plain_write(dir: &Path, bytes: u64, interval: Option<Duration>) -> Result<Duration> {
    let path = dir.join("plain");
    let chunk = vec![0x5au8; CHUNK];
    let file = std::fs::File::create(&path)?;
    let started = Instant::now();
    let mut synced = started;
    let mut at = 0u64;
    while at < bytes {
        let len = (bytes - at).min(CHUNK as u64) as usize;
        file.write_all_at(&chunk[..len], at)?;
        at += len as u64;
        if interval.is_some_and(|i| synced.elapsed() >= i) {
            file.sync_data()?;
            synced = Instant::now();
        }
    }
    if interval.is_some() {
        file.sync_data()?;
    }
    let took = started.elapsed();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(took)
}

/// A new node of `bin` with `persist` linked to `source`, timed from its start until it
/// holds every partition's end.
fn mirror(bin: &Binary, source: SocketAddr, ends: &[i64], persist: &str) -> Result<Duration> {
    let dir = tempfile::tempdir()?;
    let mut config = NodeConfig::linked_to(source).persist(persist);
    for (key, value) in &bin.settings {
        let value = *value;
        config = match key.as_str() {
            "fetches_in_flight" => config.link(|l| l.fetches_in_flight(value as usize)),
            "fetch_max_bytes" => config.link(|l| l.fetch_max_bytes(value as i32)),
            "partition_max_bytes" => config.link(|l| l.partition_max_bytes(value as i32)),
            "fetch_sessions" => config.link(|l| l.fetch_sessions(value != 0)),
            other => bail!("no link setting {other} in this bench"),
        };
    }
    let config_path = dir.path().join("shadowlink.toml");
    std::fs::write(&config_path, config.render(Some(&dir.path().join("data"))))?;
    let started = Instant::now();
    let mut child = Command::new(&bin.path)
        .args(["run", "--config"])
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the mirroring node")?;
    let result = time_until_mirrored(&mut child, ends, started);
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn time_until_mirrored(child: &mut Child, ends: &[i64], started: Instant) -> Result<Duration> {
    let stdout = child.stdout.take().context("stdout is piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr: SocketAddr = loop {
        let line = lines.next().context("the node exited before listening")??;
        if let Some(addr) = line.strip_prefix("shadowlink kafka=") {
            break addr.parse()?;
        }
    };
    let mut client = RawClient::connect(addr)?;
    loop {
        if mirrored(&mut client, ends) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > TIMEOUT {
            bail!("the node did not mirror the topic within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether every partition's end on the node is the source's.
fn mirrored(client: &mut RawClient, ends: &[i64]) -> bool {
    ends.iter().enumerate().all(|(partition, end)| {
        client
            .list_offset(TOPIC, partition as i32, -1)
            .is_ok_and(|at| at >= *end)
    })
}
