//! How long logs holding data take to open again: after a clean close, which leaves each
//! log's `clean-close` file, beside after a crash, which leaves none (the files are
//! removed, as a kill leaves the logs), in the same run and on the same files.
//!
//! Each round opens all the logs four times, in parallel on `--threads` threads as a node
//! opens its topics: after a clean close and after a crash, each with the files in the
//! page cache (`hot`) and evicted from it first (`cold`, `posix_fadvise(DONTNEED)` after
//! a `sync`, as after the host dropped them), and closes them again on one thread, as a
//! node's stop does after its syncs. Each log holds `--mib` MiB of 16 KiB batches, in segments of
//! `--segment-mib` MiB.
//!
//! `cargo run --release -p shadowlink-benches --bin reopen -- [--logs 8] [--mib 128]
//! [--segment-mib 256] [--rounds 3] [--threads 4] [--dir /tmp]`

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use shadowlink_benches::{evict_from_page_cache, load_average, print_command_and_machine};
use shadowlink_protocol::batch::testing::build_batch;
use shadowlink_storage::{LogConfig, PartitionLog, PersistMode};

const BATCH_VALUE: usize = 16 * 1024 - 80;

#[derive(clap::Parser)]
struct Args {
    /// Logs opened together.
    #[arg(long, default_value_t = 8)]
    logs: usize,
    /// Bytes in each log, in MiB.
    #[arg(long, default_value_t = 128)]
    mib: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Threads opening the logs (a node opens its topics on 4).
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Segment size in MiB: below `--mib`, each log also holds sealed segments.
    #[arg(long, default_value_t = 256)]
    segment_mib: u64,
    /// Where the logs go (the same file system as a node's data directory).
    #[arg(long, default_value = "/tmp")]
    dir: PathBuf,
}

/// A node's log settings, with `segment_mib` MiB segments (a node's default is 256) and
/// appends left to the page cache.
fn config(segment_mib: u64) -> LogConfig {
    LogConfig {
        segment_bytes: segment_mib << 20,
        persist: PersistMode::Os,
        ..LogConfig::default()
    }
}

fn main() -> Result<()> {
    let args: Args = clap::Parser::parse();
    print_command_and_machine();
    let config = config(args.segment_mib);
    let root = tempfile::tempdir_in(&args.dir)?;
    let dirs: Vec<PathBuf> = (0..args.logs)
        .map(|i| root.path().join(format!("log-{i}")))
        .collect();
    let started = Instant::now();
    let batches = fill(&dirs, &config, args.mib)?;
    println!(
        "{} logs of {} MiB ({batches} batches each) written in {:.1?}",
        args.logs,
        args.mib,
        started.elapsed()
    );
    println!(
        "\n| round | open: clean, hot | crash, hot | clean, cold | crash, cold | close of all |"
    );
    println!("|---|---|---|---|---|---|");
    let mut ratios = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        let time = |clean, cold| open_all(&dirs, &config, args.threads, clean, cold, batches);
        let ((clean_hot, close), (crash_hot, _)) = (time(true, false)?, time(false, false)?);
        let ((clean_cold, _), (crash_cold, _)) = (time(true, true)?, time(false, true)?);
        println!(
            "| {round} | {clean_hot:.1?} | {crash_hot:.1?} | {clean_cold:.1?} | {crash_cold:.1?} | {close:.1?} |"
        );
        ratios
            .0
            .push(crash_hot.as_secs_f64() / clean_hot.as_secs_f64());
        ratios
            .1
            .push(crash_cold.as_secs_f64() / clean_cold.as_secs_f64());
    }
    let show = |r: &[f64]| {
        let r: Vec<String> = r.iter().map(|x| format!("{x:.1}")).collect();
        r.join(", ")
    };
    println!(
        "\nopen after a crash / open after a clean close: hot {}; cold {}",
        show(&ratios.0),
        show(&ratios.1)
    );
    println!("load average at the end: {}", load_average());
    Ok(())
}

/// Appends `mib` MiB of 16 KiB batches to a new log in each of `dirs`; returns how many.
fn fill(dirs: &[PathBuf], config: &LogConfig, mib: usize) -> Result<i64> {
    let value = vec![0x5au8; BATCH_VALUE];
    let per_log = (mib << 20) / (16 << 10);
    for dir in dirs {
        let mut log = PartitionLog::open(dir, config.clone())?;
        for n in 0..per_log as i64 {
            log.append(build_batch(n, 0, &[(None, Some(&value[..]))], 1_000 + n))?;
        }
    }
    Ok(per_log as i64)
}

/// Closes every log the way asked (the open before each close is not timed), then times
/// opening them all on `threads` threads, and closing them again.
fn open_all(
    dirs: &[PathBuf],
    config: &LogConfig,
    threads: usize,
    clean: bool,
    cold: bool,
    n: i64,
) -> Result<(Duration, Duration)> {
    for dir in dirs {
        let log = PartitionLog::open(dir, config.clone())?;
        ensure!(
            log.log_end_offset() == n,
            "{} holds {}",
            dir.display(),
            log.log_end_offset()
        );
        drop(log);
        // A log whose active segment is too small for the file has none to remove.
        let file = dir.join("clean-close");
        if !clean && file.exists() {
            std::fs::remove_file(&file)?;
        }
    }
    if cold {
        dirs.iter().try_for_each(|d| evict_from_page_cache(d))?;
    }
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        let open = || -> Result<Vec<PartitionLog>> {
            let mut opened = Vec::new();
            while let Some(dir) = dirs.get(next.fetch_add(1, Ordering::Relaxed)) {
                opened.push(PartitionLog::open(dir, config.clone())?);
            }
            Ok(opened)
        };
        let workers: Vec<_> = (0..threads.clamp(1, dirs.len()))
            .map(|_| scope.spawn(open))
            .collect();
        let mut logs = Vec::new();
        for worker in workers {
            logs.extend(worker.join().expect("open thread")?);
        }
        let opened = started.elapsed();
        ensure!(
            logs.iter().all(|l| l.log_end_offset() == n),
            "a log lost batches"
        );
        // One thread, as a node's stop drops its logs after syncing them.
        let started = Instant::now();
        drop(logs);
        Ok((opened, started.elapsed()))
    })
}
