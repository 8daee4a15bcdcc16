//! One writer task per mirror partition: applies fetched data to the log in fetch order.
//!
//! Disk work runs on the blocking pool so a slow disk never stalls the fetch loop, and
//! the channel in front of each writer is bounded: the fetch loop stops asking for a
//! partition whose writer is behind, so one slow partition cannot hold up the others.
//! Each applied job wakes the fetch loop, so a partition held back by its writer is
//! fetched again as soon as its queue has room, not at the loop's next idle tick.

use std::sync::Arc;
use std::time::Instant;

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::{mpsc, Notify};

use shadowlink_storage::{CheckedRecordSet, PersistMode, Poison, StorageError};
use tokio::task::JoinError;

use crate::mirror::{MirrorError, MirrorPartition};

/// Changes to a mirror log, applied strictly in the order they were queued.
#[derive(Debug, Clone)]
pub enum WriteJob {
    /// Complete batches exactly as fetched, their CRCs checked on arrival.
    Append(CheckedRecordSet),
    /// Drop everything at and after this offset (source divergence).
    Truncate(i64),
    /// Move the log start forward (source retention or DeleteRecords). Past the log end,
    /// the log restarts empty there: the source no longer holds what lies between.
    DeleteBefore(i64),
    /// An empty mirror begins at this offset (the link's `start` position).
    StartAt(i64),
}

