//! ListOffsets: earliest, latest, max timestamp and by-timestamp lookups. Consumers
//! see the log up to the high watermark (on a cluster, what the in-sync set holds).

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;
use shadowlink_storage::PartitionLog;

use super::{Reply, RequestContext};
use crate::authz::Operation;
use crate::errors::{epoch_error_code, storage_error_code, Declined};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
/// ListOffsets `isolation_level` 1 (v2+, KIP-98).
const READ_COMMITTED: i8 = 1;
/// KIP-734 (v7+): the offset of the record with the largest timestamp.
const MAX_TIMESTAMP: i64 = -3;

pub fn handle(
    ctx: &RequestContext,
    header: &RequestHeader,
    request: ListOffsetsRequest,
) -> Result<Reply, EncodeError> {
    let committed = request.isolation_level == READ_COMMITTED;
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let mirror = ctx
                        .store
                        .partition(topic.name.0.as_str(), p.partition_index);
                    // Kafka asks for describe, which read implies.
                    let allowed = ctx.topic(Operation::Describe, topic.name.0.as_str());
                    let answer = match (allowed, mirror) {
                        (Err(denied), _) => Err(denied.code()),
                        (Ok(()), Some(m)) => crate::cluster::check_served(
                            ctx.cluster.as_deref(),
                            topic.name.0.as_str(),
                            p.partition_index,
                        )
                        .and_then(|()| {
                            m.check_leader_epoch(p.current_leader_epoch)
                                .map_err(|e| epoch_error_code(&e))
                        })
                        .and_then(|()| {
                            let log = m.log();
                            let hw = crate::cluster::high_watermark(
                                ctx.cluster.as_deref(),
                                topic.name.0.as_str(),
                                p.partition_index,
                                &log,
                            );
                            lookup(&log, hw, p.timestamp, committed)
                        }),
                        (Ok(()), None) => Err(super::offline::partition_code(
                            &ctx.store,
                            topic.name.0.as_str(),
                            p.partition_index,
                        )),
                    };
                    partition_response(header.api_version, p.partition_index, answer)
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    let response = ListOffsetsResponse::default().with_topics(topics);
    Reply::encode(header, &response)
}

/// `(timestamp, offset, leader epoch)` for one partition, or a Kafka error code. A
/// record found by time carries the epoch it was written in. Under `read_committed`
/// the log ends at the last stable offset: latest is the LSO, and a record found at or
/// above it is not found (as Kafka answers). Neither end passes `high_watermark`.
fn lookup(
    log: &PartitionLog,
    high_watermark: i64,
    timestamp: i64,
    committed: bool,
) -> Result<(i64, i64, i32), i16> {
    let epoch = log.latest_epoch().unwrap_or(-1);
    let end = match committed {
        true => log.last_stable_offset().min(high_watermark),
        false => high_watermark,
    };
    let found = match timestamp {
        LATEST => return Ok((-1, end, epoch)),
        EARLIEST => {
            let start = log.log_start_offset();
            return Ok((-1, start, log.epoch_for_offset(start).unwrap_or(epoch)));
        }
        MAX_TIMESTAMP => log.max_timestamp(),
        ts if ts >= 0 => log
            .offset_for_timestamp(ts)
            .map(|found| found.map(|(offset, ts)| (ts, offset))),
        _ => return Err(Declined::UnknownSpecialTimestamp.code()),
    };
    match found {
        Ok(Some((ts, offset))) if offset < end => {
            Ok((ts, offset, log.epoch_for_offset(offset).unwrap_or(-1)))
        }
        Ok(Some(_)) => Ok((-1, -1, -1)),
        Ok(None) => Ok((-1, -1, -1)),
        Err(e) => Err(storage_error_code(&e)),
    }
}

fn partition_response(
    version: i16,
    index: i32,
    answer: Result<(i64, i64, i32), i16>,
) -> ListOffsetsPartitionResponse {
    let p = ListOffsetsPartitionResponse::default().with_partition_index(index);
    match answer {
        Ok((timestamp, offset, epoch)) => {
            let p = p.with_timestamp(timestamp).with_offset(offset);
            // The field exists from v4; the encoder refuses it set on older versions.
            if version >= 4 {
                p.with_leader_epoch(epoch)
            } else {
                p
            }
        }
        Err(code) => p.with_error_code(code).with_offset(-1).with_timestamp(-1),
    }
}
