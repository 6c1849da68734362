//! The command line, parsed by clap. Every option can also come from a
//! `MAPSERVE_*` environment variable (clap gives the command line precedence
//! over the environment). Every field is an `Option` with no clap default, so
//! "not given" stays visible and `Config::load` can fall back to the config
//! file and then the built-in default.

use super::units::{parse_duration, parse_size};
use clap::Parser;
use clap::builder::BoolishValueParser;
use std::path::PathBuf;
use std::time::Duration;

/// mapserve: an HTTP file server that serves bytes straight out of a cache of
/// read-only shared memory mappings.
///
/// Precedence: command line > environment (MAPSERVE_*) > config file > built-in
/// defaults. Sizes accept 268435456, 256MiB, 1G; durations accept 10, 10s, 500ms, 2m.
#[derive(Debug, Default, Parser)]
#[command(name = "mapserve", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    /// Directory to serve [default: .]
    #[arg(env = "MAPSERVE_ROOT", value_name = "ROOT")]
    pub root: Option<PathBuf>,

    /// Address to listen on (HOST:PORT, or unix:/path/to.sock); repeat for several; port 0 picks a free port [default: 127.0.0.1:8080]
    #[arg(short, long, env = "MAPSERVE_LISTEN", value_name = "ADDR", value_delimiter = ',')]
    pub listen: Vec<String>,

    /// Address to serve HTTPS on (needs --tls-cert and --tls-key); repeat for several [default: none]
    #[arg(long, env = "MAPSERVE_TLS_LISTEN", value_name = "ADDR", value_delimiter = ',')]
    pub tls_listen: Vec<String>,

    /// PEM certificate chain for the TLS listeners, leaf first; re-read on SIGHUP
    #[arg(long, env = "MAPSERVE_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) matching the certificate; re-read on SIGHUP
    #[arg(long, env = "MAPSERVE_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Permissions of the unix sockets mapserve creates, in octal [default: 0660]
    #[arg(long, env = "MAPSERVE_UNIX_MODE", value_name = "MODE")]
    pub unix_mode: Option<String>,

    /// Every connection starts with a PROXY protocol v1 or v2 header (HAProxy send-proxy); one without it is closed [default: false]
    #[arg(long, env = "MAPSERVE_PROXY_PROTOCOL", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub proxy_protocol: Option<bool>,

    /// Believe Forwarded / X-Forwarded-* headers from peers in this network (CIDR or address; `unix` for unix-socket peers); repeat for several [default: none]
    #[arg(
        long = "trusted-proxy",
        env = "MAPSERVE_TRUSTED_PROXY",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    pub trusted_proxy: Vec<String>,

    /// ETag form: strict (size, mtime, inode, ctime, device), metadata (mtime and size, as nginx), content (a hash of the bytes) [default: strict]
    #[arg(long, env = "MAPSERVE_ETAG", value_name = "MODE", value_parser = ["strict", "metadata", "content"])]
    pub etag: Option<String>,

    /// With --etag content, larger files get the metadata form [default: 256MiB]
    #[arg(long, env = "MAPSERVE_ETAG_HASH_MAX", value_name = "SIZE", value_parser = parse_size)]
    pub etag_hash_max: Option<u64>,

    /// TOML config file (see config/mapserve.toml for every key)
    #[arg(short, long, env = "MAPSERVE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Most bytes the cache keeps mapped or copied, in-flight responses included [default: 1GiB]
    #[arg(long, env = "MAPSERVE_CACHE_MAX_BYTES", value_name = "SIZE", value_parser = parse_size)]
    pub cache_max_bytes: Option<u64>,

    /// Most cache entries (each mapped entry is one kernel mapping) [default: 10000]
    #[arg(long, env = "MAPSERVE_CACHE_MAX_ENTRIES", value_name = "N")]
    pub cache_max_entries: Option<usize>,

    /// Files up to this size are copied into memory instead of mapped [default: 64KiB]
    #[arg(long, env = "MAPSERVE_SMALL_FILE_MAX", value_name = "SIZE", value_parser = parse_size)]
    pub small_file_max: Option<u64>,

    /// Files larger than this are mapped in windows of this size [default: 64MiB]
    #[arg(long, env = "MAPSERVE_WINDOW_SIZE", value_name = "SIZE", value_parser = parse_size)]
    pub window_size: Option<u64>,

    /// How changes on disk are detected: inotify (one FIONREAD per cache hit; sees every change made before the request), inotify-async (weaker: a thread applies events as they arrive, so a hit makes no system call, but a request may still get a version changed up to a few milliseconds earlier; see the README), or stat (one statx per hit) [default: inotify]
    #[arg(long, env = "MAPSERVE_REVALIDATE", value_name = "MODE", value_parser = ["inotify", "inotify-async", "stat"])]
    pub revalidate: Option<String>,

    /// Fault cold pages in on the blocking pool before sending them, so runtime workers never wait for the disk [default: true]
    #[arg(long, env = "MAPSERVE_PREFAULT", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub prefault: Option<bool>,

    /// Copy each chunk of a mapped file and re-check the file before sending it, so that files changed in place are never answered with zeros (costs a copy per byte) [default: false]
    #[arg(long, env = "MAPSERVE_VERIFIED_SENDS", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub verified_sends: Option<bool>,

    /// Serve dotfiles and dot-directories [default: false]
    #[arg(long, env = "MAPSERVE_HIDDEN", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub hidden: Option<bool>,

    /// Answer a directory without index.html with a listing page (HTML, or JSON on request); false gives 404 as for any missing file [default: true]
    #[arg(long, env = "MAPSERVE_LISTING", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub listing: Option<bool>,

    /// Most entries one listing shows (sorted first; a line says how many more there are) [default: 10000]
    #[arg(long, env = "MAPSERVE_LISTING_MAX_ENTRIES", value_name = "N")]
    pub listing_max_entries: Option<usize>,

    /// File (relative to ROOT) whose bytes answer every 404 [default: none]
    #[arg(long, env = "MAPSERVE_NOT_FOUND_PAGE", value_name = "PATH")]
    pub not_found_page: Option<String>,

    /// File (relative to ROOT) served with 200 for a missing path when the client prefers HTML: a single-page application's entry point [default: none]
    #[arg(long, env = "MAPSERVE_FALLBACK", value_name = "PATH")]
    pub fallback: Option<String>,

    /// Follow symlinks that resolve outside ROOT [default: false]
    #[arg(long, env = "MAPSERVE_FOLLOW_SYMLINKS_OUTSIDE_ROOT", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub follow_symlinks_outside_root: Option<bool>,

    /// Time allowed to receive a request head, counted from its first byte [default: 10s]
    #[arg(long, env = "MAPSERVE_HEADER_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub header_timeout: Option<Duration>,

    /// Close a connection with no request in flight after this long without traffic [default: 60s]
    #[arg(long, env = "MAPSERVE_IDLE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,

    /// Drop a client that accepts no response bytes for this long, and reset an HTTP/2 stream that makes no progress for this long [default: 60s]
    #[arg(long, env = "MAPSERVE_SEND_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub send_timeout: Option<Duration>,

    /// Most concurrent connections; at the cap the longest-idle keep-alive connection makes room, else clients wait in the backlog; 0 = half the descriptor limit [default: 0]
    #[arg(long, env = "MAPSERVE_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// On SIGTERM/SIGINT, time in-flight responses get to finish [default: 10s]
    #[arg(long, env = "MAPSERVE_GRACE_PERIOD", value_name = "DURATION", value_parser = parse_duration)]
    pub grace_period: Option<Duration>,

    /// Most ranges served in one multipart response; more are answered with the whole file [default: 64]
    #[arg(long, env = "MAPSERVE_MAX_RANGES", value_name = "N")]
    pub max_ranges: Option<usize>,

    /// Cache-Control value sent with every file, 304 and 206 [default: none]
    #[arg(long, env = "MAPSERVE_CACHE_CONTROL", value_name = "VALUE")]
    pub cache_control: Option<String>,

    /// Compress text, scripts, JSON, XML, SVG, wasm and uncompressed fonts once per file version (br, zstd, gzip), kept in the cache [default: true]
    #[arg(long, env = "MAPSERVE_COMPRESS", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub compress: Option<bool>,

    /// Smallest file compressed [default: 1KiB]
    #[arg(long, env = "MAPSERVE_COMPRESS_MIN", value_name = "SIZE", value_parser = parse_size)]
    pub compress_min: Option<u64>,

    /// Largest file compressed [default: 32MiB]
    #[arg(long, env = "MAPSERVE_COMPRESS_MAX", value_name = "SIZE", value_parser = parse_size)]
    pub compress_max: Option<u64>,

    /// Serve file.br, file.zst or file.gz next to a file for it when the client accepts that coding (ignored when older than the file) [default: true]
    #[arg(long, env = "MAPSERVE_PRECOMPRESSED", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub precompressed: Option<bool>,

    /// Add a header to every response, as "Name: value"; repeat for several (per-path rules: `[[headers]]` tables in the config file)
    #[arg(long = "header", env = "MAPSERVE_HEADER", value_name = "NAME: VALUE", value_delimiter = '\n')]
    pub header: Vec<String>,

    /// Let pages on other origins read responses: `*` (the default value) or a comma-separated list of origins [default: off]
    #[arg(long, env = "MAPSERVE_CORS", value_name = "ORIGINS", num_args = 0..=1,
          require_equals = true, default_missing_value = "*")]
    pub cors: Option<String>,

    /// Log one line per request [default: true]
    #[arg(long, env = "MAPSERVE_ACCESS_LOG", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new(),
          conflicts_with = "no_access_log")]
    pub access_log: Option<bool>,

    /// Turn the access log off (same as --access-log=false)
    #[arg(long)]
    pub no_access_log: bool,

    /// Access log line format: combined (as nginx and Apache write it), common, json or text [default: combined]
    #[arg(long, env = "MAPSERVE_ACCESS_LOG_FORMAT", value_name = "FORMAT")]
    pub access_log_format: Option<String>,

    /// Write the access log to this file instead of stderr; SIGUSR1 reopens it (logrotate) [default: stderr]
    #[arg(long, env = "MAPSERVE_ACCESS_LOG_FILE", value_name = "PATH")]
    pub access_log_file: Option<PathBuf>,

    /// Log filter: error, warn, info, debug, trace or off, optionally per target as target=level, comma-separated (an unknown level or target is refused) [default: info]
    #[arg(long, env = "MAPSERVE_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Serve metrics, health checks, the cache API and its dashboard on this address (HOST:PORT or unix:PATH), never on the file listeners [default: off]
    #[arg(long, env = "MAPSERVE_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<String>,

    /// A file whose first line is the admin bearer token; required when --admin-listen is not a loopback address or unix socket
    #[arg(long, env = "MAPSERVE_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Largest share of the cache budget that pinned entries may hold [default: 50%]
    #[arg(long, env = "MAPSERVE_CACHE_PIN_MAX", value_name = "PERCENT")]
    pub cache_pin_max: Option<String>,

    /// Map and fault in the files this glob matches (relative to ROOT) after start, within the budget; repeat for several
    #[arg(long, env = "MAPSERVE_PREWARM", value_name = "GLOB", value_delimiter = '\n')]
    pub prewarm: Vec<String>,

    /// Runtime worker threads; 0 means one per CPU [default: 0]
    #[arg(long, env = "MAPSERVE_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
}

