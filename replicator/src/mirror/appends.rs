//! Appends, as fetches waiting for data see them: a wake-up after each, for the fetches
//! watching the partition and for the node, and running totals of the bytes and of the
//! appends holding control batches, for the node and for each waiting fetch of the
//! partitions it watches, so a fetch gathering toward a `min_bytes` can tell when
//! another read may reach it without reading.

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

/// Running totals of appends, to the node or to the partitions one fetch watches.
#[derive(Debug, Default)]
pub struct AppendCount {
    bytes: AtomicU64,
    markers: AtomicU64,
}

/// The totals of an [`AppendCount`] at one moment.
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

/// A waiting fetch, or fetch session, as the partitions it watches see it: a wake-up,
/// and the totals of the appends to those partitions while it watched them. A fetch
/// weighs those alone, in one read of two counters however many partitions it names.
#[derive(Debug, Default)]
pub struct Watcher {
    notify: Notify,
    seen: AppendCount,
}

impl Watcher {
    /// Resolves at the next append to a watched partition; one that came while nobody
    /// waited is kept for the next wait.
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// The totals of the appends to the partitions watched, while watched.
    pub fn tally(&self) -> AppendTally {
        self.seen.tally()
    }

    /// Counted before the wake-up: a woken fetch weighs totals that hold the append.
    fn appended(&self, bytes: usize, control: bool) {
        self.seen.add(bytes, control);
        self.notify.notify_one();
    }
}

/// The fetches waiting for an append to one partition, as Kafka's delayed fetches watch
/// the partitions they name: an append reaches these alone, not every fetch waiting on
/// the node.
#[derive(Default)]
pub struct Waiters {
    list: Mutex<Vec<Arc<Watcher>>>,
}

impl Waiters {
    /// Counts each append from now on to `watcher`, and wakes it, until removed. A fetch
    /// reads its totals after adding itself and reads the partition after that: an
    /// append the watcher misses came before the read, which finds it.
    pub fn add(&self, watcher: &Arc<Watcher>) {
        self.lock().push(watcher.clone());
    }

    pub fn remove(&self, watcher: &Arc<Watcher>) {
        let mut list = self.lock();
        if let Some(at) = list.iter().position(|w| Arc::ptr_eq(w, watcher)) {
            list.swap_remove(at);
        }
    }

    /// Counts an append of `bytes` to every watcher and wakes it.
    pub fn appended(&self, bytes: usize, control: bool) {
        for watcher in self.lock().iter() {
            watcher.appended(bytes, control);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Watcher>>> {
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
    /// batch, or may have.
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
    async fn watchers_count_and_wake_at_each_append_until_removed_and_keep_a_wake_up() {
        let waiters = Waiters::default();
        let (one, two) = (Arc::new(Watcher::default()), Arc::new(Watcher::default()));
        waiters.add(&one);
        waiters.add(&two);
        // Neither is waiting yet: each finds the wake-up when it waits.
        waiters.appended(100, false);
        one.notified().await;
        two.notified().await;
        waiters.remove(&one);
        waiters.appended(20, true);
        two.notified().await;
        let woken = tokio::time::timeout(std::time::Duration::from_millis(50), one.notified());
        assert!(woken.await.is_err(), "a removed watcher was woken");
        let tally = |bytes, markers| AppendTally { bytes, markers };
        assert_eq!(one.tally(), tally(100, 0));
        assert_eq!(two.tally(), tally(120, 1));
    }
}
