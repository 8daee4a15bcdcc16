//! CreateTopics: Kafka's name rules, partition limits, names a link mirrors, and creation
//! that a crash cuts short, checked with confluent-kafka's AdminClient and raw requests.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::{check_config, free_port, python, Link, Node, NodeConfig};

/// One CreateTopics request through the AdminClient: per topic, "OK" or the error
/// name followed by the node's message.
fn create(node: &Node, topics: &[(&str, i32)]) -> Result<BTreeMap<String, String>> {
    let args: Vec<String> = std::iter::once(node.kafka.to_string())
        .chain(topics.iter().map(|(name, n)| format!("{name}:{n}")))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = python("create_topics.py", &args)?;
    out.lines()
        .map(|line| {
            let (name, outcome) = line.split_once(": ").context("name: outcome")?;
            Ok((name.to_string(), outcome.to_string()))
        })
        .collect()
}

/// Produces `count` records over `partitions` and checks a consumer reads them all back.
fn produce_and_consume(node: &Node, topic: &str, count: usize, partitions: i32) -> Result<()> {
    let (count, partitions) = (count.to_string(), partitions.to_string());
    let bootstrap = node.kafka.to_string();
    let acked = python(
        "produce_owned.py",
        &[
            "confluent",
            &bootstrap,
            topic,
            &count,
            "--partitions",
            &partitions,
        ],
    )?;
    ensure!(acked.trim() == count, "{topic}: {acked} acknowledged");
    let read = python(
        "consume.py",
        &[&bootstrap, topic, &count, "--partitions", &partitions],
    )?;
    ensure!(read.trim() == count, "{topic}: {read} consumed");
    Ok(())
}

/// Raw CreateTopics, for what the AdminClient refuses to send: (name, code, message).
fn create_raw(node: &Node, names: &[&str]) -> Result<Vec<(String, i16, String)>> {
    let mut client = RawClient::connect(node.kafka)?;
    let version = client.version(ApiKey::CreateTopics, 7)?;
    let topics = names
        .iter()
        .map(|name| {
            CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.to_string())))
                .with_num_partitions(1)
                .with_replication_factor(1)
        })
        .collect();
    let request = CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(5000);
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, version, &request)?;
    Ok(response
        .topics
        .iter()
        .map(|t| {
            let message = t.error_message.as_ref().map(|m| m.to_string());
            (
                t.name.to_string(),
                t.error_code,
                message.unwrap_or_default(),
            )
        })
        .collect())
}

#[test]
fn names_follow_kafkas_rules_including_collisions_and_duplicates() -> Result<()> {
    let node = Node::start(&NodeConfig::owner())?;
    let longest = "b".repeat(249);
    let too_long = "b".repeat(250);
    let out = create(
        &node,
        &[
            (&longest, 1),
            (&too_long, 1),
            (".", 1),
            ("..", 1),
            ("b orders", 1),
            ("b/orders", 1),
            ("b.metrics", 1),
        ],
    )?;
    assert_eq!(out[&longest], "OK");
    for refused in [too_long.as_str(), ".", "..", "b orders", "b/orders"] {
        assert!(
            out[refused].starts_with("TOPIC_EXCEPTION invalid topic name"),
            "{refused}: {}",
            out[refused]
        );
    }
    assert!(out[&too_long].contains("longer than 249"), "{out:?}");
    // Kafka refuses names that differ from an existing one only in '.' and '_'.
    let out = create(&node, &[("b_metrics", 1), ("b.metrics", 1)])?;
    assert!(
        out["b_metrics"].starts_with("TOPIC_EXCEPTION")
            && out["b_metrics"].contains("collides with existing topic b.metrics"),
        "{out:?}"
    );
    assert!(
        out["b.metrics"].starts_with("TOPIC_ALREADY_EXISTS"),
        "{out:?}"
    );
    // An empty name, and one named twice in a request: every entry of it is refused.
    let answers = create_raw(&node, &["", "b_twice", "b_once", "b_twice"])?;
    assert_eq!(answers[0].1, 17, "{answers:?}");
    assert!(answers[0].2.contains("empty"), "{answers:?}");
    assert_eq!((answers[1].1, answers[3].1), (42, 42), "{answers:?}");
    assert!(answers[1].2.contains("more than once"), "{answers:?}");
    assert_eq!(answers[2].1, 0, "{answers:?}");
    produce_and_consume(&node, &longest, 10, 1)?;
    Ok(())
}

#[test]
fn partitions_are_capped_per_request_and_per_node() -> Result<()> {
    let config = NodeConfig::owner()
        .max_partitions_per_request(10)
        .max_partitions(15);
    let node = Node::start(&config)?;
    let out = create(&node, &[("b_huge", 11)])?;
    assert!(
        out["b_huge"].starts_with("INVALID_PARTITIONS")
            && out["b_huge"].contains("kafka.max_partitions_per_request"),
        "{out:?}"
    );
    // The cap is over the whole request: the second topic would take it to 12.
    let out = create(&node, &[("b_first", 6), ("b_second", 6), ("b_small", 4)])?;
    assert_eq!(out["b_first"], "OK");
    assert!(out["b_second"].starts_with("INVALID_PARTITIONS"), "{out:?}");
    assert_eq!(out["b_small"], "OK");
    // 10 held: 5 more fit, 6 do not.
    let out = create(&node, &[("b_over", 6)])?;
    assert!(
        out["b_over"].starts_with("POLICY_VIOLATION")
            && out["b_over"].contains("storage.max_partitions"),
        "{out:?}"
    );
    assert_eq!(create(&node, &[("b_last", 5)])?["b_last"], "OK");
    assert!(create(&node, &[("b_more", 1)])?["b_more"].starts_with("POLICY_VIOLATION"));
    produce_and_consume(&node, "b_last", 25, 5)?;
    Ok(())
}

