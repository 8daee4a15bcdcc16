//! The crash drill: an owner node is killed with SIGKILL under a steady acks=all producer,
//! its mirror fails over, and the failover report must not understate what was lost.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use shadowlink_tests::{free_port, python, shadowlink, Client, Link, Node, NodeConfig};

const TOPIC: &str = "a_rpo";
const PARTITIONS: i32 = 4;

/// What the producers write: `producers` processes of confluent-kafka, together
/// `bytes_per_second` of `value_bytes`-byte values (0: as fast as they can), for `seconds`
/// before the owner is killed.
#[derive(Debug, Clone, Copy)]
struct Load {
    bytes_per_second: u64,
    value_bytes: u64,
    producers: usize,
    seconds: f64,
}

/// The CI drill: 5 MB/s of 1 KiB values, enough that every fetch response carries new
/// data and a batch lands between any two of them.
const CI_LOAD: Load = Load {
    bytes_per_second: 5_000_000,
    value_bytes: 1024,
    producers: 1,
    seconds: 3.0,
};

fn owner_config(port: u16) -> NodeConfig {
    NodeConfig::new()
        .listen(format!("127.0.0.1:{port}"))
        .persist("os")
        .topic(TOPIC, PARTITIONS)
}

fn mirror_config(owner: u16) -> NodeConfig {
    NodeConfig::new().admin().persist("os").add_link(
        Link::new("from-a", format!("127.0.0.1:{owner}"))
            .include(&["a_*"])
            .metadata_interval(Duration::from_millis(300)),
    )
}

