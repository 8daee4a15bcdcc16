//! Idempotent-producer state of one owned partition (KIP-98), as a Kafka leader keeps it:
//! per producer id, its epoch and the sequence ranges of its last five batches. Pure
//! bookkeeping, no I/O: the write path asks [`ProducerStates::check`] before appending
//! and calls [`ProducerStates::record`] after.
//!
//! Semantics follow Kafka 2.7+ for client writes:
//! - a retry of one of the last five batches (same epoch, same first and last sequence)
//!   is a duplicate: it is acknowledged with the offset it was first written at, and
//!   nothing is written (modern brokers never answer DUPLICATE_SEQUENCE_NUMBER);
//! - an epoch below the producer's current one is INVALID_PRODUCER_EPOCH (Kafka 2.7
//!   replaced PRODUCER_FENCED with it on Produce so clients can recover);
//! - a higher epoch (a KIP-360 epoch bump) must restart at sequence 0;
//! - within an epoch the sequence must follow the last batch's, else
//!   OUT_OF_ORDER_SEQUENCE_NUMBER;
//! - a producer with no state here is accepted at any sequence: since KIP-360 (Kafka 2.5)
//!   the broker no longer answers UNKNOWN_PRODUCER_ID, because state legitimately
//!   disappears (retention, a restart that rebuilt state from a bounded tail).

use std::collections::{HashMap, VecDeque};

use shadowlink_protocol::batch::RecordBatch;

/// Kafka's `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`: clients keep at most five
/// requests in flight per partition when idempotent, so five batches cover every retry.
pub const BATCHES_RETAINED: usize = 5;

/// The producer fields of an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
}

impl ProducerBatch {
    /// `None` for batches without a producer id (non-idempotent producers) and for
    /// transaction markers, which carry no sequence: a producer's sequences run on
    /// across its COMMIT and ABORT markers.
    pub fn of(batch: &RecordBatch) -> Option<ProducerBatch> {
        if batch.producer_id() < 0 || batch.is_control() {
            return None;
        }
        let first_seq = batch.base_sequence();
        Some(ProducerBatch {
            producer_id: batch.producer_id(),
            epoch: batch.producer_epoch(),
            first_seq,
            last_seq: increment_sequence(first_seq, batch.last_offset_delta()),
        })
    }
}

/// Sequences wrap from `i32::MAX` to 0 (Kafka's `DefaultRecordBatch.incrementSequence`).
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// What to do with a batch that passed the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    Append,
    /// Already stored at this base offset: acknowledge it, write nothing.
    Duplicate {
        base_offset: i64,
    },
}

/// Why a producer's batch is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("producer {producer_id} has epoch {epoch}, older than its current epoch {current}")]
    StaleEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("producer {producer_id} sent sequence {first_seq} where {expected} was expected")]
    OutOfOrder {
        producer_id: i64,
        first_seq: i32,
        expected: i32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
}

#[derive(Debug, Clone)]
struct ProducerEntry {
    epoch: i16,
    /// Oldest first, at most [`BATCHES_RETAINED`].
    batches: VecDeque<BatchMeta>,
}

