//! The admin API's bearer token: failover and status refused without it, the health
//! probes open, the CLI sending it from a file or the environment, and a node that will
//! not expose an unprotected admin listener.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use shadowlink_tests::scenario::{create_topic, produce, wait_identical};
use shadowlink_tests::{check_config, shadowlink_command, Node, NodeConfig, Ran, Tansu};

const TOKEN: &str = "0b7e2f4c9a1d6e83";

/// A node mirroring `a_orders` from a tansu source, its admin API behind `token_file`.
fn protected_node(token_file: &Path) -> Result<(Tansu, Node, String)> {
    std::fs::write(token_file, format!("{TOKEN}\n"))?;
    let source = Tansu::start()?;
    create_topic(source.addr, "a_orders", 1, &[])?;
    produce(source.addr, "a_orders", 20, "none", 1, 0)?;
    let config = NodeConfig::linked_to(source.addr)
        .admin()
        .admin_token_file(token_file);
    let node = Node::start(&config)?;
    wait_identical(source.addr, node.kafka, "a_orders", 1)?;
    let admin = node.admin.context("the node has an admin listener")?;
    Ok((source, node, admin.to_string()))
}

/// `shadowlink ARGS` with `SHADOWLINK_ADMIN_TOKEN` set to `env_token` when given, and
/// never inherited from the test's own environment.
fn cli(args: &[&str], env_token: Option<&str>) -> Result<Ran> {
    let mut command = shadowlink_command(args);
    command.env_remove("SHADOWLINK_ADMIN_TOKEN");
    if let Some(token) = env_token {
        command.env("SHADOWLINK_ADMIN_TOKEN", token);
    }
    Ok(Ran::of(&mut command)?)
}

/// The state `/v1/status` reports for `a_orders`, read with the token.
fn topic_state(admin: &str) -> Result<String> {
    let out = cli(
        &["status", "--admin", admin, "--format", "json"],
        Some(TOKEN),
    )?;
    let status: Value = serde_json::from_str(&out.stdout("status")?)?;
    let state = status["links"][0]["topics"]
        .as_array()
        .context("topics")?
        .iter()
        .find(|t| t["name"] == "a_orders")
        .and_then(|t| t["state"].as_str())
        .context("a_orders in the status")?;
    Ok(state.to_string())
}

/// One HTTP/1.1 GET on the admin listener: the status code and the body.
fn get(admin: &str, path: &str, token: Option<&str>) -> Result<(u16, String)> {
    let addr: SocketAddr = admin.parse()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {admin}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split_whitespace()
        .nth(1)
        .context("a status line")?
        .parse()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// Runs `shadowlink ARGS` and waits for it to exit; one still running after `timeout`
/// (a node that started) is killed and reported as an error.
fn run_to_exit(args: &[&str], timeout: Duration) -> Result<Ran> {
    let mut child = shadowlink_command(args)
        .env_remove("SHADOWLINK_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + timeout;
    while child.try_wait()?.is_none() {
        if Instant::now() >= deadline {
            child.kill()?;
            let out = child.wait_with_output()?;
            bail!(
                "shadowlink {args:?} still runs after {timeout:?}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    Ok(Ran {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

#[test]
fn failover_needs_the_token_and_the_cli_sends_it_from_a_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("admin-token");
    let (_source, _node, admin) = protected_node(&token_file)?;
    let failover = ["failover", "--admin", &admin, "--link", "from-a", "--all"];

    let refused = cli(&failover, None)?;
    assert!(!refused.success(), "failover without a token succeeded");
    assert!(refused.stderr.contains("401"), "{}", refused.stderr);
    let wrong = dir.path().join("wrong-token");
    std::fs::write(&wrong, "not-the-token")?;
    let wrong = wrong.to_str().context("utf-8 path")?;
    let refused = cli(&[&failover[..], &["--token-file", wrong]].concat(), None)?;
    assert!(refused.stderr.contains("401"), "{}", refused.stderr);
    assert_eq!(topic_state(&admin)?, "active", "nothing failed over");

    let token_file = token_file.to_str().context("utf-8 path")?;
    let done = cli(
        &[&failover[..], &["--token-file", token_file]].concat(),
        None,
    )?;
    let report = done.stdout("failover with --token-file")?;
    assert!(report.contains("failed_over"), "{report}");
    assert_eq!(topic_state(&admin)?, "failed_over");
    Ok(())
}

#[test]
fn status_with_a_wrong_token_is_refused_and_health_probes_stay_open() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (_source, _node, admin) = protected_node(&dir.path().join("admin-token"))?;

    let refused = cli(&["status", "--admin", &admin], Some("guess"))?;
    assert!(!refused.success(), "status with a wrong token succeeded");
    assert!(refused.stderr.contains("401"), "{}", refused.stderr);
    let shown = cli(&["status", "--admin", &admin], Some(TOKEN))?.stdout("status")?;
    assert!(shown.contains("a_orders"), "{shown}");

    for path in ["/v1/status", "/metrics"] {
        let (code, body) = get(&admin, path, None)?;
        assert_eq!(code, 401, "{path}: {body}");
        let error: Value = serde_json::from_str(&body).context("a JSON error")?;
        assert_eq!(error["error"], "unauthorized", "{body}");
        assert_eq!(get(&admin, path, Some("guess"))?.0, 401, "{path}");
        assert_eq!(get(&admin, path, Some(TOKEN))?.0, 200, "{path}");
    }
    let (code, body) = get(&admin, "/healthz", None)?;
    assert_eq!((code, body.trim()), (200, "ok"));
    let (code, body) = get(&admin, "/readyz", None)?;
    assert!(code == 200 || code == 503, "{code}: {body}");
    assert!(body.contains("ready"), "{body}");
    Ok(())
}

#[test]
fn an_exposed_admin_listener_without_a_token_stops_the_node_at_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("shadowlink.toml");
    let exposed = NodeConfig::owner().admin_listen("0.0.0.0:0");
    std::fs::write(&config_path, exposed.render(Some(&dir.path().join("data"))))?;
    let config = config_path.to_str().context("utf-8 path")?;
    let out = run_to_exit(&["run", "--config", config], Duration::from_secs(30))?;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr.contains("`admin.listen`") && out.stderr.contains("admin.token_file"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("shadowlink kafka="), "{}", out.stdout);

    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, TOKEN)?;
    let protected = exposed.admin_token_file(&token_file);
    let checked = check_config(&protected.render(Some(&dir.path().join("data"))))?;
    assert!(checked.success(), "{}", checked.stderr);
    Ok(())
}
