//! Where every acknowledged record ended up, by key: on its topic's final owner at the
//! offset it was acknowledged at, or in the diverged file fail-back wrote (a record the
//! old owner acknowledged past the failover point, kept for replay). Anything else is
//! lost, and the demo fails.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;

use super::verify::Acked;
use super::workload::TopicPartition;

/// Record keys by offset, per topic-partition.
pub type Keys = BTreeMap<TopicPartition, Acked>;

/// How many acknowledged records were found where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accounts {
    pub acked: usize,
    pub on_owner: usize,
    pub diverged: usize,
}

/// How many of the unaccounted records the error names.
const NAMED: usize = 3;

/// Accounts for every record of every ledger in `acked`: on `owner` at its offset with
/// its key, else in `diverged` at its offset with its key. The error names the first
/// records found in neither.
pub fn account(acked: &[&Keys], owner: &Keys, diverged: &Keys) -> Result<Accounts, String> {
    let mut accounts = Accounts::default();
    let mut missing = Vec::new();
    let holds = |keys: &Keys, tp: &TopicPartition, offset: &i64, key: &Bytes| {
        keys.get(tp).and_then(|k| k.get(offset)) == Some(key)
    };
    for ledger in acked {
        for (tp, records) in ledger.iter() {
            for (offset, key) in records {
                accounts.acked += 1;
                if holds(owner, tp, offset, key) {
                    accounts.on_owner += 1;
                } else if holds(diverged, tp, offset, key) {
                    accounts.diverged += 1;
                } else {
                    missing.push(format!("{tp}@{offset} ({})", String::from_utf8_lossy(key)));
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(accounts);
    }
    let named: Vec<&str> = missing.iter().take(NAMED).map(String::as_str).collect();
    Err(format!(
        "{} of {} acknowledged records are neither on their final owner nor in the diverged file: {}",
        missing.len(),
        accounts.acked,
        named.join(", ")
    ))
}

/// The fields of a diverged file's line that the accounting reads.
#[derive(Deserialize)]
struct Line {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<String>,
}

/// Adds the records of a fail-back's `.jsonl` file to `keys`; returns how many it holds.
pub fn read_diverged(path: &Path, keys: &mut Keys) -> anyhow::Result<usize> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut count = 0;
    for (n, line) in text.lines().enumerate() {
        let at = || format!("{} line {}", path.display(), n + 1);
        let line: Line = serde_json::from_str(line).with_context(at)?;
        let key = STANDARD
            .decode(line.key.unwrap_or_default())
            .with_context(at)?;
        keys.entry(TopicPartition::new(line.topic, line.partition))
            .or_default()
            .insert(line.offset, Bytes::from(key));
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(entries: &[(&str, i64, &'static str)]) -> Keys {
        let mut out = Keys::new();
        for (topic, offset, key) in entries {
            out.entry(TopicPartition::new(*topic, 0))
                .or_default()
                .insert(*offset, Bytes::from_static(key.as_bytes()));
        }
        out
    }

    /// A wrote 0..3, B mirrored 0..1 and failed over at 2, wrote 2..3 itself; A's 2 and
    /// 3 were saved by fail-back.
    fn way_back() -> (Keys, Keys, Keys, Keys) {
        let on_a = keys(&[
            ("t", 0, "a0"),
            ("t", 1, "a1"),
            ("t", 2, "a2"),
            ("t", 3, "a3"),
        ]);
        let on_b = keys(&[("t", 2, "b2"), ("t", 3, "b3")]);
        let owner = keys(&[
            ("t", 0, "a0"),
            ("t", 1, "a1"),
            ("t", 2, "b2"),
            ("t", 3, "b3"),
        ]);
        let diverged = keys(&[("t", 2, "a2"), ("t", 3, "a3")]);
        (on_a, on_b, owner, diverged)
    }

    #[test]
    fn every_record_on_the_owner_or_in_the_diverged_file_is_accounted_for() {
        let (on_a, on_b, owner, diverged) = way_back();
        let accounts = account(&[&on_a, &on_b], &owner, &diverged);
        let expected = Accounts {
            acked: 6,
            on_owner: 4,
            diverged: 2,
        };
        assert_eq!(accounts, Ok(expected));
    }

    #[test]
    fn a_record_missing_from_the_diverged_file_is_lost() {
        let (on_a, on_b, owner, _) = way_back();
        let diverged = keys(&[("t", 2, "a2")]);
        let error = account(&[&on_a, &on_b], &owner, &diverged).unwrap_err();
        assert!(error.starts_with("1 of 6 acknowledged records"), "{error}");
        assert!(error.contains("t-0@3 (a3)"), "{error}");
    }

    #[test]
    fn a_record_at_another_offset_is_not_accounted_for() {
        let (on_a, on_b, _, diverged) = way_back();
        // The owner holds b3 one offset late: b3 was not kept where it was acknowledged.
        let owner = keys(&[
            ("t", 0, "a0"),
            ("t", 1, "a1"),
            ("t", 2, "b2"),
            ("t", 4, "b3"),
        ]);
        let error = account(&[&on_a, &on_b], &owner, &diverged).unwrap_err();
        assert!(error.contains("t-0@3 (b3)"), "{error}");
    }

    #[test]
    fn the_diverged_file_is_read_by_key_and_offset() {
        let dir = std::env::temp_dir().join(format!("demo-account-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.jsonl");
        let line = |offset: i64, key: &str| {
            format!(
                r#"{{"topic":"t","partition":0,"offset":{offset},"timestamp":1,"key":"{}","value":null,"headers":[]}}"#,
                STANDARD.encode(key)
            )
        };
        std::fs::write(&path, format!("{}\n{}\n", line(2, "a2"), line(3, "a3"))).unwrap();
        let mut read = Keys::new();
        let count = read_diverged(&path, &mut read);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(count.unwrap(), 2);
        assert_eq!(read, keys(&[("t", 2, "a2"), ("t", 3, "a3")]));
    }
}
