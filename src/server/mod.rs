//! Listening, accepting and serving connections, reloading, and shutting
//! down.
//!
//! * Listeners (`listener`): TCP addresses, unix sockets, TLS addresses
//!   (`tls`), or the sockets systemd passed in (`systemd`). One accept
//!   loop each; one connection cap over all (`accept`).
//! * Each connection: the PROXY header when configured (`proxy`), the TLS
//!   handshake on a TLS listener, then the timeout wrapper ([`conn`]) and
//!   hyper: HTTP/1.0, HTTP/1.1 with keep-alive and pipelining, and HTTP/2
//!   (h2c with prior knowledge on plain listeners, by ALPN under TLS).
//!   HTTP/1 bodies are written with `writev` straight from the mappings.
//! * `READY=1` to systemd once every listener accepts, `STOPPING=1` at the
//!   stop.
//! * SIGHUP: re-read the configuration and apply what can change live
//!   (`reload`).
//! * SIGTERM or SIGINT: stop accepting, let in-flight responses finish for the
//!   grace period, remove the unix sockets made, then return so that the
//!   process exits 0.

mod accept;
mod admin;
pub mod conn;
mod drain;
mod exec;
mod idle;
mod listener;
mod prewarm;
mod proxy;
mod reload;
mod systemd;
mod tls;
pub mod zerocopy;

use crate::cache::{CacheConfig, FileCache, ListingRules};
use crate::compress::CompressRules;
use crate::config::Config;
use crate::config::units::format_size;
use crate::handler::{App, Browse};
use crate::http::cors::Cors;
use crate::http::rules::HeaderRules;
use crate::response::Policy;
use accept::{Acceptor, Builders, Serving};
use arc_swap::ArcSwap;
use conn::Timeouts;
use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto;
use idle::IdleList;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// hyper's per-connection HTTP/1 buffer limit.
const H1_MAX_BUF: usize = 64 << 10;
/// hyper's per-stream HTTP/2 send buffer limit.
const H2_MAX_SEND_BUF: usize = 128 << 10;
/// Most concurrent HTTP/2 streams per connection.
const H2_MAX_STREAMS: u32 = 128;
/// How often cache totals are logged.
const STATS_INTERVAL: Duration = Duration::from_secs(60);
/// Free heap the allocator may hold before housekeeping trims it.
const FREE_HEAP_TRIM: u64 = 16 << 20;
/// How often idle pipes are closed.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(2);