/// Every producer's state in one partition.
#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStates {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Checks a client batch against the producer's state.
    pub fn check(&self, batch: &ProducerBatch) -> Result<SequenceCheck, SequenceError> {
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            return Ok(SequenceCheck::Append);
        };
        if batch.epoch == entry.epoch {
            let duplicate = entry
                .batches
                .iter()
                .find(|m| m.first_seq == batch.first_seq && m.last_seq == batch.last_seq);
            if let Some(original) = duplicate {
                return Ok(SequenceCheck::Duplicate {
                    base_offset: original.base_offset,
                });
            }
        }
        if batch.epoch < entry.epoch {
            return Err(SequenceError::StaleEpoch {
                producer_id: batch.producer_id,
                epoch: batch.epoch,
                current: entry.epoch,
            });
        }
        // A new epoch (KIP-360 bump) starts again at 0; otherwise the next sequence.
        let expected = match entry.batches.back() {
            Some(last) if batch.epoch == entry.epoch => increment_sequence(last.last_seq, 1),
            _ => 0,
        };
        let ok = batch.first_seq == expected;
        if ok {
            Ok(SequenceCheck::Append)
        } else {
            Err(SequenceError::OutOfOrder {
                producer_id: batch.producer_id,
                first_seq: batch.first_seq,
                expected,
            })
        }
    }

    /// Remembers a batch stored at `base_offset`. A newer epoch drops the older epoch's
    /// batches; an older epoch (impossible from the checked path) is ignored.
    pub fn record(&mut self, batch: &ProducerBatch, base_offset: i64) {
        let entry = self
            .producers
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: batch.epoch,
                batches: VecDeque::with_capacity(BATCHES_RETAINED),
            });
        if batch.epoch < entry.epoch {
            return;
        }
        if batch.epoch > entry.epoch {
            entry.epoch = batch.epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == BATCHES_RETAINED {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMeta {
            first_seq: batch.first_seq,
            last_seq: batch.last_seq,
            base_offset,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(epoch: i16, first_seq: i32, records: i32) -> ProducerBatch {
        ProducerBatch {
            producer_id: 7,
            epoch,
            first_seq,
            last_seq: increment_sequence(first_seq, records - 1),
        }
    }

    /// Records `n` consecutive 10-record batches from sequence 0 at offsets 100, 110...
    fn states_with(n: i32) -> ProducerStates {
        let mut states = ProducerStates::default();
        for i in 0..n {
            let b = batch(0, i * 10, 10);
            assert_eq!(states.check(&b), Ok(SequenceCheck::Append));
            states.record(&b, 100 + i64::from(i) * 10);
        }
        states
    }

    #[test]
    fn a_retry_of_any_of_the_last_five_batches_is_a_duplicate_at_its_first_offset() {
        let states = states_with(7);
        for i in 2..7 {
            assert_eq!(
                states.check(&batch(0, i * 10, 10)),
                Ok(SequenceCheck::Duplicate {
                    base_offset: 100 + i64::from(i) * 10
                })
            );
        }
        // Older than the window: no longer recognised, and out of order.
        assert!(matches!(
            states.check(&batch(0, 10, 10)),
            Err(SequenceError::OutOfOrder { expected: 70, .. })
        ));
        // Same first sequence, different length: not the same batch.
        assert!(states.check(&batch(0, 60, 5)).is_err());
    }

    #[test]
    fn gaps_and_rewinds_are_out_of_order() {
        let states = states_with(2);
        assert_eq!(states.check(&batch(0, 20, 3)), Ok(SequenceCheck::Append));
        assert_eq!(
            states.check(&batch(0, 21, 3)),
            Err(SequenceError::OutOfOrder {
                producer_id: 7,
                first_seq: 21,
                expected: 20
            })
        );
        assert!(states.check(&batch(0, 5, 3)).is_err());
    }

    #[test]
    fn an_older_epoch_is_refused_and_a_newer_one_restarts_at_zero() {
        let mut states = ProducerStates::default();
        states.record(&batch(3, 0, 1), 0);
        assert_eq!(
            states.check(&batch(2, 1, 1)),
            Err(SequenceError::StaleEpoch {
                producer_id: 7,
                epoch: 2,
                current: 3
            })
        );
        assert!(states.check(&batch(4, 1, 1)).is_err());
        assert_eq!(states.check(&batch(4, 0, 1)), Ok(SequenceCheck::Append));
        states.record(&batch(4, 0, 1), 1);
        // The old epoch's batches are gone: its retry is stale, not a duplicate.
        assert!(matches!(
            states.check(&batch(3, 0, 1)),
            Err(SequenceError::StaleEpoch { .. })
        ));
    }

    #[test]
    fn an_unknown_producer_is_accepted_at_any_sequence() {
        let states = states_with(1);
        let stranger = ProducerBatch {
            producer_id: 8,
            ..batch(0, 12345, 1)
        };
        assert_eq!(states.check(&stranger), Ok(SequenceCheck::Append));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        let mut states = ProducerStates::default();
        let last = ProducerBatch {
            producer_id: 7,
            epoch: 0,
            first_seq: i32::MAX - 1,
            last_seq: i32::MAX,
        };
        states.record(&last, 0);
        assert_eq!(states.check(&batch(0, 0, 1)), Ok(SequenceCheck::Append));
    }
}
