//! One writer task per mirror partition: applies fetched data to the log in fetch order.
//!
//! Disk work runs on the blocking pool so a slow disk never stalls the fetch loop, and
//! the channel in front of each writer is bounded: the fetch loop stops asking for a
//! partition whose writer is behind, so one slow partition cannot hold up the others.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;

use shadowlink_protocol::batch::BatchWalker;
use shadowlink_storage::StorageError;

use crate::mirror::MirrorPartition;

/// Changes to a mirror log, applied strictly in the order they were queued.
#[derive(Debug)]
pub enum WriteJob {
    /// Complete batches exactly as fetched.
    Append(Bytes),
    /// Drop everything at and after this offset (source divergence).
    Truncate(i64),
    /// Move the log start forward (source retention or DeleteRecords). Past the log end,
    /// the log restarts empty there: the source no longer holds what lies between.
    DeleteBefore(i64),
    /// An empty mirror begins at this offset (the link's `start` position).
    StartAt(i64),
}

/// How many fetched chunks may wait for the disk per partition.
pub const WRITER_QUEUE: usize = 4;

/// Starts the writer for `partition` and returns its queue.
pub fn spawn(partition: Arc<MirrorPartition>, link: String) -> mpsc::Sender<WriteJob> {
    let (tx, rx) = mpsc::channel(WRITER_QUEUE);
    tokio::spawn(run(partition, link, rx));
    tx
}

async fn run(partition: Arc<MirrorPartition>, link: String, mut rx: mpsc::Receiver<WriteJob>) {
    while let Some(job) = rx.recv().await {
        let p = partition.clone();
        let l = link.clone();
        let outcome = tokio::task::spawn_blocking(move || apply(&p, &l, job)).await;
        let error = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(e) => format!("writer task failed: {e}"),
        };
        tracing::error!(
            link = %link,
            topic = %partition.topic,
            partition = partition.partition,
            error = %error,
            "mirror partition stopped"
        );
        partition.fail(error);
        return;
    }
}

/// Appends fetched batches. When one is invalid (a CRC mismatch, say), the valid ones
/// before it are still stored, so the mirror stays an exact prefix of the source, and the
/// error names the offset of the bad batch.
fn append(partition: &MirrorPartition, records: Bytes) -> Result<(), String> {
    let name = format!("{}-{}", partition.topic, partition.partition);
    match partition.append(records.clone()) {
        Ok(_) => Ok(()),
        Err(StorageError::Batch { position, source }) => {
            if position > 0 {
                partition
                    .append(records.slice(..position))
                    .map_err(|e| format!("{name}: {e}"))?;
            }
            Err(format!(
                "{name}: {source}; nothing from this batch on is stored"
            ))
        }
        // Failed over while this fetch was in flight: the topic is no longer a mirror.
        Err(StorageError::Refused(_)) if partition.is_owned() => {
            tracing::debug!(partition = %name, "fetched data dropped: the partition was failed over");
            Ok(())
        }
        Err(e) => Err(format!("{name}: {e}")),
    }
}

fn apply(partition: &MirrorPartition, link: &str, job: WriteJob) -> Result<(), String> {
    match job {
        WriteJob::Append(records) => {
            let started = Instant::now();
            let (bytes, count) = (records.len(), record_count(&records));
            append(partition, records)?;
            crate::metrics::appended(link, bytes, count, started.elapsed().as_secs_f64());
            Ok(())
        }
        WriteJob::Truncate(offset) => {
            let mut log = partition.log();
            let before = log.log_end_offset();
            log.truncate_to(offset).map_err(|e| e.to_string())?;
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
            log.delete_before(offset).map_err(|e| e.to_string())
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
) -> Result<(), String> {
    let mut log = partition.log();
    let from = log.log_end_offset();
    if offset <= from {
        return Ok(());
    }
    log.truncate_fully_and_start_at(offset)
        .map_err(|e| e.to_string())?;
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

/// Records in complete batches, control records included; only batch headers are read.
fn record_count(records: &Bytes) -> u64 {
    BatchWalker::new(records.clone())
        .map_while(Result::ok)
        .map(|b| u64::try_from(b.record_count()).unwrap_or(0))
        .sum()
}
