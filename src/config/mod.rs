//! Configuration in two stages: the raw layers ([`Cli`], which clap has
//! already merged with the environment, and [`FileConfig`]) are resolved once
//! into a validated, immutable [`Config`].
//!
//! Precedence: command line > `MAPSERVE_*` environment > config file >
//! the built-in defaults below (mirrored in `config/mapserve.toml`, and a test
//! checks that the two agree).

pub mod cidr;
pub mod cli;
pub mod file;
pub mod net;
pub mod observe;
mod resolve;
pub mod rules;
pub mod units;

pub use cli::Cli;
pub use file::FileConfig;
pub use net::{EtagMode, ListenAddr, TlsFiles, TrustedProxies};
pub use observe::{Admin, Observe};
pub use rules::{HeaderRule, ResponseRules};

use resolve::resolve;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default mapped/copied byte budget: 1 GiB.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 1 << 30;
/// Default entry cap, far below the kernel's usual `vm.max_map_count` (65530).
pub const DEFAULT_CACHE_MAX_ENTRIES: usize = 10_000;
/// Default size up to which files are copied into memory: 64 KiB.
pub const DEFAULT_SMALL_FILE_MAX: u64 = 64 << 10;
/// Default mapping window for large files: 64 MiB.
pub const DEFAULT_WINDOW_SIZE: u64 = 64 << 20;
/// Default request-head timeout.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default idle keep-alive timeout.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default send (write progress) timeout.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Default shutdown grace period.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
/// Default cap on ranges in one multipart response.
pub const DEFAULT_MAX_RANGES: usize = 64;
/// Default smallest file compressed: below it the headers and the coding's
/// framing eat the gain.
pub const DEFAULT_COMPRESS_MIN: u64 = 1 << 10;
/// Default largest file compressed.
pub const DEFAULT_COMPRESS_MAX: u64 = 32 << 20;
/// Default cap on the entries one listing shows.
pub const DEFAULT_LISTING_MAX_ENTRIES: usize = 10_000;
/// Default log filter.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// The resolved, validated configuration. Built once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Absolute path of the directory served (not resolved: a symlink in it
    /// is followed again when it is swapped).
    pub root: PathBuf,
    /// Addresses to listen on for plain HTTP (TCP or unix sockets).
    pub listen: Vec<ListenAddr>,
    /// Addresses to listen on for HTTPS.
    pub tls_listen: Vec<SocketAddr>,
    /// The certificate and key (required with `tls_listen`).
    pub tls: Option<TlsFiles>,
    /// Permissions of the unix sockets created.
    pub unix_mode: u32,
    /// Connections begin with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// Peers whose forwarded headers are believed.
    pub trusted_proxies: TrustedProxies,
    /// The form of the `ETag`.
    pub etag: EtagMode,
    /// `--etag content` hashes files up to this size.
    pub etag_hash_max: u64,
    /// Hard bound on bytes mapped or copied by the cache.
    pub cache_max_bytes: u64,
    /// Most cache entries.
    pub cache_max_entries: usize,
    /// Files up to this size are copied instead of mapped.
    pub small_file_max: u64,
    /// Window size for large files (a multiple of the page size).
    pub window_size: u64,
    /// How a cache hit learns of changes on disk (`--revalidate`).
    pub revalidate: Revalidate,
    /// Fault cold pages in on the blocking pool before sending.
    pub prefault: bool,
    /// Copy and re-check each chunk of a mapped file before sending it.
    pub verified_sends: bool,
    /// Serve dotfiles.
    pub hidden: bool,
    /// Answer directories without an index with a listing.
    pub listing: bool,
    /// Most entries one listing shows.
    pub listing_max_entries: usize,
    /// The page (a path relative to ROOT, checked) whose bytes answer a 404.
    pub not_found_page: Option<String>,
    /// The page (relative to ROOT, checked) served for a missing path to
    /// clients that prefer HTML.
    pub fallback: Option<String>,
    /// Follow symlinks out of ROOT.
    pub follow_symlinks_outside_root: bool,
    /// Request-head timeout.
    pub header_timeout: Duration,
    /// Idle keep-alive timeout.
    pub idle_timeout: Duration,
    /// Write-progress timeout.
    pub send_timeout: Duration,
    /// Concurrent connection cap.
    pub max_connections: usize,
    /// How descriptors are shared out (connections, files, pipes).
    pub fd_plan: crate::limits::FdPlan,
    /// Shutdown grace period.
    pub grace_period: Duration,
    /// Multipart range cap.
    pub max_ranges: usize,
    /// Cache-Control header value, if any.
    pub cache_control: Option<http::HeaderValue>,
    /// Compression, header rules and CORS.
    pub rules: ResponseRules,
    /// Per-request log line.
    pub access_log: bool,
    /// tracing filter.
    pub log_level: String,
    /// Access log format and file, the admin listener, pins and prewarming.
    pub observe: Observe,
    /// Worker threads (resolved; at least 1).
    pub workers: usize,
    /// Non-fatal findings to log once logging is up.
    pub warnings: Vec<String>,
}

