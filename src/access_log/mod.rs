//! The access log: one line per request, in the format `--access-log-format`
//! names ([`mod@format`]: combined, common, json, text), written off the request
//! path by a non-blocking writer ([`sink`]) to stderr or
//! `--access-log-file`, which SIGUSR1 reopens; when the writer falls behind,
//! lines are dropped and counted, never waited for.
//!
//! A response body finishes its [`AccessRecord`] when it ends: complete,
//! failed (the file shrank, a mapping was poisoned) or cancelled (the client
//! went away, an HTTP/2 stream was reset, or it stalled past the send
//! timeout); the handler logs responses without a body the same way.
//! Requests that never reach the handler are logged by the connection:
//! those hyper rejects (400, 431) and those the connection refuses itself
//! (414).
//!
//! Cancelled requests are rate-limited per connection ([`Repeats`]): a reset
//! flood is one line a request up to `CANCELLED_PER_SEC` a second, then
//! one line saying how many more were cancelled, so that a client cannot
//! fill the disk with the server's log.

pub mod format;
pub mod sink;

use crate::peer::Peer;
use format::{Format, Line};
use sink::{Sink, Target};
use std::sync::{Mutex, OnceLock};
use std::time::{Instant, SystemTime};

/// Cancelled-request lines logged per connection per second, at most.
pub(crate) const CANCELLED_PER_SEC: u32 = 20;

/// What the access line says about a request, known when it starts (and
/// its status, known when the response is built).
#[derive(Debug)]
pub struct AccessRecord {
    /// The line format (the one configured when the request started).
    pub format: Format,
    /// Client address.
    pub client: Peer,
    /// The client used HTTPS (here, or at a trusted proxy).
    pub https: bool,
    /// The TLS version of this connection, if it is TLS.
    pub tls: Option<&'static str>,
    /// Request method.
    pub method: http::Method,
    /// Request path and query as received.
    pub target: String,
    /// HTTP version.
    pub version: http::Version,
    /// Response status.
    pub status: u16,
    /// When the request started.
    pub start: Instant,
    /// The same moment on the wall clock.
    pub time: SystemTime,
    /// `Host` (or the HTTP/2 authority).
    pub host: Option<String>,
    /// `Referer`.
    pub referer: Option<String>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// `Range`.
    pub range: Option<String>,
    /// The content coding of the body sent, if any.
    pub coding: Option<&'static str>,
}

impl AccessRecord {
    /// The record of request `req`, answered with `status`.
    pub fn of(
        req: &http::request::Parts,
        (client, https, tls): (Peer, bool, Option<&'static str>),
        status: u16,
        (start, format): (Instant, Format),
    ) -> AccessRecord {
        let header = |name: http::HeaderName| {
            req.headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        AccessRecord {
            format,
            client,
            https,
            tls,
            method: req.method.clone(),
            target: req.uri.path_and_query().map_or_else(|| req.uri.to_string(), |pq| pq.to_string()),
            version: req.version,
            status,
            start,
            time: SystemTime::now() - start.elapsed(),
            host: header(http::header::HOST).or_else(|| req.uri.authority().map(|a| a.to_string())),
            referer: header(http::header::REFERER),
            user_agent: header(http::header::USER_AGENT),
            range: header(http::header::RANGE),
            coding: None,
        }
    }
}

/// What the metrics count of a request when its response ends.
#[derive(Debug)]
pub struct Tally {
    /// Request method.
    pub method: http::Method,
    /// Response status.
    pub status: u16,
    /// When the request started.
    pub start: Instant,
}

/// What is reported when a response has ended and its bytes are out: the
/// metrics' count, and the access line when the log is on.
#[derive(Debug, Default)]
pub struct Report {
    /// The access line's facts (`None`: access log off), boxed so that a
    /// report moves cheaply through the connection's ledger.
    pub record: Option<Box<AccessRecord>>,
    /// The metrics' facts.
    pub tally: Option<Tally>,
    /// How the body was served (`hit`, `load`, ...).
    pub outcome: &'static str,
}

impl Report {
    /// Counts the request and writes its line: `bytes` of body went out.
    pub fn send(self, bytes: u64, ending: Ending, repeats: Option<&Repeats>) {
        if let Some(t) = &self.tally {
            crate::metrics::global().request(&t.method, t.status, bytes, t.start.elapsed());
        }
        if let Some(record) = &self.record {
            finish(record, bytes, ending, self.outcome, repeats);
        }
    }
}

/// How a response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every byte was handed to the connection.
    Complete,
    /// The server could not finish it (the file shrank or was poisoned).
    Failed,
    /// The client went away, reset the stream, or stopped reading.
    Cancelled,
}

/// Per-connection limit on cancelled-request lines.
#[derive(Debug, Default)]
pub struct Repeats {
    state: Mutex<RepeatState>,
}

#[derive(Debug, Default)]
struct RepeatState {
    window: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl Repeats {
    /// Whether one more cancelled line may be written now.
    fn allow(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if s.window.is_none_or(|w| now.duration_since(w).as_secs() >= 1) {
            s.window = Some(now);
            s.logged = 0;
        }
        if s.logged < CANCELLED_PER_SEC {
            s.logged += 1;
            true
        } else {
            s.suppressed += 1;
            false
        }
    }

    /// Writes the summary of suppressed lines, if any (at connection end).
    pub fn flush(&self, client: Peer) {
        let suppressed = std::mem::take(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()).suppressed);
        if suppressed > 0 {
            tracing::info!(
                target: "mapserve::access",
                %client,
                cancelled_not_logged = suppressed,
                "more requests on this connection were cancelled by the client than are logged one by one"
            );
        }
    }
}

/// A limit on a warning that can repeat once per request (503s when
/// descriptors run out, a flood per connection): at most `per_sec` lines a
/// second; the next line allowed says how many were left out.
#[derive(Debug)]
pub(crate) struct Throttle {
    per_sec: u32,
    state: Mutex<(Option<Instant>, u32, u64)>,
}

impl Throttle {
    /// A throttle of `per_sec` lines a second.
    pub(crate) const fn new(per_sec: u32) -> Throttle {
        Throttle { per_sec, state: Mutex::new((None, 0, 0)) }
    }

