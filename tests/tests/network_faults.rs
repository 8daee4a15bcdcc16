//! The network between a node and its source, and between clients and the node, as a
//! fault-injecting proxy makes it: connections reset mid-response, a black hole, a long
//! partition, a byte flipped on the way. The source is a shadowlink node owning
//! `a_orders`, advertising the proxy, so every link connection crosses it; a producer
//! writes to the source directly with acks=all while the faults run.
//!
//! `SHADOWLINK_PARTITION_SECONDS` sets the length of the partition drill (30 s in CI).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use shadowlink_tests::proxy::{Faults, Flip, Proxy};
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::{padded_batch, wait_identical};
use shadowlink_tests::{eventually, free_port, http_get, python, status_json, Node, NodeConfig};

const TOPIC: &str = "a_orders";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// A source node behind a proxy, and a node mirroring it through the proxy.
struct Drill {
    source: Node,
    proxy: Proxy,
    mirror: Node,
}

impl Drill {
    fn start(link_bytes: i32) -> Result<Drill> {
        let port = free_port();
        let proxy = Proxy::start(format!("127.0.0.1:{port}").parse()?)?;
        let source = Node::start(
            &NodeConfig::owner()
                .listen(format!("127.0.0.1:{port}"))
                .advertised(proxy.addr)
                .topic(TOPIC, 1),
        )?;
        let mirror = Node::start(&NodeConfig::linked_to(proxy.addr).admin().link(|l| {
            l.request_timeout(REQUEST_TIMEOUT)
                .fetch_max_bytes(link_bytes)
                .partition_max_bytes(link_bytes)
        }))?;
        Ok(Drill {
            source,
            proxy,
            mirror,
        })
    }

    fn admin(&self) -> Result<SocketAddr> {
        self.mirror
            .admin
            .context("the mirror has an admin listener")
    }

    /// Waits until the mirror holds the whole source; the source must be quiet.
    fn wait_identical(&self) -> Result<()> {
        wait_identical(self.source.kafka, self.mirror.kafka, TOPIC, 1)
    }

    /// Waits until the mirror holds something, while the producer goes on.
    fn wait_mirroring(&self) -> Result<()> {
        eventually(Duration::from_secs(30), || {
            let end = RawClient::connect(self.mirror.kafka)?.list_offset(TOPIC, 0, -1)?;
            Ok((end > 0).then_some(()))
        })
    }
}

/// Writes 10-record batches to the source, with acks=all, until stopped; the source may
/// go away for a while (a failed request is not acknowledged, and is not retried).
struct Producer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<i64>>,
}

impl Producer {
    fn start(source: SocketAddr) -> Producer {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut client = None;
            let mut n = 0;
            while !stopped.load(Ordering::Relaxed) {
                n += 1;
                let sent = client
                    .take()
                    .map_or_else(|| RawClient::connect(source), Ok)
                    .and_then(|mut c| {
                        let answer = c.produce(TOPIC, 0, padded_batch(&format!("p{n}"), 10))?;
                        client = Some(c);
                        Ok(answer)
                    });
                match sent {
                    Ok((0, base)) => acked.push(base),
                    _ => std::thread::sleep(Duration::from_millis(100)),
                }
                // A steady trickle, not a flood: the drills are about the link.
                std::thread::sleep(Duration::from_millis(50));
            }
            acked
        });
        Producer { stop, thread }
    }

    /// Stops and returns the base offsets the source acknowledged.
    fn stop(self) -> Result<Vec<i64>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the producer thread panicked"))
    }
}

/// Every acknowledged batch is in the mirror, at its offset, with the source's bytes.
fn all_acknowledged_mirrored(drill: &Drill, acked: &[i64]) -> Result<()> {
    ensure!(!acked.is_empty(), "the producer got no acknowledgement");
    let mirrored: std::collections::BTreeMap<i64, Bytes> = RawClient::connect(drill.mirror.kafka)?
        .read_batches(TOPIC, 0, 0)?
        .into_iter()
        .collect();
    for base in acked {
        ensure!(
            mirrored.contains_key(base),
            "acknowledged batch at {base} missing"
        );
    }
    Ok(())
}

