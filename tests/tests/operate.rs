//! Operating a node: the admin listener (`/metrics`, `/v1/status`, `/healthz`, `/readyz`),
//! `shadowlink status`, `shadowlink check-config`, first-sync progress, SIGTERM, and the
//! Grafana dashboard in deploy/, all against a real tansu source.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use shadowlink_tests::scenario::{create_topic, produce, wait_identical};
use shadowlink_tests::{
    check_config, eventually, http_get as get, python, shadowlink, shadowlink_command, until,
    workspace_root, Node, NodeConfig, Tansu,
};

/// [`NodeConfig::linked_to`] plus an admin listener on a free port.
fn admin_config(source: SocketAddr) -> NodeConfig {
    NodeConfig::linked_to(source).admin()
}

fn admin(node: &Node) -> Result<SocketAddr> {
    node.admin
        .context("the node did not print its admin address")
}

fn status_json(node: &Node) -> Result<Value> {
    let (code, body) = get(admin(node)?, "/v1/status")?;
    if code != 200 {
        bail!("/v1/status answered {code}: {body}");
    }
    Ok(serde_json::from_str(&body)?)
}

/// The value of the first sample of `name` whose labels include every `labels` pair.
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        let matches = labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")));
        matches.then(|| value.trim().parse().ok()).flatten()
    })
}

/// The names of every sample a `/metrics` text exposes.
fn exported_names(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// Every `shadowlink_*` identifier in any string of a JSON document.
fn metric_names_in(value: &Value, into: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(at) = rest.find("shadowlink_") {
                let tail = &rest[at..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                into.insert(tail[..end].to_string());
                rest = &tail[end..];
            }
        }
        Value::Array(items) => items.iter().for_each(|v| metric_names_in(v, into)),
        Value::Object(map) => map.values().for_each(|v| metric_names_in(v, into)),
        _ => {}
    }
}

/// One node mirroring a topic: every admin endpoint, both status formats, and the metrics
/// the dashboard in deploy/ is built on.
#[test]
fn admin_endpoints_status_command_and_dashboard_metrics() -> Result<()> {
    let source = Tansu::start()?;
    create_topic(source.addr, "a_orders", 3, &[])?;
    produce(source.addr, "a_orders", 300, "lz4", 3, 0)?;
    let node = Node::start(&admin_config(source.addr))?;
    let addr = admin(&node)?;
    wait_identical(source.addr, node.kafka, "a_orders", 3)?;
    assert_eq!(get(addr, "/healthz")?.0, 200);
    until(
        Duration::from_secs(30),
        || get(addr, "/readyz"),
        |(code, _)| *code == 200,
    )?;
    // A Kafka client reads the mirror: the listener's request counters are wired by
    // its owner; the gauge and counters exist either way.
    python(
        "consume.py",
        &[
            &node.kafka.to_string(),
            "a_orders",
            "300",
            "--partitions",
            "3",
        ],
    )?;

    let status = eventually(Duration::from_secs(30), || {
        let s = status_json(&node)?;
        let lags: Vec<i64> = s["links"][0]["topics"][0]["partitions"]
            .as_array()
            .context("partitions")?
            .iter()
            .filter_map(|p| p["lag"].as_i64())
            .collect();
        Ok((lags == [0, 0, 0]).then_some(s))
    })?;
    let link = &status["links"][0];
    assert_eq!(link["name"], "from-a");
    assert_eq!(link["state"], "connected");
    assert_eq!(link["source"][0], source.addr.to_string());
    let topic = &link["topics"][0];
    assert_eq!(topic["name"], "a_orders");
    assert_eq!(topic["state"], "active");
    let mut total = 0;
    for p in topic["partitions"].as_array().context("partitions")? {
        assert_eq!(p["src_lso"], p["dst_hwm"], "{p}");
        assert_eq!(p["src_hwm"], p["dst_hwm"], "{p}");
        assert_eq!(p["lag_seconds"], 0.0, "{p}");
        total += p["dst_hwm"].as_i64().context("dst_hwm")?;
    }
    assert_eq!(total, 300);
    assert_eq!(status["ready"], true);

    let text = shadowlink(&["status", "--admin", &format!("http://{addr}")])?.stdout("status")?;
    println!("{text}");
    assert!(text.contains("LINK    TOPIC     STATE   PARTITION  SRC_LSO  SRC_HWM  DST_HWM  LAG  LAG_SECONDS  LAST_ERROR"), "{text}");
    assert!(text.contains("from-a  connected"), "{text}");
    let rows = text
        .lines()
        .filter(|l| l.starts_with("from-a  a_orders  active"))
        .count();
    assert_eq!(rows, 3, "{text}");
    let json = shadowlink(&["status", "--admin", &addr.to_string(), "--format", "json"])?;
    let json: Value = serde_json::from_str(&json.stdout)?;
    assert_eq!(json["links"][0]["topics"][0]["name"], "a_orders");

    // A client connection held open while scraping shows in the connections gauge.
    let _held = shadowlink_tests::raw::RawClient::connect(node.kafka)?;
    let (code, metrics) = get(addr, "/metrics")?;
    assert_eq!(code, 200);
    let partition0 = [
        ("link", "from-a"),
        ("topic", "a_orders"),
        ("partition", "0"),
    ];
    assert_eq!(
        sample(&metrics, "shadowlink_shadow_lag", &partition0),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, "shadowlink_shadow_lag_seconds", &partition0),
        Some(0.0)
    );
    let from_a = [("link", "from-a")];
    assert_eq!(
        sample(&metrics, "shadowlink_records_written_total", &from_a),
        Some(300.0)
    );
    assert!(sample(&metrics, "shadowlink_bytes_written_total", &from_a) > Some(0.0));
    assert!(sample(&metrics, "shadowlink_bytes_fetched_total", &from_a) > Some(0.0));
    assert!(sample(&metrics, "shadowlink_fetch_duration_seconds_count", &from_a) > Some(0.0));
    assert!(
        sample(
            &metrics,
            "shadowlink_append_duration_seconds_count",
            &from_a
        ) > Some(0.0)
    );
    let active = [("topic", "a_orders"), ("state", "active")];
    assert_eq!(
        sample(&metrics, "shadowlink_topic_state", &active),
        Some(1.0)
    );
    let failed = [("topic", "a_orders"), ("state", "failed")];
    assert_eq!(
        sample(&metrics, "shadowlink_topic_state", &failed),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, "shadowlink_link_connected", &from_a),
        Some(1.0)
    );
    let timeouts = [("link", "from-a"), ("error", "timeout")];
    assert_eq!(
        sample(&metrics, "shadowlink_fetch_errors_total", &timeouts),
        Some(0.0)
    );
    assert!(sample(&metrics, "shadowlink_kafka_client_connections", &[]) >= Some(1.0));
    // wait_identical read the mirror with Fetch requests.
    assert!(
        sample(
            &metrics,
            "shadowlink_kafka_requests_total",
            &[("api", "Fetch")]
        ) > Some(0.0)
    );

    let path = workspace_root().join("deploy/grafana/shadowlink.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let mut used = BTreeSet::new();
    metric_names_in(&dashboard, &mut used);
    assert!(used.len() >= 10, "the dashboard uses only {used:?}");
    let exported = exported_names(&metrics);
    let missing: Vec<_> = used.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "the dashboard uses metrics the node does not export: {missing:?}"
    );
    Ok(())
}