    /// `Some(lines left out since the last one written)` when a line may be
    /// written now.
    pub(crate) fn allow(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if s.0.is_none_or(|w| now.duration_since(w).as_secs() >= 1) {
            s.0 = Some(now);
            s.1 = 0;
        }
        if s.1 < self.per_sec {
            s.1 += 1;
            Some(std::mem::take(&mut s.2))
        } else {
            s.2 += 1;
            None
        }
    }
}

/// Where lines go: the sink `main` installs, or else stderr.
static SINK: OnceLock<Sink> = OnceLock::new();

/// Lines queued for the sink at most; more are dropped and counted.
pub const SINK_CAPACITY: usize = 16_384;

/// Installs the sink lines are written to (once, at start).
pub fn install(sink: Sink) {
    let _ = SINK.set(sink);
}

/// The sink, if one is running (for its counters and SIGUSR1).
pub fn installed() -> Option<&'static Sink> {
    SINK.get()
}

fn sink() -> Option<&'static Sink> {
    if let Some(s) = SINK.get() {
        return Some(s);
    }
    // Driven without `main` (tests of the library): stderr.
    Sink::start(Target::Stderr, SINK_CAPACITY).ok().map(|s| SINK.get_or_init(|| s))
}

/// Writes the line of a finished request: `bytes` of body sent, `cache`
/// how the body was served.
fn finish(record: &AccessRecord, bytes: u64, ending: Ending, cache: &str, repeats: Option<&Repeats>) {
    if ending == Ending::Cancelled && repeats.is_some_and(|r| !r.allow()) {
        return;
    }
    let (target, protocol) = (record.target.as_str(), version_str(record.version));
    let line = Line {
        time: record.time,
        client: record.client.ip(),
        client_port: record.client.port(),
        method: record.method.as_str(),
        target,
        protocol,
        status: record.status,
        bytes,
        referer: record.referer.as_deref(),
        user_agent: record.user_agent.as_deref(),
        duration: record.start.elapsed(),
        host: record.host.as_deref(),
        range: record.range.as_deref(),
        https: record.https,
        tls: record.tls,
        cache,
        coding: record.coding,
        ending: ending.as_str(),
        why: None,
    };
    emit(record.format, &line);
}

/// Writes the line of a request refused before it reached the handler.
pub(crate) fn refused(client: Peer, status: u16, why: &str, format: Format) {
    let line = Line {
        time: SystemTime::now(),
        client: client.ip(),
        client_port: client.port(),
        method: "-",
        target: "-",
        protocol: "-",
        status,
        bytes: 0,
        referer: None,
        user_agent: None,
        duration: std::time::Duration::ZERO,
        host: None,
        range: None,
        https: false,
        tls: None,
        cache: "none",
        coding: None,
        ending: "refused",
        why: Some(why),
    };
    emit(format, &line);
}

fn emit(format: Format, line: &Line<'_>) {
    let mut text = String::with_capacity(256);
    format::write(format, line, &mut text);
    if let Some(sink) = sink() {
        sink.write(text);
    }
}

fn version_str(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

impl Ending {
    fn as_str(self) -> &'static str {
        match self {
            Ending::Complete => "complete",
            Ending::Failed => "failed",
            Ending::Cancelled => "cancelled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_counts_what_it_leaves_out() {
        let t = Throttle::new(3);
        let allowed: Vec<Option<u64>> = (0..10).map(|_| t.allow()).collect();
        assert_eq!(allowed.iter().filter(|a| a.is_some()).count(), 3);
        t.state.lock().unwrap().0 = Some(Instant::now() - std::time::Duration::from_secs(2));
        assert_eq!(t.allow(), Some(7), "the next line says how many were left out");
    }

    #[test]
    fn cancelled_lines_are_limited_per_second_and_counted() {
        let r = Repeats::default();
        let allowed = (0..1000).filter(|_| r.allow()).count();
        assert_eq!(allowed, CANCELLED_PER_SEC as usize);
        assert_eq!(r.state.lock().unwrap().suppressed, 1000 - u64::from(CANCELLED_PER_SEC));
        r.state.lock().unwrap().window = Some(Instant::now() - std::time::Duration::from_secs(2));
        assert!(r.allow(), "a new second allows lines again");
    }
}
