//! A partition's first append against a later one, as a new link meets them: one small
//! batch from an idempotent producer (a producer id, as Kafka's producers send by
//! default since 3.0) in the source's leader epoch.
//!
//! `first_append` times the first batch of each of `LOGS` new logs (opening them is not
//! timed); `later_append` times a second batch of the same producer and epoch to each
//! of them. A log records the epoch and the largest producer id in files of their own,
//! so a first append is where writing those, with their fsyncs, would show. The summary
//! runs the two interleaved and prints microseconds per append and their ratio.
//!
//! `cargo bench -p shadowlink-benches --bench first_append`

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, Criterion};
use shadowlink_benches::load_average;
use shadowlink_protocol::batch::testing::BatchBuilder;
use shadowlink_storage::{LogConfig, PartitionLog, PersistMode};

/// New logs per pass.
const LOGS: usize = 500;

/// One 1 KiB record of producer 4242 at `base_offset`, in leader epoch 7.
fn batch(base_offset: i64) -> Bytes {
    let value = vec![0xabu8; 1024];
    BatchBuilder::new(base_offset)
        .leader_epoch(7)
        .producer(4242, 0, base_offset as i32)
        .records(&[(None, Some(&value[..]))])
        .build()
}

fn open_logs(dir: &Path, pass: usize) -> Vec<PartitionLog> {
    let config = LogConfig {
        persist: PersistMode::Os,
        ..LogConfig::default()
    };
    (0..LOGS)
        .map(|i| {
            let at = dir.join(format!("{pass}-{i}"));
            PartitionLog::open(&at, config.clone()).expect("open log")
        })
        .collect()
}

/// Appends `batch` to each log and returns the time the appends took.
fn append_each(logs: &mut [PartitionLog], batch: &Bytes) -> Duration {
    let start = Instant::now();
    for log in logs.iter_mut() {
        black_box(log.append(batch.clone()).expect("append"));
    }
    start.elapsed()
}

/// Times the first append to `LOGS` new logs and then a second to each.
fn pass(dir: &Path, n: usize) -> (Duration, Duration) {
    let mut logs = open_logs(dir, n);
    let first = append_each(&mut logs, &batch(0));
    let later = append_each(&mut logs, &batch(1));
    drop(logs);
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::create_dir_all(dir);
    (first, later)
}

fn first_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("first_append");
    let mut n = 0;
    for (name, first) in [("first_append", true), ("later_append", false)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    n += 1;
                    let (f, l) = pass(dir.path(), n);
                    elapsed += if first { f } else { l };
                    done += LOGS as u64;
                }
                elapsed.mul_f64(iters as f64 / done as f64)
            })
        });
    }
    group.finish();
}

fn summary() {
    const ROUNDS: usize = 9;
    let dir = tempfile::tempdir().expect("temp dir");
    let load = load_average();
    let (mut firsts, mut laters) = (Vec::new(), Vec::new());
    for n in 0..ROUNDS {
        let (f, l) = pass(dir.path(), n);
        firsts.push(f.as_secs_f64() * 1e6 / LOGS as f64);
        laters.push(l.as_secs_f64() * 1e6 / LOGS as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (first, later) = (median(&mut firsts), median(&mut laters));
    println!(
        "\nfirst_append summary: {ROUNDS} rounds of {LOGS} new logs, median; load average {load} before, {} after",
        load_average()
    );
    println!("  first append of a log   {first:9.1} µs");
    println!("  later append            {later:9.1} µs");
    println!("  first / later = {:.2}", first / later);
}

criterion_group! {
    name = benches;
    config = shadowlink_benches::criterion_config(10, 5);
    targets = first_append
}

fn main() {
    shadowlink_benches::bench_main(benches, summary);
}
