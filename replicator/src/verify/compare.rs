//! Batch-by-batch comparison of the source's copy of a range with the mirror's.
//!
//! A mirror holds the source's batches byte for byte at their original offsets, so the
//! two copies pair up batch for batch: same base offset, same length, same CRC, same
//! bytes. Nothing is decoded beyond the batch header.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use shadowlink_protocol::batch::{BatchError, BatchWalker, RecordBatch};

/// The first batch where the copies differ, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    /// The base offset of the batch (the mirror's, when only the mirror has one there).
    pub offset: i64,
    pub what: String,
}

/// What a comparison has counted so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Batch pairs compared.
    pub batches: u64,
    /// Source bytes compared.
    pub bytes: u64,
    pub matched: u64,
    pub mismatched: u64,
    pub first_mismatch: Option<Mismatch>,
}

impl Tally {
    fn mismatch(&mut self, offset: i64, what: String) {
        self.mismatched += 1;
        self.first_mismatch.get_or_insert(Mismatch { offset, what });
    }
}

/// Where a comparison run left off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The offset after the last batch pair compared.
    pub next_offset: i64,
    /// False once the copies no longer pair up (different offsets or framing): nothing
    /// after that point can be compared batch for batch.
    pub aligned: bool,
}

/// The whole batches of `records` that hold offsets in `from..end`; an unreadable batch
/// ends the list and is returned as the error beside it.
pub fn batches_in(
    records: &[Bytes],
    from: i64,
    end: i64,
) -> (Vec<RecordBatch>, Option<BatchError>) {
    let mut out = Vec::new();
    for chunk in records {
        for batch in BatchWalker::new(chunk.clone()) {
            match batch {
                Ok(b) if b.last_offset() < from => {}
                Ok(b) if b.base_offset() >= end => return (out, None),
                Ok(b) => out.push(b),
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

/// Compares `source` with `mirror` pair by pair from `from`, adding to `tally`.
pub fn compare_run(
    source: &[RecordBatch],
    mirror: &[RecordBatch],
    from: i64,
    tally: &mut Tally,
) -> Step {
    let mut next_offset = from;
    for (s, m) in source.iter().zip(mirror) {
        tally.batches += 1;
        tally.bytes += s.len() as u64;
        match difference(s, m) {
            None => tally.matched += 1,
            Some(what) => tally.mismatch(s.base_offset().min(m.base_offset()), what),
        }
        if s.base_offset() != m.base_offset() || s.next_offset() != m.next_offset() {
            return Step {
                next_offset,
                aligned: false,
            };
        }
        next_offset = s.next_offset();
    }
    let paired = source.len().min(mirror.len());
    if paired == 0 {
        match (source.first(), mirror.first()) {
            (Some(s), None) => tally.mismatch(
                s.base_offset(),
                format!(
                    "the mirror has no batch where the source has one at {}",
                    s.base_offset()
                ),
            ),
            (None, Some(m)) => tally.mismatch(
                m.base_offset(),
                format!(
                    "the source has no batch where the mirror has one at {}",
                    m.base_offset()
                ),
            ),
            _ => {}
        }
        return Step {
            next_offset,
            aligned: source.is_empty() && mirror.is_empty(),
        };
    }
    Step {
        next_offset,
        aligned: true,
    }
}

/// How the mirror's batch `m` differs from the source's `s`, if it does.
pub fn difference(s: &RecordBatch, m: &RecordBatch) -> Option<String> {
    if s.base_offset() != m.base_offset() {
        return Some(format!(
            "base offset: source {}, mirror {}",
            s.base_offset(),
            m.base_offset()
        ));
    }
    if s.len() != m.len() {
        return Some(format!(
            "length: source {} bytes, mirror {} bytes",
            s.len(),
            m.len()
        ));
    }
    if s.crc() != m.crc() {
        return Some(format!(
            "CRC: source {:#010x}, mirror {:#010x}",
            s.crc(),
            m.crc()
        ));
    }
    let at = s
        .as_bytes()
        .iter()
        .zip(m.as_bytes().iter())
        .position(|(a, b)| a != b)?;
    let mirror_crc = match m.validate_crc() {
        Ok(()) => "both copies pass their CRC",
        Err(_) => "the mirror's copy fails its CRC",
    };
    Some(format!(
        "bytes: they differ from byte {at} of the batch; {mirror_crc}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowlink_protocol::batch::testing::build_batch;

    fn batch(base: i64, value: &[u8]) -> Bytes {
        build_batch(
            base,
            1,
            &[(Some(b"k"), Some(value)), (None, Some(b"w"))],
            1000,
        )
    }

    fn parse(chunks: &[Bytes], from: i64) -> Vec<RecordBatch> {
        let (batches, error) = batches_in(chunks, from, i64::MAX);
        assert!(error.is_none());
        batches
    }

    #[test]
    fn identical_copies_match_batch_for_batch() {
        let chunk = Bytes::from([batch(0, b"a"), batch(2, b"b"), batch(4, b"c")].concat());
        let s = parse(std::slice::from_ref(&chunk), 0);
        let m = parse(std::slice::from_ref(&chunk), 0);
        let mut tally = Tally::default();
        let step = compare_run(&s, &m, 0, &mut tally);
        assert_eq!(
            step,
            Step {
                next_offset: 6,
                aligned: true
            }
        );
        assert_eq!((tally.batches, tally.matched, tally.mismatched), (3, 3, 0));
        assert_eq!(tally.bytes, chunk.len() as u64);
        assert_eq!(tally.first_mismatch, None);
    }

    #[test]
    fn a_flipped_record_byte_is_named_with_its_batch_and_the_comparison_goes_on() {
        let good = [batch(0, b"a"), batch(2, b"b"), batch(4, b"c")];
        let mut bad = good.clone().map(|b| b.to_vec());
        let last = bad[1].len() - 1;
        bad[1][last] ^= 0x01;
        let s = parse(&[Bytes::from(good.concat())], 0);
        let m = parse(&[Bytes::from(bad.concat())], 0);
        let mut tally = Tally::default();
        let step = compare_run(&s, &m, 0, &mut tally);
        assert_eq!(
            step,
            Step {
                next_offset: 6,
                aligned: true
            }
        );
        assert_eq!((tally.batches, tally.matched, tally.mismatched), (3, 2, 1));
        let mismatch = tally.first_mismatch.expect("a mismatch");
        assert_eq!(mismatch.offset, 2);
        assert!(
            mismatch.what.contains(&format!("byte {last}")),
            "{mismatch:?}"
        );
        assert!(
            mismatch.what.contains("mirror's copy fails its CRC"),
            "{mismatch:?}"
        );
    }

    #[test]
    fn different_headers_name_the_field_and_lost_alignment_stops_the_run() {
        let s = parse(&[batch(0, b"a")], 0);
        let other_value = parse(&[batch(0, b"b")], 0);
        let longer = parse(&[batch(0, b"longer")], 0);
        let moved = parse(&[batch(1, b"a")], 0);
        assert!(difference(&s[0], &other_value[0])
            .unwrap()
            .starts_with("CRC: source"));
        assert!(difference(&s[0], &longer[0])
            .unwrap()
            .starts_with("length: source"));
        assert_eq!(
            difference(&s[0], &moved[0]).unwrap(),
            "base offset: source 0, mirror 1"
        );
        let mut tally = Tally::default();
        let step = compare_run(&s, &moved, 0, &mut tally);
        assert!(!step.aligned);
        assert_eq!(tally.first_mismatch.map(|m| m.offset), Some(0));
    }

    #[test]
    fn a_batch_only_one_side_has_is_a_mismatch() {
        let s = parse(&[batch(4, b"a")], 0);
        let mut tally = Tally::default();
        let step = compare_run(&s, &[], 4, &mut tally);
        assert_eq!(
            step,
            Step {
                next_offset: 4,
                aligned: false
            }
        );
        assert_eq!(tally.first_mismatch.map(|m| m.offset), Some(4));
        let mut tally = Tally::default();
        assert!(!compare_run(&[], &s, 4, &mut tally).aligned);
        assert_eq!(tally.mismatched, 1);
    }

    #[test]
    fn batches_below_the_start_and_from_the_end_are_left_out() {
        let chunks = [
            Bytes::from([batch(0, b"a"), batch(2, b"b")].concat()),
            Bytes::from([batch(4, b"c"), batch(6, b"d")].concat()),
        ];
        let (batches, error) = batches_in(&chunks, 3, 6);
        assert!(error.is_none());
        let bases: Vec<i64> = batches.iter().map(RecordBatch::base_offset).collect();
        assert_eq!(bases, [2, 4]);
        let mut torn = batch(0, b"a").to_vec();
        torn[8..12].copy_from_slice(&5i32.to_be_bytes());
        let (batches, error) = batches_in(&[Bytes::from(torn)], 0, 10);
        assert!(batches.is_empty() && error.is_some());
    }
}
