//! The node's appends, as fetches waiting for data see them: a wake-up after each, and
//! running totals of the bytes and of the appends holding control batches, so a fetch
//! gathering toward a `min_bytes` can tell when another read may reach it without
//! reading.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// See the module comment.
#[derive(Default)]
pub struct Appends {
    notify: Notify,
    bytes: AtomicU64,
    markers: AtomicU64,
}

/// The totals of [`Appends`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendTally {
    /// Bytes appended to any partition since the node started.
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
}

impl Appends {
    /// Resolves at the next append, once polled or enabled.
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// Counts an append of `bytes` and wakes the fetches waiting for one. `control`
    /// when the append held a control batch, or may have.
    pub fn appended(&self, bytes: usize, control: bool) {
        // Counted before the wake-up: a woken fetch reads totals that include it.
        self.bytes.fetch_add(bytes as u64, Ordering::AcqRel);
        if control {
            self.markers.fetch_add(1, Ordering::AcqRel);
        }
        self.notify.notify_waiters();
    }

    pub fn tally(&self) -> AppendTally {
        AppendTally {
            bytes: self.bytes.load(Ordering::Acquire),
            markers: self.markers.load(Ordering::Acquire),
        }
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
}
