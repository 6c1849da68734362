//! The TOML config file: the same keys as the long options, in kebab-case.
//! Unknown keys are an error (`deny_unknown_fields`), so a typo stops start-up
//! instead of being silently ignored.

use serde::Deserialize;
use std::path::PathBuf;

/// Raw contents of a config file; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// Directory to serve (relative to the current directory).
    pub root: Option<PathBuf>,
    /// One address or a list.
    pub listen: Option<OneOrMany>,
    /// See `--tls-listen`: one address or a list.
    pub tls_listen: Option<OneOrMany>,
    /// See `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// See `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// See `--unix-mode`: `"0660"`.
    pub unix_mode: Option<String>,
    /// See `--proxy-protocol`.
    pub proxy_protocol: Option<Flag>,
    /// See `--trusted-proxy`: one network or a list.
    pub trusted_proxy: Option<OneOrMany>,
    /// See `--etag`.
    pub etag: Option<String>,
    /// See `--etag-hash-max`.
    pub etag_hash_max: Option<Size>,
    /// See `--cache-max-bytes`.
    pub cache_max_bytes: Option<Size>,
    /// See `--cache-max-entries`.
    pub cache_max_entries: Option<usize>,
    /// See `--small-file-max`.
    pub small_file_max: Option<Size>,
    /// See `--window-size`.
    pub window_size: Option<Size>,
    /// See `--revalidate`: `"inotify"`, `"inotify-async"` or `"stat"`.
    pub revalidate: Option<String>,
    /// See `--prefault`.
    pub prefault: Option<Flag>,
    /// See `--verified-sends`.
    pub verified_sends: Option<Flag>,
    /// See `--hidden`.
    pub hidden: Option<Flag>,
    /// See `--listing`.
    pub listing: Option<Flag>,
    /// See `--listing-max-entries`.
    pub listing_max_entries: Option<usize>,
    /// See `--not-found-page`.
    pub not_found_page: Option<String>,
    /// See `--fallback`.
    pub fallback: Option<String>,
    /// See `--follow-symlinks-outside-root`.
    pub follow_symlinks_outside_root: Option<Flag>,
    /// See `--header-timeout`.
    pub header_timeout: Option<Span>,
    /// See `--idle-timeout`.
    pub idle_timeout: Option<Span>,
    /// See `--send-timeout`.
    pub send_timeout: Option<Span>,
    /// See `--max-connections`.
    pub max_connections: Option<usize>,
    /// See `--grace-period`.
    pub grace_period: Option<Span>,
    /// See `--max-ranges`.
    pub max_ranges: Option<usize>,
    /// See `--cache-control`.
    pub cache_control: Option<String>,
    /// See `--compress`.
    pub compress: Option<Flag>,
    /// See `--compress-min`.
    pub compress_min: Option<Size>,
    /// See `--compress-max`.
    pub compress_max: Option<Size>,
    /// See `--precompressed`.
    pub precompressed: Option<Flag>,
    /// See `--header`: `["Name: value", ...]`.
    pub header: Option<Vec<String>>,
    /// `[[headers]]` tables: headers for the URL paths a glob matches.
    pub headers: Option<Vec<HeadersTable>>,
    /// See `--cors`: `"*"`, one origin, or a list.
    pub cors: Option<OneOrMany>,
    /// See `--access-log`.
    pub access_log: Option<Flag>,
    /// See `--access-log-format`.
    pub access_log_format: Option<String>,
    /// See `--access-log-file`.
    pub access_log_file: Option<PathBuf>,
    /// See `--log-level`.
    pub log_level: Option<String>,
    /// See `--admin-listen`.
    pub admin_listen: Option<String>,
    /// See `--admin-token-file`.
    pub admin_token_file: Option<PathBuf>,
    /// See `--cache-pin-max`: `"50%"`.
    pub cache_pin_max: Option<String>,
    /// See `--prewarm`: one glob or a list.
    pub prewarm: Option<OneOrMany>,
    /// See `--workers`.
    pub workers: Option<usize>,
}

/// One `[[headers]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadersTable {
    /// The glob, as `match = "/assets/**"`.
    #[serde(rename = "match")]
    pub glob: String,
    /// The headers: `set = { "Cache-Control" = "..." }`.
    pub set: std::collections::BTreeMap<String, String>,
}

/// `"addr"` or `["addr", ...]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single address.
    One(String),
    /// Several addresses.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The addresses as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A boolean as the command line accepts it: `true`/`false`, or one of the
/// strings yes/no, on/off, true/false, 1/0, or the integers 1/0.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Flag {
    /// A TOML boolean.
    Bool(bool),
    /// 1 or 0.
    Int(i64),
    /// yes, no, on, off, true, false, 1, 0 (any case).
    Text(String),
}

impl Flag {
    /// The value, or why it is not a boolean.
    pub fn value(&self) -> Result<bool, String> {
        match self {
            Flag::Bool(b) => Ok(*b),
            Flag::Int(1) => Ok(true),
            Flag::Int(0) => Ok(false),
            Flag::Int(n) => Err(format!("{n} is not a boolean (use true/false, yes/no, on/off or 1/0)")),
            Flag::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" | "y" => Ok(true),
                "false" | "no" | "off" | "0" | "n" => Ok(false),
                _ => Err(format!("`{t}` is not a boolean (use true/false, yes/no, on/off or 1/0)")),
            },
        }
    }
}

/// A size: an integer number of bytes or a string such as `"256MiB"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Size {
    /// Bytes.
    Bytes(u64),
    /// Text with a unit.
    Text(String),
}

/// A duration: an integer number of seconds or a string such as `"500ms"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Span {
    /// Seconds.
    Secs(u64),
    /// Text with a unit.
    Text(String),
}

impl FileConfig {
    /// Parses a config file's text.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}
