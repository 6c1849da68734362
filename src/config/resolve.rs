//! Resolving the layers (command line, environment, config file, defaults)
//! into one validated [`Config`]: every value checked, every error naming
//! its key.

use super::file::{Flag, Size, Span};
use super::*;

pub(super) fn size(
    key: &'static str,
    cli: Option<u64>,
    file: Option<Size>,
    default: u64,
) -> Result<u64, ConfigError> {
    if let Some(v) = cli {
        return Ok(v);
    }
    match file {
        None => Ok(default),
        Some(Size::Bytes(n)) => Ok(n),
        Some(Size::Text(t)) => units::parse_size(&t).map_err(|r| invalid(key, r)),
    }
}

pub(super) fn flag(
    key: &'static str,
    cli: Option<bool>,
    file: Option<&Flag>,
    default: bool,
) -> Result<bool, ConfigError> {
    match (cli, file) {
        (Some(v), _) => Ok(v),
        (None, Some(f)) => f.value().map_err(|r| invalid(key, r)),
        (None, None) => Ok(default),
    }
}

/// A page named relative to ROOT (`--not-found-page`, `--fallback`): the
/// same rules as a request path's segments, checked at start-up so that a
/// typo stops the server instead of answering every 404 with another 404.
fn page_path(key: &'static str, value: Option<String>, hidden: bool) -> Result<Option<String>, ConfigError> {
    let Some(value) = value.filter(|v| !v.is_empty()) else { return Ok(None) };
    let segments: Vec<&str> = value.split('/').filter(|s| !s.is_empty()).collect();
    if value.ends_with('/') || segments.is_empty() {
        return Err(invalid(key, "must name a file relative to ROOT"));
    }
    for s in &segments {
        if *s == "." || *s == ".." || s.contains(['\\', '\0']) {
            return Err(invalid(key, format!("`{value}` is not a plain path relative to ROOT")));
        }
        if s.starts_with('.') && !hidden {
            return Err(invalid(
                key,
                format!("`{value}` is a dotfile, which is not served without --hidden"),
            ));
        }
    }
    Ok(Some(segments.join("/")))
}

fn span(
    key: &'static str,
    cli: Option<Duration>,
    file: Option<Span>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let value = match (cli, file) {
        (Some(v), _) => v,
        (None, None) => default,
        (None, Some(Span::Secs(n))) => Duration::from_secs(n),
        (None, Some(Span::Text(t))) => units::parse_duration(&t).map_err(|r| invalid(key, r))?,
    };
    if value.is_zero() {
        return Err(invalid(key, "must be greater than zero"));
    }
    Ok(value)
}

