//! The crash drill: an owner node is killed with SIGKILL under a steady acks=all producer,
//! its mirror fails over, and the failover report must not understate what was lost.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use shadowlink_tests::{free_port, python, shadowlink, Client, Link, Node, NodeConfig};

const TOPIC: &str = "a_rpo";
const PARTITIONS: i32 = 4;
/// Records per second: enough that every fetch response carries new data.
const RATE: u32 = 2000;

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

/// The steady producer, its stdout lines ("PARTITION OFFSET KEY TIME", one per
/// acknowledged record) arriving on the receiver.
fn start_producer(node: &Node, rate: u32) -> Result<(Child, Receiver<String>)> {
    let mut child = Client::Python
        .command(
            "produce_steady.py",
            &[
                &node.kafka.to_string(),
                TOPIC,
                "--rate",
                &rate.to_string(),
                "--partitions",
                &PARTITIONS.to_string(),
                "--seconds",
                "30",
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start the producer")?;
    let stdout = child.stdout.take().context("stdout is piped")?;
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok((child, rx))
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

fn count(acked: &Acked) -> usize {
    acked.values().map(BTreeMap::len).sum()
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
        "dump.py",
        &[
            "confluent",
            &node.kafka.to_string(),
            TOPIC,
            &PARTITIONS.to_string(),
            &expected.to_string(),
        ],
    )?;
    let mut keys: BTreeMap<i32, BTreeSet<String>> = BTreeMap::new();
    for line in out.lines() {
        let record: Value = serde_json::from_str(line)?;
        let hex = record["key"].as_str().context("a key")?;
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<Result<_, _>>()?;
        let partition = record["partition"].as_i64().context("a partition")? as i32;
        keys.entry(partition)
            .or_default()
            .insert(String::from_utf8(bytes)?);
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
}

/// Owner and mirror, a steady producer at `rate` records/s for two seconds, kill -9 of
/// the owner, failover of the mirror; then what the mirror lacks of what was acknowledged.
fn drill(rate: u32) -> Result<Drill> {
    let port_a = free_port();
    let mut a = Node::start(&owner_config(port_a))?;
    let b = Node::start(&mirror_config(port_a))?;
    let (mut producer, lines) = start_producer(&a, rate)?;
    let mut acked = Acked::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&acked) < 2 * rate as usize {
        ensure!(Instant::now() < deadline, "the producer is too slow");
        let line = lines.recv_timeout(Duration::from_secs(10))?;
        note(&mut acked, &line)?;
    }
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
    let _ = producer.kill();
    let _ = producer.wait();

    let mirrored: i64 = rows.values().map(|r| r.next_offset).sum();
    let on_b = keys_on(&b, mirrored)?;
    let mut drill = Drill {
        report,
        rows,
        total_max,
        lost: BTreeMap::new(),
        known_established: BTreeSet::new(),
        oldest_lost_age: None,
    };
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
            "{TOPIC}-{partition}: lost below the mirrored end: {lost:?}"
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
    Ok(drill)
}

fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[test]
fn a_crash_failover_report_bounds_the_acknowledged_records_lost() -> Result<()> {
    let d = drill(RATE)?;
    let report = &d.report;
    println!("{report}");
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

/// The crash-RPO benchmark: the drill repeated at several rates, printing min / median /
/// max of what was lost and what the report estimated. Rates (records/s of 100-byte
/// values) from `SHADOWLINK_RPO_RATES` (default `2000,10000`), runs per rate from
/// `SHADOWLINK_RPO_RUNS` (default 10).
#[test]
#[ignore = "a benchmark: cargo test -p shadowlink-tests --test rpo -- --ignored --nocapture"]
fn crash_rpo_benchmark() -> Result<()> {
    let rates = std::env::var("SHADOWLINK_RPO_RATES").unwrap_or_else(|_| "2000,10000".into());
    let runs: usize = std::env::var("SHADOWLINK_RPO_RUNS").map_or(Ok(10), |r| r.parse())?;
    let mut table = vec![
        "| records/s | runs | acknowledged lost | known at risk | upper estimate | oldest lost ack before the kill (ms), runs with loss |".to_string(),
        "|---|---|---|---|---|---|".to_string(),
    ];
    for rate in rates.split(',') {
        let rate: u32 = rate.trim().parse()?;
        let (mut lost, mut known, mut max, mut age) = (vec![], vec![], vec![], vec![]);
        for _ in 0..runs {
            let d = drill(rate)?;
            let total_lost: i64 = d.lost.values().sum();
            assert!(total_lost <= d.total_max, "{}", d.report);
            lost.push(total_lost);
            known.push(d.rows.values().map(|r| r.known_at_risk).sum::<i64>());
            max.push(d.total_max);
            // An acknowledgement handled after the kill was on the wire as A died.
            age.extend(d.oldest_lost_age.map(|a| (a * 1000.0).max(0.0)));
        }
        let n = |v: i64| v.to_string();
        table.push(format!(
            "| {rate} | {runs} | {} | {} | {} | {} |",
            spread(lost, n),
            spread(known, n),
            spread(max, n),
            spread(age, |a| format!("{a:.1}")),
        ));
    }
    println!("{}", table.join("\n"));
    Ok(())
}
