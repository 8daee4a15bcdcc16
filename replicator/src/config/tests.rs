//! The file format: the documented example, and errors that name their key.

use std::path::Path;
use std::time::Duration;

use super::*;

const GOOD: &str = r#"
data_dir = "data/b"
[kafka]
listen = "127.0.0.1:9192"
[admin]
listen = "127.0.0.1:9644"
[[links]]
name = "from-a"
bootstrap = ["127.0.0.1:9092"]
include = ["a_*"]
exclude = ["a_scratch"]
start = "earliest"
"#;

#[test]
fn parses_the_documented_example() {
    let c = Config::parse(GOOD).unwrap();
    assert_eq!(c.advertised(), "127.0.0.1:9192");
    let links = c.links();
    assert_eq!(links.len(), 1);
    assert!(links[0].filter.matches("a_orders"));
    assert!(!links[0].filter.matches("a_scratch"));
    assert_eq!(links[0].config.metadata_interval, Duration::from_secs(10));
}

fn err_of(text: &str) -> String {
    Config::parse(text).unwrap_err().to_string()
}

#[test]
fn unknown_key_is_named() {
    let e = err_of(&GOOD.replace("start = ", "strat = \"x\"\nstart = "));
    assert!(e.contains("strat"), "{e}");
}

#[test]
fn bad_values_name_their_key() {
    let e = err_of(&GOOD.replace("\"earliest\"", "\"middle\""));
    assert!(e.contains("start") || e.contains("middle"), "{e}");
    let e = err_of(&GOOD.replace("127.0.0.1:9192", "nowhere"));
    assert!(e.contains("kafka.listen"), "{e}");
    let e = err_of(&GOOD.replace("[\"127.0.0.1:9092\"]", "[]"));
    assert!(e.contains("links[0].bootstrap"), "{e}");
    let e = err_of(&GOOD.replace("[\"a_*\"]", "[\"a*b\"]"));
    assert!(e.contains("links[0].include[0]"), "{e}");
    let e = err_of(&format!("{GOOD}\n[storage]\npersist = \"sometimes\"\n"));
    assert!(e.contains("storage.persist"), "{e}");
}

#[test]
fn type_errors_and_unknown_keys_name_the_dotted_key() {
    let e = err_of(&format!("{GOOD}\n[storage]\nsegment_bytes = \"big\"\n"));
    assert!(
        e.starts_with("`storage.segment_bytes`: invalid type"),
        "{e}"
    );
    let second = GOOD
        .split("[[links]]")
        .nth(1)
        .unwrap()
        .replace("from-a", "from-c");
    let e = err_of(&format!(
        "{GOOD}\n[[links]]{second}fetch_max_bytes = \"x\"\n"
    ));
    assert!(e.starts_with("`links[1].fetch_max_bytes`"), "{e}");
    let e = err_of(&GOOD.replace("[admin]\nlisten", "[admin]\nlisen"));
    assert!(e.starts_with("`admin.lisen`: unknown field"), "{e}");
}

#[test]
fn an_owned_topic_a_link_mirrors_names_both() {
    let owned = "[[topics]]\nname = \"a_orders\"\npartitions = 3\n";
    let e = err_of(&format!("{GOOD}{owned}"));
    assert!(
        e.starts_with("`topics[0].name`") && e.contains("\"from-a\"") && e.contains("a_orders"),
        "{e}"
    );
    let excluded = GOOD.replace("[\"a_scratch\"]", "[\"a_scratch\", \"a_orders\"]");
    assert!(Config::parse(&format!("{excluded}{owned}")).is_ok());
}

#[test]
fn partition_limits_default_and_are_checked() {
    let c = Config::parse(GOOD).unwrap();
    assert_eq!(c.kafka.max_partitions_per_request, 1000);
    assert_eq!(c.storage.max_partitions, 10_000);
    let e = err_of(&GOOD.replace("[admin]", "max_partitions_per_request = 0\n[admin]"));
    assert!(e.contains("kafka.max_partitions_per_request"), "{e}");
    let e = err_of(&format!("{GOOD}\n[storage]\nmax_partitions = 0\n"));
    assert!(e.contains("storage.max_partitions"), "{e}");
    assert_eq!(c.storage.max_open_files, None);
    let e = err_of(&format!("{GOOD}\n[storage]\nmax_open_files = 0\n"));
    assert!(e.contains("storage.max_open_files"), "{e}");
}

#[test]
fn fetch_sizes_per_partition_default_to_one_mib_unless_set() {
    let links = |text: &str| Config::parse(text).unwrap().links();
    assert_eq!(links(GOOD)[0].partition_max_bytes, 1024 * 1024);
    let os = format!("{GOOD}\n[storage]\npersist = \"os\"\n");
    assert_eq!(links(&os)[0].partition_max_bytes, 1024 * 1024);
    let set = GOOD.replace("start = ", "partition_max_bytes = 2048\nstart = ");
    assert_eq!(links(&set)[0].partition_max_bytes, 2048);
    let e = err_of(&GOOD.replace("start = ", "partition_max_bytes = 10\nstart = "));
    assert!(e.contains("partition_max_bytes"), "{e}");
}

#[test]
fn tls_files_that_cannot_be_loaded_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let listener = |cert: &Path, extra: &str| {
        let tls = format!("tls = {{ cert = {cert:?}, key = {missing:?}{extra} }}\n[admin]");
        GOOD.replace("[admin]", &tls)
    };
    let e = err_of(&listener(&missing, ""));
    assert!(
        e.starts_with("`kafka.tls.cert`") && e.contains("missing.pem"),
        "{e}"
    );
    let e = err_of(&listener(&junk, ""));
    assert!(
        e.starts_with("`kafka.tls.cert`") && e.contains("no PEM"),
        "{e}"
    );
    let link = |tls: &str| GOOD.replace("start = ", &format!("tls = {{ {tls} }}\nstart = "));
    let e = err_of(&link(&format!("ca = {missing:?}")));
    assert!(e.starts_with("`links[0].tls.ca`"), "{e}");
    let e = err_of(&link(&format!("ca = {junk:?}, strict = true")));
    assert!(e.contains("strict"), "{e}");
}

#[test]
fn duplicate_link_names_are_rejected() {
    let second = GOOD.split("[[links]]").nth(1).unwrap();
    let e = err_of(&format!("{GOOD}\n[[links]]{second}"));
    assert!(e.contains("links[1].name"), "{e}");
}

#[test]
fn fetch_min_bytes_and_max_wait_default_as_kafka_and_are_checked() {
    let link = |text: &str| Config::parse(text).unwrap().links()[0].config.clone();
    let default = link(GOOD);
    assert_eq!(default.fetch_min_bytes, 1);
    assert_eq!(default.fetch_max_wait, Duration::from_millis(500));
    let set = link(&GOOD.replace(
        "start = ",
        "fetch_min_bytes = 65536\nfetch_max_wait = \"20ms\"\nstart = ",
    ));
    assert_eq!(set.fetch_min_bytes, 65536);
    assert_eq!(set.fetch_max_wait, Duration::from_millis(20));
    for bad in [
        "fetch_min_bytes = 0",
        "fetch_min_bytes = 40000000",
        "fetch_max_wait = \"0ms\"",
        "fetch_max_wait = \"1m\"",
    ] {
        let e = err_of(&GOOD.replace("start = ", &format!("{bad}\nstart = ")));
        let key = bad.split(' ').next().unwrap();
        assert!(e.starts_with(&format!("`links[0].{key}`")), "{bad}: {e}");
    }
}
