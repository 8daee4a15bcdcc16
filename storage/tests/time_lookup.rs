//! ListOffsets by time and KIP-734 max timestamp name exact records, never below the
//! log start, in compressed batches too.

mod common;

use bytes::Bytes;
use common::*;
use kafka_protocol::records::Compression;
use shadowlink_protocol::batch::testing::build_stamped_batch;
use shadowlink_storage::LogConfig;

/// One batch at `base` whose records carry `stamps`, compressed with `codec`.
fn stamped(base: i64, stamps: &[i64], codec: Compression) -> Bytes {
    let records: Vec<(i64, i64)> = (base..).zip(stamps.iter().copied()).collect();
    build_stamped_batch(&records, 0, codec, |_| Bytes::from(vec![b'v'; 40]))
}

/// Brute force over every record at or above `start`: the first with ts `>= target`.
fn expected_at(records: &[(i64, i64)], start: i64, target: i64) -> Option<(i64, i64)> {
    records
        .iter()
        .copied()
        .find(|&(o, ts)| o >= start && ts >= target)
}

fn expected_max(records: &[(i64, i64)], start: i64) -> Option<(i64, i64)> {
    let mut best: Option<(i64, i64)> = None;
    for &(o, ts) in records.iter().filter(|(o, _)| *o >= start) {
        if best.is_none_or(|(b, _)| ts > b) {
            best = Some((ts, o));
        }
    }
    best
}

#[test]
fn lookups_name_exact_records_at_or_above_a_mid_segment_log_start() {
    let codecs = [Compression::None, Compression::Gzip, Compression::Zstd];
    for codec in codecs {
        let dir = tempfile::tempdir().unwrap();
        // Segments of a few compressed batches, or of one uncompressed batch each.
        let config = LogConfig {
            segment_bytes: 200,
            index_interval_bytes: 64,
            ..LogConfig::default()
        };
        let mut log = open(dir.path(), config);
        let mut records = Vec::new();
        // Timestamps rise overall but not within a batch; batch 3 holds the maximum twice.
        for b in 0..8i64 {
            let base = b * 4;
            let stamps: Vec<i64> = match b {
                3 => vec![5_000, 9_000, 4_000, 9_000],
                _ => (0..4).map(|i| 1_000 * b + [30, 10, 40, 20][i]).collect(),
            };
            records.extend(
                stamps
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| (base + i as i64, t)),
            );
            log.append(stamped(base, &stamps, codec)).unwrap();
        }
        assert!(log.segment_count() > 1, "{codec:?}");
        for start in [0, 2, 5, 13, 14, 15, 29] {
            log.delete_before(start).unwrap();
            for target in [
                0, 10, 1_015, 1_040, 3_000, 4_500, 5_000, 7_021, 7_040, 9_001,
            ] {
                assert_eq!(
                    log.offset_for_timestamp(target).unwrap(),
                    expected_at(&records, start, target),
                    "{codec:?} start {start} target {target}"
                );
            }
            assert_eq!(
                log.max_timestamp().unwrap(),
                expected_max(&records, start),
                "{codec:?} start {start}"
            );
        }
    }
}

#[test]
fn an_empty_log_has_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
    assert_eq!(log.max_timestamp().unwrap(), None);
}
