//! The observability side of the configuration: the access log's format and
//! file, the admin listener and its token, how much of the budget pins may
//! hold, which files to warm at start, and the check that refuses a log
//! filter naming an unknown level or target (one that would otherwise
//! silently log nothing). Parsing and validation only.

use super::net::{self, ListenAddr};
use std::path::PathBuf;

/// Default share of the cache budget pinned entries may hold, in percent.
pub const DEFAULT_PIN_MAX_PERCENT: u8 = 50;

/// The crates whose log targets a filter may name, besides `mapserve`.
const KNOWN_TARGETS: &[&str] = &[
    "mapserve",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "tokio_rustls",
    "tokio",
    "tower_http",
    "axum",
    "mio",
];

/// An access-log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// nginx/Apache combined log format.
    Combined,
    /// Common log format (combined without referer and user agent).
    Common,
    /// One JSON object a line.
    Json,
    /// The historical `key=value` line.
    Text,
}

impl Format {
    /// The name `FromStr` accepts.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Combined => "combined",
            Format::Common => "common",
            Format::Json => "json",
            Format::Text => "text",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "combined" => Ok(Format::Combined),
            "common" => Ok(Format::Common),
            "json" => Ok(Format::Json),
            "text" => Ok(Format::Text),
            _ => Err(format!("`{s}` is not an access log format (combined, common, json, text)")),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Where it listens.
    pub listen: ListenAddr,
    /// The file holding the bearer token, if one is required.
    pub token_file: Option<PathBuf>,
}

/// The resolved observability settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observe {
    /// Access log line format.
    pub access_log_format: Format,
    /// Access log file (`None`: stderr).
    pub access_log_file: Option<PathBuf>,
    /// The admin listener, when on.
    pub admin: Option<Admin>,
    /// Share of the cache budget pinned entries may hold, in percent.
    pub pin_max_percent: u8,
    /// Globs of files to map and fault in at start.
    pub prewarm: Vec<String>,
}

/// The raw values, from the command line or else the config file.
#[derive(Debug, Default)]
pub struct Raw {
    /// `--access-log-format`.
    pub format: Option<String>,
    /// `--access-log-file`.
    pub file: Option<PathBuf>,
    /// `--admin-listen`.
    pub admin_listen: Option<String>,
    /// `--admin-token-file`.
    pub admin_token_file: Option<PathBuf>,
    /// `--cache-pin-max`.
    pub pin_max: Option<String>,
    /// `--prewarm`.
    pub prewarm: Vec<String>,
}

/// Validates the raw values; the error names the key.
pub fn resolve(raw: Raw) -> Result<Observe, (&'static str, String)> {
    let access_log_format = match raw.format {
        None => Format::Combined,
        Some(text) => text.parse().map_err(|e| ("access-log-format", e))?,
    };
    let access_log_file =
        raw.file.filter(|p| !p.as_os_str().is_empty()).map(|p| std::path::absolute(&p).unwrap_or(p));
    let token_file = raw.admin_token_file.filter(|p| !p.as_os_str().is_empty());
    let admin = match raw.admin_listen.filter(|s| !s.is_empty()) {
        None => {
            if token_file.is_some() {
                return Err(("admin-token-file", "needs --admin-listen".to_owned()));
            }
            None
        }
        Some(text) => {
            let mut addrs =
                net::listen_addrs(std::slice::from_ref(&text), true).map_err(|e| ("admin-listen", e))?;
            if addrs.len() != 1 {
                return Err(("admin-listen", format!("`{text}` must name exactly one address")));
            }
            let listen = addrs.remove(0);
            let token_file = token_file.map(|p| std::path::absolute(&p).unwrap_or(p));
            if let Some(path) = &token_file {
                read_token(path).map_err(|e| ("admin-token-file", e))?;
            }
            let loopback = match &listen {
                ListenAddr::Tcp(a) => a.ip().is_loopback(),
                ListenAddr::Unix(_) => true,
            };
            if !loopback && token_file.is_none() {
                return Err((
                    "admin-listen",
                    format!("{listen} is not a loopback address: it needs --admin-token-file"),
                ));
            }
            Some(Admin { listen, token_file })
        }
    };
    let pin_max_percent = match raw.pin_max {
        None => DEFAULT_PIN_MAX_PERCENT,
        Some(text) => percent(&text).map_err(|e| ("cache-pin-max", e))?,
    };
    let prewarm = raw.prewarm.into_iter().filter(|g| !g.is_empty()).collect::<Vec<_>>();
    for glob in &prewarm {
        globset::Glob::new(glob.trim_start_matches('/'))
            .map_err(|e| ("prewarm", format!("`{glob}` is not a glob: {e}")))?;
    }
    Ok(Observe { access_log_format, access_log_file, admin, pin_max_percent, prewarm })
}

