//! `PartitionLog::append` against a plain `write` and a memcpy of the same bytes.
//!
//! Two shapes of input: one 16 KiB batch per append, and a 1 MiB record set of 64 such
//! batches per append (what the link appends for one partition of a fetch response). The
//! append path validates framing and CRC-32C, writes to the page cache
//! (`PersistMode::Os`) and maintains the sparse indexes; `file_write` writes the same
//! bytes, in the same pieces, to a plain file. `partition_log_append_checked_1m` is the
//! mirror's append: record sets whose CRCs the link checked when they arrived (outside
//! the timing, as on receive), appended without hashing them again. The summary at the
//! end runs the variants interleaved and prints the ratios (goal: append >= 0.9 x
//! file_write), with `crc_then_write`: the plain write with CRC-32C computed over each
//! piece first, the floor for any append that checks CRCs before writing.
//!
//! `produce_16k` is a producer's whole write path on the node: each 16 KiB batch as a
//! client sends it (offset 0, no leader epoch) through `MirrorPartition::produce` of an
//! owned partition, which validates it, checks its producer, assigns its offset and
//! appends it.
//!
//! The `_received` variants of the summary take each piece as a socket read leaves it:
//! copied, outside the timing, into a new buffer just before its timed step, so it is in
//! the cache rather than in memory. The others read every piece from a 64 MiB pool, so
//! their CRC pass also pays for fetching the bytes from memory, which an append of bytes
//! just received does not.
//!
//! Every log and every plain file first takes one 16 KiB batch outside the timing: a
//! log's first append also creates its first segment's data. A log's first batch of a
//! leader epoch used to replace its `leader-epoch-checkpoint` durably there (fsync of
//! the file, rename, fsync of the directory), a third of the append time when it was
//! timed; the roll that seals the segment writes it now (see the `first_append` bench).
//! `partition_log_append_1m_new_log` keeps that first append inside the timing.

use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, Criterion, Throughput};
use shadowlink::mirror::owned::{ProduceRequest, DEFAULT_MAX_MESSAGE_BYTES};
use shadowlink::mirror::Store;
use shadowlink_benches::{interleaved_throughput, load_average, print_summary, Pass};
use shadowlink_protocol::batch::testing::{build_batch, BatchBuilder};
use shadowlink_storage::{CheckedRecordSet, LogConfig, PartitionLog, PersistMode};

const BATCH_BYTES: usize = 16 * 1024;
/// Timed batches per fresh log: 4096 x 16 KiB = 64 MiB, well under one segment. They
/// start at offset 1: offset 0 is the untimed first batch.
const POOL: usize = 4096;
/// Batches per record set in the record-set variants: 1 MiB.
const SET: usize = 64;

/// Where a timed step finds its piece.
#[derive(Clone, Copy)]
enum Input {
    /// In the pool, read from memory by the step itself.
    Memory,
    /// Copied into a new buffer just before the step, outside the timing.
    Received,
}

/// Runs `step` on each piece and times the steps alone.
fn each(pieces: &[Bytes], input: Input, mut step: impl FnMut(Bytes)) -> Duration {
    match input {
        Input::Memory => {
            let start = Instant::now();
            pieces.iter().for_each(|piece| step(piece.clone()));
            start.elapsed()
        }
        Input::Received => pieces
            .iter()
            .map(|piece| {
                let received = Bytes::copy_from_slice(piece);
                let start = Instant::now();
                step(received);
                start.elapsed()
            })
            .sum(),
    }
}

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

/// The pool as pieces of `batches` batches each, offsets continuing across pieces.
fn pieces(batches: usize) -> Vec<Bytes> {
    let pool: Vec<Bytes> = (1..=POOL as i64).map(batch).collect();
    pool.chunks(batches)
        .map(|c| Bytes::from(c.concat()))
        .collect()
}

/// A new, empty log.
fn new_log(dir: &Path, n: usize) -> PartitionLog {
    let config = LogConfig {
        persist: PersistMode::Os,
        ..LogConfig::default()
    };
    PartitionLog::open(&dir.join(format!("log-{n}")), config).expect("open log")
}

/// A new log holding the batch at offset 0, so its leader epoch is already recorded.
fn fresh_log(dir: &Path, n: usize) -> PartitionLog {
    let mut log = new_log(dir, n);
    log.append(batch(0)).expect("append");
    log
}

/// Appends `pieces` to a fresh log; opening it, its first batch and removing it are not
/// timed.
fn append_pass(dir: &Path, n: usize, pieces: &[Bytes], input: Input) -> Duration {
    append_to(fresh_log(dir, n), dir, n, pieces, input)
}

/// Appends `pieces` to a new, empty log, its first append (and epoch checkpoint) timed.
fn append_new_log_pass(dir: &Path, n: usize, pieces: &[Bytes]) -> Duration {
    append_to(new_log(dir, n), dir, n, pieces, Input::Memory)
}

