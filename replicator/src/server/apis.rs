//! The one table of Kafka APIs the listener serves.
//!
//! Each row names an API, the versions its handler implements and the handler. The
//! ApiVersions answer, request dispatch and the per-API request counters all derive from
//! it, so an API cannot be advertised without a handler, routed without being advertised,
//! or served without a metric series.

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use shadowlink_protocol::request::{decode_body, RequestError, RequestHeader};

use super::authenticate::after as sasl;
use super::connection::ConnectionError;
use super::groups::{
    describe_groups, find_coordinator, heartbeat, join_group, leave_group, list_groups,
    offset_commit, offset_fetch, sync_group,
};
use super::{
    add_offsets_to_txn, add_partitions_to_txn, alter_configs, api_versions, create_partitions,
    create_topics, delete_records, delete_topics, describe_configs, end_txn, fetch,
    incremental_alter_configs, init_producer_id, list_offsets, metadata, offset_for_leader_epoch,
    produce, txn_offset_commit, Reply, RequestContext,
};

/// One served API and the versions its handler implements. ApiVersions advertises this
/// range cut to what the codec decodes (see `api_versions::advertised`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub api: ApiKey,
    pub min: i16,
    pub max: i16,
}

/// Calls a handler, awaiting it when it is `async`.
macro_rules! call {
    (sync $call:expr) => {
        $call?
    };
    (async $call:expr) => {
        $call.await?
    };
}

/// Declares [`SERVED`] and [`route`] from rows of
/// `Api min..=max => sync|async handler;`, each handler taking the request context (or
/// the server context it dereferences to), the header and the decoded request.
macro_rules! served {
    ($($api:ident $min:literal ..= $max:literal => $mode:ident $handler:path;)*) => {
        /// Every API this listener answers.
        pub const SERVED: &[Served] = &[$(Served { api: ApiKey::$api, min: $min, max: $max }),*];

        /// Decodes the request body and runs the API's handler.
        async fn route(
            ctx: &RequestContext<'_>,
            header: &RequestHeader,
            body: Bytes,
        ) -> Result<Reply, ConnectionError> {
            let reply = match header.api_key {
                $(ApiKey::$api => call!($mode $handler(ctx, header, decode_body(header, body)?)),)*
                other => {
                    return Err(RequestError::UnsupportedApi {
                        api_key: other,
                        version: header.api_version,
                        correlation_id: header.correlation_id,
                    }
                    .into())
                }
            };
            Ok(reply)
        }
    };
}

served! {
    ApiVersions 0..=4 => sync api_versions::handle;
    Metadata 0..=12 => sync metadata::handle;
    // Topic ids are zero, so clients stay on the name-based versions.
    Fetch 4..=12 => async fetch::handle;
    ListOffsets 1..=7 => sync list_offsets::handle;
    DescribeConfigs 1..=4 => sync describe_configs::handle;
    // v13 names topics by id only. Appends to owned topics; refused on shadow topics.
    Produce 3..=12 => async produce::handle;
    // Creates owned topics.
    CreateTopics 2..=7 => async create_topics::handle;
    // Idempotent and transactional producers; the transaction coordinator's APIs
    // follow. Transaction version 1 only (no KIP-890 part 2): AddPartitionsToTxn v4+ is
    // broker to broker, and EndTxn v4+, AddOffsetsToTxn v4 and TxnOffsetCommit v4+ carry
    // KIP-890 semantics this coordinator does not implement.
    InitProducerId 0..=5 => async init_producer_id::handle;
    AddPartitionsToTxn 0..=3 => async add_partitions_to_txn::handle;
    AddOffsetsToTxn 0..=3 => async add_offsets_to_txn::handle;
    TxnOffsetCommit 0..=3 => async txn_offset_commit::handle;
    EndTxn 0..=3 => async end_txn::handle;
    OffsetForLeaderEpoch 2..=4 => sync offset_for_leader_epoch::handle;
    // The next five are refused on shadow topics, per topic, with POLICY_VIOLATION.
    DeleteRecords 0..=2 => sync delete_records::handle;
    CreatePartitions 0..=3 => sync create_partitions::handle;
    // v6 names topics by id.
    DeleteTopics 1..=5 => sync delete_topics::handle;
    AlterConfigs 0..=2 => sync alter_configs::handle;
    IncrementalAlterConfigs 0..=1 => sync incremental_alter_configs::handle;
    // The group coordinator's APIs. Every one starts at the lowest version the codec
    // decodes: librdkafka before 2.11.1 enables its balanced consumer only when the
    // broker's ranges include v0 of the group APIs.
    OffsetCommit 2..=9 => async offset_commit::handle;
    OffsetFetch 1..=9 => async offset_fetch::handle;
    FindCoordinator 0..=6 => sync find_coordinator::handle;
    JoinGroup 0..=9 => async join_group::handle;
    Heartbeat 0..=4 => sync heartbeat::handle;
    LeaveGroup 0..=5 => sync leave_group::handle;
    SyncGroup 0..=5 => async sync_group::handle;
    DescribeGroups 0..=6 => sync describe_groups::handle;
    ListGroups 0..=5 => sync list_groups::handle;
    // Before authentication the connection answers these itself; here they come after
    // it, or on a listener without SASL, and are refused with ILLEGAL_SASL_STATE.
    SaslHandshake 0..=1 => sync sasl::handshake;
    SaslAuthenticate 0..=2 => sync sasl::authenticate;
}