/// The steady producers, their stdout lines ("PARTITION OFFSET KEY TIME", one per
/// acknowledged record) arriving on one receiver. Each has its own key prefix.
fn start_producers(node: &Node, load: Load) -> Result<(Vec<Child>, Receiver<String>)> {
    let records_per_second = load.bytes_per_second as f64 / load.value_bytes as f64;
    let rate = (records_per_second / load.producers as f64).to_string();
    let (tx, rx) = channel();
    let mut children = Vec::new();
    for producer in 0..load.producers {
        let prefix = format!("p{producer}-");
        let args = [
            node.kafka.to_string(),
            TOPIC.to_string(),
            format!("--rate={rate}"),
            format!("--partitions={PARTITIONS}"),
            "--seconds=60".to_string(),
            format!("--key-prefix={prefix}"),
            format!("--value-bytes={}", load.value_bytes),
            "--compression=lz4".to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = Client::Python
            .command("produce_steady.py", &args)
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the producer")?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        children.push(child);
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    Ok((children, rx))
}

/// Acknowledged records by partition: offset to key and when the acknowledgement came.
type Acked = BTreeMap<i32, BTreeMap<i64, (String, f64)>>;

fn note(acked: &mut Acked, line: &str) -> Result<()> {
    let mut cells = line.split_whitespace();
    let (Some(p), Some(o), Some(k), Some(at)) =
        (cells.next(), cells.next(), cells.next(), cells.next())
    else {
        bail!("unexpected producer line {line:?}");
    };
    acked
        .entry(p.parse()?)
        .or_default()
        .insert(o.parse()?, (k.to_string(), at.parse()?));
    Ok(())
}

/// One partition's row of the failover report.
#[derive(Debug)]
struct Row {
    next_offset: i64,
    src_hwm: i64,
    known_at_risk: i64,
    at_risk_max: i64,
}

/// The report's rows by partition, and its total upper estimate.
fn parse_report(report: &str) -> Result<(BTreeMap<i32, Row>, i64)> {
    let mut rows = BTreeMap::new();
    for line in report.lines().filter(|l| l.starts_with(TOPIC)) {
        // TOPIC PARTITION STATE NEXT_OFFSET SRC_HWM RECORDS_AT_RISK SECONDS_AT_RISK
        // UNCONFIRMED_MS RECORDS_PER_SECOND RECORDS_AT_RISK_MAX
        let cells: Vec<&str> = line.split_whitespace().collect();
        ensure!(cells.len() == 10, "{report}");
        ensure!(cells[2] == "failed_over", "{report}");
        let number = |i: usize| -> Result<i64> {
            cells[i]
                .parse()
                .with_context(|| format!("column {i} of {line:?}"))
        };
        let row = Row {
            next_offset: number(3)?,
            src_hwm: number(4)?,
            known_at_risk: number(5)?,
            at_risk_max: number(9)?,
        };
        rows.insert(number(1)? as i32, row);
    }
    let total = report
        .lines()
        .find_map(|l| l.strip_prefix("total: "))
        .and_then(|l| l.split("at most ").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .context("the report has a total line")?
        .parse()?;
    Ok((rows, total))
}

/// Keys of every record on the node, by partition.
fn keys_on(node: &Node, expected: i64) -> Result<BTreeMap<i32, BTreeSet<String>>> {
    let out = python(
        "keys.py",
        &[
            &node.kafka.to_string(),
            TOPIC,
            &PARTITIONS.to_string(),
            &expected.to_string(),
        ],
    )?;
    let mut keys: BTreeMap<i32, BTreeSet<String>> = BTreeMap::new();
    for line in out.lines() {
        let mut cells = line.split_whitespace();
        let (Some(partition), Some(_offset), Some(key)) =
            (cells.next(), cells.next(), cells.next())
        else {
            bail!("unexpected keys.py line {line:?}");
        };
        keys.entry(partition.parse()?)
            .or_default()
            .insert(key.to_string());
    }
    Ok(keys)
}

/// The body of `GET path` on the admin listener.
fn get(admin: SocketAddr, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect(admin)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("an HTTP response")?;
    ensure!(head.starts_with("HTTP/1.1 200"), "{head}");
    Ok(body.to_string())
}

/// While the link is up, `/v1/status` and `/metrics` show each partition's blind window
/// and the upper estimate built on it.
fn check_live_bound(admin: SocketAddr) -> Result<()> {
    let status: Value = serde_json::from_str(&get(admin, "/v1/status")?)?;
    let partitions = status["links"][0]["topics"][0]["partitions"]
        .as_array()
        .context("partitions")?;
    ensure!(partitions.len() == PARTITIONS as usize, "{status}");
    for p in partitions {
        let u = &p["unconfirmed"];
        ensure!(u["seconds"].as_f64().is_some(), "{p}");
        ensure!(u["ends_at_loss"] == false, "{p}");
        ensure!(u["records_per_second"].as_f64() > Some(0.0), "{p}");
        ensure!(u["records_max"].as_i64() > Some(0), "{p}");
    }
    let metrics = get(admin, "/metrics")?;
    for partition in 0..PARTITIONS {
        let labels = format!("{{link=\"from-a\",partition=\"{partition}\",topic=\"{TOPIC}\"}}");
        for name in [
            "shadowlink_shadow_unconfirmed_seconds",
            "shadowlink_shadow_records_at_risk_max",
        ] {
            let series = format!("{name}{labels} ");
            ensure!(metrics.contains(&series), "no {series} in\n{metrics}");
        }
    }
    Ok(())
}

/// What one drill saw.
struct Drill {
    report: String,
    rows: BTreeMap<i32, Row>,
    /// The report's total upper estimate.
    total_max: i64,
    /// Acknowledged records missing on the mirror, by partition.
    lost: BTreeMap<i32, i64>,
    /// Partitions where every record the report knew at risk had been acknowledged, so
    /// each of them is a loss.
    known_established: BTreeSet<i32>,
    /// Seconds from the oldest lost acknowledgement to the kill.
    oldest_lost_age: Option<f64>,
    /// Value bytes acknowledged per second, from the first acknowledgement to the kill.
    achieved_bytes_per_second: f64,
}

/// Acknowledgements until `seconds` after the first one, which must come within 30 s.
fn produce_for(lines: &Receiver<String>, acked: &mut Acked, seconds: f64) -> Result<()> {
    let first = lines
        .recv_timeout(Duration::from_secs(30))
        .context("no acknowledgement within 30 s")?;
    note(acked, &first)?;
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => note(acked, &line)?,
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => bail!("the producers stopped"),
        }
    }
    Ok(())
}

/// Acknowledgements at or before `killed`: their count, the first's time and the newest's.
fn acked_before(acked: &Acked, killed: f64) -> (usize, f64, f64) {
    let times = acked.values().flat_map(|p| p.values().map(|(_, at)| *at));
    times
        .filter(|at| *at <= killed)
        .fold((0, f64::MAX, f64::MIN), |(n, first, last), at| {
            (n + 1, first.min(at), last.max(at))
        })
}

/// Owner and mirror, steady producers at `load` for its seconds, kill -9 of the owner,
/// failover of the mirror; then what the mirror lacks of what was acknowledged.
fn drill(load: Load) -> Result<Drill> {
    let port_a = free_port();
    let mut a = Node::start(&owner_config(port_a))?;
    let b = Node::start(&mirror_config(port_a))?;
    let (mut producers, lines) = start_producers(&a, load)?;
    let mut acked = Acked::new();
    produce_for(&lines, &mut acked, load.seconds)?;
    let admin = b.admin.context("admin listener")?;
    check_live_bound(admin)?;
    let killed = unix_seconds();
    a.process.kill9();
    let report = shadowlink(&[
        "failover",
        "--admin",
        &admin.to_string(),
        "--link",
        "from-a",
        "--all",
    ])?
    .stdout("failover")?;
    let (rows, total_max) = parse_report(&report)?;
    ensure!(rows.len() == PARTITIONS as usize, "{report}");
    // Every acknowledgement A sent before it died, however late it arrives.
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(15)) {
        note(&mut acked, &line)?;
    }
    for producer in &mut producers {
        let _ = producer.kill();
        let _ = producer.wait();
    }
    let (before_kill, first, _) = acked_before(&acked, killed);
    // The drill measures a crash under load: the producers were writing until A died.
    // A busy producer hands acknowledgements over late, so some come after the kill.
    let (_, _, newest) = acked_before(&acked, f64::MAX);
    ensure!(
        killed - newest < 0.5,
        "no acknowledgement in the {:.3} s before the kill",
        killed - newest
    );
    let value_bytes = before_kill as f64 * load.value_bytes as f64;
    let achieved_bytes_per_second = value_bytes / (killed - first).max(0.001);

    let mirrored: i64 = rows.values().map(|r| r.next_offset).sum();
    let on_b = keys_on(&b, mirrored)?;
    let mut drill = Drill {
        report,
        rows,
        total_max,
        lost: BTreeMap::new(),
        known_established: BTreeSet::new(),
        oldest_lost_age: None,
        achieved_bytes_per_second,
    };
    count_losses(&mut drill, &acked, &on_b, killed)?;
    Ok(drill)
}

