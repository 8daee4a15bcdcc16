//! Property: batches with random offset gaps, appended in random groups across small
//! segments, read back from every offset give exactly the batches containing or
//! following that offset, byte-identical, before and after a reopen.

mod common;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use shadowlink_protocol::batch::RecordBatch;
use shadowlink_storage::{LogConfig, PartitionLog};

/// Each batch: (gap before it, records, extra offsets compacted away, payload size).
fn arb_batches() -> impl Strategy<Value = Vec<(i64, usize, i32, usize)>> {
    proptest::collection::vec((0i64..5, 1usize..4, 0i32..4, 0usize..200), 1..40)
}

fn build(specs: &[(i64, usize, i32, usize)]) -> Vec<Bytes> {
    let mut next = 0;
    specs
        .iter()
        .map(|&(gap, records, extra, size)| {
            let base = next + gap;
            let payload = vec![7u8; size];
            let recs = vec![(None, Some(&payload[..])); records];
            let b = shadowlink_protocol::batch::testing::BatchBuilder::new(base)
                .timestamp(base * 10)
                .records(&recs)
                .last_offset_delta(records as i32 - 1 + extra)
                .build();
            next = RecordBatch::parse(b.clone()).unwrap().next_offset();
            b
        })
        .collect()
}

/// What a read at `offset` with `max_bytes` must return.
fn expected(batches: &[Bytes], offset: i64, max_bytes: usize) -> Bytes {
    let mut out = Vec::new();
    let mut total = 0;
    for b in batches {
        if RecordBatch::parse(b.clone()).unwrap().last_offset() < offset {
            continue;
        }
        if !out.is_empty() && total + b.len() > max_bytes {
            break;
        }
        total += b.len();
        out.push(b.clone());
    }
    concat(&out)
}

fn check_all_offsets(log: &PartitionLog, batches: &[Bytes], max_bytes: usize) {
    for offset in 0..log.log_end_offset() {
        let got = joined(&log.read(offset, max_bytes).unwrap());
        assert_eq!(
            got,
            expected(batches, offset, max_bytes),
            "offset {offset}, max {max_bytes}"
        );
    }
    assert!(log
        .read(log.log_end_offset(), max_bytes)
        .unwrap()
        .chunks
        .is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn reads_from_every_offset_return_the_right_batches(
        specs in arb_batches(),
        group in 1usize..5,
        max_bytes in prop_oneof![Just(1usize), 100usize..3000, Just(usize::MAX)],
        segment_bytes in 300u64..2000,
        index_interval_bytes in 0u32..600,
    ) {
        let batches = build(&specs);
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { segment_bytes, index_interval_bytes, ..LogConfig::default() };
        let mut log = open(dir.path(), config.clone());
        for chunk in batches.chunks(group) {
            log.append(concat(chunk)).unwrap();
        }
        let leo = RecordBatch::parse(batches.last().unwrap().clone()).unwrap().next_offset();
        prop_assert_eq!(log.log_end_offset(), leo);
        check_all_offsets(&log, &batches, max_bytes);
        drop(log);
        let log = open(dir.path(), config);
        prop_assert_eq!(log.log_end_offset(), leo);
        check_all_offsets(&log, &batches, max_bytes);
    }
}