/// A link whose source is down: not ready, the link reported lost with its error, and
/// the status table says so.
#[test]
fn readyz_and_status_report_an_unreachable_source() -> Result<()> {
    let nowhere: SocketAddr = format!("127.0.0.1:{}", shadowlink_tests::free_port()).parse()?;
    let node = Node::start(&admin_config(nowhere))?;
    let addr = admin(&node)?;
    assert_eq!(get(addr, "/healthz")?.0, 200);
    let body = eventually(Duration::from_secs(30), || {
        let (code, body) = get(addr, "/readyz")?;
        Ok((code == 503 && body.contains("link from-a is lost")).then_some(body))
    })?;
    assert!(body.starts_with("not ready"), "{body}");
    let status = status_json(&node)?;
    let error = status["links"][0]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains(&nowhere.to_string()), "{status}");
    let text = shadowlink(&["status", "--admin", &addr.to_string()])?.stdout;
    assert!(text.contains("NOT READY"), "{text}");
    assert!(text.contains("from-a  lost"), "{text}");
    let (_, metrics) = get(addr, "/metrics")?;
    assert_eq!(
        sample(&metrics, "shadowlink_link_connected", &[("link", "from-a")]),
        Some(0.0)
    );
    assert!(node.process.logged(&["link lost", "from-a"]));
    Ok(())
}

/// `shadowlink status` without a node to ask fails with a message naming the URL.
#[test]
fn status_without_a_node_names_the_url() -> Result<()> {
    let port = shadowlink_tests::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let out = shadowlink(&["status", "--admin", &url])?;
    assert!(!out.success());
    assert!(
        out.stderr.contains(&format!("cannot read {url}/v1/status")),
        "{}",
        out.stderr
    );
    Ok(())
}