#[test]
fn replication_resumes_after_resets_mid_response_and_a_source_restart() -> Result<()> {
    let mut drill = Drill::start(8 * 1024)?;
    let producer = Producer::start(drill.source.kafka);
    drill.wait_mirroring()?;

    // Every connection dies with RST inside the response that crosses 40 kB.
    drill.proxy.update(|f| f.reset_after = Some(40_000));
    eventually(Duration::from_secs(60), || {
        Ok((drill.proxy.cut() >= 5).then_some(()))
    })?;
    // The source restarts (kill -9) while the resets go on.
    drill.source.restart()?;
    let after_restart = drill.proxy.cut();
    eventually(Duration::from_secs(60), || {
        Ok((drill.proxy.cut() >= after_restart + 5).then_some(()))
    })?;
    let acked = producer.stop()?;
    drill.wait_identical()?;
    all_acknowledged_mirrored(&drill, &acked)?;
    assert!(drill.mirror.process.logged(&["link connected"]));
    eprintln!(
        "resets: {} connections cut mid-response, one source restart, {} batches \
         acknowledged, all mirrored byte-identical",
        drill.proxy.cut(),
        acked.len()
    );
    Ok(())
}

#[test]
fn a_black_hole_is_reported_within_the_request_timeout_and_a_long_partition_loses_nothing(
) -> Result<()> {
    let partition = std::env::var("SHADOWLINK_PARTITION_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(30), Duration::from_secs);
    let drill = Drill::start(1024 * 1024)?;
    let admin = drill.admin()?;
    let producer = Producer::start(drill.source.kafka);
    drill.wait_mirroring()?;
    eventually(Duration::from_secs(10), || {
        Ok((http_get(admin, "/readyz")?.0 == 200).then_some(()))
    })?;

    drill.proxy.update(|f| f.black_hole = true);
    let cut = Instant::now();
    let body = eventually(Duration::from_secs(30), || {
        let (code, body) = http_get(admin, "/readyz")?;
        Ok((code == 503).then_some(body))
    })?;
    let detected = cut.elapsed();
    // One request timeout, the fetch's 500 ms long poll, and a second for the checks.
    let bound = REQUEST_TIMEOUT + Duration::from_millis(1500);
    assert!(
        detected <= bound,
        "detected after {detected:?}, bound {bound:?}"
    );
    assert!(
        body.contains("link from-a is lost") && body.contains("timed out"),
        "{body}"
    );

    // The partition lasts; the source keeps taking writes the mirror cannot see.
    std::thread::sleep(partition.saturating_sub(cut.elapsed()));
    let (code, body) = http_get(admin, "/readyz")?;
    assert_eq!(code, 503, "still cut off after {partition:?}: {body}");
    drill.proxy.heal();
    let healed = Instant::now();
    eventually(Duration::from_secs(60), || {
        Ok((http_get(admin, "/readyz")?.0 == 200).then_some(()))
    })?;
    let recovered = healed.elapsed();
    let acked = producer.stop()?;
    drill.wait_identical()?;
    all_acknowledged_mirrored(&drill, &acked)?;
    // No restart: the same process has been up since before the partition.
    let status = status_json(&drill.mirror)?;
    let uptime = status["uptime_seconds"].as_u64().unwrap_or(0);
    assert!(uptime >= partition.as_secs(), "uptime {uptime} s");
    eprintln!(
        "partition of {partition:?}: detected after {detected:?}, ready again {recovered:?} \
         after healing, {} batches acknowledged, all mirrored",
        acked.len()
    );
    Ok(())
}

#[test]
fn a_flipped_byte_is_never_stored_and_the_partition_recovers_by_itself() -> Result<()> {
    let drill = Drill::start(1024 * 1024)?;
    let mut source = RawClient::connect(drill.source.kafka)?;
    for n in 0..5 {
        assert_eq!(
            source
                .produce(TOPIC, 0, padded_batch(&format!("b{n}"), 10))?
                .0,
            0
        );
    }
    drill.wait_identical()?;

    drill
        .proxy
        .update(|f| f.flip = Some(Flip::Pattern(b"flip-me".to_vec())));
    let (code, damaged_at) = source.produce(TOPIC, 0, padded_batch("flip-me", 10))?;
    assert_eq!(code, 0);
    for n in 5..8 {
        assert_eq!(
            source
                .produce(TOPIC, 0, padded_batch(&format!("b{n}"), 10))?
                .0,
            0
        );
    }
    // The damaged copy was delivered once; the next fetch brings the batch intact and
    // everything after it.
    drill.wait_identical()?;
    assert_eq!(drill.proxy.flipped(), 1, "the byte was flipped on the way");
    let partition = format!("{TOPIC}-0");
    let offset = format!("offset {damaged_at}");
    assert!(drill
        .mirror
        .process
        .logged(&["corrupt batch fetched", &partition, &offset, "CRC"]));
    assert!(drill
        .mirror
        .process
        .logged(&["batch fetched intact after a corrupt copy"]));
    let status = status_json(&drill.mirror)?;
    let error = status["links"][0]["topics"][0]["partitions"][0]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains(&partition) && error.contains(&offset) && error.contains("CRC"),
        "{status}"
    );
    Ok(())
}

