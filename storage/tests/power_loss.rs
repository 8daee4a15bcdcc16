//! Power loss on an owned log with `persist = "always"`, simulated on the files: a write
//! torn by the cut, or the active segment and its indexes cut at random positions with
//! random bytes flipped in their tails. Recovery must keep every valid batch, drop the
//! rest, never panic, and report what it dropped.
//!
//! Cases are drawn from a seeded PRNG: `SHADOWLINK_POWER_LOSS_SEED` replays a run,
//! `SHADOWLINK_POWER_LOSS_CASES` runs more (the long form).

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use shadowlink_protocol::batch::testing::build_batch;
use shadowlink_protocol::batch::BatchWalker;
use shadowlink_storage::{LogConfig, PartitionLog, PersistMode};

const DEFAULT_CASES: u64 = 200;
const DEFAULT_SEED: u64 = 0x5eed_d15c;

/// splitmix64: small, seedable, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn in_range(&mut self, r: Range<u64>) -> u64 {
        r.start + self.below(r.end - r.start)
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// A directory for one case, in memory when the machine has `/dev/shm`: the power cut
/// is simulated on the files, so real fsyncs would only make the run slower.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    match shm.is_dir() {
        true => tempfile::tempdir_in(shm).unwrap_or_else(|_| tempfile::tempdir().unwrap()),
        false => tempfile::tempdir().unwrap(),
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 128,
        persist: PersistMode::Always,
        ..LogConfig::default()
    }
}

/// What the power cut did to the active segment.
#[derive(Debug)]
enum Damage {
    /// An append in flight: part of a batch, and maybe garbage, after the last
    /// acknowledged batch. Nothing acknowledged may be lost.
    TornWrite { appended: usize },
    /// The file cut at `cut` and bytes flipped at `flips`: only what lies before the
    /// first damaged byte is sure to be intact.
    Cut { cut: usize, flips: Vec<usize> },
}

#[derive(Default)]
struct Totals {
    acknowledged: usize,
    torn_writes: usize,
    cuts: usize,
    batches_dropped: usize,
    bytes_dropped: u64,
}

#[test]
fn power_loss_keeps_every_valid_batch_and_reports_what_it_dropped() {
    let seed = env_u64("SHADOWLINK_POWER_LOSS_SEED").unwrap_or(DEFAULT_SEED);
    let cases = env_u64("SHADOWLINK_POWER_LOSS_CASES").unwrap_or(DEFAULT_CASES);
    eprintln!("power loss: {cases} cases from seed {seed:#x}");
    let mut totals = Totals::default();
    for case in 0..cases {
        let case_seed = seed.wrapping_add(case);
        run_case(case_seed, &mut totals);
    }
    eprintln!(
        "power loss: {cases} cases (seed {seed:#x}): {} batches acknowledged, {} torn writes \
         (acknowledged batches lost: 0), {} cut or flipped tails ({} batches and {} bytes \
         dropped, each reported)",
        totals.acknowledged,
        totals.torn_writes,
        totals.cuts,
        totals.batches_dropped,
        totals.bytes_dropped
    );
}

