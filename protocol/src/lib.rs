//! Sans-io Kafka wire codec for shadowlink.
//!
//! Nothing here performs I/O: functions take bytes and return bytes or typed errors.

pub mod api;
pub mod batch;
pub mod chunk_list;
pub mod client;
mod encode;
pub mod fetch;
pub mod frame;
pub mod receive;
pub mod request;
pub mod response;

pub use encode::EncodeError;
/// The kafka-protocol this codec is built on, so dependents name the same message types.
pub use kafka_protocol;