/// Why a mirror partition stopped taking fetched data. The partition stays failed
/// until the node restarts, and its status reports this message, unless the error
/// [`is_transient`](WriteError::is_transient): then the job is retried until it applies.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{topic}-{partition}: {source}")]
    Append {
        topic: String,
        partition: i32,
        #[source]
        source: MirrorError,
    },
    #[error(transparent)]
    Log(#[from] StorageError),
    #[error("writer task failed: {0}")]
    Task(#[from] JoinError),
}

impl WriteError {
    /// A write the disk refused (full, say) that may succeed later: the log is reopened
    /// and the job retried. Not a failed fsync, after which nothing written can be trusted.
    fn is_transient(&self) -> bool {
        let storage = match self {
            WriteError::Append {
                source: MirrorError::Storage(e),
                ..
            } => e,
            WriteError::Log(e) => e,
            _ => return false,
        };
        matches!(storage, StorageError::Io { .. } | StorageError::Poisoned)
    }
}

/// How long a partition the disk refused waits before it tries again.
const RETRY_AFTER: std::time::Duration = crate::mirror::HEAL_INTERVAL;

/// How many fetched chunks may wait for the disk per partition.
pub const WRITER_QUEUE: usize = 4;

/// Starts the writer for `partition` and returns its queue.
pub fn spawn(partition: Arc<MirrorPartition>, link: String) -> mpsc::Sender<WriteJob> {
    spawn_waking(partition, link, Arc::new(Notify::new()))
}

/// Starts the writer for `partition`, which notifies `applied` after every job, and
/// returns its queue.
pub fn spawn_waking(
    partition: Arc<MirrorPartition>,
    link: String,
    applied: Arc<Notify>,
) -> mpsc::Sender<WriteJob> {
    let (tx, rx) = mpsc::channel(WRITER_QUEUE);
    tokio::spawn(run(partition, link, rx, applied));
    tx
}

async fn run(
    partition: Arc<MirrorPartition>,
    link: String,
    mut rx: mpsc::Receiver<WriteJob>,
    applied: Arc<Notify>,
) {
    while let Some(job) = rx.recv().await {
        let result = apply_until_done(&partition, &link, job).await;
        // One stored permit wakes the loop however many writers finished meanwhile.
        applied.notify_one();
        if let Err(error) = result {
            tracing::error!(
                link = %link,
                topic = %partition.topic,
                partition = partition.partition,
                error = %error,
                "mirror partition stopped"
            );
            partition.fail(error.to_string());
            return;
        }
    }
}

/// Applies `job`, retrying while the disk refuses it: the partition reports the error
/// meanwhile (so fetching it pauses), and resumes by itself once the write goes through.
async fn apply_until_done(
    partition: &Arc<MirrorPartition>,
    link: &str,
    job: WriteJob,
) -> Result<(), WriteError> {
    // The first error names the cause (a full disk); later ones only that the log is
    // still poisoned by it.
    let mut cause: Option<String> = None;
    loop {
        let error = match apply_off_runtime(partition, link, job.clone()).await {
            Ok(Ok(())) => break,
            Ok(Err(e)) if e.is_transient() && partition.log().poisoned() != Some(Poison::Fsync) => {
                e
            }
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(WriteError::from(e)),
        };
        let cause = cause.get_or_insert_with(|| {
            tracing::error!(link, topic = %partition.topic, partition = partition.partition, error = %error, "mirror partition cannot write; retrying until the disk takes it");
            error.to_string()
        });
        partition.fail(format!("{cause}; retrying every {RETRY_AFTER:?}"));
        tokio::time::sleep(RETRY_AFTER).await;
        let p = partition.clone();
        let _ = tokio::task::spawn_blocking(move || p.heal()).await;
    }
    if cause.is_some() {
        tracing::info!(link, topic = %partition.topic, partition = partition.partition, "mirror partition writes again");
        partition.clear_failure();
    }
    Ok(())
}

/// Runs [`apply`] where it may block. An append waits for no disk unless the persist
/// mode is `Always` (in `Interval` mode the flush timer owns the sync), only copies into
/// the page cache: it runs on this worker thread, which hands its other tasks to another
/// (`block_in_place`), so the consumers it wakes see the records without the two thread
/// hand-offs of the blocking pool, and the bytes are copied while the receiving thread
/// still has them in its cache. Everything else runs on the blocking pool.
async fn apply_off_runtime(
    partition: &Arc<MirrorPartition>,
    link: &str,
    job: WriteJob,
) -> Result<Result<(), WriteError>, JoinError> {
    let multi_thread = Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread;
    let syncs = partition.log().config().persist == PersistMode::Always;
    if multi_thread && !syncs && matches!(job, WriteJob::Append(_)) {
        return Ok(tokio::task::block_in_place(|| apply(partition, link, job)));
    }
    let (p, l) = (partition.clone(), link.to_string());
    tokio::task::spawn_blocking(move || apply(&p, &l, job)).await
}

/// Appends fetched batches, checked when they arrived, so the log hashes nothing again.
fn append(partition: &MirrorPartition, records: &CheckedRecordSet) -> Result<(), WriteError> {
    // A retry after a write that failed part-way: batches the reopened log kept are
    // not appended twice.
    let Some(records) = records.from_offset(partition.log().log_end_offset()) else {
        return Ok(());
    };
    match partition.append_checked(&records) {
        Ok(_) => Ok(()),
        // Failed over while this fetch was in flight: the topic is no longer a mirror.
        Err(MirrorError::NotMirrored { topic, partition }) => {
            tracing::debug!(partition = %format!("{topic}-{partition}"), "fetched data dropped: the partition was failed over");
            Ok(())
        }
        Err(source) => Err(WriteError::Append {
            topic: partition.topic.clone(),
            partition: partition.partition,
            source,
        }),
    }
}

fn apply(partition: &MirrorPartition, link: &str, job: WriteJob) -> Result<(), WriteError> {
    match job {
        WriteJob::Append(records) => {
            let started = Instant::now();
            let (bytes, count) = (records.len(), records.record_count());
            append(partition, &records)?;
            crate::metrics::appended(link, bytes, count, started.elapsed().as_secs_f64());
            Ok(())
        }
        WriteJob::Truncate(offset) => {
            let mut log = partition.log();
            let before = log.log_end_offset();
            log.truncate_to(offset)?;
            tracing::warn!(
                link,
                topic = %partition.topic,
                partition = partition.partition,
                discarded_from = offset,
                discarded_to = before,
                "mirror truncated to match the source after a leader change"
            );
            Ok(())
        }
        WriteJob::DeleteBefore(offset) => {
            let mut log = partition.log();
            if offset > log.log_end_offset() {
                drop(log);
                let why = "the source's log start passed the mirror's end";
                return restart_at(partition, link, offset, why);
            }
            Ok(log.delete_before(offset)?)
        }
        WriteJob::StartAt(offset) => restart_at(
            partition,
            link,
            offset,
            "the link starts an empty mirror there",
        ),
    }
}

/// Restarts the log empty at `offset` (log start = log end = `offset`), persisted before
/// any later job appends. Never moves a mirror backwards.
fn restart_at(
    partition: &MirrorPartition,
    link: &str,
    offset: i64,
    why: &'static str,
) -> Result<(), WriteError> {
    let mut log = partition.log();
    let from = log.log_end_offset();
    if offset <= from {
        return Ok(());
    }
    log.truncate_fully_and_start_at(offset)?;
    tracing::warn!(
        link,
        topic = %partition.topic,
        partition = partition.partition,
        skipped_from = from,
        skipped_to = offset,
        reason = why,
        "mirror restarts at a later offset; the records between are not mirrored"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use bytes::Bytes;
    use shadowlink_protocol::batch::testing::BatchBuilder;
    use shadowlink_storage::LogConfig;

    use super::*;
    use crate::mirror::{topic_id_hex, Store, TopicMeta, TopicState};

    fn mirror(dir: &std::path::Path) -> (Store, Arc<MirrorPartition>) {
        mirror_with(dir, LogConfig::default())
    }

    fn mirror_with(dir: &std::path::Path, config: LogConfig) -> (Store, Arc<MirrorPartition>) {
        let store = Store::open(dir, config).unwrap();
        let meta = TopicMeta {
            link: "from-a".into(),
            source_topic_id: topic_id_hex(&[0; 16]),
            partitions: 1,
            state: TopicState::Active,
            configs: BTreeMap::new(),
        };
        let partition = store.ensure_topic("a_orders", meta).unwrap().partition(0);
        (store, partition.unwrap())
    }

    fn checked(records: Bytes) -> CheckedRecordSet {
        CheckedRecordSet::check(&records, 0)
            .set
            .expect("intact batches")
    }

    fn batch(base_offset: i64) -> Bytes {
        BatchBuilder::new(base_offset)
            .records(&[(None, Some(&b"v"[..]))])
            .build()
    }

    #[test]
    fn a_retried_append_skips_the_batches_the_log_already_holds() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, partition) = mirror(dir.path());
        let records = Bytes::from([batch(0), batch(1), batch(2)].concat());
        append(&partition, &checked(records.slice(..batch(0).len()))).unwrap();
        append(&partition, &checked(records.clone())).unwrap();
        assert_eq!(partition.log().log_end_offset(), 3);
        append(&partition, &checked(records)).unwrap();
        assert_eq!(partition.log().log_end_offset(), 3);
    }

    #[tokio::test]
    async fn each_applied_job_wakes_the_fetch_loop() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, partition) = mirror(dir.path());
        let applied = Arc::new(Notify::new());
        let queue = spawn_waking(partition.clone(), "from-a".into(), applied.clone());
        for base_offset in 0..2 {
            queue
                .send(WriteJob::Append(checked(batch(base_offset))))
                .await
                .unwrap();
            let woken = tokio::time::timeout(Duration::from_secs(10), applied.notified()).await;
            assert!(woken.is_ok(), "no wake-up after job {base_offset}");
            // The wake-up comes once the job is in the log, not when it is queued.
            assert_eq!(partition.log().log_end_offset(), base_offset + 1);
        }
    }

    #[test]
    fn an_append_owing_no_fsync_does_not_wait_for_the_blocking_pool() {
        a_held_blocking_pool_does_not_stop_appends(LogConfig::default());
    }

    /// In `Interval` mode the sync that falls due belongs to the node's flush timer: the
    /// append neither waits for it nor for a thread of the blocking pool.
    #[test]
    fn an_interval_append_leaves_its_sync_to_the_flush_timer() {
        let config = LogConfig {
            persist: PersistMode::Interval(Duration::ZERO),
            ..LogConfig::default()
        };
        let store = a_held_blocking_pool_does_not_stop_appends(config);
        assert_eq!(store.flushes().len(), 1, "the owed sync was not queued");
    }

    fn a_held_blocking_pool_does_not_stop_appends(config: LogConfig) -> Store {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let (store, partition) = mirror_with(dir.path(), config);
            // The pool's one thread is taken, as by a write stuck behind a slow disk.
            let (release, held) = std::sync::mpsc::channel::<()>();
            let busy = tokio::task::spawn_blocking(move || held.recv());
            let applied = Arc::new(Notify::new());
            let queue = spawn_waking(partition.clone(), "from-a".into(), applied.clone());
            queue
                .send(WriteJob::Append(checked(batch(0))))
                .await
                .unwrap();
            let woken = tokio::time::timeout(Duration::from_secs(10), applied.notified()).await;
            release.send(()).unwrap();
            busy.await.unwrap().unwrap();
            assert!(woken.is_ok(), "the append waited for the blocking pool");
            assert_eq!(partition.log().log_end_offset(), 1);
            store
        })
    }

    #[test]
    fn data_fetched_for_a_failed_over_partition_is_dropped_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (store, partition) = mirror(dir.path());
        append(&partition, &checked(batch(0))).unwrap();
        store.topic("a_orders").unwrap().make_writable().unwrap();
        append(&partition, &checked(batch(1))).unwrap();
        assert_eq!(partition.log().log_end_offset(), 1);
    }
}