/// Appends random batches, damages the active segment and its indexes, reopens.
fn run_case(seed: u64, totals: &mut Totals) {
    let mut rng = Rng(seed);
    let dir = scratch_dir();
    let written = fill(dir.path(), &mut rng);
    totals.acknowledged += written.len();
    let active = active_segment(dir.path());
    let active_base = segment_base(&active);
    let sealed: Vec<&Bytes> = written
        .iter()
        .filter(|(base, _)| *base < active_base)
        .map(|(_, b)| b)
        .collect();
    let in_active: Vec<&Bytes> = written
        .iter()
        .filter(|(base, _)| *base >= active_base)
        .map(|(_, b)| b)
        .collect();
    let damage = damage_log(&active, &mut rng);
    damage_index(&active.with_extension("index"), &mut rng);
    damage_index(&active.with_extension("timeindex"), &mut rng);
    let disk = fs::read(&active).unwrap();

    let log = PartitionLog::open(dir.path(), config())
        .unwrap_or_else(|e| panic!("seed {seed:#x}: recovery failed: {e} ({damage:?})"));
    let all = read_all(&log);
    let sealed_len: usize = sealed.iter().map(|b| b.len()).sum();
    assert_eq!(
        all.slice(..sealed_len.min(all.len())),
        concat(&sealed.iter().map(|b| (*b).clone()).collect::<Vec<_>>()),
        "seed {seed:#x}: sealed segments changed"
    );
    let kept = all.slice(sealed_len..);
    let ends = boundaries(&in_active);
    check_kept(seed, &kept, &disk, &in_active, &ends, &damage);

    let recovered = log.recovered();
    let dropped = (disk.len() - kept.len()) as u64;
    assert_eq!(
        recovered.dropped_bytes, dropped,
        "seed {seed:#x}: reported {recovered:?}, dropped {dropped} bytes ({damage:?})"
    );
    assert_eq!(recovered.dropped_anything(), dropped > 0, "seed {seed:#x}");
    let kept_batches = ends.iter().filter(|&&e| e > 0 && e <= kept.len()).count();
    match damage {
        Damage::TornWrite { .. } => totals.torn_writes += 1,
        Damage::Cut { .. } => {
            totals.cuts += 1;
            totals.batches_dropped += in_active.len() - kept_batches;
        }
    }
    totals.bytes_dropped += dropped;
    check_usable(seed, dir.path(), log);
}

/// 10 to 60 batches of 1 to 4 records of random sizes, each acknowledged (fsynced)
/// before the next: (base offset, bytes).
fn fill(dir: &Path, rng: &mut Rng) -> Vec<(i64, Bytes)> {
    let mut log = PartitionLog::open(dir, config()).unwrap();
    let count = rng.in_range(10..61);
    let mut written = Vec::new();
    for i in 0..count {
        let values: Vec<Vec<u8>> = (0..rng.in_range(1..5))
            .map(|_| {
                let len = rng.in_range(1..300) as usize;
                (0..len).map(|_| rng.next() as u8).collect()
            })
            .collect();
        let records: Vec<_> = values.iter().map(|v| (None, Some(v.as_slice()))).collect();
        let base = log.log_end_offset();
        let batch = build_batch(base, 3, &records, 1_700_000_000_000 + i as i64);
        log.append(batch.clone()).unwrap();
        written.push((base, batch));
    }
    written
}

fn segment_base(path: &Path) -> i64 {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap();
    stem.parse().unwrap()
}

/// The `.log` file with the highest base offset.
fn active_segment(dir: &Path) -> PathBuf {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .max_by_key(|p| segment_base(p))
        .unwrap()
}

fn damage_log(path: &Path, rng: &mut Rng) -> Damage {
    let mut data = fs::read(path).unwrap();
    if rng.chance(3) {
        // A batch half written when the power went, sometimes followed by garbage from
        // blocks the file system had allocated.
        let torn = build_batch(1 << 40, 3, &[(None, Some(&[7u8; 200][..]))], 0);
        let mut tail = torn[..rng.in_range(1..torn.len() as u64) as usize].to_vec();
        if rng.chance(2) {
            tail.extend((0..rng.in_range(1..512)).map(|_| rng.next() as u8));
        }
        OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(&tail)
            .unwrap();
        return Damage::TornWrite {
            appended: tail.len(),
        };
    }
    let cut = match rng.chance(4) {
        true => data.len(),
        false => rng.below(data.len() as u64 + 1) as usize,
    };
    data.truncate(cut);
    let mut flips = Vec::new();
    if !data.is_empty() {
        let tail = data.len().min(600);
        for _ in 0..rng.in_range(0..4) {
            let at = data.len() - tail + rng.below(tail as u64) as usize;
            data[at] ^= 1 << rng.below(8);
            flips.push(at);
        }
    }
    fs::write(path, &data).unwrap();
    Damage::Cut { cut, flips }
}

