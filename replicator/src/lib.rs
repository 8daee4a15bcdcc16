//! shadowlink: mirrors Kafka topics byte-identical, at their original offsets, from a
//! source cluster into local *shadow* partitions that ordinary Kafka clients read, next
//! to *owned* topics that producers write; failover makes a shadow topic writable.
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | the node's TOML configuration and its checks |
//! | [`daemon`] | start-up wiring of the store, links and listeners; orderly shutdown |
//! | [`mirror`] | the node's topics and partition logs on disk, shadow and owned |
//! | [`link`] | one task per link: topic discovery, fetch loops, writers, offset sync |
//! | [`source`] | the Kafka client side: connections and metadata of a source cluster |
//! | [`filter`] | which source topics a link mirrors |
//! | [`groups`] | consumer groups: the coordinator, group state and committed offsets |
//! | [`txn`] | the transaction coordinator of owned topics: producer epochs, markers |
//! | [`server`] | the Kafka-API listener: the table of served APIs and one handler per API |
//! | [`errors`] | the one mapping of internal errors to Kafka error codes |
//! | [`failover`] | turning a link's shadow topics into owned topics, crash-safe |
//! | [`retention`] | deleting old segments by the limits synced from the source |
//! | [`scrub`] | re-checking the CRC of every stored batch in the background |
//! | [`verify`] | comparing a mirror with its source over the wire, batch by batch |
//! | [`cleaner`] | compacting the node's own compacted topics in the background |
//! | [`rpo`] | the blind window: what a mirror could have missed unseen |
//! | [`status`] | what the node knows about links and partitions, for the admin API |
//! | [`metrics`] | the Prometheus registry |
//! | [`admin`] | the admin HTTP listener: metrics, status, health, failover, pause, verify |
//! | [`tls`] | TLS for the Kafka listener and for links' source connections |
//! | [`sasl`] | SASL (PLAIN, SCRAM) for the Kafka listener and for links; listener users |
//! | [`authz`] | who may do what on the Kafka listener: the allow-list of `[[acls]]` |

pub mod admin;
pub mod authz;
pub mod cleaner;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod errors;
pub mod failback;
pub mod failover;
pub mod filter;
pub mod groups;
pub mod link;
pub mod metrics;
pub mod mirror;
pub mod retention;
pub mod rpo;
pub mod sasl;
pub mod scrub;
pub mod server;
pub mod source;
pub mod status;
pub mod switchover;
pub mod tls;
mod tls_subject;
pub mod topic_partition;
pub mod txn;
pub mod verify;
