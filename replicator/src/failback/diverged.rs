//! Saving what a returning owner wrote past the failover point, before it is cut.
//!
//! Two files per fail-back of a topic, under `{data_dir}/diverged/`: `{stem}.jsonl`, one
//! JSON object per record (topic, partition, offset, timestamp, key, value, headers;
//! bytes in base64), and `{stem}.batches`, the stored batches byte for byte (a Kafka
//! record set per partition, in the order of the JSON lines), so nothing depends on the
//! decoding. Each is written to a temporary name, fsynced and renamed before any
//! partition is truncated; a crash before the rename leaves only a `.tmp` file and the
//! log untouched, and the next fail-back writes both again under a new stem.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use serde::Serialize;
use shadowlink_protocol::batch::BatchWalker;
use shadowlink_storage::PartitionLog;

use super::FailbackError;

/// One diverged record, as a line of the `.jsonl` file.
#[derive(Debug, Serialize)]
struct Line<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: i64,
    key: Option<String>,
    value: Option<String>,
    headers: Vec<Header>,
}

#[derive(Debug, Serialize)]
struct Header {
    key: String,
    value: Option<String>,
}

/// The records and batches of one topic's partitions above their failover points.
#[derive(Default)]
pub struct Diverged {
    lines: Vec<u8>,
    batches: Vec<u8>,
}

impl Diverged {
    /// Adds every record of `log` at or above `from`; returns how many there were.
    pub fn add(
        &mut self,
        topic: &str,
        partition: i32,
        log: &PartitionLog,
        from: i64,
    ) -> Result<i64, FailbackError> {
        let mut count = 0;
        let mut offset = from;
        while offset < log.log_end_offset() {
            let read = log.read(offset, 1 << 20)?;
            let before = offset;
            for chunk in read.chunks {
                for batch in BatchWalker::new(chunk) {
                    let batch = batch.map_err(|e| FailbackError::Unreadable(e.to_string()))?;
                    offset = batch.next_offset();
                    if batch.last_offset() < from {
                        continue;
                    }
                    self.batches.extend_from_slice(batch.as_bytes());
                    count += self.add_records(topic, partition, batch.as_bytes().clone(), from)?;
                }
            }
            if offset == before {
                break;
            }
        }
        Ok(count)
    }

    fn add_records(
        &mut self,
        topic: &str,
        partition: i32,
        mut batch: Bytes,
        from: i64,
    ) -> Result<i64, FailbackError> {
        let set = RecordBatchDecoder::decode(&mut batch)
            .map_err(|e| FailbackError::Unreadable(e.to_string()))?;
        let mut count = 0;
        for r in set
            .records
            .iter()
            .filter(|r| !r.control && r.offset >= from)
        {
            let line = Line {
                topic,
                partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key.as_ref().map(|k| STANDARD.encode(k)),
                value: r.value.as_ref().map(|v| STANDARD.encode(v)),
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| Header {
                        key: k.to_string(),
                        value: v.as_ref().map(|v| STANDARD.encode(v)),
                    })
                    .collect(),
            };
            serde_json::to_writer(&mut self.lines, &line)
                .map_err(|e| FailbackError::Unreadable(e.to_string()))?;
            self.lines.push(b'\n');
            count += 1;
        }
        Ok(count)
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Writes both files durably; returns the path of the `.jsonl` one.
    pub fn save(&self, dir: &Path, stem: &str) -> Result<PathBuf, FailbackError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let batches = dir.join(format!("{stem}.batches"));
        write_durably(&batches, &self.batches)?;
        let lines = dir.join(format!("{stem}.jsonl"));
        write_durably(&lines, &self.lines)?;
        shadowlink_storage::sync_dir(dir)?;
        Ok(lines)
    }
}

fn write_durably(path: &Path, data: &[u8]) -> Result<(), FailbackError> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!("{name}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    file.write_all(data).map_err(|e| io(&tmp, e))?;
    file.sync_all().map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

fn io(path: &Path, source: std::io::Error) -> FailbackError {
    FailbackError::Save {
        path: path.to_path_buf(),
        source,
    }
}
