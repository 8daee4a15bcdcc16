//! Batches as the log writes them: as they arrived, or stamped with the offset and leader
//! epoch a leader gives a client's batch.
//!
//! A leader's append changes only `baseOffset` and `partitionLeaderEpoch`, the first and
//! third fields of the header, both before the CRC-32C's range (byte 21 to the end). A
//! stamped batch keeps its new first 16 bytes beside the client's bytes, and the write
//! gathers the two, so the batch is copied once, into the page cache, rather than first
//! into a buffer of its own to be rewritten there.

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::ops::Range;

use bytes::Bytes;
use shadowlink_protocol::batch::{ControlType, RecordBatch};

/// The bytes a stamp replaces: `baseOffset`, `batchLength` and `partitionLeaderEpoch`.
const PREFIX: usize = 16;

/// Batches gathered into one `writev`: two pieces each, within Linux's `IOV_MAX` (1024).
const BATCHES_PER_WRITE: usize = 512;

/// The header fields of a batch, as the log will store it, that appending reads.
pub(crate) trait StoredBatch {
    /// The batch as it arrived.
    fn arrived(&self) -> &RecordBatch;
    fn base_offset(&self) -> i64;
    /// -1 for legacy entries, which have no such field.
    fn partition_leader_epoch(&self) -> i32;

    /// `baseOffset + lastOffsetDelta`, saturating like [`RecordBatch::last_offset`].
    fn last_offset(&self) -> i64 {
        let delta = self.arrived().last_offset_delta();
        self.base_offset().saturating_add(i64::from(delta))
    }
    fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }
    fn len(&self) -> usize {
        self.arrived().len()
    }
    fn max_timestamp(&self) -> i64 {
        self.arrived().max_timestamp()
    }
    fn producer_id(&self) -> i64 {
        self.arrived().producer_id()
    }
    fn is_transactional(&self) -> bool {
        self.arrived().is_transactional()
    }
    fn is_control(&self) -> bool {
        self.arrived().is_control()
    }
    fn control_type(&self) -> Option<ControlType> {
        self.arrived().control_type()
    }
    fn is_legacy(&self) -> bool {
        self.arrived().is_legacy()
    }
}

impl StoredBatch for RecordBatch {
    fn arrived(&self) -> &RecordBatch {
        self
    }
    fn base_offset(&self) -> i64 {
        RecordBatch::base_offset(self)
    }
    fn partition_leader_epoch(&self) -> i32 {
        RecordBatch::partition_leader_epoch(self)
    }
}

/// A batch moved to another base offset and stamped with a leader epoch (a legacy
/// message, whose CRC lies where the epoch would, only moves).
#[derive(Debug)]
pub(crate) struct Stamped<'a> {
    batch: &'a RecordBatch,
    prefix: [u8; PREFIX],
}

impl<'a> Stamped<'a> {
    pub(crate) fn new(batch: &'a RecordBatch, base_offset: i64, leader_epoch: i32) -> Self {
        let mut prefix = [0; PREFIX];
        // Every batch the walk accepts is longer than its fixed 16 first bytes.
        prefix.copy_from_slice(&batch.as_bytes()[..PREFIX]);
        prefix[..8].copy_from_slice(&base_offset.to_be_bytes());
        if !batch.is_legacy() {
            prefix[12..].copy_from_slice(&leader_epoch.to_be_bytes());
        }
        Stamped { batch, prefix }
    }

    fn pieces(&self) -> [IoSlice<'_>; 2] {
        let rest = &self.batch.as_bytes()[PREFIX..];
        [IoSlice::new(&self.prefix), IoSlice::new(rest)]
    }

    /// The batch's bytes as stored.
    #[cfg(test)]
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        [&self.prefix[..], &self.batch.as_bytes()[PREFIX..]].concat()
    }
}

impl StoredBatch for Stamped<'_> {
    fn arrived(&self) -> &RecordBatch {
        self.batch
    }
    fn base_offset(&self) -> i64 {
        i64::from_be_bytes(self.prefix[..8].try_into().expect("8 bytes"))
    }
    fn partition_leader_epoch(&self) -> i32 {
        match self.batch.is_legacy() {
            true => -1,
            false => i32::from_be_bytes(self.prefix[12..].try_into().expect("4 bytes")),
        }
    }
}

/// Batches the log writes, and how their bytes reach a file.
pub(crate) trait StoredSet {
    type Batch: StoredBatch;

    fn batches(&self) -> &[Self::Batch];