fn append_to(
    mut log: PartitionLog,
    dir: &Path,
    n: usize,
    pieces: &[Bytes],
    input: Input,
) -> Duration {
    let elapsed = each(pieces, input, |piece| {
        black_box(log.append(piece).expect("append"));
    });
    drop(log);
    let _ = std::fs::remove_dir_all(dir.join(format!("log-{n}")));
    elapsed
}

/// A 16 KiB batch as a producer sends it: offset 0, leader epoch -1, no producer id.
fn client_batch() -> Bytes {
    let build = |len: usize| {
        let value = vec![0xabu8; len];
        BatchBuilder::new(0)
            .leader_epoch(-1)
            .records(&[(None, Some(&value[..]))])
            .build()
    };
    let overhead = build(BATCH_BYTES / 2).len() - BATCH_BYTES / 2;
    let b = build(BATCH_BYTES - overhead);
    assert_eq!(b.len(), BATCH_BYTES);
    b
}

/// The pool as client batches, each its own allocation as each arrives in its own
/// request.
fn client_pool() -> Vec<Bytes> {
    (0..POOL).map(|_| client_batch()).collect()
}

/// Produces `batches` to a new owned partition holding one batch already; creating the
/// node's store and topic and removing them are not timed.
fn produce_pass(dir: &Path, n: usize, batches: &[Bytes], input: Input) -> Duration {
    let config = LogConfig {
        persist: PersistMode::Os,
        ..LogConfig::default()
    };
    let data_dir = dir.join(format!("node-{n}"));
    let store = Store::open(&data_dir, config).expect("open store");
    let topic = store
        .create_owned_topic("bench", 1, Default::default(), i64::MAX)
        .expect("create topic");
    let partition = topic.partition(0).expect("partition 0");
    let request = ProduceRequest {
        acks: 1,
        api_version: 9,
        max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        in_transaction: false,
    };
    partition
        .produce(client_batch(), &request)
        .expect("produce");
    let elapsed = each(batches, input, |batch| {
        black_box(partition.produce(batch, &request).expect("produce"));
    });
    drop((partition, topic, store));
    let _ = std::fs::remove_dir_all(&data_dir);
    elapsed
}

/// Checks each piece as the link does on receive.
fn checked(pieces: &[Bytes]) -> Vec<CheckedRecordSet> {
    let mut from = 1;
    let check = |piece: &Bytes| {
        let set = CheckedRecordSet::check(piece, from).set.expect("intact");
        from = set.next_offset();
        set
    };
    pieces.iter().map(check).collect()
}

/// Appends pre-checked `sets` to a fresh log; opening it and removing it are not timed.
fn append_checked_pass(dir: &Path, n: usize, sets: &[CheckedRecordSet]) -> Duration {
    let mut log = fresh_log(dir, n);
    let start = Instant::now();
    for set in sets {
        black_box(log.append_checked(set).expect("append"));
    }
    let elapsed = start.elapsed();
    drop(log);
    let _ = std::fs::remove_dir_all(dir.join(format!("log-{n}")));
    elapsed
}

/// Writes `pieces` to a fresh file, one `write_all` each, after the untimed first batch
/// the logs hold too.
fn write_pass(dir: &Path, n: usize, pieces: &[Bytes], input: Input) -> Duration {
    plain_write_pass(dir, n, pieces, input, false)
}

/// Like [`write_pass`], with CRC-32C computed over each piece just before its write: the
/// least an append that checks CRCs before it writes can cost.
fn crc_write_pass(dir: &Path, n: usize, pieces: &[Bytes], input: Input) -> Duration {
    plain_write_pass(dir, n, pieces, input, true)
}

fn plain_write_pass(dir: &Path, n: usize, pieces: &[Bytes], input: Input, hash: bool) -> Duration {
    let path = dir.join(format!("raw-{n}"));
    let mut file = std::fs::File::create(&path).expect("create");
    file.write_all(&batch(0)).expect("write");
    let elapsed = each(pieces, input, |piece| {
        if hash {
            black_box(shadowlink_protocol::batch::crc32c(&piece));
        }
        file.write_all(&piece).expect("write");
    });
    drop(file);
    let _ = std::fs::remove_file(&path);
    elapsed
}

/// Runs `iters` pieces through `pass`, a pool's worth at a time.
fn timed(pieces: &[Bytes], iters: u64, mut pass: impl FnMut(&[Bytes]) -> Duration) -> Duration {
    let mut elapsed = Duration::ZERO;
    let mut remaining = iters as usize;
    while remaining > 0 {
        let n = remaining.min(pieces.len());
        elapsed += pass(&pieces[..n]);
        remaining -= n;
    }
    elapsed
}