/// Runs the server until SIGTERM or SIGINT, then drains for the grace period.
/// SIGHUP reloads the configuration (`reload`).
pub async fn run(config: Config) -> io::Result<()> {
    // First of all: a SIGHUP (`systemctl reload`) that comes as soon as the
    // process announces itself must find its handler, not end the process.
    let signals = Signals::install();
    if let Err(e) = crate::mmap::guard::status() {
        tracing::warn!(error = %e, "SIGBUS guard unavailable: a file truncated while a user-space reader copies it would end the process");
    }
    zerocopy::set_limit(usize::try_from(config.fd_plan.pipes).unwrap_or(usize::MAX));
    let cache = FileCache::new(
        &config.root,
        config.follow_symlinks_outside_root,
        &CacheConfig {
            max_bytes: config.cache_max_bytes,
            max_entries: config.cache_max_entries,
            small_file_max: config.small_file_max,
            window_size: config.window_size,
            revalidate: config.revalidate,
            prefault: config.prefault,
            verified_sends: config.verified_sends,
            max_open_files: config.fd_plan.response_files,
            etag: config.etag,
            etag_hash_max: config.etag_hash_max,
            pin_max_percent: config.observe.pin_max_percent,
        },
    )?;
    let target = match &config.observe.access_log_file {
        Some(path) => crate::access_log::sink::Target::File(path.clone()),
        None => crate::access_log::sink::Target::Stderr,
    };
    let sink = crate::access_log::sink::Sink::start(target, crate::access_log::SINK_CAPACITY)
        .map_err(|e| io::Error::new(e.kind(), format!("access-log-file: {e}")))?;
    crate::access_log::install(sink);
    let uses_openat2 = cache.uses_openat2();
    let app = Arc::new(ArcSwap::from_pointee(
        build_app(&config, &cache).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
    ));
    let tls = config.tls.as_ref().map(tls::Tls::new).transpose()?;
    let listeners = listener::bind_all(&config).await?;
    if tls.is_none() && listeners.iter().any(|l| l.tls) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a socket named `tls` was passed in: TLS needs --tls-cert and --tls-key",
        ));
    }
    let bound: Vec<String> = listeners.iter().map(listener::Listener::describe).collect();
    let health = Arc::new(crate::admin::Health::default());
    let admin_listener = match &config.observe.admin {
        Some(a) => Some(Arc::new(
            admin::bind(&a.listen)
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("admin-listen: {e}")))?,
        )),
        None => None,
    };

    tracing::info!(
        root = %config.root.display(),
        listen = ?bound,
        cache_max_bytes = %format_size(config.cache_max_bytes),
        cache_max_entries = config.cache_max_entries,
        small_file_max = %format_size(config.small_file_max),
        window_size = %format_size(config.window_size),
        max_connections = config.max_connections,
        response_files = config.fd_plan.response_files,
        pipes = config.fd_plan.pipes,
        workers = config.workers,
        nofile = crate::limits::nofile_soft().unwrap_or(0),
        vm_max_map_count = crate::limits::max_map_count().unwrap_or(0),
        revalidate = cache.revalidation().as_str(),
        resolve = if config.follow_symlinks_outside_root { "openat (follows symlinks outside root)" }
                  else if uses_openat2 { "openat2 RESOLVE_BENEATH" } else { "O_NOFOLLOW walk (no symlinks)" },
        proxy_protocol = config.proxy_protocol,
        etag = ?config.etag,
        "mapserve starting"
    );
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }

    let drain = drain::Drain::default();
    let idle = Arc::new(IdleList::default());
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let timeouts = Arc::new(ArcSwap::from_pointee(timeouts_of(&config)));
    let acceptor = Acceptor {
        serving: Arc::new(Serving {
            app: app.clone(),
            builders: builders(&config),
            idle: idle.clone(),
            timeouts: timeouts.clone(),
            proxy_protocol: config.proxy_protocol,
            tls: tls.clone(),
            drain: drain.clone(),
        }),
        slots: slots.clone(),
    };
    let listeners: Vec<Arc<listener::Listener>> = listeners.into_iter().map(Arc::new).collect();
    let mut loops = Vec::new();
    for listener in &listeners {
        eprintln!("listening on {}", listener.describe());
        loops.push(tokio::spawn(acceptor.clone().run(listener.clone(), stop_rx.clone())));
    }
    drop(acceptor);
    let admin_task = match (&admin_listener, &live_admin(&config, &cache, &app, &health)?) {
        (Some(listener), Some(state)) => {
            eprintln!("admin listening on {}", listener.describe());
            Some(tokio::spawn(admin::run(listener.clone(), state.clone())))
        }
        _ => None,
    };
    health.set_ready();
    systemd::notify("READY=1");
    let warming = (!config.observe.prewarm.is_empty()).then(|| {
        tokio::spawn(prewarm::at_start(cache.clone(), config.observe.prewarm.clone(), config.hidden))
    });
    let stats = tokio::spawn(housekeeping(cache.clone()));

    let mut live = reload::Live { config, app, timeouts, tls, cache: cache.clone() };
    signals.run(&mut live).await;
    health.set_draining();
    if let Some(w) = warming {
        w.abort();
    }
    systemd::notify("STOPPING=1");
    let grace = live.config.grace_period;
    tracing::info!(?grace, "shutting down: no longer accepting");
    let _ = stop_tx.send(true);
    for l in loops {
        let _ = l.await;
    }
    for listener in &listeners {
        listener.remove_socket_file();
    }
    stats.abort();
    log_totals(&cache);
    match tokio::time::timeout(grace, drain.shutdown(&idle, &slots, live.config.max_connections)).await {
        Ok(()) => tracing::info!("all connections finished"),
        Err(_) => tracing::warn!("grace period over; closing the remaining connections"),
    }
    if let Some(task) = admin_task {
        task.abort();
    }
    if let Some(listener) = &admin_listener {
        listener.remove_socket_file();
    }
    if let Some(sink) = crate::access_log::installed() {
        sink.flush(Duration::from_secs(2));
    }
    Ok(())
}