/// The token in `path`: its first line, trimmed, at least 16 bytes.
pub fn read_token(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.len() < 16 {
        return Err(format!("{}: the token must be at least 16 characters", path.display()));
    }
    Ok(token.to_owned())
}

/// `"50%"` or `"50"`: 0 to 100.
fn percent(text: &str) -> Result<u8, String> {
    let digits = text.trim().trim_end_matches('%').trim();
    match digits.parse::<u8>() {
        Ok(n) if n <= 100 => Ok(n),
        _ => Err(format!("`{text}` is not a share of the budget from 0% to 100%")),
    }
}

/// Checks a `--log-level` filter: comma-separated directives, each a level
/// (`error`, `warn`, `info`, `debug`, `trace`, `off`) or `target=level`
/// where the target is mapserve's or a known dependency's. tracing would
/// take `verbose` as a target named "verbose" at every level, and so log
/// nothing at all.
pub fn check_log_filter(filter: &str) -> Result<(), String> {
    const LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace", "off"];
    let mut any = false;
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        any = true;
        let (target, level) = match directive.split_once('=') {
            Some((t, l)) => (Some(t.trim()), l.trim()),
            None => (None, directive),
        };
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "`{level}` is not a log level (error, warn, info, debug, trace, off) in `{filter}`"
            ));
        }
        if let Some(target) = target {
            let krate = target.split("::").next().unwrap_or_default();
            if !KNOWN_TARGETS.contains(&krate) {
                return Err(format!(
                    "`{target}` is not a log target (mapserve, mapserve::access, or one of {}) in `{filter}`",
                    KNOWN_TARGETS.get(1..).unwrap_or_default().join(", ")
                ));
            }
        }
    }
    if !any {
        return Err("the log filter is empty".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_filters_with_unknown_levels_or_targets_are_refused() {
        for ok in ["info", "warn", "mapserve=debug", "info,hyper=warn", "mapserve::access=off", "TRACE"] {
            assert_eq!(check_log_filter(ok), Ok(()), "{ok}");
        }
        for bad in ["verbose", "mapserve=loud", "hyperr=info", "", " , ", "info,nonsense"] {
            assert!(check_log_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_public_admin_address_needs_a_token() {
        let raw = |listen: &str| Raw { admin_listen: Some(listen.into()), ..Raw::default() };
        assert!(resolve(raw("127.0.0.1:9000")).is_ok());
        assert!(resolve(raw("[::1]:9000")).is_ok());
        assert!(resolve(raw("unix:/tmp/admin.sock")).is_ok());
        let err = resolve(raw("0.0.0.0:9000")).unwrap_err();
        assert_eq!(err.0, "admin-listen");
        assert!(err.1.contains("admin-token-file"), "{}", err.1);
        let token = Raw { admin_token_file: Some("/nonexistent".into()), ..Raw::default() };
        assert_eq!(resolve(token).unwrap_err().0, "admin-token-file");
    }

    #[test]
    fn pin_share_and_format_parse() {
        assert_eq!(percent("25%"), Ok(25));
        assert_eq!(percent("0"), Ok(0));
        assert!(percent("101%").is_err() && percent("x").is_err());
        let o = resolve(Raw { format: Some("json".into()), ..Raw::default() }).unwrap();
        assert_eq!(o.access_log_format, Format::Json);
        assert_eq!(resolve(Raw::default()).unwrap().access_log_format, Format::Combined);
        assert_eq!(
            resolve(Raw { format: Some("xml".into()), ..Raw::default() }).unwrap_err().0,
            "access-log-format"
        );
    }
}
