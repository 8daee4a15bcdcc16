//! Small JSON metadata files, replaced atomically.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};

/// Per-topic metadata stored next to the partition directories. `extra` carries any
/// caller-defined fields (source topic id, configs, ...) without a schema change here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub topic: String,
    pub partitions: i32,
    #[serde(default, flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Writes `value` as JSON to `path` so that a crash leaves either the old or the new
/// file, never a mix: write `path.tmp`, fsync it, rename over `path`, fsync the directory.
pub fn write_meta<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(|source| StorageError::Meta {
        path: path.to_path_buf(),
        source,
    })?;
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(StorageError::io("creating", &tmp))?;
    file.write_all(&json)
        .map_err(StorageError::io("writing", &tmp))?;
    file.sync_all().map_err(StorageError::io("syncing", &tmp))?;
    fs::rename(&tmp, path).map_err(StorageError::io("renaming onto", path))?;
    sync_parent(path)
}

/// Reads a file written by [`write_meta`]; `Ok(None)` when it does not exist.
pub fn read_meta<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("reading", path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StorageError::Meta {
            path: path.to_path_buf(),
            source,
        })
}

/// Fsyncs `dir` so that entries created, renamed or removed in it survive power loss.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StorageError::io("syncing directory", dir))
}

fn sync_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("topic.json");
        assert_eq!(read_meta::<TopicMeta>(&path).unwrap(), None);
        let mut meta = TopicMeta {
            topic: "orders".into(),
            partitions: 3,
            extra: BTreeMap::new(),
        };
        meta.extra.insert("source_topic_id".into(), "abc".into());
        write_meta(&path, &meta).unwrap();
        assert_eq!(read_meta::<TopicMeta>(&path).unwrap(), Some(meta.clone()));
        meta.partitions = 4;
        write_meta(&path, &meta).unwrap();
        assert_eq!(read_meta::<TopicMeta>(&path).unwrap(), Some(meta));
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            read_meta::<TopicMeta>(&path),
            Err(StorageError::Meta { .. })
        ));
    }
}
