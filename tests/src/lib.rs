//! Test harness: starts real brokers and the shadowlink binary.
