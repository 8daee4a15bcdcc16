//! Replacing segments with their cleaned copy so that a crash at any point leaves
//! either the old segments or the cleaned one, as Kafka's `LogCleaner` does:
//!
//! 1. the cleaned data is written and fsynced as `{first:020}.cleaned`;
//! 2. it is renamed to `{first:020}-{last:020}.swap`, naming the first and last base
//!    offsets of the segments it replaces; from here on the cleaning is committed;
//! 3. those segments' files are deleted;
//! 4. the swap file is renamed to `{first:020}.log`, whose indexes are then rebuilt.
//!
//! Opening a log first deletes any `.cleaned` file (cleaning never committed) and
//! finishes every such `.swap` file from step 3 (steps 3 and 4 may be repeated).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::meta::sync_dir;
use crate::segment::{segment_path, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT};

pub(crate) const CLEANED_EXT: &str = "cleaned";
const SWAP_EXT: &str = "swap";

pub(crate) fn cleaned_path(dir: &Path, first: i64) -> PathBuf {
    segment_path(dir, first, CLEANED_EXT)
}

fn swap_path(dir: &Path, first: i64, last: i64) -> PathBuf {
    dir.join(format!("{first:020}-{last:020}.{SWAP_EXT}"))
}

/// How far [`install_until`] goes; every step before it is done too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Step {
    /// The `.cleaned` file became the `.swap` file.
    Swapped,
    /// The first replaced segment's files are gone (a crash between deletions).
    FirstDeleted,
    /// Every replaced segment's files are gone.
    Deleted,
    /// The swap file is the new segment's `.log`.
    Done,
}

/// Commits the cleaned copy of the segments based at `bases` (ascending, non-empty).
pub(crate) fn install(dir: &Path, bases: &[i64]) -> Result<()> {
    install_until(dir, bases, Step::Done)
}

pub(crate) fn install_until(dir: &Path, bases: &[i64], until: Step) -> Result<()> {
    let (first, last) = (bases[0], bases[bases.len() - 1]);
    let swap = swap_path(dir, first, last);
    let cleaned = cleaned_path(dir, first);
    fs::rename(&cleaned, &swap).map_err(StorageError::io("renaming", &cleaned))?;
    sync_dir(dir)?;
    if until == Step::Swapped {
        return Ok(());
    }
    for (i, &base) in bases.iter().enumerate() {
        if i == 1 && until == Step::FirstDeleted {
            return sync_dir(dir);
        }
        delete_segment_files(dir, base)?;
    }
    if until == Step::Deleted {
        return sync_dir(dir);
    }
    let log = segment_path(dir, first, LOG_EXT);
    fs::rename(&swap, &log).map_err(StorageError::io("renaming", &swap))?;
    sync_dir(dir)
}

fn delete_segment_files(dir: &Path, base: i64) -> Result<()> {
    // The index files first: a `.log` without them is rebuilt, never misread.
    for ext in [INDEX_EXT, TIME_INDEX_EXT, LOG_EXT] {
        let path = segment_path(dir, base, ext);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io("deleting", &path)(e)),
        }
    }
    Ok(())
}

/// `(first, last)` of a cleaner swap file's name.
fn parse_swap(path: &Path) -> Option<(i64, i64)> {
    if path.extension().and_then(|e| e.to_str()) != Some(SWAP_EXT) {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    let (first, last) = stem.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

/// Discards uncommitted cleaning and finishes committed swaps in `dir`. Run before the
/// segments are listed.
pub(crate) fn finish_interrupted(dir: &Path) -> Result<()> {
    let mut swaps = Vec::new();
    let mut log_bases = Vec::new();
    let mut changed = false;
    for entry in fs::read_dir(dir).map_err(StorageError::io("listing", dir))? {
        let path = entry.map_err(StorageError::io("listing", dir))?.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext == CLEANED_EXT {
            tracing::warn!(file = %path.display(), "discarding an interrupted cleaning");
            fs::remove_file(&path).map_err(StorageError::io("removing", &path))?;
            changed = true;
        } else if let Some(range) = parse_swap(&path) {
            swaps.push(range);
        } else if ext == LOG_EXT {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            log_bases.extend(stem.parse::<i64>().ok());
        }
    }
    for (first, last) in swaps {
        tracing::warn!(first, last, "finishing an interrupted segment swap");
        for &base in log_bases.iter().filter(|&&b| b >= first && b <= last) {
            delete_segment_files(dir, base)?;
        }
        let swap = swap_path(dir, first, last);
        let log = segment_path(dir, first, LOG_EXT);
        fs::rename(&swap, &log).map_err(StorageError::io("renaming", &swap))?;
        changed = true;
    }
    if changed {
        sync_dir(dir)?;
    }
    Ok(())
}