/// A first sync slowed to one small batch per fetch logs its progress, shows it in
/// status, and logs its end; a small topic on the same broker is not starved meanwhile.
#[test]
fn first_sync_reports_progress_in_logs_and_status() -> Result<()> {
    let source = Tansu::start()?;
    create_topic(source.addr, "a_big", 1, &[])?;
    create_topic(source.addr, "a_small", 1, &[])?;
    produce(source.addr, "a_small", 50, "none", 1, 0)?;
    // One record per batch and one batch per fetch: thousands of round trips to copy.
    let acked = python(
        "produce.py",
        &[
            &source.addr.to_string(),
            "a_big",
            "3000",
            "--batch-size",
            "1",
        ],
    )?;
    assert_eq!(acked.trim(), "3000");
    let config = admin_config(source.addr).link(|l| {
        l.progress_interval(Duration::from_millis(100))
            .fetch_max_bytes(1024)
            .partition_max_bytes(1024)
    });
    let node = Node::start(&config)?;
    let (mut seen_syncing, mut small_done_during_sync) = (false, false);
    eventually(Duration::from_secs(120), || {
        let s = status_json(&node)?;
        let topics = s["links"][0]["topics"].as_array().context("topics")?;
        let named = |name: &str| topics.iter().find(|t| t["name"] == name).cloned();
        let (Some(big), Some(small)) = (named("a_big"), named("a_small")) else {
            return Ok(None);
        };
        if big["state"] == "syncing" {
            let percent = big["sync"]["percent"].as_f64().context("percent")?;
            assert!((0.0..100.0).contains(&percent), "{big}");
            seen_syncing = true;
            small_done_during_sync |= small["partitions"][0]["lag"] == 0;
        }
        Ok((big["state"] == "active" && big["partitions"][0]["lag"] == 0).then_some(()))
    })?;
    assert!(seen_syncing, "the sync ended before status could show it");
    // Fetch requests rotate their partition order; in a fixed order, a_big would take
    // every response up to fetch_max_bytes until its sync ended.
    assert!(small_done_during_sync, "a_small waited for a_big's sync");
    assert!(node
        .process
        .logged(&["initial sync progress", "a_big", "percent", "eta"]));
    assert!(node.process.logged(&["initial sync complete", "a_big"]));
    wait_identical(source.addr, node.kafka, "a_big", 1)
}

/// SIGTERM: the node stops fetching, flushes, exits 0; a restart resumes where it ended.
#[test]
fn sigterm_exits_zero_and_a_restart_resumes() -> Result<()> {
    let source = Tansu::start()?;
    create_topic(source.addr, "a_events", 2, &[])?;
    produce(source.addr, "a_events", 400, "zstd", 2, 0)?;
    let mut node = Node::start(&admin_config(source.addr))?;
    wait_identical(source.addr, node.kafka, "a_events", 2)?;
    let exit = node.process.terminate(Duration::from_secs(30))?;
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    assert!(node.process.logged(&["stopped cleanly"]));
    produce(source.addr, "a_events", 200, "zstd", 2, 400)?;
    node.restart()?;
    wait_identical(source.addr, node.kafka, "a_events", 2)?;
    // The restarted node went on from its own log end: it wrote only the new records.
    let (_, metrics) = get(admin(&node)?, "/metrics")?;
    let written = sample(
        &metrics,
        "shadowlink_records_written_total",
        &[("link", "from-a")],
    );
    assert_eq!(written, Some(200.0));
    Ok(())
}

/// check-config stops on bad files with the key at fault, and accepts the deploy examples.
#[test]
fn check_config_names_the_key_at_fault() -> Result<()> {
    let good = || admin_config("127.0.0.1:9092".parse().expect("an address"));
    let at_x = |config: NodeConfig| config.render(Some(Path::new("/tmp/x")));
    let cases = [
        (at_x(good().admin_listen("localhost")), "admin.listen"),
        (
            at_x(good().link(|l| l.entry("metadata_intervall", "\"300ms\""))),
            "metadata_intervall",
        ),
        (at_x(good().persist("sometimes")), "storage.persist"),
        (
            at_x(good().request_memory_bytes(64 * 1024 * 1024)),
            "kafka.request_memory_bytes",
        ),
        (at_x(good().link(|l| l.include(&[]))), "links[0].include"),
        (
            at_x(good().link(|l| l.fetches_in_flight(0))),
            "links[0].fetches_in_flight",
        ),
        (
            at_x(good().link(|l| l.progress_interval(Duration::from_millis(1)))),
            "links[0].progress_interval",
        ),
        (
            at_x(good().storage_entry("segment_bytes", "\"big\"")),
            "`storage.segment_bytes`: invalid type",
        ),
        (good().render(None), "data_dir"),
    ];
    assert!(check_config(&at_x(good()))?.success(), "the base case");
    for (i, (text, key)) in cases.iter().enumerate() {
        let out = check_config(text)?;
        assert!(!out.success(), "case {i} was accepted");
        assert!(
            out.stderr.contains(key),
            "case {i}: {key} not named in {}",
            out.stderr
        );
    }
    for example in ["region-a.toml", "region-b.toml"] {
        check_deploy_example(example)?;
    }
    Ok(())
}