    /// Appends `run`, batches of the set that start `position` bytes into it and span
    /// `len` bytes, to `file`.
    fn write(&self, file: &File, run: Range<usize>, position: usize, len: usize) -> io::Result<()>;
}

/// Batches as they arrived: consecutive slices of one record set, written in one piece.
pub(crate) struct Arrived<'a> {
    pub(crate) bytes: &'a Bytes,
    pub(crate) batches: &'a [RecordBatch],
}

impl StoredSet for Arrived<'_> {
    type Batch = RecordBatch;

    fn batches(&self) -> &[RecordBatch] {
        self.batches
    }

    fn write(
        &self,
        mut file: &File,
        _: Range<usize>,
        position: usize,
        len: usize,
    ) -> io::Result<()> {
        file.write_all(&self.bytes[position..position + len])
    }
}

impl<'a> StoredSet for [Stamped<'a>] {
    type Batch = Stamped<'a>;

    fn batches(&self) -> &[Stamped<'a>] {
        self
    }

    fn write(&self, file: &File, run: Range<usize>, _: usize, _: usize) -> io::Result<()> {
        for chunk in self[run].chunks(BATCHES_PER_WRITE) {
            let mut pieces: Vec<IoSlice<'_>> = chunk.iter().flat_map(Stamped::pieces).collect();
            write_all_vectored(file, &mut pieces)?;
        }
        Ok(())
    }
}

/// `Write::write_all_vectored`, which is not stable: `writev` until every piece is
/// written.
fn write_all_vectored(mut file: &File, mut pieces: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !pieces.is_empty() {
        match file.write_vectored(pieces) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut pieces, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowlink_protocol::batch::testing::{build_batch, build_legacy_message, BatchBuilder};

    #[test]
    fn a_stamp_changes_the_base_offset_and_epoch_and_nothing_else() {
        let client = BatchBuilder::new(0)
            .leader_epoch(-1)
            .producer(42, 3, 17)
            .records(&[(Some(b"k"), Some(b"v1")), (None, Some(b"v2"))])
            .build();
        let batch = RecordBatch::parse(client).unwrap();
        let stamped = Stamped::new(&batch, 0x0102_0304_0506_0708, 9);
        let stored = RecordBatch::parse(Bytes::from(stamped.to_bytes())).unwrap();
        assert_eq!(stored.base_offset(), 0x0102_0304_0506_0708);
        assert_eq!(StoredBatch::base_offset(&stamped), stored.base_offset());
        assert_eq!(stored.partition_leader_epoch(), 9);
        assert_eq!(StoredBatch::partition_leader_epoch(&stamped), 9);
        assert_eq!(StoredBatch::last_offset(&stamped), stored.last_offset());
        let (new, old) = (stored.as_bytes(), batch.as_bytes());
        assert_eq!((&new[8..12], &new[16..]), (&old[8..12], &old[16..]));
        assert!(stored.validate_crc().is_ok());
        let producer = (stored.producer_id(), stored.producer_epoch());
        assert_eq!((producer, stored.base_sequence()), ((42, 3), 17));
    }

    #[test]
    fn a_stamped_legacy_message_only_moves() {
        let message = build_legacy_message(0, 1, 1_000, None, Some(b"v"));
        let batch = RecordBatch::parse(message.clone()).unwrap();
        let stamped = Stamped::new(&batch, 9, 7);
        let stored = stamped.to_bytes();
        assert_eq!(&stored[..8], &9i64.to_be_bytes());
        assert_eq!(&stored[8..], &message[8..]);
        assert_eq!(StoredBatch::partition_leader_epoch(&stamped), -1);
        let stored = RecordBatch::parse(Bytes::from(stored)).unwrap();
        assert!(stored.validate_crc().is_ok());
    }

    #[test]
    fn a_gathered_write_of_more_batches_than_one_writev_takes_writes_them_all() {
        let batches: Vec<_> = (0..BATCHES_PER_WRITE as i64 * 2 + 3)
            .map(|n| RecordBatch::parse(build_batch(n, 0, &[(None, Some(b"v"))], n)).unwrap())
            .collect();
        let stamped: Vec<_> = batches.iter().map(|b| Stamped::new(b, 100, 4)).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let file = File::create(&path).unwrap();
        let len: usize = stamped.iter().map(StoredBatch::len).sum();
        let run = 1..stamped.len();
        stamped
            .write(&file, run, 0, len - stamped[0].len())
            .unwrap();
        let expected: Vec<u8> = stamped[1..].iter().flat_map(Stamped::to_bytes).collect();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }
}