/// How a cache hit learns that its file changed on disk (`--revalidate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Revalidate {
    /// inotify watches; each hit applies the events queued so far (one
    /// `FIONREAD`) before trusting its token. Strict: every change whose
    /// system call returned before the request started is seen.
    #[default]
    Inotify,
    /// inotify watches whose events a background thread applies as they
    /// arrive; a hit only reads its token. Weaker: a change is seen once that
    /// thread has applied it, a short while after its system call returned.
    InotifyAsync,
    /// One `statx` of the path per hit, no watches.
    Stat,
}

impl Revalidate {
    /// Parses `inotify`, `inotify-async` or `stat`.
    pub fn parse(text: &str) -> Result<Revalidate, String> {
        match text {
            "inotify" => Ok(Revalidate::Inotify),
            "inotify-async" => Ok(Revalidate::InotifyAsync),
            "stat" => Ok(Revalidate::Stat),
            other => Err(format!("`{other}` is not one of inotify, inotify-async, stat")),
        }
    }

    /// The option's value that selects this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Revalidate::Inotify => "inotify",
            Revalidate::InotifyAsync => "inotify-async",
            Revalidate::Stat => "stat",
        }
    }

    /// Whether inotify watches are used (else one `statx` per hit).
    pub fn uses_inotify(self) -> bool {
        self != Revalidate::Stat
    }
}

/// Why the configuration was refused. Each message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has an unknown key.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, including the key.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("invalid value for `{key}`: {reason}{}", env_note(key))]
    Invalid {
        /// The option or config key.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

/// ", from the environment variable X" when that is where `key` came from.
fn env_note(key: &str) -> String {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    cli::env_source_of(key, &args)
        .map(|var| format!(" (from the environment variable {var})"))
        .unwrap_or_default()
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, reason: reason.into() }
}

/// Names of every `MAPSERVE_*` variable mapserve reads.
pub const KNOWN_ENV: &[&str] = &[
    "MAPSERVE_ROOT",
    "MAPSERVE_LISTEN",
    "MAPSERVE_TLS_LISTEN",
    "MAPSERVE_TLS_CERT",
    "MAPSERVE_TLS_KEY",
    "MAPSERVE_UNIX_MODE",
    "MAPSERVE_PROXY_PROTOCOL",
    "MAPSERVE_TRUSTED_PROXY",
    "MAPSERVE_ETAG",
    "MAPSERVE_ETAG_HASH_MAX",
    "MAPSERVE_CONFIG",
    "MAPSERVE_CACHE_MAX_BYTES",
    "MAPSERVE_CACHE_MAX_ENTRIES",
    "MAPSERVE_SMALL_FILE_MAX",
    "MAPSERVE_WINDOW_SIZE",
    "MAPSERVE_HIDDEN",
    "MAPSERVE_REVALIDATE",
    "MAPSERVE_PREFAULT",
    "MAPSERVE_VERIFIED_SENDS",
    "MAPSERVE_LISTING",
    "MAPSERVE_LISTING_MAX_ENTRIES",
    "MAPSERVE_NOT_FOUND_PAGE",
    "MAPSERVE_FALLBACK",
    "MAPSERVE_FOLLOW_SYMLINKS_OUTSIDE_ROOT",
    "MAPSERVE_HEADER_TIMEOUT",
    "MAPSERVE_IDLE_TIMEOUT",
    "MAPSERVE_SEND_TIMEOUT",
    "MAPSERVE_MAX_CONNECTIONS",
    "MAPSERVE_GRACE_PERIOD",
    "MAPSERVE_MAX_RANGES",
    "MAPSERVE_CACHE_CONTROL",
    "MAPSERVE_COMPRESS",
    "MAPSERVE_COMPRESS_MIN",
    "MAPSERVE_COMPRESS_MAX",
    "MAPSERVE_PRECOMPRESSED",
    "MAPSERVE_HEADER",
    "MAPSERVE_CORS",
    "MAPSERVE_ACCESS_LOG",
    "MAPSERVE_ACCESS_LOG_FORMAT",
    "MAPSERVE_ACCESS_LOG_FILE",
    "MAPSERVE_LOG_LEVEL",
    "MAPSERVE_ADMIN_LISTEN",
    "MAPSERVE_ADMIN_TOKEN_FILE",
    "MAPSERVE_CACHE_PIN_MAX",
    "MAPSERVE_PREWARM",
    "MAPSERVE_WORKERS",
];

impl Config {
    /// Resolves the layers into a validated configuration.
    pub fn load(cli: Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                FileConfig::parse(&text).map_err(|e| ConfigError::Parse {
                    path: path.clone(),
                    message: e.to_string().trim_end().to_owned(),
                })?
            }
            None => FileConfig::default(),
        };
        resolve(cli, file)
    }
}

#[cfg(test)]
mod tests;
