//! Offset-preserving partition log.
