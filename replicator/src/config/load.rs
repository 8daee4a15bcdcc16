//! Reading the file, and naming the key at fault when TOML or serde refuses it.

use std::path::Path;

use super::{invalid, Config, ConfigError};

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        config.validate()?;
        Ok(config)
    }
}

/// A TOML or type error, named by the dotted key on the line it points at
/// (`links[1].fetch_max_bytes`), with toml's own rendering when no key can be found.
fn syntax_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let found = error.span().and_then(|span| key_at(text, span.start));
    match found {
        Some((key, line)) => invalid(key, format!("{} (line {line})", error.message().trim())),
        None => ConfigError::Syntax(error.to_string()),
    }
}

/// The dotted key of the `key = value` line holding byte `at`, and its line number.
fn key_at(text: &str, at: usize) -> Option<(String, usize)> {
    let line_start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
    let line_no = text[..line_start].matches('\n').count() + 1;
    let line = text[line_start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    if key.is_empty() || key.starts_with('#') || key.starts_with('[') {
        return None;
    }
    // The innermost table header above the line; `[[links]]` counts its occurrences.
    let mut table = String::new();
    let mut arrays: std::collections::HashMap<String, usize> = Default::default();
    for header in text[..line_start].lines().map(str::trim) {
        if let Some(name) = header.strip_prefix("[[").and_then(|h| h.split("]]").next()) {
            let name = name.trim().to_string();
            let n = arrays
                .entry(name.clone())
                .and_modify(|n| *n += 1)
                .or_insert(0);
            table = format!("{name}[{n}]");
        } else if let Some(name) = header.strip_prefix('[').and_then(|h| h.split(']').next()) {
            table = name.trim().to_string();
        }
    }
    let dotted = if table.is_empty() {
        key.to_string()
    } else {
        format!("{table}.{key}")
    };
    Some((dotted, line_no))
}
