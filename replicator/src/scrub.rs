//! The background scrubber: re-reads every stored batch of every partition and checks
//! its CRC (CRC-32C of v2 batches, CRC-32 of legacy messages) at a bounded rate, so a
//! disk that silently damaged a segment is found before a consumer or a failover is.
//!
//! Each chunk is read under the partition's log lock, which only slices memory-mapped
//! segments (no copy, no disk wait), and checked on the blocking pool after the lock is
//! released: appends wait at most for the slicing.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use shadowlink_protocol::batch::BatchWalker;
use tokio::sync::watch;

use crate::mirror::{MirrorPartition, Store};

/// Bytes read per step: the most a step holds and the longest one takes.
const CHUNK_BYTES: usize = 1024 * 1024;
/// A pass over little data waits this long before the next begins.
const MIN_PASS: Duration = Duration::from_secs(1);
/// Mismatches listed in the status report; the metric counts them all.
const LISTED: usize = 100;

/// A stored batch that failed its check.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ScrubMismatch {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub error: String,
}

/// What `/v1/status` shows of the scrubber.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScrubReport {
    /// The configured rate; 0 when the scrubber is off.
    pub bytes_per_second: u64,
    pub verified_bytes: u64,
    /// Passes over every partition completed since the node started.
    pub passes: u64,
    /// The damaged batches found, first ones first.
    pub mismatches: Vec<ScrubMismatch>,
}

/// The scrubber's findings, shared with the admin API.
#[derive(Default)]
pub struct Scrub {
    inner: Mutex<ScrubInner>,
}

#[derive(Default)]
struct ScrubInner {
    bytes_per_second: u64,
    verified_bytes: u64,
    passes: u64,
    /// Chunks read and checked on the blocking pool.
    steps: u64,
    /// Partitions a pass looked at, for tests of what an idle node does.
    #[cfg(test)]
    looked_at: u64,
    found: BTreeSet<(String, i32, i64)>,
    listed: Vec<ScrubMismatch>,
}

impl Scrub {
    fn lock(&self) -> MutexGuard<'_, ScrubInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn report(&self) -> ScrubReport {
        let inner = self.lock();
        ScrubReport {
            bytes_per_second: inner.bytes_per_second,
            verified_bytes: inner.verified_bytes,
            passes: inner.passes,
            mismatches: inner.listed.clone(),
        }
    }

    fn checked(&self, bytes: u64) {
        let mut inner = self.lock();
        inner.verified_bytes += bytes;
        inner.steps += 1;
        drop(inner);
        crate::metrics::verified("scrub", bytes);
    }

    /// Notes a damaged batch; each is logged and counted once, however many passes see it.
    fn found(&self, m: ScrubMismatch) {
        let mut inner = self.lock();
        if !inner.found.insert((m.topic.clone(), m.partition, m.offset)) {
            return;
        }
        tracing::error!(topic = %m.topic, partition = m.partition, offset = m.offset, error = %m.error, "stored batch fails its CRC");
        crate::metrics::verify_mismatches("scrub", 1);
        if inner.listed.len() < LISTED {
            inner.listed.push(m);
        }
    }
}

/// Scrubs `store` at `bytes_per_second` until `stop` turns true; 0 disables it.
pub async fn run(
    store: Arc<Store>,
    scrub: Arc<Scrub>,
    bytes_per_second: u64,
    mut stop: watch::Receiver<bool>,
) {
    scrub.lock().bytes_per_second = bytes_per_second;
    if bytes_per_second == 0 {
        return;
    }
    let mut pacer = Pacer::new(bytes_per_second);
    // The partitions the last pass found holding data, while nothing was appended since
    // it began: only an append gives an empty partition something to check, so an idle
    // node's passes look at those alone, not at every partition once a second.
    let mut holding: Option<Vec<Arc<MirrorPartition>>> = None;
    loop {
        let started = Instant::now();
        let appended = store.appended();
        let mut notified = std::pin::pin!(appended.notified());
        notified.as_mut().enable();
        let partitions: Vec<_> = match holding.take() {
            // A topic deleted since is no longer the store's, and not read.
            Some(partitions) => partitions
                .into_iter()
                .filter(|p| {
                    store
                        .partition(&p.topic, p.partition)
                        .is_some_and(|q| Arc::ptr_eq(&q, p))
                })
                .collect(),
            None => store.topics().iter().flat_map(|t| t.partitions()).collect(),
        };
        let mut held = Vec::new();
        for partition in partitions {
            match scrub_partition(&partition, &scrub, &mut pacer, &mut stop).await {
                Scrubbed::Empty => {}
                Scrubbed::Checked => held.push(partition),
                Scrubbed::Stopping => return,
            }
        }
        scrub.lock().passes += 1;
        holding = notified.now_or_never().is_none().then_some(held);
        let rest = MIN_PASS.saturating_sub(started.elapsed());
        if !pause(rest, &mut stop).await {
            return;
        }
    }
}

