//! The mirror's receive → store path for one Fetch response, beside the floor of touching
//! its bytes once, in the same run.
//!
//! A 4 MiB Fetch v12 response (4 partitions, 1 MiB of 16 KiB batches each) arrives in
//! socket-sized reads, is split off as a frame, decoded, its batches walked and
//! CRC-checked as the link does, and each partition's record set appended to its own
//! `PartitionLog` (`PersistMode::Os`: page cache only). Two receive paths are measured:
//! `ReceiveBuffer`, which the source connection uses, and the `BytesMut` grown by `reserve`
//! that it used before. `memcpy` copies the same frame into a warm buffer and `file_write`
//! writes it to a file with one `write_all`: forwarding a byte costs at least one copy
//! into the page cache. The summary at the end runs the variants interleaved and prints
//! throughput and ratios. `forward_checked_twice` is the store path before the log took
//! checked record sets: the log walked and CRC-checked every batch the link had checked.
//!
//! Each pass's logs, and its plain file, first take one batch outside the timing, as in
//! the `storage_append` bench.

use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, Criterion, Throughput};
use shadowlink_benches::{interleaved_throughput, load_average, print_summary, Pass};
use shadowlink_protocol::batch::testing::build_batch;
use shadowlink_protocol::batch::BatchWalker;
use shadowlink_protocol::client::decode_response;
use shadowlink_protocol::fetch::{
    encode_fetch_response, FetchPartitionParts, FetchResponseParts, FetchTopicParts,
};
use shadowlink_protocol::frame::{split_frame, DEFAULT_MAX_FRAME_BYTES};
use shadowlink_protocol::kafka_protocol::messages::{ApiKey, FetchResponse};
use shadowlink_protocol::receive::ReceiveBuffer;
use shadowlink_storage::{CheckedRecordSet, LogConfig, PartitionLog, PersistMode};

const PARTITIONS: usize = 4;
const BATCH_BYTES: usize = 16 * 1024;
const BATCHES_PER_PARTITION: i64 = 64;
const RECORDS_PER_BATCH: usize = 16;
/// What one socket read hands over while the link keeps up with a fast source.
const SOCKET_READ: usize = 256 * 1024;
/// Responses per fresh set of logs: 16 x 4 MiB, well under one segment per partition.
const POOL: usize = 16;
const FETCH_VERSION: i16 = 12;

/// A batch of 16 records of ~1 KiB at `base_offset`.
fn batch(base_offset: i64) -> Bytes {
    let value = vec![0x5au8; BATCH_BYTES / RECORDS_PER_BATCH - 24];
    let records: Vec<_> = (0..RECORDS_PER_BATCH)
        .map(|_| (None, Some(&value[..])))
        .collect();
    build_batch(base_offset, 0, &records, 1_700_000_000_000)
}

/// Response `n` of a pass, size prefix included: every partition's batches continue
/// where response `n - 1` ended, response 0 after the untimed first batch at offset 0.
fn response_frame(n: usize) -> Bytes {
    let per_batch = RECORDS_PER_BATCH as i64;
    let first = (n as i64 * BATCHES_PER_PARTITION + 1) * per_batch;
    let records: Vec<Bytes> = (0..BATCHES_PER_PARTITION)
        .map(|b| batch(first + b * per_batch))
        .collect();
    let partitions = (0..PARTITIONS as i32)
        .map(|p| FetchPartitionParts {
            partition_index: p,
            high_watermark: i64::MAX / 2,
            last_stable_offset: i64::MAX / 2,
            log_start_offset: 0,
            records: vec![Bytes::from(records.concat())],
            ..Default::default()
        })
        .collect();
    let parts = FetchResponseParts {
        topics: vec![FetchTopicParts {
            name: "bench-topic".into(),
            partitions,
            ..Default::default()
        }],
        ..Default::default()
    };
    encode_fetch_response(FETCH_VERSION, 7, parts)
        .expect("encode")
        .to_contiguous()
}

