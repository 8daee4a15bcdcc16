//! What the disk does without shadowlink: the same number of bytes written sequentially
//! to one file, once left to the page cache, once with `fdatasync` at the node's default
//! flush interval. These are the ceilings the mirror's goals are measured against.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use shadowlink_benches::free_recently;

/// Chunk of each `write`: large enough that the syscall count does not matter.
const CHUNK: usize = 1 << 20;

/// Seconds taken by each way of writing `bytes` into a fresh file under `dir`.
pub struct PlainWrites {
    pub page_cache: Duration,
    pub fdatasync: Duration,
}

/// Writes `bytes` into a new file, once left to the page cache and once with
/// `fdatasync`, each right after `free_recently` as each mirror run is (the first write
/// into a full page cache pays for reclaiming it, and one into memory the host took back
/// pays for faulting it in).
pub fn measure(dir: &Path, bytes: u64, sync_interval: Duration) -> Result<PlainWrites> {
    free_recently(dir, bytes)?;
    let page_cache = write_file(&dir.join("plain-page-cache"), bytes, None)?;
    free_recently(dir, bytes)?;
    let fdatasync = write_file(&dir.join("plain-fdatasync"), bytes, Some(sync_interval))?;
    Ok(PlainWrites {
        page_cache,
        fdatasync,
    })
}

/// With `sync_interval`, `fdatasync` runs after the first write that comes that long after
/// the previous sync, and once at the end: what the node's interval flush does at most.
fn write_file(path: &Path, bytes: u64, sync_interval: Option<Duration>) -> Result<Duration> {
    // Random-looking bytes, so nothing below the file system could shortcut zeroes.
    let chunk: Vec<u8> = (0..CHUNK as u64)
        .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
        .collect();
    let mut file = File::create(path)?;
    let started = Instant::now();
    let mut last_sync = started;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
        if let Some(interval) = sync_interval {
            if last_sync.elapsed() >= interval {
                file.sync_data()?;
                last_sync = Instant::now();
            }
        }
    }
    if sync_interval.is_some() {
        file.sync_data()?;
    }
    let took = started.elapsed();
    drop(file);
    std::fs::remove_file(path)?;
    Ok(took)
}
