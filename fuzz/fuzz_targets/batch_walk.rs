//! Arbitrary bytes as a fetched record set: walk it batch by batch and read every header
//! field, the CRC check and the control record type. Nothing may panic.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shadowlink_protocol::batch::{BatchWalker, RecordBatch};

fuzz_target!(|data: &[u8]| {
    let records = Bytes::copy_from_slice(data);
    let mut walker = BatchWalker::new(records.clone());
    let mut walked = 0;
    for batch in walker.by_ref() {
        let Ok(batch) = batch else { break };
        walked += batch.len();
        let _ = batch.validate_crc();
        let _ = batch.control_type();
        let _ = (
            batch.compression(),
            batch.timestamp_type(),
            batch.is_transactional(),
        );
        let _ = (
            batch.last_offset(),
            batch.next_offset(),
            batch.max_timestamp(),
        );
        let _ = (
            batch.producer_id(),
            batch.producer_epoch(),
            batch.base_sequence(),
        );
        let _ = (batch.record_count(), batch.partition_leader_epoch());
    }
    // The walker yields slices of its input in order; what it did not yield is the remainder.
    assert_eq!(walked + walker.remainder().len(), records.len());
    let _ = RecordBatch::parse(records);
});
