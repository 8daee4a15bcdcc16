//! The demo's closing checks, as pure functions over what was acknowledged and what was
//! read back.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::client::Read;

/// Acknowledged records of one partition: their keys, by offset.
pub type Acked = BTreeMap<i64, Bytes>;

/// Offsets must run `0, 1, 2, …` without a gap or a repeat.
fn contiguous(name: &str, read: &[Read]) -> Result<(), String> {
    for (i, (offset, _)) in read.iter().enumerate() {
        if *offset != i as i64 {
            return Err(format!(
                "{name}: record {i} read back is at offset {offset} (a gap or a duplicate)"
            ));
        }
    }
    Ok(())
}

/// The partition read back from offset 0 holds exactly the acknowledged records, each at
/// its offset, each once, and nothing else. Returns the record count.
pub fn check_exact(name: &str, read: &[Read], expected: &Acked) -> Result<usize, String> {
    let matched = check_prefix(name, read, expected)?;
    if let Some((offset, _)) = expected.range(read.len() as i64..).next() {
        return Err(format!(
            "{name}: acknowledged record at offset {offset} is missing (read back {} records)",
            read.len()
        ));
    }
    Ok(matched)
}

/// `read` (a copy that may lag) is contiguous from 0 and agrees with `expected` at every
/// offset it holds. Returns the record count.
pub fn check_prefix(name: &str, read: &[Read], expected: &Acked) -> Result<usize, String> {
    contiguous(name, read)?;
    for (offset, value) in read {
        match expected.get(offset) {
            Some(want) if want == value => {}
            Some(want) => {
                return Err(format!(
                    "{name}@{offset}: holds {:?}, expected {:?}",
                    String::from_utf8_lossy(value),
                    String::from_utf8_lossy(want)
                ))
            }
            None => {
                return Err(format!(
                    "{name}@{offset}: holds {:?}, which was never acknowledged there",
                    String::from_utf8_lossy(value)
                ))
            }
        }
    }
    Ok(read.len())
}

/// What a failed-over partition must hold: the source's acknowledged records below the
/// failover point, then the records written on the survivor. Also returns how many of
/// the source's acknowledged records lay at or beyond the failover point (lost: the RPO).
pub fn after_failover(source: &Acked, failover_at: i64, survivor: &Acked) -> (Acked, usize) {
    let mut expected: Acked = source
        .range(..failover_at)
        .map(|(o, v)| (*o, v.clone()))
        .collect();
    let lost = source.range(failover_at..).count();
    expected.extend(survivor.iter().map(|(o, v)| (*o, v.clone())));
    (expected, lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acked(values: &[&'static str]) -> Acked {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64, Bytes::from_static(v.as_bytes())))
            .collect()
    }

    fn read(entries: &[(i64, &'static str)]) -> Vec<Read> {
        entries
            .iter()
            .map(|(o, v)| (*o, Bytes::from_static(v.as_bytes())))
            .collect()
    }

    #[test]
    fn exact_copy_passes() {
        let expected = acked(&["a", "b", "c"]);
        let got = read(&[(0, "a"), (1, "b"), (2, "c")]);
        assert_eq!(check_exact("t-0", &got, &expected), Ok(3));
    }

    #[test]
    fn duplicate_fails() {
        let expected = acked(&["a", "b", "c"]);
        // A repeated offset, and a repeated value at the next offset.
        let repeated_offset = read(&[(0, "a"), (1, "b"), (1, "b"), (2, "c")]);
        assert!(check_exact("t-0", &repeated_offset, &expected).is_err());
        let repeated_value = read(&[(0, "a"), (1, "b"), (2, "b"), (3, "c")]);
        assert!(check_exact("t-0", &repeated_value, &expected).is_err());
    }

    #[test]
    fn gap_or_missing_record_fails() {
        let expected = acked(&["a", "b", "c"]);
        let gap = read(&[(0, "a"), (2, "c")]);
        assert!(check_exact("t-0", &gap, &expected).is_err());
        let short = read(&[(0, "a"), (1, "b")]);
        assert!(check_exact("t-0", &short, &expected).is_err());
        // A lagging copy may be short, but never wrong.
        assert_eq!(check_prefix("t-0", &short, &expected), Ok(2));
        assert!(check_prefix("t-0", &read(&[(0, "a"), (1, "x")]), &expected).is_err());
    }

    #[test]
    fn failover_replaces_only_the_lost_tail() {
        let source = acked(&["a", "b", "c", "d"]);
        let survivor: Acked = [(3, Bytes::from_static(b"X")), (4, Bytes::from_static(b"Y"))]
            .into_iter()
            .collect();
        let (expected, lost) = after_failover(&source, 3, &survivor);
        assert_eq!(lost, 1);
        let got = read(&[(0, "a"), (1, "b"), (2, "c"), (3, "X"), (4, "Y")]);
        assert_eq!(check_exact("t-0", &got, &expected), Ok(5));
    }
}
