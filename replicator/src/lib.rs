//! shadowlink: mirrors Kafka topics byte-identical, at their original offsets, from a
//! source cluster into local read-only partitions.

pub mod admin;
pub mod config;
pub mod daemon;
pub mod errors;
pub mod failover;
pub mod filter;
pub mod link;
pub mod metrics;
pub mod mirror;
pub mod retention;
pub mod rpo;
pub mod server;
pub mod source;
pub mod status;
pub mod topic_partition;
