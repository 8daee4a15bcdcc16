//! Rate-limited log lines about first syncs: one per topic per interval, not per batch.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::status::LinkStatus;

/// When each syncing topic was last logged.
pub struct ProgressLog {
    interval: Duration,
    logged: BTreeMap<String, Instant>,
    next_check: Instant,
}

impl ProgressLog {
    pub fn new(interval: Duration) -> ProgressLog {
        ProgressLog {
            interval,
            logged: BTreeMap::new(),
            next_check: Instant::now(),
        }
    }

    /// Logs the progress of every topic whose sync has run for a whole interval since it
    /// started or was last logged. Cheap to call on every loop turn.
    pub fn tick(&mut self, status: &LinkStatus, now: Instant) {
        if now < self.next_check {
            return;
        }
        // A tenth of the interval keeps the lines close to their schedule without
        // walking the partitions on every loop turn.
        self.next_check = now + self.interval / 10;
        let progress = status.progress(now);
        self.logged.retain(|topic, _| progress.contains_key(topic));
        for (topic, p) in progress {
            let last = *self.logged.entry(topic.clone()).or_insert(now);
            if now.saturating_duration_since(last) < self.interval {
                continue;
            }
            self.logged.insert(topic.clone(), now);
            let eta = p.eta_seconds.map_or_else(
                || "unknown".to_string(),
                |s| humantime::format_duration(Duration::from_secs(s.ceil() as u64)).to_string(),
            );
            tracing::info!(
                link = %status.name,
                topic = %topic,
                percent = (p.percent * 10.0).round() / 10.0,
                records_per_second = p.records_per_second.round() as u64,
                remaining = p.remaining,
                eta = %eta,
                "initial sync progress"
            );
        }
    }
}