/// What one pass did with one partition.
enum Scrubbed {
    /// The log holds nothing to check.
    Empty,
    Checked,
    /// The node is stopping.
    Stopping,
}

/// One pass over one partition.
async fn scrub_partition(
    partition: &Arc<MirrorPartition>,
    scrub: &Scrub,
    pacer: &mut Pacer,
    stop: &mut watch::Receiver<bool>,
) -> Scrubbed {
    #[cfg(test)]
    {
        scrub.lock().looked_at += 1;
    }
    // An empty log has nothing to check: no trip through the blocking pool.
    let empty = {
        let log = partition.log();
        log.log_start_offset() >= log.log_end_offset()
    };
    if empty {
        return Scrubbed::Empty;
    }
    let mut offset = i64::MIN;
    loop {
        let p = partition.clone();
        let Ok(step) = tokio::task::spawn_blocking(move || check_chunk(&p, offset)).await else {
            return Scrubbed::Checked;
        };
        scrub.checked(step.bytes);
        for (at, error) in step.bad {
            scrub.found(ScrubMismatch {
                topic: partition.topic.clone(),
                partition: partition.partition,
                offset: at,
                error,
            });
        }
        if !pause(pacer.wait(step.bytes), stop).await {
            return Scrubbed::Stopping;
        }
        match step.next {
            Some(next) if next > offset => offset = next,
            _ => return Scrubbed::Checked,
        }
    }
}

/// What one step of a partition found.
#[derive(Debug, Default)]
struct ChunkCheck {
    bytes: u64,
    /// Base offset and fault of every batch that failed.
    bad: Vec<(i64, String)>,
    /// Where the next step starts; `None` at the end of the log or where framing is lost.
    next: Option<i64>,
}

/// Checks the batches of up to [`CHUNK_BYTES`] from `offset` (from the log start when it
/// is below it).
fn check_chunk(partition: &MirrorPartition, offset: i64) -> ChunkCheck {
    let (read, end) = {
        let log = partition.log();
        let from = offset.max(log.log_start_offset());
        (log.read(from, CHUNK_BYTES), log.log_end_offset())
    };
    let Ok(read) = read else {
        return ChunkCheck::default();
    };
    let mut check = check_batches(&read.chunks, offset.max(read.log_start_offset));
    if check.next.is_some_and(|n| n >= end) {
        check.next = None;
    }
    check
}

/// Checks every batch of `chunks`, read from `from`.
fn check_batches(chunks: &[Bytes], from: i64) -> ChunkCheck {
    let mut check = ChunkCheck::default();
    for chunk in chunks {
        let mut walker = BatchWalker::new(chunk.clone());
        for batch in walker.by_ref() {
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    let at = check.next.unwrap_or(from);
                    check
                        .bad
                        .push((at, format!("unreadable batch framing: {e}")));
                    check.next = None;
                    return check;
                }
            };
            check.bytes += batch.len() as u64;
            if let Err(e) = batch.validate_crc() {
                check.bad.push((batch.base_offset(), e.to_string()));
            }
            check.next = Some(batch.next_offset());
        }
    }
    check
}

/// Spaces the reads so that they average `bytes_per_second`.
struct Pacer {
    bytes_per_second: u64,
}

impl Pacer {
    fn new(bytes_per_second: u64) -> Pacer {
        Pacer { bytes_per_second }
    }

    fn wait(&mut self, bytes: u64) -> Duration {
        Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64)
    }
}