fn storage_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut n = 0;
    for (label, batches) in [("16k", 1), ("1m", SET)] {
        let pieces = pieces(batches);
        let mut group = c.benchmark_group("storage_append");
        group.throughput(Throughput::Bytes((BATCH_BYTES * batches) as u64));
        group.bench_function(format!("partition_log_append_{label}"), |b| {
            b.iter_custom(|iters| {
                timed(&pieces, iters, |p| {
                    n += 1;
                    append_pass(dir.path(), n, p, Input::Memory)
                })
            })
        });
        let sets = checked(&pieces);
        group.bench_function(format!("partition_log_append_checked_{label}"), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut remaining = iters as usize;
                while remaining > 0 {
                    let k = remaining.min(sets.len());
                    n += 1;
                    elapsed += append_checked_pass(dir.path(), n, &sets[..k]);
                    remaining -= k;
                }
                elapsed
            })
        });
        group.bench_function(format!("file_write_{label}"), |b| {
            b.iter_custom(|iters| {
                timed(&pieces, iters, |p| {
                    n += 1;
                    write_pass(dir.path(), n, p, Input::Memory)
                })
            })
        });
        group.finish();
    }
    let mut group = c.benchmark_group("storage_append");
    group.throughput(Throughput::Bytes(BATCH_BYTES as u64));
    let produced = client_pool();
    group.bench_function("produce_16k", |b| {
        b.iter_custom(|iters| {
            timed(&produced, iters, |p| {
                n += 1;
                produce_pass(dir.path(), n, p, Input::Memory)
            })
        })
    });
    group.bench_function("memcpy_16k", |b| {
        let src = batch(0);
        let mut dst = vec![0u8; BATCH_BYTES];
        b.iter(|| {
            dst.copy_from_slice(black_box(&src[..]));
            black_box(&mut dst);
        });
    });
    group.finish();
}

/// Appends and writes of the whole pool, interleaved, with their ratios.
fn summary() {
    const ROUNDS: usize = 15;
    let dir = tempfile::tempdir().expect("temp dir");
    let single = pieces(1);
    let sets = pieces(SET);
    let checked_sets = checked(&sets);
    let produced = client_pool();
    let n = std::cell::Cell::new(0);
    let next = || {
        n.set(n.get() + 1);
        n.get()
    };
    let names = [
        "partition_log_append_16k",
        "file_write_16k",
        "partition_log_append_1m",
        "partition_log_append_checked_1m",
        "file_write_1m",
        "partition_log_append_1m_new_log",
        "crc_then_write_16k",
        "crc_then_write_1m",
        "produce_16k",
        "partition_log_append_16k_received",
        "file_write_16k_received",
        "crc_then_write_16k_received",
        "produce_16k_received",
        "partition_log_append_1m_received",
        "file_write_1m_received",
    ];
    let (memory, received) = (Input::Memory, Input::Received);
    let mut passes: Vec<Pass<'_>> = vec![
        Box::new(|| append_pass(dir.path(), next(), &single, memory)),
        Box::new(|| write_pass(dir.path(), next(), &single, memory)),
        Box::new(|| append_pass(dir.path(), next(), &sets, memory)),
        Box::new(|| append_checked_pass(dir.path(), next(), &checked_sets)),
        Box::new(|| write_pass(dir.path(), next(), &sets, memory)),
        Box::new(|| append_new_log_pass(dir.path(), next(), &sets)),
        Box::new(|| crc_write_pass(dir.path(), next(), &single, memory)),
        Box::new(|| crc_write_pass(dir.path(), next(), &sets, memory)),
        Box::new(|| produce_pass(dir.path(), next(), &produced, memory)),
        Box::new(|| append_pass(dir.path(), next(), &single, received)),
        Box::new(|| write_pass(dir.path(), next(), &single, received)),
        Box::new(|| crc_write_pass(dir.path(), next(), &single, received)),
        Box::new(|| produce_pass(dir.path(), next(), &produced, received)),
        Box::new(|| append_pass(dir.path(), next(), &sets, received)),
        Box::new(|| write_pass(dir.path(), next(), &sets, received)),
    ];
    let load = load_average();
    let throughput = interleaved_throughput(&mut passes, ROUNDS, POOL * BATCH_BYTES);
    print_summary(
        &format!(
            "storage_append summary: {ROUNDS} rounds of 64 MiB, median; load average {load} before, {} after",
            load_average()
        ),
        &names,
        &throughput,
        &[
            ("partition_log_append_16k", "file_write_16k"),
            ("partition_log_append_1m", "file_write_1m"),
            ("partition_log_append_checked_1m", "file_write_1m"),
            ("partition_log_append_checked_1m", "partition_log_append_1m"),
            ("partition_log_append_1m_new_log", "file_write_1m"),
            ("crc_then_write_16k", "file_write_16k"),
            ("crc_then_write_1m", "file_write_1m"),
            ("partition_log_append_16k", "crc_then_write_16k"),
            ("partition_log_append_1m", "crc_then_write_1m"),
            ("produce_16k", "file_write_16k"),
            ("produce_16k", "partition_log_append_16k"),
            (
                "partition_log_append_16k_received",
                "file_write_16k_received",
            ),
            ("crc_then_write_16k_received", "file_write_16k_received"),
            ("produce_16k_received", "file_write_16k_received"),
            ("partition_log_append_1m_received", "file_write_1m_received"),
        ],
    );
}

criterion_group! {
    name = benches;
    config = shadowlink_benches::criterion_config(20, 4);
    targets = storage_append
}

fn main() {
    shadowlink_benches::bench_main(benches, summary);
}