/// The application a configuration describes, over the (shared) cache.
fn build_app(config: &Config, cache: &FileCache) -> Result<App, String> {
    Ok(App {
        cache: cache.clone(),
        hidden: config.hidden,
        max_ranges: config.max_ranges,
        policy: Policy {
            cache_control: config.cache_control.clone(),
            compress: CompressRules {
                enabled: config.rules.compress,
                min: config.rules.compress_min,
                max: config.rules.compress_max,
                precompressed: config.rules.precompressed,
            },
        },
        access_log: config.access_log,
        access_log_format: config.observe.access_log_format,
        rules: HeaderRules::new(&config.rules.headers, &config.rules.header_rules)
            .map_err(|e| format!("[[headers]]: {e}"))?,
        cors: config.rules.cors.as_deref().map(Cors::new),
        trusted: config.trusted_proxies.clone(),
        browse: Browse {
            listing: config
                .listing
                .then_some(ListingRules { hidden: config.hidden, max_entries: config.listing_max_entries }),
            not_found_page: page(config.not_found_page.as_deref(), config.hidden),
            fallback: page(config.fallback.as_deref(), config.hidden),
        },
    })
}

fn timeouts_of(config: &Config) -> Timeouts {
    Timeouts { header: config.header_timeout, idle: config.idle_timeout, send: config.send_timeout }
}

/// hyper's builders: one that sniffs for h2c, one per ALPN protocol.
fn builders(config: &Config) -> Builders {
    let mut builder = auto::Builder::new(exec::StreamExec { stall: config.send_timeout });
    http1_settings(&mut builder);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_send_buf_size(H2_MAX_SEND_BUF);
    Builders { h1: builder.clone().http1_only(), h2: builder.clone().http2_only(), auto: builder }
}

/// hyper's HTTP/1 settings for the file listeners (public so that the
/// in-process allocation test serves with them too).
pub fn http1_settings<E>(builder: &mut auto::Builder<E>) {
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true)
        .writev(true)
        // No read while a response is in flight: hyper would otherwise poll
        // the socket for an early EOF after every request head, and grow its
        // read buffer to do it (an 8 KiB allocation and free per request,
        // the head still borrowing the old one). A client that closes is
        // still seen, by the next write failing; one that only shuts its
        // sending side gets its whole response.
        .half_close(true)
        // hyper keeps polling a body until this much is queued per
        // connection (400 KiB by default): mapped chunks cost nothing queued,
        // but pread chunks are heap, so a stalled client would pin 400 KiB.
        // It also caps a request head at 64 KiB (nginx: 8 KiB to 32 KiB).
        .max_buf_size(H1_MAX_BUF);
    // `pipeline_flush` stays off: it would batch pipelined responses into
    // one write (3x the req/s for clients that pipeline, the same for those
    // that do not), but it switches hyper to copying every body byte into
    // its own buffer, so no mapped chunk is spliced (the 1 GiB stream took
    // 4x the CPU per GB; README, "The hot path's budget").
}

