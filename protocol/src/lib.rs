//! Sans-io Kafka wire codec for shadowlink.
//!
//! Nothing here performs I/O: functions take bytes and return bytes or typed errors.

pub mod batch;
