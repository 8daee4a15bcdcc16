//! Zero-copy view of a v2 record batch.