/// A deploy example passes check-config once the secrets it names under /etc/shadowlink
/// exist (a certificate made here, a token, a users file, the link's CA and password),
/// and fails while they are missing: the examples need TLS, SASL and an admin token.
fn check_deploy_example(example: &str) -> Result<()> {
    let text = std::fs::read_to_string(workspace_root().join("deploy").join(example))?;
    let missing = check_config(&text)?;
    assert!(!missing.success(), "{example} passed without its secrets");
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("tls"))?;
    let certified = rcgen::generate_simple_self_signed(vec!["shadowlink.internal".to_string()])?;
    std::fs::write(dir.path().join("tls/shadowlink.crt"), certified.cert.pem())?;
    std::fs::write(
        dir.path().join("tls/shadowlink.key"),
        certified.signing_key.serialize_pem(),
    )?;
    std::fs::write(dir.path().join("admin-token"), "0b7e2f4c9a1d6e83\n")?;
    for other in ["a", "b"] {
        let ca = dir.path().join(format!("tls/region-{other}-ca.crt"));
        std::fs::write(ca, certified.cert.pem())?;
        let password = dir.path().join(format!("region-{other}-password"));
        std::fs::write(password, "link-secret\n")?;
    }
    let users = dir.path().join("users.json");
    let added = shadowlink_command(&["user", "add", "--user", "app", "--password-env", "PW"])
        .arg("--file")
        .arg(&users)
        .env("PW", "app-secret")
        .output()?;
    assert!(added.status.success(), "user add: {added:?}");
    let here = format!("{}/", dir.path().display());
    let out = check_config(&text.replace("/etc/shadowlink/", &here))?;
    assert!(out.success(), "{example}: {}", out.stderr);
    Ok(())
}

/// Every setting the test config builder can render is one the daemon accepts, so the
/// tests that use them run the config they name.
#[test]
fn every_setting_of_the_test_config_builder_passes_check_config() -> Result<()> {
    let source: SocketAddr = "127.0.0.1:9092".parse()?;
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, "t0ken")?;
    let config = NodeConfig::linked_to(source)
        .listen("127.0.0.1:0")
        .listener_name("internal")
        .add_listener(shadowlink_tests::Listener::new("local").advertised("localhost:9193"))
        .max_connections(3)
        .idle_timeout(Duration::from_secs(2))
        .max_partitions_per_request(10)
        .max_request_bytes(4096)
        .request_memory_bytes(8192)
        .fetch_session_slots(5)
        .admin()
        .admin_token_file(&token_file)
        .persist("always")
        .segment_bytes(2048)
        .retention_interval(Duration::from_millis(200))
        .max_partitions(15)
        .fault_fsync_delay(Duration::from_millis(1))
        .offsets_retention(Duration::from_secs(2))
        .group_retention_check_interval(Duration::from_millis(100))
        .topic("b_owned", 2)
        .link(|l| {
            l.start("latest")
                .groups(&["bill*"])
                .group_interval(Duration::from_millis(300))
                .mirror_schemas(true)
                .fetch_max_bytes(1024)
                .partition_max_bytes(1024)
                .fetches_in_flight(2)
                .fetch_sessions(false)
                .progress_interval(Duration::from_millis(100))
        });
    let out = check_config(&config.render(Some(Path::new("/tmp/x"))))?;
    assert!(out.success(), "{}", out.stderr);
    Ok(())
}

/// `--log-format json`: every stderr line is one JSON object, and events carry their
/// fields (here the link lost with its error).
#[test]
fn json_logs_are_one_object_per_line_with_event_fields() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let nowhere: SocketAddr = format!("127.0.0.1:{}", shadowlink_tests::free_port()).parse()?;
    let data_dir = dir.path().join("data");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        NodeConfig::linked_to(nowhere).render(Some(&data_dir)),
    )?;
    let mut child = shadowlink_command(&["--log-format", "json", "run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("stderr is piped")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let found = (|| -> Result<Value> {
        loop {
            let line = rx.recv_timeout(Duration::from_secs(30))?;
            let event: Value = serde_json::from_str(&line).context(line)?;
            if event["fields"]["message"] == "link lost" {
                return Ok(event);
            }
        }
    })();
    let _ = child.kill();
    let _ = child.wait();
    let event = found?;
    assert_eq!(event["level"], "WARN", "{event}");
    assert_eq!(event["fields"]["link"], "from-a", "{event}");
    let error = event["fields"]["error"].as_str().unwrap_or_default();
    assert!(error.contains(&nowhere.to_string()), "{event}");
    Ok(())
}