/// Waits `d`; false when `stop` turned true meanwhile.
async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    if d.is_zero() {
        return true;
    }
    tokio::select! {
        _ = stop.changed() => !*stop.borrow(),
        _ = tokio::time::sleep(d) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowlink_protocol::batch::testing::build_batch;

    fn batch(base: i64) -> Bytes {
        build_batch(
            base,
            1,
            &[(Some(b"k"), Some(b"value")), (None, Some(b"w"))],
            1000,
        )
    }

    #[test]
    fn every_batch_is_checked_and_a_damaged_one_is_named_by_its_offset() {
        let good = Bytes::from([batch(0), batch(2)].concat());
        let mut damaged = [batch(4), batch(6)].concat();
        let last = damaged.len() - 1;
        damaged[last] ^= 0x10;
        let check = check_batches(&[good.clone(), Bytes::from(damaged.clone())], 0);
        assert_eq!(check.bytes, (good.len() + damaged.len()) as u64);
        assert_eq!(check.next, Some(8));
        assert_eq!(check.bad.len(), 1);
        assert_eq!(check.bad[0].0, 6);
        assert!(check.bad[0].1.contains("CRC"), "{:?}", check.bad);
    }

    #[test]
    fn broken_framing_stops_the_partition_at_the_batch_before() {
        let mut bytes = [batch(0), batch(2)].concat();
        let second = batch(0).len();
        bytes[second + 8..second + 12].copy_from_slice(&3i32.to_be_bytes());
        let check = check_batches(&[Bytes::from(bytes)], 0);
        assert_eq!(check.next, None);
        assert_eq!(check.bad.len(), 1);
        assert_eq!(check.bad[0].0, 2);
    }

    #[test]
    fn the_pacer_spreads_bytes_over_time_at_the_rate() {
        let mut pacer = Pacer::new(4 * 1024 * 1024);
        assert_eq!(pacer.wait(1024 * 1024), Duration::from_millis(250));
    }

    #[tokio::test]
    async fn zero_turns_the_scrubber_off_and_a_rate_checks_every_stored_byte() {
        use crate::mirror::{topic_id_hex, TopicMeta, TopicState};
        let dir = tempfile::tempdir().unwrap();
        let config = shadowlink_storage::LogConfig::default();
        let store = Arc::new(Store::open(dir.path(), config).unwrap());
        let meta = TopicMeta {
            link: "from-a".into(),
            source_topic_id: topic_id_hex(&[0; 16]),
            partitions: 1,
            state: TopicState::Active,
            configs: Default::default(),
        };
        let topic = store.ensure_topic("a_orders", meta.clone()).unwrap();
        store.ensure_topic("a_idle", meta).unwrap();
        let data = Bytes::from([batch(0), batch(2)].concat());
        topic.partition(0).unwrap().append(data.clone()).unwrap();
        let (stop, stopped) = watch::channel(false);

        let off = Arc::new(Scrub::default());
        let run_off = run(store.clone(), off.clone(), 0, stopped.clone());
        tokio::time::timeout(Duration::from_secs(5), run_off)
            .await
            .expect("a scrubber turned off returns at once");
        assert_eq!(off.report().verified_bytes, 0);

        let on = Arc::new(Scrub::default());
        let task = tokio::spawn(run(store, on.clone(), 1 << 30, stopped));
        let deadline = Instant::now() + Duration::from_secs(10);
        while on.report().passes == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = stop.send(true);
        task.await.unwrap();
        let report = on.report();
        assert_eq!(
            on.lock().steps,
            1,
            "the empty partition is not read: {report:?}"
        );
        assert!(report.passes >= 1, "{report:?}");
        assert!(report.verified_bytes >= data.len() as u64, "{report:?}");
        assert!(report.mismatches.is_empty(), "{report:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_node_passes_over_its_empty_partitions_only_after_an_append() {
        use crate::mirror::{topic_id_hex, TopicMeta, TopicState};
        const EMPTY: i32 = 50;
        let dir = tempfile::tempdir().unwrap();
        let config = shadowlink_storage::LogConfig::default();
        let store = Arc::new(Store::open(dir.path(), config).unwrap());
        let meta = |partitions| TopicMeta {
            link: "from-a".into(),
            source_topic_id: topic_id_hex(&[0; 16]),
            partitions,
            state: TopicState::Active,
            configs: Default::default(),
        };
        let data = batch(0);
        let orders = store.ensure_topic("a_orders", meta(1)).unwrap();
        orders.partition(0).unwrap().append(data.clone()).unwrap();
        let idle = store.ensure_topic("a_idle", meta(EMPTY)).unwrap();
        let (stop, stopped) = watch::channel(false);
        let scrub = Arc::new(Scrub::default());
        let task = tokio::spawn(run(store, scrub.clone(), 1 << 30, stopped));
        let wait_for = |done: &dyn Fn(&ScrubInner) -> bool| {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !done(&scrub.lock()) {
                assert!(Instant::now() < deadline, "{:?}", scrub.report());
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        tokio::task::block_in_place(|| wait_for(&|s| s.passes >= 3));
        let (passes, looked_at) = {
            let inner = scrub.lock();
            (inner.passes, inner.looked_at)
        };
        // The first pass looks at all of them; the next ones at the one holding data
        // (and the pass under way at most at one more).
        let all = EMPTY as u64 + 1;
        assert!(looked_at <= all + passes, "{looked_at} in {passes} passes");
        // An append anywhere makes the next pass look at every partition again.
        let verified = scrub.report().verified_bytes;
        idle.partition(7).unwrap().append(data.clone()).unwrap();
        let twice = verified + 2 * data.len() as u64;
        tokio::task::block_in_place(|| wait_for(&|s| s.verified_bytes >= twice));
        let _ = stop.send(true);
        task.await.unwrap();
    }

    #[test]
    fn a_mismatch_is_counted_once_however_often_it_is_seen() {
        let scrub = Scrub::default();
        let m = ScrubMismatch {
            topic: "a_orders".into(),
            partition: 0,
            offset: 6,
            error: "crc".into(),
        };
        scrub.found(m.clone());
        scrub.found(m.clone());
        scrub.checked(100);
        let report = scrub.report();
        assert_eq!(report.mismatches, vec![m]);
        assert_eq!(report.verified_bytes, 100);
    }
}