/// How a frame is received from the socket, simulated by copying `wire` in reads of at
/// most [`SOCKET_READ`] bytes into whatever room the receiver offers.
trait Receiver {
    fn receive(&mut self, wire: &[u8]) -> Bytes;
}

/// The source connection's receive path.
struct Pooled(ReceiveBuffer);

impl Receiver for Pooled {
    fn receive(&mut self, wire: &[u8]) -> Bytes {
        let mut sent = 0;
        loop {
            if let Some(frame) = self.0.next_frame().expect("frame") {
                return frame;
            }
            let mut room = self.0.read_buf().expect("frame");
            let n = room.remaining_mut().min(SOCKET_READ).min(wire.len() - sent);
            room.put_slice(&wire[sent..sent + n]);
            sent += n;
        }
    }
}

/// The receive loop the source connection ran before `ReceiveBuffer`: one `BytesMut`
/// grown by `reserve` whenever a frame does not fit, so a large response still held
/// elsewhere makes the next one land in a freshly allocated, freshly zeroed buffer.
struct Fresh(BytesMut);

impl Receiver for Fresh {
    fn receive(&mut self, wire: &[u8]) -> Bytes {
        let buf = &mut self.0;
        let mut sent = 0;
        loop {
            if let Some(frame) = split_frame(buf, DEFAULT_MAX_FRAME_BYTES).expect("frame") {
                return frame;
            }
            if buf.capacity() - buf.len() < 16 * 1024 {
                buf.reserve(64 * 1024);
            }
            let n = (buf.capacity() - buf.len())
                .min(SOCKET_READ)
                .min(wire.len() - sent);
            buf.put_slice(&wire[sent..sent + n]);
            sent += n;
        }
    }
}

/// Decodes the frame, walks and CRC-checks every partition's batches as the link does,
/// and appends each checked record set to its partition's log, which hashes nothing
/// again.
fn store(frame: Bytes, logs: &mut [PartitionLog]) -> usize {
    let mut bytes = 0;
    for (partition, records) in record_sets(frame) {
        let log = &mut logs[partition];
        let set = CheckedRecordSet::check(&records, log.log_end_offset());
        bytes += records.len();
        log.append_checked(&set.set.expect("intact"))
            .expect("append");
    }
    bytes
}

/// Each partition's record set in a Fetch response frame, by partition index.
fn record_sets(frame: Bytes) -> impl Iterator<Item = (usize, Bytes)> {
    let (_, response) =
        decode_response::<FetchResponse>(frame, ApiKey::Fetch, FETCH_VERSION).expect("decode");
    let partitions = response.responses.into_iter().flat_map(|t| t.partitions);
    partitions.map(|p| (p.partition_index as usize, p.records.unwrap_or_default()))
}

/// [`store`] as the link did before: the log walks and CRC-checks every batch again.
fn store_checked_twice(frame: Bytes, logs: &mut [PartitionLog]) -> usize {
    let mut bytes = 0;
    for (partition, records) in record_sets(frame) {
        for batch in BatchWalker::new(records.clone()) {
            batch.expect("batch").validate_crc().expect("crc");
        }
        bytes += records.len();
        logs[partition].append(records).expect("append");
    }
    bytes
}

/// Responses still held while the next one is received: the link's writer appends one
/// response's record sets while the reader receives the next of the fetches in flight.
const HELD: usize = 2;

/// How a pass stores a received frame.
type Store = fn(Bytes, &mut [PartitionLog]) -> usize;

/// Forwards `frames` into fresh logs under `dir`; opening them, their first batch and
/// removing them are not timed.
fn forward_pass(
    receiver: &mut dyn Receiver,
    store: Store,
    dir: &Path,
    frames: &[Bytes],
) -> Duration {
    let config = LogConfig {
        persist: PersistMode::Os,
        ..LogConfig::default()
    };
    let mut logs: Vec<PartitionLog> = (0..PARTITIONS)
        .map(|p| {
            let mut log =
                PartitionLog::open(&dir.join(p.to_string()), config.clone()).expect("log");
            log.append(batch(0)).expect("first batch");
            log
        })
        .collect();
    let mut held = std::collections::VecDeque::with_capacity(HELD + 1);
    let start = Instant::now();
    for wire in frames {
        let frame = receiver.receive(wire);
        held.push_back(frame.clone());
        if held.len() > HELD {
            held.pop_front();
        }
        black_box(store(frame, &mut logs));
    }
    let elapsed = start.elapsed();
    drop(held);
    drop(logs);
    for p in 0..PARTITIONS {
        let _ = std::fs::remove_dir_all(dir.join(p.to_string()));
    }
    elapsed
}