/// Cuts an index file at a random position, or flips bytes in its tail, or leaves it.
fn damage_index(path: &Path, rng: &mut Rng) {
    let Ok(mut data) = fs::read(path) else {
        return;
    };
    match rng.below(3) {
        0 => data.truncate(rng.below(data.len() as u64 + 1) as usize),
        1 if !data.is_empty() => {
            let tail = data.len().min(64);
            let at = data.len() - tail + rng.below(tail as u64) as usize;
            data[at] ^= 1 << rng.below(8);
        }
        _ => return,
    }
    fs::write(path, &data).unwrap();
}

/// End positions of each batch of the active segment as written.
fn boundaries(batches: &[&Bytes]) -> Vec<usize> {
    batches
        .iter()
        .scan(0, |end, b| {
            *end += b.len();
            Some(*end)
        })
        .collect()
}

/// Byte ranges of a v2 batch header that its CRC does not cover (base offset and
/// partition leader epoch): a flip there cannot be detected by any reader.
fn uncovered(i: usize) -> bool {
    i < 8 || (12..16).contains(&i)
}

fn check_kept(
    seed: u64,
    kept: &Bytes,
    disk: &[u8],
    written: &[&Bytes],
    ends: &[usize],
    damage: &Damage,
) {
    assert!(
        disk.starts_with(kept),
        "seed {seed:#x}: served bytes that are not on disk ({damage:?})"
    );
    assert!(
        kept.is_empty() || ends.contains(&kept.len()),
        "seed {seed:#x}: kept {} bytes, not a batch boundary ({damage:?})",
        kept.len()
    );
    let first_damage = match damage {
        Damage::TornWrite { .. } => usize::MAX,
        Damage::Cut { cut, flips } => flips.iter().copied().fold(*cut, usize::min),
    };
    let intact = ends.iter().copied().filter(|&e| e <= first_damage).max();
    assert!(
        kept.len() >= intact.unwrap_or(0),
        "seed {seed:#x}: valid batches dropped: kept {} bytes of {:?} intact ({damage:?})",
        kept.len(),
        intact
    );
    let mut start = 0;
    for (batch, &end) in written
        .iter()
        .zip(ends)
        .take_while(|(_, &e)| e <= kept.len())
    {
        let stored = &kept[start..end];
        let differ = (0..batch.len()).filter(|&i| stored[i] != batch[i]);
        assert!(
            differ.clone().all(uncovered),
            "seed {seed:#x}: a batch changed where its CRC covers it ({damage:?})"
        );
        start = end;
    }
    if let Damage::TornWrite { appended } = damage {
        assert_eq!(
            kept.len(),
            ends.last().copied().unwrap_or(0),
            "seed {seed:#x}: an acknowledged batch was lost to a torn write of {appended} bytes"
        );
    }
    for batch in BatchWalker::new(kept.clone()) {
        let batch = batch.unwrap_or_else(|e| panic!("seed {seed:#x}: kept {e}"));
        batch
            .validate_crc()
            .unwrap_or_else(|e| panic!("seed {seed:#x}: kept {e}"));
    }
}

/// The recovered log serves every batch by offset, takes appends, and reopens clean.
fn check_usable(seed: u64, dir: &Path, mut log: PartitionLog) {
    let start = log.log_start_offset();
    let end = log.log_end_offset();
    let mut offset = start;
    while offset < end {
        let read = log.read(offset, 1).unwrap();
        let first = read.chunks.first().expect("a batch at every stored offset");
        let batch = BatchWalker::new(first.clone()).next().unwrap().unwrap();
        // The batch holding `offset`, or the next one: a flipped base offset (which no
        // CRC covers) can leave a gap, as compaction does.
        assert!(
            offset <= batch.last_offset(),
            "seed {seed:#x}: read at {offset} returned {}",
            batch.base_offset()
        );
        offset = batch.next_offset();
    }
    log.append(batch(end, 2, 3, 1_800_000_000_000)).unwrap();
    drop(log);
    let log = PartitionLog::open(dir, config()).unwrap();
    assert_eq!(log.log_end_offset(), end + 2, "seed {seed:#x}");
    assert!(!log.recovered().dropped_anything(), "seed {seed:#x}");
}
