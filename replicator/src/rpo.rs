//! The blind window: what a mirror partition could have missed that the link never saw.
//!
//! A fetch response vouches for the source's high watermark at the moment the broker built
//! it. Writes the source acknowledges after that moment are invisible until the next
//! response, and lost for good if no next response comes. The window therefore starts no
//! later than when the vouching request was sent, which the link cannot see directly; the
//! previous outcome of the same partition (one fetch per partition is in flight at a time)
//! is an earlier instant and stands in for it. The window ends when the link lost the
//! source, or now when it never did.
//!
//! Records in the window are bounded from the source's recent writes, seen as high
//! watermark steps: the peak rate over any second of the last [`RATE_HORIZON`], times the
//! window, plus the largest single step (a producer batch lands whole, so even a window
//! shorter than one batch interval can hold a full batch).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How far back the source's writes are remembered.
pub const RATE_HORIZON: Duration = Duration::from_secs(5);

/// The span a rate is measured over.
const RATE_SPAN: Duration = Duration::from_secs(1);

/// The resolution of the history: writes seen within one slot are summed.
const SLOT: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy)]
struct Slot {
    start: Instant,
    records: i64,
    largest_step: i64,
}

/// Recent source writes of one partition, from the high watermarks of fetch responses.
#[derive(Debug, Clone, Default)]
pub struct WriteHistory {
    slots: VecDeque<Slot>,
    last_high_watermark: Option<i64>,
}

/// The busiest the source was over the last [`RATE_HORIZON`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Peak {
    pub records_per_second: f64,
    /// The most records one response showed beyond the one before it.
    pub largest_step: i64,
}

impl WriteHistory {
    /// Notes the source's high watermark from a response handled at `now`.
    pub fn observe(&mut self, high_watermark: i64, now: Instant) {
        // A high watermark that moved back (the source truncated) wrote nothing.
        let step = self
            .last_high_watermark
            .map_or(0, |last| (high_watermark - last).max(0));
        self.last_high_watermark = Some(high_watermark);
        while let Some(front) = self.slots.front() {
            if now.saturating_duration_since(front.start) <= RATE_HORIZON {
                break;
            }
            self.slots.pop_front();
        }
        match self.slots.back_mut() {
            Some(slot) if now.saturating_duration_since(slot.start) < SLOT => {
                slot.records += step;
                slot.largest_step = slot.largest_step.max(step);
            }
            _ => self.slots.push_back(Slot {
                start: now,
                records: step,
                largest_step: step,
            }),
        }
    }

    /// The peak over the slots of the last [`RATE_HORIZON`] before `now`. A span shorter
    /// than a second (the history just started) is divided by its own length, never
    /// less than a slot, so a young history does not dilute its rate.
    pub fn peak(&self, now: Instant) -> Peak {
        let recent: Vec<&Slot> = self
            .slots
            .iter()
            .filter(|s| now.saturating_duration_since(s.start) <= RATE_HORIZON)
            .collect();
        let mut peak = Peak::default();
        for (i, first) in recent.iter().enumerate() {
            let records: i64 = recent[i..]
                .iter()
                .take_while(|s| s.start.saturating_duration_since(first.start) < RATE_SPAN)
                .map(|s| s.records)
                .sum();
            let span = now
                .saturating_duration_since(first.start)
                .clamp(SLOT, RATE_SPAN);
            peak.records_per_second = peak
                .records_per_second
                .max(records as f64 / span.as_secs_f64());
            peak.largest_step = peak.largest_step.max(first.largest_step);
        }
        peak
    }
}

/// The blind window of one partition and what may have been written in it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Unconfirmed {
    /// From before the request of the last response that vouched for the source's high
    /// watermark, to when the link lost the source (or to now, if it did not).
    pub seconds: f64,
    /// Whether the window ends when the link lost the source rather than now.
    pub ends_at_loss: bool,
    /// The source's peak write rate over the last seconds.
    pub records_per_second: f64,
    /// The peak rate in bytes: records at the mirror's average bytes per offset.
    pub bytes_per_second: f64,
    /// Records the source may have acknowledged in the window: `records_per_second`
    /// times the window, plus the largest single step.
    pub records_max: i64,
    pub bytes_max: i64,
}

impl Unconfirmed {
    pub fn new(window: Duration, ends_at_loss: bool, peak: Peak, bytes_per_record: f64) -> Self {
        let seconds = window.as_secs_f64();
        let records_max = (peak.records_per_second * seconds).ceil() as i64 + peak.largest_step;
        Unconfirmed {
            seconds,
            ends_at_loss,
            records_per_second: peak.records_per_second,
            bytes_per_second: peak.records_per_second * bytes_per_record,
            records_max,
            bytes_max: (records_max as f64 * bytes_per_record).ceil() as i64,
        }
    }
}

/// The average stored bytes per offset of a log, the best the mirror knows of record size.
pub fn bytes_per_record(size_bytes: u64, log_start: i64, log_end: i64) -> f64 {
    let offsets = log_end - log_start;
    if offsets > 0 {
        size_bytes as f64 / offsets as f64
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_peak_is_the_busiest_second_not_the_mean() {
        let t0 = Instant::now();
        let mut history = WriteHistory::default();
        // 100 records/s for two seconds, then a second at 1000 records/s, then idle.
        let mut hwm = 0;
        history.observe(hwm, t0);
        for step in 1..=20 {
            hwm += 10;
            history.observe(hwm, t0 + ms(step * 100));
        }
        for step in 1..=10 {
            hwm += 100;
            history.observe(hwm, t0 + ms(2000 + step * 100));
        }
        history.observe(hwm, t0 + ms(4000));
        let peak = history.peak(t0 + ms(4000));
        assert!(peak.records_per_second >= 1000.0, "{peak:?}");
        assert_eq!(peak.largest_step, 100);
        // Past the horizon the burst is forgotten.
        assert_eq!(history.peak(t0 + ms(9000)), Peak::default());
    }

    #[test]
    fn a_young_history_is_not_diluted_by_a_full_second() {
        let t0 = Instant::now();
        let mut history = WriteHistory::default();
        history.observe(0, t0);
        history.observe(300, t0 + ms(300));
        let peak = history.peak(t0 + ms(300));
        assert!(peak.records_per_second >= 1000.0, "{peak:?}");
    }

    #[test]
    fn a_truncated_source_wrote_nothing() {
        let t0 = Instant::now();
        let mut history = WriteHistory::default();
        history.observe(500, t0);
        history.observe(200, t0 + ms(10));
        assert_eq!(history.peak(t0 + ms(10)), Peak::default());
    }

    #[test]
    fn the_bound_covers_a_whole_batch_even_in_a_short_window() {
        let peak = Peak {
            records_per_second: 1000.0,
            largest_step: 50,
        };
        let u = Unconfirmed::new(ms(4), true, peak, 100.0);
        assert_eq!(u.records_max, 4 + 50);
        assert_eq!(u.bytes_max, 5400);
        assert_eq!(u.bytes_per_second, 100_000.0);
        assert_eq!(bytes_per_record(1000, 10, 20), 100.0);
        assert_eq!(bytes_per_record(0, 5, 5), 0.0);
    }
}
