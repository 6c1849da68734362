//! tracing to stderr. Lines go through a non-blocking writer thread so that a
//! slow terminal or pipe never blocks a runtime worker; under extreme load,
//! lines may be dropped rather than slow the server down. The filter can be
//! replaced while running ([`set_filter`], on SIGHUP).

use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

type Setter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Replaces the installed subscriber's filter.
static SETTER: OnceLock<Setter> = OnceLock::new();

/// Installs the global subscriber. Keep the guard alive until exit: dropping
/// it flushes what is buffered.
pub fn init(filter: &str) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(true)
        .with_ansi(false)
        .with_filter_reloading();
    let handle = builder.reload_handle();
    let _ = SETTER.set(Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())));
    builder.init();
    guard
}

/// Replaces the log filter (`--log-level`) of the running process.
pub fn set_filter(filter: &str) -> Result<(), String> {
    let parsed = EnvFilter::try_new(filter).map_err(|e| format!("`{filter}` is not a log filter: {e}"))?;
    match SETTER.get() {
        Some(set) => set(parsed),
        None => Err("logging is not initialised".to_owned()),
    }
}