/// Answers one request with its API's handler; an API or version this node does not
/// advertise is refused before its body is decoded.
pub async fn dispatch(
    ctx: &RequestContext<'_>,
    header: &RequestHeader,
    body: Bytes,
) -> Result<Reply, ConnectionError> {
    let advertised = api_versions::advertised(header.api_key)
        .is_some_and(|(min, max)| (min..=max).contains(&header.api_version));
    if !advertised {
        return Err(RequestError::UnsupportedVersion {
            api_key: header.api_key,
            version: header.api_version,
            correlation_id: header.correlation_id,
        }
        .into());
    }
    route(ctx, header, body).await
}

/// Declares a zero request counter for every served API, so a dashboard sees `0`
/// rather than no series before the first request.
pub fn declare_metrics() {
    crate::metrics::declare_kafka_apis(SERVED.iter().map(|served| served.api));
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use shadowlink_storage::LogConfig;

    use super::*;
    use crate::authz::{Acl, Grants};
    use crate::groups::Coordinator;
    use crate::mirror::Store;
    use crate::server::{CreatePolicy, Listener, ServerContext};
    use crate::txn::TxnCoordinator;

    fn context(dir: &std::path::Path) -> ServerContext {
        context_idle_for(dir, Duration::from_secs(1))
    }

    /// A node's handler context over an empty store in `dir`, with default limits.
    pub(in crate::server) fn context_idle_for(
        dir: &std::path::Path,
        idle_timeout: Duration,
    ) -> ServerContext {
        let store = Arc::new(Store::open(dir, LogConfig::default()).unwrap());
        let groups = Arc::new(Coordinator::open(dir).unwrap());
        ServerContext {
            txns: Arc::new(TxnCoordinator::open(dir, store.clone(), groups.clone()).unwrap()),
            store,
            groups,
            cluster_id: "cluster".into(),
            node_id: 1,
            peers: Default::default(),
            max_frame_bytes: 1 << 20,
            request_budget: super::super::RequestBudget::new(2 << 20),
            idle_timeout,
            create_policy: CreatePolicy {
                links: vec![],
                max_partitions_per_request: 100,
                max_partitions: 100,
            },
            sessions: crate::server::SessionCache::new(10),
            acl: Acl::default(),
            cluster: None,
        }
    }

    fn listener() -> Listener {
        Listener {
            name: "default".into(),
            protocol: crate::config::SecurityProtocol::Plaintext,
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            tls: None,
            sasl: None,
        }
    }

    fn header(api_key: ApiKey, api_version: i16) -> RequestHeader {
        RequestHeader {
            api_key,
            api_version,
            correlation_id: 7,
            client_id: None,
        }
    }

    #[tokio::test]
    async fn every_advertised_api_has_a_handler_and_a_metric_series() {
        let dir = tempfile::tempdir().unwrap();
        let (server, listener) = (context(dir.path()), listener());
        let grants = Grants::everything();
        let ctx = RequestContext {
            server: &server,
            listener: &listener,
            grants: &grants,
        };
        declare_metrics();
        let series = crate::metrics::kafka_request_series();
        for served in SERVED {
            let (min, _) = api_versions::advertised(served.api).expect("advertised");
            // An empty body fails to decode for most APIs; what matters is that the
            // request reached the API's decoder and handler, not the unsupported arm.
            let result = route(&ctx, &header(served.api, min), Bytes::new()).await;
            assert!(
                !matches!(
                    result,
                    Err(ConnectionError::Request(
                        RequestError::UnsupportedApi { .. }
                    ))
                ),
                "{:?} has no handler",
                served.api
            );
            let label = format!("{:?}", served.api);
            assert!(series.contains(&label), "{label} has no metric series");
        }
        let unserved = route(&ctx, &header(ApiKey::WriteTxnMarkers, 0), Bytes::new()).await;
        assert!(matches!(
            unserved,
            Err(ConnectionError::Request(
                RequestError::UnsupportedApi { .. }
            ))
        ));
        assert_eq!(api_versions::advertised(ApiKey::WriteTxnMarkers), None);
    }

    #[tokio::test]
    async fn versions_outside_the_advertised_range_are_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let (server, listener) = (context(dir.path()), listener());
        let grants = Grants::everything();
        let ctx = RequestContext {
            server: &server,
            listener: &listener,
            grants: &grants,
        };
        let result = dispatch(&ctx, &header(ApiKey::Fetch, 3), Bytes::new()).await;
        assert!(matches!(
            result,
            Err(ConnectionError::Request(RequestError::UnsupportedVersion {
                version: 3,
                ..
            }))
        ));
        let result = dispatch(&ctx, &header(ApiKey::ApiVersions, 0), Bytes::new()).await;
        assert!(matches!(result, Ok(Reply::Frame(_))));
    }
}