/// Fills in what `drill` lost: the acknowledged records whose keys are not on the mirror.
fn count_losses(
    drill: &mut Drill,
    acked: &Acked,
    on_b: &BTreeMap<i32, BTreeSet<String>>,
    killed: f64,
) -> Result<()> {
    for (partition, row) in &drill.rows {
        let acked_here = acked.get(partition).cloned().unwrap_or_default();
        let present = on_b.get(partition).cloned().unwrap_or_default();
        let lost: Vec<(&i64, &(String, f64))> = acked_here
            .iter()
            .filter(|(_, (key, _))| !present.contains(key))
            .collect();
        // What B holds is a prefix of A: nothing below the mirrored end is missing.
        ensure!(
            lost.iter().all(|(offset, _)| **offset >= row.next_offset),
            "{TOPIC}-{partition}: lost below the mirrored end: {:?}",
            lost.iter().take(10).collect::<Vec<_>>()
        );
        for (_, (_, at)) in &lost {
            let age = killed - at;
            drill.oldest_lost_age = Some(drill.oldest_lost_age.map_or(age, |a| a.max(age)));
        }
        drill.lost.insert(*partition, lost.len() as i64);
        if (row.next_offset..row.src_hwm).all(|o| acked_here.contains_key(&o)) {
            drill.known_established.insert(*partition);
        }
    }
    Ok(())
}

fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn megabytes(bytes: f64) -> String {
    format!("{:.1}", bytes / 1e6)
}

#[test]
fn a_crash_failover_report_bounds_the_acknowledged_records_lost() -> Result<()> {
    let d = drill(CI_LOAD)?;
    let report = &d.report;
    println!("{report}");
    let acknowledged = d.achieved_bytes_per_second * CI_LOAD.seconds;
    println!(
        "producer: {} MB/s acknowledged before the kill",
        megabytes(d.achieved_bytes_per_second)
    );
    // A drill at a trickle would bound nothing worth bounding.
    assert!(
        acknowledged >= 1e6,
        "only {} MB acknowledged in {} s",
        megabytes(acknowledged),
        CI_LOAD.seconds
    );
    for (partition, row) in &d.rows {
        let lost = d.lost[partition];
        println!("{TOPIC}-{partition}: {lost} acknowledged records lost, report {row:?}");
        assert!(
            lost <= row.at_risk_max,
            "{TOPIC}-{partition}: {lost} lost, the report says at most {}\n{report}",
            row.at_risk_max
        );
        if d.known_established.contains(partition) {
            assert!(
                row.known_at_risk <= lost,
                "{TOPIC}-{partition}: {} known at risk, {lost} lost\n{report}",
                row.known_at_risk
            );
        }
    }
    let total_lost: i64 = d.lost.values().sum();
    println!(
        "total: {total_lost} acknowledged records lost, report says at most {}",
        d.total_max
    );
    assert!(total_lost <= d.total_max, "{report}");
    assert_eq!(
        d.total_max,
        d.rows.values().map(|r| r.at_risk_max).sum::<i64>(),
        "{report}"
    );
    Ok(())
}

