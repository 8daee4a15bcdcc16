//! Mirrors of compacted source topics follow the source's compaction.
//!
//! A mirror stores batches byte for byte as fetched, so once the source compacts a
//! range the mirror holds more than the source serves. Every
//! `links[].compaction_check_interval`, for each shadow partition whose synced
//! `cleanup.policy` contains `compact`, the mirror re-fetches the offset range of each
//! sealed segment, oldest first, and compares the batches with what it stores. Where
//! they differ the source has compacted the range since it was copied, and the segment
//! is replaced by the batches exactly as the source now serves them (offsets unchanged,
//! gaps kept), atomically, with the storage cleaner's swap. Where they are equal the
//! segment is left alone, so a range the source has not compacted yet is never touched.
//! Source batches never straddle a mirror segment's bounds: the mirror stores whole
//! batches, and compaction keeps each batch's first and last offset.
//!
//! The active segment is rolled once older than the synced `segment.ms`, so the newest
//! range converges too. The cost of a check is one re-fetch of every sealed segment's
//! range, which is the source's compacted size once converged (as wire bytes, counted
//! in `shadowlink_compaction_check_bytes_total`), once per interval. The mirror never
//! runs its own cleaner on a shadow.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::batch::BatchWalker;
use shadowlink_storage::{Cleaned, SealedSegment, StorageError};
use tokio::sync::watch;

use crate::config::Link;
use crate::mirror::{MirrorPartition, Store, TopicState};
use crate::source::metadata::SourceCluster;
use crate::source::SourceError;

/// Why one partition's check stopped early.
#[derive(Debug, thiserror::Error)]
enum CheckError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the source answered error {0}")]
    Refused(i16),
    #[error("a blocking task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The compaction checks of one link, on their own connections so they never hold up
/// its fetches.
pub(super) struct CompactionChecks {
    link: String,
    cluster: SourceCluster,
    store: Arc<Store>,
    interval: Duration,
    max_bytes: i32,
}

impl CompactionChecks {
    pub(super) fn new(link: &Link, store: Arc<Store>) -> Self {
        let config = &link.config;
        let cluster = SourceCluster::for_link(link);
        CompactionChecks {
            link: config.name.clone(),
            cluster,
            store,
            interval: config.compaction_check_interval,
            max_bytes: link.partition_max_bytes,
        }
    }

    pub(super) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
            if *shutdown.borrow() {
                return;
            }
            self.round().await;
        }
    }

    async fn round(&mut self) {
        let partitions: Vec<Arc<MirrorPartition>> = self
            .store
            .topics()
            .into_iter()
            .filter(|t| {
                let meta = t.meta();
                meta.link == self.link
                    && meta.state == TopicState::Active
                    && !t.is_owned()
                    && crate::cleaner::is_compacted(&meta.configs)
            })
            .flat_map(|t| t.partitions())
            .collect();
        if partitions.is_empty() {
            return;
        }
        if let Err(e) = self.cluster.refresh().await {
            tracing::debug!(link = %self.link, error = %e, "compaction check: no metadata");
            return;
        }
        for partition in partitions {
            if let Err(e) = self.check(&partition).await {
                tracing::warn!(link = %self.link, topic = %partition.topic, partition = partition.partition, error = %e, "compaction check failed");
            }
        }
    }

    /// Replaces, oldest first, the sealed segments the source has compacted since.
    async fn check(&mut self, partition: &Arc<MirrorPartition>) -> Result<(), CheckError> {
        let configs = self
            .store
            .topic(&partition.topic)
            .map(|t| t.meta().configs)
            .unwrap_or_default();
        let roll_after = crate::cleaner::compaction_config(&configs).segment_ms;
        let (dir, sealed) = {
            let mut log = partition.log();
            log.roll_if_older_than(Duration::from_millis(roll_after.try_into().unwrap_or(0)))?;
            (log.dir().to_path_buf(), log.sealed_segments())
        };
        for segment in sealed {
            let Some(stored) = partition.log().segment_data(segment.base_offset)? else {
                return Ok(());
            };
            let Some(served) = self.refetch(partition, segment).await? else {
                return Ok(());
            };
            if served == stored {
                continue;
            }
            let (dir, p) = (dir.clone(), partition.clone());
            let stats = tokio::task::spawn_blocking(move || {
                let cleaned = Cleaned::replacement(&dir, segment, served, now_ms())?;
                p.log().commit_clean(cleaned)
            })
            .await??;
            crate::metrics::compaction_segment_replaced(&self.link);
            tracing::info!(
                link = %self.link,
                topic = %partition.topic,
                partition = partition.partition,
                base_offset = segment.base_offset,
                bytes_before = stats.bytes_before,
                bytes_after = stats.bytes_after,
                "replaced a segment with the source's compacted batches"
            );
        }
        Ok(())
    }

    /// The batches the source now serves in `segment`'s offset range, exactly as
    /// served; `None` when the answer does not show the range's end.
    async fn refetch(
        &mut self,
        partition: &MirrorPartition,
        segment: SealedSegment,
    ) -> Result<Option<Bytes>, CheckError> {
        let leader = self
            .cluster
            .view
            .topics
            .get(&partition.topic)
            .and_then(|t| t.partitions.get(&partition.partition))
            .map(|p| p.leader);
        let Some(leader) = leader else {
            return Ok(None);
        };
        let client = self.cluster.broker(leader).await?;
        let mut out = BytesMut::new();
        let mut offset = segment.base_offset;
        loop {
            let request = self.fetch(&partition.topic, partition.partition, offset);
            let response: FetchResponse = client.send(ApiKey::Fetch, &request).await?;
            if response.error_code != 0 {
                return Err(CheckError::Refused(response.error_code));
            }
            let Some(p) = response
                .responses
                .first()
                .and_then(|t| t.partitions.first())
            else {
                return Ok(None);
            };
            if p.error_code != 0 {
                return Err(CheckError::Refused(p.error_code));
            }
            let records = p.records.clone().unwrap_or_default();
            crate::metrics::compaction_check_bytes(&self.link, records.len());
            let before = offset;
            for batch in BatchWalker::new(records).map_while(Result::ok) {
                if batch.base_offset() >= segment.next_offset {
                    return Ok(Some(out.freeze()));
                }
                if batch.last_offset() >= offset {
                    out.extend_from_slice(batch.as_bytes());
                    offset = batch.next_offset();
                }
                if offset >= segment.next_offset {
                    return Ok(Some(out.freeze()));
                }
            }
            if offset == before {
                return Ok(None);
            }
        }
    }

    fn fetch(&self, topic: &str, partition: i32, offset: i64) -> FetchRequest {
        let wanted = FetchPartition::default()
            .with_partition(partition)
            .with_current_leader_epoch(-1)
            .with_fetch_offset(offset)
            .with_last_fetched_epoch(-1)
            .with_log_start_offset(-1)
            .with_partition_max_bytes(self.max_bytes);
        FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(self.max_bytes)
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![wanted])])
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
