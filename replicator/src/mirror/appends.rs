//! Appends, as fetches waiting for data see them: a wake-up after each on the node, and
//! running totals, for the node and for each partition, of the bytes and of the appends
//! holding control batches, so a fetch gathering toward a `min_bytes` can tell when
//! another read may reach it without reading.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// The node's appends: see the module comment.
#[derive(Default)]
pub struct Appends {
    notify: Notify,
    total: AppendCount,
}

/// Running totals of appends, to the node or to one partition.
#[derive(Default)]
pub struct AppendCount {
    bytes: AtomicU64,
    markers: AtomicU64,
}

/// The totals of an [`AppendCount`], or a sum of them, at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendTally {
    /// Bytes appended since the count began.
    pub bytes: u64,
    /// Appends that held a control batch: a transaction marker may move a last stable
    /// offset, making records appended earlier readable at `read_committed`.
    pub markers: u64,
}

impl AppendTally {
    /// Bytes appended between `earlier` and this tally.
    pub fn bytes_since(&self, earlier: &AppendTally) -> u64 {
        self.bytes.wrapping_sub(earlier.bytes)
    }

    /// This tally with `other`'s added: the totals of several counts.
    pub fn plus(self, other: AppendTally) -> AppendTally {
        AppendTally {
            bytes: self.bytes.wrapping_add(other.bytes),
            markers: self.markers.wrapping_add(other.markers),
        }
    }
}

impl AppendCount {
    /// Counts an append of `bytes`; `control` when it held a control batch, or may have.
    pub fn add(&self, bytes: usize, control: bool) {
        self.bytes.fetch_add(bytes as u64, Ordering::AcqRel);
        if control {
            self.markers.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub fn tally(&self) -> AppendTally {
        AppendTally {
            bytes: self.bytes.load(Ordering::Acquire),
            markers: self.markers.load(Ordering::Acquire),
        }
    }
}

impl Appends {
    /// Resolves at the next append, once polled or enabled.
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// Counts an append of `bytes` and wakes the fetches waiting for one. `control`
    /// when the append held a control batch, or may have. A partition's own count is
    /// added to before this: a woken fetch reads totals that include the append.
    pub fn appended(&self, bytes: usize, control: bool) {
        self.total.add(bytes, control);
        self.notify.notify_waiters();
    }

    /// The node's totals.
    pub fn tally(&self) -> AppendTally {
        self.total.tally()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_append_is_counted_before_it_wakes_a_waiter() {
        let appends = std::sync::Arc::new(Appends::default());
        let before = appends.tally();
        let notified = appends.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        appends.appended(100, false);
        appends.appended(20, true);
        notified.await;
        let after = appends.tally();
        assert_eq!(after.bytes_since(&before), 120);
        assert_eq!(after.markers - before.markers, 1);
    }

    #[test]
    fn tallies_add_up_across_counts() {
        let (a, b) = (AppendCount::default(), AppendCount::default());
        a.add(10, false);
        b.add(5, true);
        b.add(1, false);
        let sum = a.tally().plus(b.tally());
        assert_eq!(
            sum,
            AppendTally {
                bytes: 16,
                markers: 1
            }
        );
        assert_eq!(sum.bytes_since(&a.tally()), 6);
    }
}
