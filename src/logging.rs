//! tracing to stderr. Lines go through a non-blocking writer thread so that a
//! slow terminal or pipe never blocks a runtime worker; under extreme load,
//! lines may be dropped rather than slow the server down.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Keep the guard alive until exit: dropping
/// it flushes what is buffered.
pub fn init(filter: &str) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(true)
        .with_ansi(false)
        .init();
    guard
}
