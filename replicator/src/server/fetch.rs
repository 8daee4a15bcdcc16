//! Fetch: long-polls mirror partitions and sends stored batches without copying them.

use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::{FetchRequest, TopicName};
use shadowlink_protocol::fetch::{
    encode_fetch_response, FetchPartitionParts, FetchResponseParts, FetchTopicParts,
};
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::{Reply, RequestContext};
use crate::authz::Operation;
use crate::errors::{epoch_error_code, storage_error_code, Declined};

/// Fetch `isolation_level` 1 (KIP-98): only data below the last stable offset.
const READ_COMMITTED: i8 = 1;

/// Upper bound on how long one request may be held, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

pub async fn handle(
    ctx: &RequestContext<'_>,
    header: &RequestHeader,
    request: FetchRequest,
) -> Result<Reply, EncodeError> {
    if request.session_id != 0 {
        // KIP-227 sessions are declined (we always answer session_id 0), so a client
        // naming one is out of step: tell it to start over with a full fetch.
        let parts = FetchResponseParts {
            error_code: Declined::FetchSession.code(),
            ..Default::default()
        };
        return encode_fetch_response(header.api_version, header.correlation_id, parts)
            .map(Reply::Chunks);
    }
    let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    loop {
        // Register interest before reading so an append between the read and the wait
        // still wakes us.
        let appended = ctx.store.appended();
        let notified = appended.notified();
        let (parts, bytes, errors) = read_all(ctx, &request);
        let now = Instant::now();
        if bytes >= min_bytes || errors || now >= deadline {
            return encode_fetch_response(header.api_version, header.correlation_id, parts)
                .map(Reply::Chunks);
        }
        let _ = tokio::time::timeout(deadline - now, notified).await;
    }
}

/// Reads every requested partition within the request's byte budgets. Returns the
/// response parts, the record bytes gathered, and whether any partition had an error.
fn read_all(ctx: &RequestContext, request: &FetchRequest) -> (FetchResponseParts, usize, bool) {
    let mut budget = request.max_bytes.max(0) as usize;
    let mut total = 0usize;
    let mut errors = false;
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let limit = (p.partition_max_bytes.max(0) as usize).min(budget);
            // KIP-74: the first non-empty partition may exceed the budget by one batch.
            let may_read = limit > 0 || total == 0;
            let part = read_partition(
                ctx,
                &topic.topic,
                p,
                request.isolation_level,
                limit,
                may_read,
            );
            let size: usize = part.records.iter().map(|r| r.len()).sum();
            errors |= part.error_code != 0;
            total += size;
            budget = budget.saturating_sub(size);
            partitions.push(part);
        }
        topics.push(FetchTopicParts {
            name: topic.topic.0.to_string(),
            partitions,
            ..Default::default()
        });
    }
    let parts = FetchResponseParts {
        topics,
        ..Default::default()
    };
    (parts, total, errors)
}

fn read_partition(
    ctx: &RequestContext,
    topic: &TopicName,
    request: &FetchPartition,
    request_isolation: i8,
    limit: usize,
    may_read: bool,
) -> FetchPartitionParts {
    let mut part = FetchPartitionParts {
        partition_index: request.partition,
        ..Default::default()
    };
    if let Err(denied) = ctx.topic(Operation::Read, topic.0.as_str()) {
        part.error_code = denied.code();
        part.high_watermark = -1;
        part.last_stable_offset = -1;
        part.log_start_offset = -1;
        return part;
    }
    let Some(mirror) = ctx.store.partition(topic.0.as_str(), request.partition) else {
        part.error_code =
            super::offline::partition_code(&ctx.store, topic.0.as_str(), request.partition);
        return part;
    };
    // KIP-320: a consumer whose leader epoch is stale may be reading records a leader
    // change replaced; it must refresh metadata and validate its position first.
    if let Err(e) = mirror.check_leader_epoch(request.current_leader_epoch) {
        part.error_code = epoch_error_code(&e);
        part.high_watermark = -1;
        part.last_stable_offset = -1;
        part.log_start_offset = -1;
        return part;
    }
    let log = mirror.log();
    part.high_watermark = log.high_watermark();
    // The LSO is derived from the stored batches (the mirror may hold part of a
    // transaction whose marker has not arrived), whatever the isolation level asked.
    part.last_stable_offset = log.last_stable_offset();
    part.log_start_offset = log.log_start_offset();
    if !may_read {
        return part;
    }
    if request_isolation == READ_COMMITTED {
        match log.read_committed(request.fetch_offset, limit.max(1)) {
            Ok(read) => {
                part.records = read.read.chunks;
                part.aborted_transactions = read.aborted_transactions;
            }
            Err(e) => part.error_code = storage_error_code(&e),
        }
        return part;
    }
    match log.read(request.fetch_offset, limit.max(1)) {
        Ok(read) => part.records = read.chunks,
        Err(e) => part.error_code = storage_error_code(&e),
    }
    part
}
