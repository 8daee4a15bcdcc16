//! Fetch response encoding for ~1 MiB of stored record bytes in 64 KiB chunks: the
//! zero-copy segment encoder against kafka-protocol's `FetchResponse::encode`, which copies
//! every record byte into the output buffer.

use std::hint::black_box;

use bytes::{Buf, Bytes};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shadowlink_protocol::fetch::{
    encode_fetch_response, FetchPartitionParts, FetchResponseParts, FetchTopicParts, Uuid,
};
use shadowlink_protocol::kafka_protocol::messages::ApiKey;
use shadowlink_protocol::response::encode_response;

const CHUNK: usize = 64 * 1024;
const CHUNKS: usize = 16;

/// One topic, four partitions, four 64 KiB chunks each: 1 MiB of records.
fn parts() -> FetchResponseParts {
    let chunk = |i: usize| Bytes::from(vec![i as u8; CHUNK]);
    let partitions = (0..4)
        .map(|p| FetchPartitionParts {
            partition_index: p,
            high_watermark: 1_000_000,
            last_stable_offset: 1_000_000,
            log_start_offset: 0,
            records: (0..CHUNKS / 4).map(|i| chunk(p as usize * 4 + i)).collect(),
            ..Default::default()
        })
        .collect();
    FetchResponseParts {
        topics: vec![FetchTopicParts {
            name: "bench-topic".into(),
            topic_id: Uuid::from_u128(0x5eed),
            partitions,
        }],
        ..Default::default()
    }
}

fn fetch_encode(c: &mut Criterion) {
    let parts = parts();
    let mut group = c.benchmark_group("fetch_encode");
    for version in [12i16, 16] {
        let frame_len = encode_fetch_response(version, 1, parts.clone())
            .unwrap()
            .remaining();
        group.throughput(Throughput::Bytes(frame_len as u64));
        group.bench_with_input(
            BenchmarkId::new("zero_copy_segments", version),
            &version,
            |b, &v| b.iter(|| encode_fetch_response(v, 1, black_box(parts.clone())).unwrap()),
        );
        // The crate needs contiguous records; this variant gets them for free.
        let message = parts.to_message();
        group.bench_with_input(
            BenchmarkId::new("crate_encode", version),
            &version,
            |b, &v| b.iter(|| encode_response(ApiKey::Fetch, v, 1, black_box(&message)).unwrap()),
        );
        // What serving stored chunks through the crate really costs: concatenate, then encode.
        group.bench_with_input(
            BenchmarkId::new("crate_encode_with_concat", version),
            &version,
            |b, &v| {
                b.iter(|| {
                    let message = black_box(&parts).to_message();
                    encode_response(ApiKey::Fetch, v, 1, &message).unwrap()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, fetch_encode);
criterion_main!(benches);