impl Cli {
    /// Parses the process's arguments and environment. On a bad value, the
    /// error names the environment variable when that is where the value
    /// came from (clap names only the option), then exits with status 2.
    pub fn parse_or_exit() -> Cli {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        match Cli::try_parse_from(&args) {
            Ok(cli) => cli,
            Err(e) => {
                if let Some(var) = env_source(&e, &args) {
                    let text = e.render().to_string();
                    let first = text.lines().next().unwrap_or_default();
                    eprintln!("{first}\n  (the value comes from the environment variable {var})");
                    std::process::exit(2);
                }
                e.exit()
            }
        }
    }
}

/// The environment variable that supplied the value clap refused, if it was
/// not given on the command line.
fn env_source(e: &clap::Error, args: &[std::ffi::OsString]) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else { return None };
    let long = arg.split(['[', ' ', '=']).next()?.strip_prefix("--")?;
    env_source_of(long, args)
}

/// The environment variable that set option `--long`, when it is set and the
/// option is not on the command line `args`.
pub fn env_source_of(long: &str, args: &[std::ffi::OsString]) -> Option<String> {
    use clap::CommandFactory;
    let command = Cli::command();
    let option = command.get_arguments().find(|a| a.get_long() == Some(long))?;
    let var = option.get_env()?.to_string_lossy().into_owned();
    let flag = format!("--{long}");
    let on_command_line = args.iter().any(|a| {
        let a = a.to_string_lossy();
        a == flag || a.starts_with(&format!("{flag}="))
    });
    (!on_command_line && std::env::var_os(&var).is_some()).then_some(var)
}
