//! Shared helpers for benchmarks.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

/// One timed pass of a variant: runs it once over its input and returns the time its
/// measured part took (set-up and tear-down excluded).
pub type Pass<'a> = Box<dyn FnMut() -> Duration + 'a>;

/// Runs the passes in turn, `rounds` times, so a machine busy with other work slows them
/// alike, and returns each one's median in bytes per second over `bytes` per pass.
pub fn interleaved_throughput(passes: &mut [Pass<'_>], rounds: usize, bytes: usize) -> Vec<f64> {
    let mut times = vec![Vec::with_capacity(rounds); passes.len()];
    for _ in 0..rounds {
        for (pass, times) in passes.iter_mut().zip(&mut times) {
            times.push(pass());
        }
    }
    times
        .iter_mut()
        .map(|t| {
            t.sort();
            bytes as f64 / t[t.len() / 2].as_secs_f64()
        })
        .collect()
}

/// Prints each variant's throughput, then `(name, over)` ratios of one variant's
/// throughput to another's.
pub fn print_summary(title: &str, names: &[&str], throughput: &[f64], ratios: &[(&str, &str)]) {
    let of = |name: &str| {
        let i = names.iter().position(|n| *n == name);
        throughput[i.unwrap_or_else(|| panic!("no variant {name}"))]
    };
    println!("\n{title}");
    for (name, t) in names.iter().zip(throughput) {
        println!("  {name:<28} {:7.3} GB/s", t / 1e9);
    }
    for (name, over) in ratios {
        println!("  {name} / {over} = {:.3}", of(name) / of(over));
    }
}

/// Whether the bench binary runs for real, not as `cargo test --benches` or `--list`.
pub fn measuring() -> bool {
    !std::env::args().any(|a| a == "--test" || a == "--list")
}

/// Criterion settings of these benches: `samples` samples over `measure` seconds, after
/// a second of warm-up. The summaries, not these, give the ratios.
pub fn criterion_config(samples: usize, measure: u64) -> criterion::Criterion {
    criterion::Criterion::default()
        .sample_size(samples)
        .measurement_time(Duration::from_secs(measure))
        .warm_up_time(Duration::from_secs(1))
}

/// A criterion bench binary's `main`: the benchmarks `group` registers, criterion's
/// closing report, then, when measuring, the interleaved `summary`.
pub fn bench_main(group: fn(), summary: fn()) {
    group();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
    if measuring() {
        summary();
    }
}

/// `uptime`'s load averages, for the record of how busy the machine was.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// User plus system CPU time of `pid` so far, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it are space-separated.
    let rest = stat.rsplit_once(')').context("no command name")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after ')'.
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / clock_ticks()?)
}

fn clock_ticks() -> Result<f64> {
    let out = Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

pub fn rss_mb(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    let kb: f64 = line
        .split_whitespace()
        .nth(1)
        .context("no VmRSS value")?
        .parse()?;
    Ok(kb / 1024.0)
}

/// Prints the command that reproduces this run and the machine it ran on.
pub fn print_command_and_machine() {
    let command: Vec<String> = std::env::args().collect();
    println!("command: {}", command.join(" "));
    println!("machine: {}", machine());
}

/// The CPU model, core count, memory and load when the run started.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .next()
        .unwrap_or("")
        .replace("MemTotal:", "")
        .trim()
        .to_string();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{model}, {cores} cores, {memory} memory, load average {}",
        load.trim()
    )
}

/// Writes and deletes a file a quarter larger than `bytes` under `dir`, so that the next
/// measured step draws on memory the guest has just freed. A virtual machine whose
/// balloon reports free pages to the host must fault pages freed more than about two
/// seconds earlier back in from the host, which slows a page-cache write by up to five
/// times; steps that each come right after this start from the same memory state.
pub fn free_recently(dir: &Path, bytes: u64) -> Result<()> {
    const CHUNK: usize = 1 << 20;
    let path = dir.join("scratch");
    let chunk = vec![0x5au8; CHUNK];
    let file = std::fs::File::create(&path)?;
    let size = bytes + bytes / 4;
    for at in (0..size).step_by(CHUNK) {
        let len = (size - at).min(CHUNK as u64) as usize;
        file.write_all_at(&chunk[..len], at)?;
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(())
}

/// Syncs, then drops every file under `path` from the page cache
/// (`posix_fadvise(DONTNEED)`), as if the host had needed the memory: the next reads come
/// from the disk.
pub fn evict_from_page_cache(path: &Path) -> Result<()> {
    rustix::fs::sync();
    evict_tree(path)
}

fn evict_tree(path: &Path) -> Result<()> {
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            evict_tree(&entry?.path())?;
        }
        return Ok(());
    }
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)?;
    Ok(())
}
