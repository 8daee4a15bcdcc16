//! One writer task per mirror partition: applies fetched data to the log in fetch order.
//!
//! Disk work runs on the blocking pool so a slow disk never stalls the fetch loop, and
//! the channel in front of each writer is bounded: the fetch loop stops asking for a
//! partition whose writer is behind, so one slow partition cannot hold up the others.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::mirror::MirrorPartition;

/// Changes to a mirror log, applied strictly in the order they were queued.
#[derive(Debug)]
pub enum WriteJob {
    /// Complete batches exactly as fetched.
    Append(Bytes),
    /// Drop everything at and after this offset (source divergence).
    Truncate(i64),
    /// Move the log start forward (source retention or DeleteRecords).
    DeleteBefore(i64),
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
        let outcome = tokio::task::spawn_blocking(move || apply(&p, job)).await;
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

fn apply(partition: &MirrorPartition, job: WriteJob) -> Result<(), String> {
    match job {
        WriteJob::Append(records) => {
            let first = records
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(-1, i64::from_be_bytes);
            partition.append(records).map(|_| ()).map_err(|e| {
                format!(
                    "{}-{}: cannot store the batches fetched at offset {first}: {e}",
                    partition.topic, partition.partition
                )
            })
        }
        WriteJob::Truncate(offset) => {
            let mut log = partition.log();
            let before = log.log_end_offset();
            log.truncate_to(offset).map_err(|e| e.to_string())?;
            tracing::warn!(
                topic = %partition.topic,
                partition = partition.partition,
                discarded_from = offset,
                discarded_to = before,
                "mirror truncated to match the source after a leader change"
            );
            Ok(())
        }
        WriteJob::DeleteBefore(offset) => partition
            .log()
            .delete_before(offset)
            .map_err(|e| e.to_string()),
    }
}