fn write_pass(dir: &Path, frames: &[Bytes]) -> Duration {
    let path = dir.join("raw");
    let mut file = std::fs::File::create(&path).expect("create");
    file.write_all(&batch(0)).expect("write");
    let start = Instant::now();
    for wire in frames {
        file.write_all(&wire[4..]).expect("write");
    }
    let elapsed = start.elapsed();
    drop(file);
    let _ = std::fs::remove_file(&path);
    elapsed
}

fn memcpy_pass(dst: &mut [u8], frames: &[Bytes]) -> Duration {
    let start = Instant::now();
    for wire in frames {
        let dst = &mut dst[..wire.len() - 4];
        dst.copy_from_slice(black_box(&wire[4..]));
        black_box(dst);
    }
    start.elapsed()
}

const NAMES: [&str; 5] = [
    "forward_pooled_buffers",
    "forward_checked_twice",
    "forward_fresh_buffers",
    "file_write",
    "memcpy",
];

/// One pass per variant over `frames`, in the order of [`NAMES`].
fn passes<'a>(dir: &'a Path, frames: &'a [Bytes]) -> Vec<Pass<'a>> {
    let mut pooled = Pooled(ReceiveBuffer::new(DEFAULT_MAX_FRAME_BYTES));
    let mut twice = Pooled(ReceiveBuffer::new(DEFAULT_MAX_FRAME_BYTES));
    let mut fresh = Fresh(BytesMut::with_capacity(64 * 1024));
    let mut dst = vec![1u8; frames[0].len()];
    vec![
        Box::new(move || forward_pass(&mut pooled, store, dir, frames)),
        Box::new(move || forward_pass(&mut twice, store_checked_twice, dir, frames)),
        Box::new(move || forward_pass(&mut fresh, store, dir, frames)),
        Box::new(move || write_pass(dir, frames)),
        Box::new(move || memcpy_pass(&mut dst, frames)),
    ]
}

fn forward_batches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let frames: Vec<Bytes> = (0..POOL).map(response_frame).collect();
    let mut group = c.benchmark_group("forward_batches");
    group.throughput(Throughput::Bytes((frames[0].len() * POOL) as u64));
    for (name, mut pass) in NAMES.iter().zip(passes(dir.path(), &frames)) {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| pass()).sum())
        });
    }
    group.finish();
}

fn summary() {
    const ROUNDS: usize = 15;
    let dir = tempfile::tempdir().expect("temp dir");
    let frames: Vec<Bytes> = (0..POOL).map(response_frame).collect();
    let bytes = frames.iter().map(|f| f.len() - 4).sum();
    let load = load_average();
    let throughput = interleaved_throughput(&mut passes(dir.path(), &frames), ROUNDS, bytes);
    print_summary(
        &format!(
            "forward_batches summary: {ROUNDS} rounds of {POOL} x {} B responses, median; load average {load} before, {} after",
            bytes / POOL,
            load_average()
        ),
        &NAMES,
        &throughput,
        &[
            ("forward_pooled_buffers", "file_write"),
            ("forward_pooled_buffers", "memcpy"),
            ("forward_fresh_buffers", "file_write"),
            ("forward_pooled_buffers", "forward_fresh_buffers"),
            ("forward_pooled_buffers", "forward_checked_twice"),
        ],
    );
}

criterion_group! {
    name = benches;
    config = shadowlink_benches::criterion_config(10, 5);
    targets = forward_batches
}

fn main() {
    shadowlink_benches::bench_main(benches, summary);
}
