//! Appends, as fetches waiting for data see them: a wake-up after each, for the fetches
//! watching the partition and for the node, and running totals, for the node and for
//! each partition, of the bytes and of the appends holding control batches, so a fetch
//! gathering toward a `min_bytes` can tell when another read may reach it without
//! reading.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

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

/// The fetches waiting for an append to one partition, each by its own wake-up, as
/// Kafka's delayed fetches watch the partitions they name: an append wakes these alone,
/// not every fetch waiting on the node.
#[derive(Default)]
pub struct Waiters {
    list: Mutex<Vec<Arc<Notify>>>,
}

impl Waiters {
    /// Wakes `waiter` at each append from now on, until removed. A fetch reads the
    /// totals after adding itself: an append whose wake went to the list before the
    /// fetch was in it was counted before the fetch read them (the list's lock orders
    /// the two).
    pub fn add(&self, waiter: &Arc<Notify>) {
        self.lock().push(waiter.clone());
    }

    pub fn remove(&self, waiter: &Arc<Notify>) {
        let mut list = self.lock();
        if let Some(at) = list.iter().position(|w| Arc::ptr_eq(w, waiter)) {
            list.swap_remove(at);
        }
    }

    /// Wakes every waiter; one that is not waiting right now finds the wake-up stored
    /// when it next waits.
    pub fn wake(&self) {
        for waiter in self.lock().iter() {
            waiter.notify_one();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Notify>>> {
        self.list.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Appends {
    /// Resolves at the next append, once polled or enabled.
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// Counts an append of `bytes` and wakes what waits for any append (fetches wait on
    /// their partitions' [`Waiters`] instead). `control` when the append held a control
    /// batch, or may have. A partition's own count is added to before this, and its
    /// waiters woken after: a woken fetch reads totals that include the append.
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

    #[tokio::test]
    async fn waiters_are_woken_by_each_append_until_removed_and_keep_a_wake_up_for_later() {
        let waiters = Waiters::default();
        let (one, two) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        waiters.add(&one);
        waiters.add(&two);
        // Neither is waiting yet: each finds the wake-up when it waits.
        waiters.wake();
        one.notified().await;
        two.notified().await;
        waiters.remove(&one);
        waiters.wake();
        two.notified().await;
        let woken = tokio::time::timeout(std::time::Duration::from_millis(50), one.notified());
        assert!(woken.await.is_err(), "a removed waiter was woken");
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