#[test]
fn a_consumer_reading_through_resets_sees_every_record_once() -> Result<()> {
    const RECORDS: usize = 4000;
    let port = free_port();
    let proxy = Proxy::start(format!("127.0.0.1:{port}").parse()?)?;
    let node = Node::start(
        &NodeConfig::owner()
            .listen(format!("127.0.0.1:{port}"))
            .advertised(proxy.addr)
            .topic("orders", 1),
    )?;
    python(
        "produce.py",
        &[
            &node.kafka.to_string(),
            "orders",
            &RECORDS.to_string(),
            "--value-bytes",
            "2000",
        ],
    )?;
    let direct = consume(node.kafka, RECORDS)?;

    // librdkafka fetches up to 1 MiB per partition: each connection carries about one
    // response, then is reset in the middle of the next.
    proxy.set(Faults {
        reset_after: Some(1_500_000),
        ..Faults::default()
    });
    let through = consume(proxy.addr, RECORDS)?;
    let cut = proxy.cut();
    assert!(cut >= 3, "only {cut} resets: they did not bite");
    let offsets: Vec<i64> = through.iter().map(|r| r.0).collect();
    let expected: Vec<i64> = (0..RECORDS as i64).collect();
    assert_eq!(offsets, expected, "no gap, no duplicate");
    assert_eq!(through, direct, "the same records as a direct read");
    eprintln!("consumer through resets: {cut} resets, {RECORDS} records, no gap, no duplicate");
    Ok(())
}

/// (offset, JSON line) of each record `consume.py` read from `orders`, in offset order.
fn consume(bootstrap: SocketAddr, expected: usize) -> Result<Vec<(i64, String)>> {
    let out = python(
        "consume.py",
        &[
            &bootstrap.to_string(),
            "orders",
            &expected.to_string(),
            "--dump",
        ],
    )?;
    out.lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line)?;
            let offset = record["offset"].as_i64().context("an offset")?;
            Ok((offset, line.to_string()))
        })
        .collect()
}

#[test]
fn latency_jitter_and_a_bandwidth_cap_slow_the_link_but_lose_nothing() -> Result<()> {
    let drill = Drill::start(64 * 1024)?;
    drill.proxy.set(Faults {
        latency: Duration::from_millis(40),
        jitter: Duration::from_millis(40),
        bandwidth: Some(256 * 1024),
        ..Faults::default()
    });
    let producer = Producer::start(drill.source.kafka);
    std::thread::sleep(Duration::from_secs(3));
    let acked = producer.stop()?;
    drill.wait_identical()?;
    all_acknowledged_mirrored(&drill, &acked)?;
    Ok(())
}
