//! `PartitionLog::append` of 16 KiB batches against a plain memcpy of the same bytes.
//!
//! Both measure bytes per second on identical input in the same run. The append path
//! validates framing and CRC-32C, writes to the page cache (`PersistMode::Os`) and
//! maintains the sparse indexes; memcpy is the floor for "touching the bytes once".

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shadowlink_protocol::batch::testing::build_batch;
use shadowlink_storage::{LogConfig, PartitionLog, PersistMode};

const BATCH_BYTES: usize = 16 * 1024;
/// Batches per fresh log: 4096 x 16 KiB = 64 MiB, well under one segment.
const POOL: usize = 4096;

/// A 16 KiB batch (exactly) at `base_offset`: one record whose value fills the rest.
fn batch(base_offset: i64) -> Bytes {
    let build = |len: usize| {
        let value = vec![0xabu8; len];
        build_batch(
            base_offset,
            0,
            &[(None, Some(&value[..]))],
            1_700_000_000_000,
        )
    };
    // Size the value so header + record framing + value is exactly 16 KiB (the framing's
    // varint lengths are the same for both sizes tried).
    let overhead = build(BATCH_BYTES / 2).len() - BATCH_BYTES / 2;
    let b = build(BATCH_BYTES - overhead);
    assert_eq!(b.len(), BATCH_BYTES);
    b
}

fn fresh_log(dir: &tempfile::TempDir, n: usize) -> PartitionLog {
    let path = dir.path().join(format!("log-{n}"));
    let config = LogConfig {
        persist: PersistMode::Os,
        ..LogConfig::default()
    };
    PartitionLog::open(&path, config).expect("open log")
}

fn storage_append(c: &mut Criterion) {
    let pool: Vec<Bytes> = (0..POOL as i64).map(batch).collect();
    let mut group = c.benchmark_group("storage_append");
    group.throughput(Throughput::Bytes(BATCH_BYTES as u64));

    group.bench_function("partition_log_append_16k", |b| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut logs_opened = 0;
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut remaining = iters as usize;
            while remaining > 0 {
                // A fresh log per pool pass so offsets restart at 0; opening it, and
                // dropping the previous one, happen outside the timed region.
                let mut log = fresh_log(&dir, logs_opened);
                logs_opened += 1;
                let n = remaining.min(POOL);
                let start = Instant::now();
                for batch in &pool[..n] {
                    black_box(log.append(batch.clone()).expect("append"));
                }
                elapsed += start.elapsed();
                remaining -= n;
                drop(log);
                std::fs::remove_dir_all(dir.path().join(format!("log-{}", logs_opened - 1))).ok();
            }
            elapsed
        });
    });

    // Context, not a requirement: the kernel's share of the append cost.
    group.bench_function("file_write_16k", |b| {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut files = 0;
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut remaining = iters as usize;
            while remaining > 0 {
                let path = dir.path().join(format!("raw-{files}"));
                files += 1;
                let mut file = std::fs::File::create(&path).expect("create");
                let n = remaining.min(POOL);
                let start = Instant::now();
                for batch in &pool[..n] {
                    file.write_all(batch).expect("write");
                }
                elapsed += start.elapsed();
                remaining -= n;
                drop(file);
                std::fs::remove_file(&path).ok();
            }
            elapsed
        });
    });

    group.bench_function("memcpy_16k", |b| {
        let src = pool[0].clone();
        let mut dst = vec![0u8; BATCH_BYTES];
        b.iter(|| {
            dst.copy_from_slice(black_box(&src[..]));
            black_box(&mut dst);
        });
    });
    group.finish();
}

criterion_group!(benches, storage_append);
criterion_main!(benches);
