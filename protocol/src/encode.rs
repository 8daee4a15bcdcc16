//! Shared encoding plumbing: the encode error and size-prefixed frame assembly.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Encodable;

use crate::api::supported_versions;
use crate::frame::SIZE_PREFIX_LEN;

/// Why a message could not be encoded. These are programming errors on our side (a field
/// set that the negotiated version lacks, an oversized payload), never peer input.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    #[error("{api_key:?} v{version} is not a version this codec can encode")]
    UnsupportedVersion { api_key: ApiKey, version: i16 },
    #[error("{api_key:?} v{version} could not be encoded: {reason}")]
    Message {
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("{api_key:?} v{version} has {field} set, which that version cannot carry")]
    FieldUnavailable {
        api_key: ApiKey,
        version: i16,
        field: &'static str,
    },
    #[error("{field} is {len} long, more than its length prefix can express")]
    TooLong { field: &'static str, len: usize },
    #[error("the encoded frame would be {size} bytes, more than a Kafka frame can declare")]
    FrameTooLarge { size: usize },
}

pub(crate) fn check_version(api_key: ApiKey, version: i16) -> Result<(), EncodeError> {
    match supported_versions(api_key) {
        Some(r) if (r.min..=r.max).contains(&version) => Ok(()),
        _ => Err(EncodeError::UnsupportedVersion { api_key, version }),
    }
}

pub(crate) fn message_error(
    api_key: ApiKey,
    version: i16,
    e: impl std::fmt::Display,
) -> EncodeError {
    EncodeError::Message {
        api_key,
        version,
        reason: e.to_string(),
    }
}

/// The value of a frame's size prefix for a frame body of `size` bytes.
pub(crate) fn frame_size(size: usize) -> Result<i32, EncodeError> {
    i32::try_from(size).map_err(|_| EncodeError::FrameTooLarge { size })
}

/// Encodes `header` then `body` into one size-prefixed frame.
pub(crate) fn encode_frame<H: Encodable, T: Encodable>(
    api_key: ApiKey,
    version: i16,
    header: (&H, i16),
    body: &T,
) -> Result<Bytes, EncodeError> {
    let failed = |e| message_error(api_key, version, e);
    let (header, header_version) = header;
    let size = header.compute_size(header_version).map_err(failed)?
        + body.compute_size(version).map_err(failed)?;
    let mut out = BytesMut::with_capacity(SIZE_PREFIX_LEN + size);
    out.put_i32(frame_size(size)?);
    header.encode(&mut out, header_version).map_err(failed)?;
    body.encode(&mut out, version).map_err(failed)?;
    // The size prefix was written from compute_size; a frame whose body disagrees would
    // desynchronise the peer. kafka-protocol 0.18 does disagree for unknown tagged fields
    // with tags >= 2^31 (decoded into negative i32 keys, counted by compute_size, skipped by
    // encode), which a decoded-then-re-encoded hostile request can carry.
    let written = out.len() - SIZE_PREFIX_LEN;
    if written != size {
        let reason = format!("the encoder wrote {written} bytes after computing {size}");
        return Err(message_error(api_key, version, reason));
    }
    Ok(out.freeze())
}