/// min / median / max of `values`, formatted with `f`.
fn spread<T: Copy + PartialOrd>(mut values: Vec<T>, f: impl Fn(T) -> String) -> String {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    match (values.first(), values.get(values.len() / 2), values.last()) {
        (Some(&min), Some(&median), Some(&max)) => {
            format!("{} / {} / {}", f(min), f(median), f(max))
        }
        _ => "-".into(),
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// The machine a benchmark ran on: cores and load averages.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("nproc {cores}, load average {}", load.join(" "))
}

/// One row of the benchmark: `runs` drills at `load`, each asserting the report's upper
/// estimate covers the loss.
fn benchmark_row(label: &str, load: Load, runs: usize) -> Result<String> {
    let (mut lost, mut known, mut max, mut age, mut achieved) =
        (vec![], vec![], vec![], vec![], vec![]);
    for run in 0..runs {
        let d = drill(load)?;
        let total_lost: i64 = d.lost.values().sum();
        for (partition, row) in &d.rows {
            let lost = d.lost[partition];
            assert!(lost <= row.at_risk_max, "{TOPIC}-{partition}\n{}", d.report);
        }
        assert!(total_lost <= d.total_max, "{}", d.report);
        let known_total = d.rows.values().map(|r| r.known_at_risk).sum::<i64>();
        let summary = d.report.lines().find(|l| l.starts_with("total: "));
        println!(
            "{label} MB/s run {run}: {} MB/s acknowledged, {total_lost} lost, oldest lost {:?} s; report {}",
            megabytes(d.achieved_bytes_per_second),
            d.oldest_lost_age,
            summary.unwrap_or("without a total")
        );
        lost.push(total_lost);
        known.push(known_total);
        max.push(d.total_max);
        achieved.push(d.achieved_bytes_per_second);
        // An acknowledgement handled after the kill was on the wire as A died.
        age.extend(d.oldest_lost_age.map(|a| (a * 1000.0).max(0.0)));
    }
    let n = |v: i64| v.to_string();
    Ok(format!(
        "| {label} | {} | {runs} | {} | {} | {} | {} ({} with loss) |",
        spread(achieved, megabytes),
        spread(lost, n),
        spread(known, n),
        spread(max, n),
        spread(age.clone(), |a| format!("{a:.1}")),
        age.len(),
    ))
}

/// The crash-RPO benchmark: the drill repeated at several rates, printing min / median /
/// max of what was lost and what the report estimated. Rates in MB/s of 1 KiB values
/// from `SHADOWLINK_RPO_RATES` (default `20,80,max`; `max` is as fast as the producers
/// go), runs per rate from `SHADOWLINK_RPO_RUNS` (default 10), producer processes from
/// `SHADOWLINK_RPO_PRODUCERS` (default 2), seconds of load before the kill from
/// `SHADOWLINK_RPO_SECONDS` (default 3). `SHADOWLINK_BIN` selects the node binary.
#[test]
#[ignore = "a benchmark: cargo test -p shadowlink-tests --test rpo -- --ignored --nocapture"]
fn crash_rpo_benchmark() -> Result<()> {
    let rates = env_or("SHADOWLINK_RPO_RATES", "20,80,max");
    let runs: usize = env_or("SHADOWLINK_RPO_RUNS", "10").parse()?;
    let producers: usize = env_or("SHADOWLINK_RPO_PRODUCERS", "2").parse()?;
    let seconds: f64 = env_or("SHADOWLINK_RPO_SECONDS", "3").parse()?;
    let bin = shadowlink_tests::shadowlink_bin().display().to_string();
    println!(
        "SHADOWLINK_BIN={bin} SHADOWLINK_RPO_RATES={rates} SHADOWLINK_RPO_RUNS={runs} \
         SHADOWLINK_RPO_PRODUCERS={producers} SHADOWLINK_RPO_SECONDS={seconds} \
         cargo test -p shadowlink-tests --test rpo crash_rpo_benchmark -- --ignored --nocapture"
    );
    println!("machine at the start: {}", machine());
    let mut table = vec![
        "| target MB/s | achieved MB/s | runs | acknowledged records lost | known at risk | upper estimate | oldest lost ack before the kill (ms) |".to_string(),
        "|---|---|---|---|---|---|---|".to_string(),
    ];
    for rate in rates.split(',').map(str::trim) {
        let bytes_per_second = match rate {
            "max" => 0,
            mb => (mb.parse::<f64>()? * 1e6) as u64,
        };
        let load = Load {
            bytes_per_second,
            value_bytes: 1024,
            producers,
            seconds,
        };
        table.push(benchmark_row(rate, load, runs)?);
    }
    println!("machine at the end: {}", machine());
    println!("{}", table.join("\n"));
    Ok(())
}