/// Sets one partition limit on a config.
type SetLimit = fn(NodeConfig, i64) -> NodeConfig;

#[test]
fn check_config_refuses_bad_partition_limits() -> Result<()> {
    let limits: [(&str, &str, SetLimit); 2] = [
        (
            "kafka",
            "max_partitions_per_request",
            NodeConfig::max_partitions_per_request,
        ),
        ("storage", "max_partitions", NodeConfig::max_partitions),
    ];
    for (table, key, set) in limits {
        let check = |value: i64| -> Result<(bool, String)> {
            let text = set(NodeConfig::owner(), value).render(Some(Path::new("/tmp/unused")));
            let out = check_config(&text)?;
            Ok((out.success(), out.stderr))
        };
        let (ok, stderr) = check(5)?;
        assert!(ok, "{key} = 5 was refused: {stderr}");
        let (ok, stderr) = check(0)?;
        assert!(!ok, "{key} = 0 was accepted");
        assert!(
            stderr.contains(&format!("`{table}.{key}`: must be at least 1")),
            "{stderr}"
        );
    }
    Ok(())
}

/// A link to a port where nothing listens: its filter is all that matters here.
fn link_config() -> NodeConfig {
    NodeConfig::owner().add_link(
        Link::new("from-a", format!("127.0.0.1:{}", free_port()))
            .include(&["a_*"])
            .exclude(&["a_local"]),
    )
}

#[test]
fn a_name_a_link_mirrors_is_refused_naming_the_link() -> Result<()> {
    let node = Node::start(&link_config())?;
    let out = create(&node, &[("a_orders", 1), ("a_local", 1), ("b_orders", 1)])?;
    assert!(
        out["a_orders"].starts_with("POLICY_VIOLATION") && out["a_orders"].contains("link from-a"),
        "{out:?}"
    );
    assert_eq!(out["a_local"], "OK");
    assert_eq!(out["b_orders"], "OK");
    produce_and_consume(&node, "a_local", 10, 1)?;

    // The same topic declared in the config is refused at start, naming both.
    let declared = link_config().topic("a_orders", 1);
    let out = check_config(&declared.render(Some(Path::new("/tmp/unused"))))?;
    let stderr = out.stderr;
    assert!(!out.status.success(), "accepted: {stderr}");
    assert!(
        stderr.contains("`topics[0].name`")
            && stderr.contains("\"a_orders\"")
            && stderr.contains("\"from-a\""),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn a_creation_cut_short_by_a_crash_never_stops_the_next_start() -> Result<()> {
    let mut node = Node::start(&NodeConfig::owner())?;
    assert_eq!(create(&node, &[("b_kept", 3)])?["b_kept"], "OK");
    produce_and_consume(&node, "b_kept", 30, 3)?;
    node.process.kill9();
    let topics = node.data_dir.join("topics");
    let kept_json = std::fs::read(topics.join("b_kept/topic.json"))?;
    // What a crash at each step of a creation leaves behind: the topic's directory
    // alone; its topic.json being written (to topic.tmp, then renamed); a topic.json
    // torn where the filesystem lost the rename's ordering; and topic.json in place with
    // only some partition directories made.
    std::fs::create_dir_all(topics.join("b_dir_only"))?;
    std::fs::create_dir_all(topics.join("b_tmp_torn"))?;
    std::fs::write(topics.join("b_tmp_torn/topic.tmp"), &kept_json[..20])?;
    std::fs::create_dir_all(topics.join("b_json_torn"))?;
    std::fs::write(topics.join("b_json_torn/topic.json"), &kept_json[..20])?;
    std::fs::create_dir_all(topics.join("b_partial/0"))?;
    std::fs::write(topics.join("b_partial/topic.json"), &kept_json)?;

    node.restart()?;
    for name in ["b_dir_only", "b_tmp_torn", "b_json_torn"] {
        assert_eq!(create(&node, &[(name, 2)])?[name], "OK", "{name}");
        produce_and_consume(&node, name, 20, 2)?;
    }
    // Declared whole by its topic.json: all three partitions exist and take writes.
    assert!(create(&node, &[("b_partial", 3)])?["b_partial"].starts_with("TOPIC_ALREADY_EXISTS"));
    produce_and_consume(&node, "b_partial", 30, 3)?;
    let read = python(
        "consume.py",
        &[&node.kafka.to_string(), "b_kept", "30", "--partitions", "3"],
    )?;
    assert_eq!(read.trim(), "30");
    Ok(())
}
