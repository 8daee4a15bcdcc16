//! `storage.max_open_files`: a node holding many more segment files than it may keep
//! open serves every partition to a real client and mirrors every one, while the
//! descriptors it holds on segment files, counted in `/proc/PID/fd`, never exceed the
//! limit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use shadowlink_tests::scenario::{create_topic, produce, wait_identical};
use shadowlink_tests::{python, Node, NodeConfig};

const LIMIT: usize = 6;
/// Descriptors seen beyond the limit that are not the cache's: a read or write in progress
/// keeps an evicted descriptor until it finishes, and `/proc/PID/fd` is not listed
/// atomically, so a descriptor closed and another opened during one listing both count.
const SLACK: usize = 2;
const PARTITIONS: i32 = 40;
const RECORDS: usize = 4_000;
const TOPIC: &str = "a_wide";

/// Descriptors `pid` holds on segment data files under `data_dir`.
fn open_segment_files(pid: u32, data_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    entries
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(data_dir) && is_segment(target))
        .count()
}

fn is_segment(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "log")
        || path.to_string_lossy().contains(".log (deleted)")
}

/// Segment data files on disk under `dir`.
fn segment_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .map(|p| match p.is_dir() {
            true => segment_files(&p),
            false => usize::from(is_segment(&p)),
        })
        .sum()
}

/// The most segment descriptors each node held, sampled every few milliseconds.
struct Peaks {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<usize>>,
}

impl Peaks {
    fn watch(nodes: &[&Node]) -> Result<Peaks> {
        let watched: Vec<(u32, PathBuf)> = nodes
            .iter()
            .map(|n| Ok((n.process.pid(), n.data_dir.canonicalize()?)))
            .collect::<Result<_>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peaks = vec![0; watched.len()];
            while !stopping.load(Ordering::Relaxed) {
                for (peak, (pid, dir)) in peaks.iter_mut().zip(&watched) {
                    *peak = (*peak).max(open_segment_files(*pid, dir));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            peaks
        });
        Ok(Peaks { stop, thread })
    }

    fn stop(self) -> Result<Vec<usize>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the sampler panicked"))
    }
}

fn consumed(node: &Node) -> Result<usize> {
    let partitions: Vec<String> = (0..PARTITIONS).map(|p| p.to_string()).collect();
    let mut args = vec![node.kafka.to_string(), TOPIC.into(), RECORDS.to_string()];
    args.extend(partitions);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = python("consume_partitions.py", &args)?;
    out.trim()
        .parse()
        .context("consume_partitions.py prints a count")
}

#[test]
fn a_node_with_few_open_files_serves_and_mirrors_every_partition() -> Result<()> {
    let limit = LIMIT.to_string();
    let source = Node::start(
        &NodeConfig::new()
            .persist("20ms")
            .segment_bytes(1024)
            .storage_entry("max_open_files", &limit),
    )?;
    create_topic(source.kafka, TOPIC, PARTITIONS, &[])?;
    let mirror = Node::start(
        &NodeConfig::linked_to(source.kafka)
            .persist("20ms")
            .segment_bytes(1024)
            .storage_entry("max_open_files", &limit),
    )?;
    let peaks = Peaks::watch(&[&source, &mirror])?;
    produce(source.kafka, TOPIC, RECORDS, "none", PARTITIONS, 0)?;
    wait_identical(source.kafka, mirror.kafka, TOPIC, PARTITIONS)?;
    let read = (consumed(&source)?, consumed(&mirror)?);
    let peaks = peaks.stop()?;

    assert_eq!(
        read,
        (RECORDS, RECORDS),
        "confluent-kafka read (source, mirror)"
    );
    for (node, peak) in [&source, &mirror].into_iter().zip(peaks) {
        let on_disk = segment_files(&node.data_dir);
        assert!(on_disk > 3 * LIMIT, "{on_disk} segment files on disk");
        assert!(peak > 0, "the sampler saw the node's files");
        assert!(
            peak <= LIMIT + SLACK,
            "{peak} segment files open at once, over the limit of {LIMIT} ({on_disk} on disk)"
        );
    }
    Ok(())
}