pub(super) fn resolve(cli: Cli, file: FileConfig) -> Result<Config, ConfigError> {
    let mut warnings = Vec::new();
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("MAPSERVE_") && !KNOWN_ENV.contains(&name.as_ref()) {
            warnings.push(format!("ignoring unknown environment variable {name}"));
        }
    }

    // Before the fields below are moved out of `file`.
    let rules = rules::resolve(
        rules::CliRules {
            compress: cli.compress,
            compress_min: cli.compress_min,
            compress_max: cli.compress_max,
            precompressed: cli.precompressed,
            header: cli.header,
            cors: cli.cors,
        },
        &file,
    )?;
    let root_given = cli.root.or(file.root).unwrap_or_else(|| PathBuf::from("."));
    // Absolute but not canonical: a ROOT given through a symlink
    // (`current -> releases/r1`) is followed again when it is swapped.
    let root = std::path::absolute(&root_given)
        .map_err(|e| invalid("root", format!("{}: {e}", root_given.display())))?;
    if !root.is_dir() {
        return Err(invalid("root", format!("{} is not a directory", root.display())));
    }

    let listen_text = if !cli.listen.is_empty() {
        cli.listen
    } else {
        file.listen.map(|l| l.into_vec()).unwrap_or_else(|| vec![DEFAULT_LISTEN.to_owned()])
    };
    if listen_text.is_empty() {
        return Err(invalid("listen", "at least one address is required"));
    }
    let listen = net::listen_addrs(&listen_text, true).map_err(|e| invalid("listen", e))?;
    if listen.is_empty() {
        return Err(invalid("listen", "no address resolved"));
    }
    let tls_text = if !cli.tls_listen.is_empty() {
        cli.tls_listen
    } else {
        file.tls_listen.map(|l| l.into_vec()).unwrap_or_default()
    };
    let tls_listen: Vec<SocketAddr> = net::listen_addrs(&tls_text, false)
        .map_err(|e| invalid("tls-listen", e))?
        .into_iter()
        .filter_map(|a| match a {
            ListenAddr::Tcp(addr) => Some(addr),
            ListenAddr::Unix(_) => None,
        })
        .collect();
    let tls = match (cli.tls_cert.or(file.tls_cert), cli.tls_key.or(file.tls_key)) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: std::path::absolute(&cert).unwrap_or(cert),
            key: std::path::absolute(&key).unwrap_or(key),
        }),
        (None, None) => None,
        (Some(_), None) => return Err(invalid("tls-key", "--tls-cert needs --tls-key")),
        (None, Some(_)) => return Err(invalid("tls-cert", "--tls-key needs --tls-cert")),
    };
    if !tls_listen.is_empty() && tls.is_none() {
        return Err(invalid("tls-listen", "needs --tls-cert and --tls-key"));
    }
    let unix_mode = match cli.unix_mode.or(file.unix_mode) {
        None => net::DEFAULT_UNIX_MODE,
        Some(text) => net::unix_mode(&text).map_err(|e| invalid("unix-mode", e))?,
    };
    let proxy_protocol = flag("proxy-protocol", cli.proxy_protocol, file.proxy_protocol.as_ref(), false)?;
    let trusted_text = if !cli.trusted_proxy.is_empty() {
        cli.trusted_proxy
    } else {
        file.trusted_proxy.map(|l| l.into_vec()).unwrap_or_default()
    };
    let trusted_proxies = TrustedProxies::parse(&trusted_text).map_err(|e| invalid("trusted-proxy", e))?;
    let etag = match cli.etag.or(file.etag) {
        None => EtagMode::Strict,
        Some(text) => EtagMode::parse(&text).map_err(|e| invalid("etag", e))?,
    };
    let etag_hash_max =
        size("etag-hash-max", cli.etag_hash_max, file.etag_hash_max, net::DEFAULT_ETAG_HASH_MAX)?;

    let cache_max_bytes =
        size("cache-max-bytes", cli.cache_max_bytes, file.cache_max_bytes, DEFAULT_CACHE_MAX_BYTES)?;
    if cache_max_bytes < 1 << 20 {
        return Err(invalid("cache-max-bytes", "must be at least 1MiB"));
    }
    let cache_max_entries =
        cli.cache_max_entries.or(file.cache_max_entries).unwrap_or(DEFAULT_CACHE_MAX_ENTRIES);
    let max_map_count = crate::limits::max_map_count();
    if cache_max_entries == 0 {
        return Err(invalid("cache-max-entries", "must be at least 1"));
    }
    if let Some(limit) = max_map_count {
        if cache_max_entries as u64 > limit / 2 {
            return Err(invalid(
                "cache-max-entries",
                format!(
                    "{cache_max_entries} is more than half of vm.max_map_count ({limit}); lower it or raise the sysctl"
                ),
            ));
        }
    }
    let small_file_max =
        size("small-file-max", cli.small_file_max, file.small_file_max, DEFAULT_SMALL_FILE_MAX)?;
    if small_file_max > cache_max_bytes / 4 {
        return Err(invalid("small-file-max", "must be at most a quarter of cache-max-bytes"));
    }
    let window_size = size("window-size", cli.window_size, file.window_size, DEFAULT_WINDOW_SIZE)?;
    let page = crate::limits::page_size();
    if window_size == 0 || window_size % page != 0 {
        return Err(invalid("window-size", format!("must be a non-zero multiple of the page size ({page})")));
    }
    if window_size > cache_max_bytes / 2 {
        return Err(invalid("window-size", "must be at most half of cache-max-bytes"));
    }

    let revalidate = match cli.revalidate.or(file.revalidate) {
        None => Revalidate::default(),
        Some(text) => Revalidate::parse(&text).map_err(|e| invalid("revalidate", e))?,
    };
    let header_timeout =
        span("header-timeout", cli.header_timeout, file.header_timeout, DEFAULT_HEADER_TIMEOUT)?;
    let idle_timeout = span("idle-timeout", cli.idle_timeout, file.idle_timeout, DEFAULT_IDLE_TIMEOUT)?;
    let send_timeout = span("send-timeout", cli.send_timeout, file.send_timeout, DEFAULT_SEND_TIMEOUT)?;
    let grace_period = match (cli.grace_period, file.grace_period) {
        (Some(v), _) => v,
        (None, None) => DEFAULT_GRACE_PERIOD,
        (None, Some(Span::Secs(n))) => Duration::from_secs(n),
        (None, Some(Span::Text(t))) => units::parse_duration(&t).map_err(|r| invalid("grace-period", r))?,
    };

    // Sized from the limit in force now: `main` raises it first.
    let nofile = crate::limits::nofile_soft().unwrap_or(1024);
    let fd_plan = match cli.max_connections.or(file.max_connections) {
        None | Some(0) => crate::limits::FdPlan::new(nofile, None),
        Some(n) => {
            let plan = crate::limits::FdPlan::new(nofile, Some(n as u64));
            if plan.total() > nofile {
                warnings.push(format!(
                    "max-connections {n} leaves too few of the {nofile} descriptors for files and pipes: expect 503s"
                ));
            }
            plan
        }
    };
    let max_connections = usize::try_from(fd_plan.connections).unwrap_or(usize::MAX);

    let max_ranges = cli.max_ranges.or(file.max_ranges).unwrap_or(DEFAULT_MAX_RANGES);
    if max_ranges == 0 {
        return Err(invalid("max-ranges", "must be at least 1"));
    }
    let cache_control = match cli.cache_control.or(file.cache_control) {
        None => None,
        Some(text) if text.is_empty() => None,
        Some(text) => Some(
            http::HeaderValue::from_str(&text)
                .map_err(|_| invalid("cache-control", "not a valid header value"))?,
        ),
    };
    let access_log = cli.no_access_log.then_some(false).or(cli.access_log);
    let access_log = flag("access-log", access_log, file.access_log.as_ref(), true)?;
    let prefault = flag("prefault", cli.prefault, file.prefault.as_ref(), true)?;
    let verified_sends = flag("verified-sends", cli.verified_sends, file.verified_sends.as_ref(), false)?;
    let hidden = flag("hidden", cli.hidden, file.hidden.as_ref(), false)?;
    let follow_symlinks_outside_root = flag(
        "follow-symlinks-outside-root",
        cli.follow_symlinks_outside_root,
        file.follow_symlinks_outside_root.as_ref(),
        false,
    )?;
    let listing = flag("listing", cli.listing, file.listing.as_ref(), true)?;
    let listing_max_entries =
        cli.listing_max_entries.or(file.listing_max_entries).unwrap_or(DEFAULT_LISTING_MAX_ENTRIES);
    if listing_max_entries == 0 {
        return Err(invalid("listing-max-entries", "must be at least 1"));
    }
    let not_found_page = page_path("not-found-page", cli.not_found_page.or(file.not_found_page), hidden)?;
    let fallback = page_path("fallback", cli.fallback.or(file.fallback), hidden)?;
    let log_level = cli.log_level.or(file.log_level).unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned());
    observe::check_log_filter(&log_level).map_err(|e| invalid("log-level", e))?;
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        return Err(invalid("log-level", format!("`{log_level}` is not a log filter")));
    }
    let observe = observe::resolve(observe::Raw {
        format: cli.access_log_format.or(file.access_log_format),
        file: cli.access_log_file.or(file.access_log_file),
        admin_listen: cli.admin_listen.or(file.admin_listen),
        admin_token_file: cli.admin_token_file.or(file.admin_token_file),
        pin_max: cli.cache_pin_max.or(file.cache_pin_max),
        prewarm: if cli.prewarm.is_empty() {
            file.prewarm.map(|p| p.into_vec()).unwrap_or_default()
        } else {
            cli.prewarm
        },
    })
    .map_err(|(key, reason)| invalid(key, reason))?;
    let workers = match cli.workers.or(file.workers).unwrap_or(0) {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n if n > 1024 => return Err(invalid("workers", "must be at most 1024")),
        n => n,
    };

    Ok(Config {
        root,
        listen,
        tls_listen,
        tls,
        unix_mode,
        proxy_protocol,
        trusted_proxies,
        etag,
        etag_hash_max,
        cache_max_bytes,
        cache_max_entries,
        small_file_max,
        window_size,
        prefault,
        verified_sends,
        revalidate,
        hidden,
        listing,
        listing_max_entries,
        not_found_page,
        fallback,
        follow_symlinks_outside_root,
        header_timeout,
        idle_timeout,
        send_timeout,
        max_connections,
        fd_plan,
        grace_period,
        max_ranges,
        cache_control,
        rules,
        access_log,
        log_level,
        observe,
        workers,
        warnings,
    })
}