/// The signals the process acts on, their handlers installed.
struct Signals(Option<[tokio::signal::unix::Signal; 4]>);

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        let kinds = [
            SignalKind::terminate(),
            SignalKind::interrupt(),
            SignalKind::hangup(),
            SignalKind::user_defined1(),
        ];
        match kinds.map(signal) {
            [Ok(term), Ok(int), Ok(hup), Ok(usr1)] => Signals(Some([term, int, hup, usr1])),
            _ => Signals(None),
        }
    }

    /// Waits for SIGTERM or SIGINT, reloading on every SIGHUP and reopening
    /// the access log file on every SIGUSR1 meanwhile.
    async fn run(self, live: &mut reload::Live) {
        let Some([mut term, mut int, mut hup, mut usr1]) = self.0 else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            return std::future::pending::<()>().await;
        };
        loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = int.recv() => return,
                _ = hup.recv() => live.reload().await,
                _ = usr1.recv() => {
                    if let Some(sink) = crate::access_log::installed() {
                        tracing::info!("SIGUSR1: reopening the access log");
                        sink.reopen();
                    }
                }
            }
        }
    }
}

/// The admin routes' state, when `--admin-listen` is on.
fn live_admin(
    config: &Config,
    cache: &FileCache,
    app: &Arc<ArcSwap<App>>,
    health: &Arc<crate::admin::Health>,
) -> io::Result<Option<Arc<crate::admin::AdminState>>> {
    let Some(admin) = &config.observe.admin else { return Ok(None) };
    let token = match &admin.token_file {
        Some(path) => Some(
            crate::config::observe::read_token(path)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("admin-token-file: {e}")))?,
        ),
        None => None,
    };
    Ok(Some(Arc::new(crate::admin::AdminState {
        cache: cache.clone(),
        app: app.clone(),
        health: health.clone(),
        token,
        started: std::time::Instant::now(),
        access: crate::access_log::installed().cloned(),
    })))
}

/// Periodic work: close pipes left idle, give freed heap back after a
/// burst, and log the totals every minute.
async fn housekeeping(cache: FileCache) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    tick.tick().await;
    let mut last_log = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        zerocopy::close_idle(HOUSEKEEPING_INTERVAL);
        // After a burst, glibc keeps what was freed: give it back once it
        // holds more than 16 MiB free. A trim frees only free pages, so
        // under steady load it finds little to do.
        if crate::mmap::free_heap_bytes().is_some_and(|free| free > FREE_HEAP_TRIM) {
            let before = crate::mmap::rss_anon_kib();
            tokio::task::spawn_blocking(crate::mmap::release_free_heap).await.ok();
            tracing::debug!(?before, after = ?crate::mmap::rss_anon_kib(), "released free heap memory (KiB)");
        }
        if last_log.elapsed() >= STATS_INTERVAL {
            last_log = tokio::time::Instant::now();
            log_totals(&cache);
        }
    }
}

/// The cache and mapping totals, in one log line (every minute and at exit).
fn log_totals(cache: &FileCache) {
    use std::sync::atomic::Ordering::Relaxed;
    if !crate::mmap::guard::is_active() {
        tracing::warn!(
            "the SIGBUS guard is no longer the process's SIGBUS handler (replaced by other code?)"
        );
    }
    let s = cache.stats();
    tracing::info!(
        entries = s.entries,
        bytes = %format_size(s.bytes),
        maps = s.maps,
        resident = %format_size(s.resident),
        windows_mapped = s.windows_mapped,
        pread_spans = s.pread_spans,
        stalled_streams_reset = exec::STALLED_STREAMS.load(Relaxed),
        open_files = s.open_files,
        pipes = zerocopy::alive(),
        loads_under_way = s.flights,
        compressions = s.compressions,
        guard_repairs = crate::mmap::guard::repairs(),
        guard_active = crate::mmap::guard::is_active(),
        unmaps_reaper = crate::cache::budget::UNMAPS.reaper.load(Relaxed),
        unmaps_blocking_pool = crate::cache::budget::UNMAPS.inline.load(Relaxed),
        hits = s.hits,
        misses = s.misses,
        "cache totals"
    );
}

/// A page path from the configuration (already checked there) as the
/// relative path a request for it would give.
fn page(rel: Option<&str>, hidden: bool) -> Option<crate::path::RelPath> {
    let rel = rel?;
    crate::path::parse(&format!("/{}", rel.replace('%', "%25")), hidden)
        .ok()
        .map(crate::path::Rel::into_owned)
}
