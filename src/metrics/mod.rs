//! Server metrics: counters the request path bumps without locks, hashing or
//! contended atomics, encoded for Prometheus only at scrape time.
//!
//! Per-request values (requests by method and status, response body bytes,
//! the duration histogram) live in per-thread-group shards of plain
//! atomics. Per-connection values (accepted, open, refused, timeouts) are
//! single atomics: they change once per connection, not per request.
//! [`expose`] turns a [`Metrics`] plus scrape-time [`expose::Gauges`] into
//! Prometheus or OpenMetrics text through `prometheus-client`.

mod collect;
pub mod expose;
mod process;
mod shard;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use shard::{BUCKETS, METHODS, SHARDS, STATUSES, Shard};

/// When [`global`] was first called: the process start, near enough.
static STARTED: OnceLock<SystemTime> = OnceLock::new();

/// The one process-wide instance.
static GLOBAL: Metrics = Metrics::new();

/// The process-wide metrics (one instance).
pub fn global() -> &'static Metrics {
    STARTED.get_or_init(SystemTime::now);
    &GLOBAL
}

/// The process start time as [`global`] first saw it (now, if never called).
fn started() -> SystemTime {
    *STARTED.get_or_init(SystemTime::now)
}

/// What kind of timeout closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// The request head did not arrive in time.
    Header,
    /// The connection sat idle too long.
    Idle,
    /// The peer did not take the response in time.
    Send,
    /// The PROXY header or the TLS handshake did not finish in time.
    Handshake,
}

impl Timeout {
    /// Every kind, in label order.
    const ALL: [Timeout; 4] = [Timeout::Header, Timeout::Idle, Timeout::Send, Timeout::Handshake];

    /// The `kind` label value.
    pub const fn label(self) -> &'static str {
        match self {
            Timeout::Header => "header",
            Timeout::Idle => "idle",
            Timeout::Send => "send",
            Timeout::Handshake => "handshake",
        }
    }
}

/// Why a connection was closed before HTTP. (At the connection cap nothing
/// is refused: the connection waits for a slot.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A missing or malformed PROXY protocol header.
    Proxy,
    /// A failed TLS handshake.
    Tls,
}

impl Refusal {
    /// Every reason, in label order.
    const ALL: [Refusal; 2] = [Refusal::Proxy, Refusal::Tls];

    /// The `reason` label value.
    pub const fn label(self) -> &'static str {
        match self {
            Refusal::Proxy => "proxy_header",
            Refusal::Tls => "tls_handshake",
        }
    }
}

/// Per-connection counters, on cache lines apart from the shards.
#[repr(align(128))]
struct Connections {
    /// Connections accepted.
    accepted: AtomicU64,
    /// Accepted minus closed (may dip below zero transiently if a close is
    /// counted before its accept; shown clamped at zero).
    open: AtomicI64,
    /// Refusals by [`Refusal`] (its discriminant).
    refused: [AtomicU64; 2],
    /// Timeouts by [`Timeout`] (its discriminant).
    timeouts: [AtomicU64; 4],
}

/// The server's counters. One process-wide instance: [`global`].
pub struct Metrics {
    /// Per-request counters; a thread uses one shard only.
    shards: [Shard; SHARDS],
    /// Per-connection counters.
    connections: Connections,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (requests, body_bytes) = self.totals();
        f.debug_struct("Metrics")
            .field("requests", &requests)
            .field("body_bytes", &body_bytes)
            .field("accepted", &self.connections.accepted.load(Relaxed))
            .field("open", &self.open())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All zero. The server uses [`global`]; tests wanting an instance of
    /// their own declare `static M: Metrics = Metrics::new();` (it is large:
    /// keep it off the stack).
    pub const fn new() -> Self {
        Self {
            shards: [const { Shard::new() }; SHARDS],
            connections: Connections {
                accepted: AtomicU64::new(0),
                open: AtomicI64::new(0),
                refused: [const { AtomicU64::new(0) }; 2],
                timeouts: [const { AtomicU64::new(0) }; 4],
            },
        }
    }

    /// One finished request: hot path. `method` is the request method (GET,
    /// HEAD, OPTIONS count apart, every other method as "other"), `status`
    /// 100..=599 (anything else counts as "other"), `body_bytes` the response
    /// body bytes sent (on HTTP/1 over TCP or a unix socket with the access
    /// log on, what the kernel took; otherwise what the body handed to hyper),
    /// `duration` from request start to response end.
    #[inline]
    pub fn request(&self, method: &::http::Method, status: u16, body_bytes: u64, duration: Duration) {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        if let Some(shard) = self.shards.get(shard::thread_shard()) {
            shard.record(shard::method_slot(method), shard::status_slot(status), body_bytes, nanos);
        }
    }

    /// A request refused before it reached the handler (a 400, 414 or 431
    /// hyper or the connection answered): its method is unknown, so it counts
    /// as "other", with no body and no duration.
    pub fn refused_request(&self, status: u16) {
        if let Some(shard) = self.shards.get(shard::thread_shard()) {
            shard.record(3, shard::status_slot(status), 0, 0);
        }
    }

    /// A connection was accepted (and is now open).
    pub fn connection_accepted(&self) {
        self.connections.accepted.fetch_add(1, Relaxed);
        self.connections.open.fetch_add(1, Relaxed);
    }

    /// An accepted connection closed.
    pub fn connection_closed(&self) {
        self.connections.open.fetch_sub(1, Relaxed);
    }

    /// A connection was refused.
    pub fn connection_refused(&self, why: Refusal) {
        if let Some(count) = self.connections.refused.get(why as usize) {
            count.fetch_add(1, Relaxed);
        }
    }

    /// A timeout closed a connection.
    pub fn timeout(&self, kind: Timeout) {
        if let Some(count) = self.connections.timeouts.get(kind as usize) {
            count.fetch_add(1, Relaxed);
        }
    }

    /// Totals for tests and the dashboard: (requests, response body bytes).
    pub fn totals(&self) -> (u64, u64) {
        // Every request lands in exactly one duration bucket.
        self.shards.iter().fold((0u64, 0u64), |(requests, bytes), s| {
            let counted = (0..BUCKETS).map(|b| s.bucket(b)).fold(0u64, u64::wrapping_add);
            (requests.wrapping_add(counted), bytes.wrapping_add(s.body_bytes()))
        })
    }

    /// Count of requests with exactly this method and status (tests).
    pub fn requests_with(&self, method: &::http::Method, status: u16) -> u64 {
        let (m, s) = (shard::method_slot(method), shard::status_slot(status));
        self.shards.iter().map(|shard| shard.requests(m, s)).fold(0, u64::wrapping_add)
    }

    /// Connections open now (never below zero).
    pub fn open(&self) -> u64 {
        u64::try_from(self.connections.open.load(Relaxed)).unwrap_or(0)
    }

    /// Reads every counter once, summing the shards.
    fn snapshot(&self) -> Snapshot {
        let mut requests = Vec::new();
        for method in 0..METHODS {
            for status in 0..STATUSES {
                let n =
                    self.shards.iter().map(|shard| shard.requests(method, status)).fold(0, u64::wrapping_add);
                if n != 0 {
                    requests.push((method, status, n));
                }
            }
        }
        let mut buckets = [0u64; BUCKETS];
        let (mut sum_nanos, mut body_bytes) = (0u128, 0u64);
        for shard in &self.shards {
            for (b, total) in buckets.iter_mut().enumerate() {
                *total = total.wrapping_add(shard.bucket(b));
            }
            sum_nanos += u128::from(shard.duration_nanos());
            body_bytes = body_bytes.wrapping_add(shard.body_bytes());
        }
        let c = &self.connections;
        Snapshot {
            requests,
            buckets,
            sum_seconds: sum_nanos as f64 / 1e9,
            body_bytes,
            open: self.open(),
            accepted: c.accepted.load(Relaxed),
            refused: Refusal::ALL.map(|r| (r.label(), c.refused[r as usize].load(Relaxed))),
            timeouts: Timeout::ALL.map(|t| (t.label(), c.timeouts[t as usize].load(Relaxed))),
        }
    }
}

/// Every counter of a [`Metrics`], read once at scrape time.
#[derive(Debug, Clone)]
struct Snapshot {
    /// Non-zero request counts: (method slot, status slot, count).
    requests: Vec<(usize, usize, u64)>,
    /// Duration buckets, not cumulative; the last is +Inf.
    buckets: [u64; BUCKETS],
    /// Sum of request durations.
    sum_seconds: f64,
    /// Response body bytes.
    body_bytes: u64,
    /// Connections open.
    open: u64,
    /// Connections accepted.
    accepted: u64,
    /// Refusals by reason label.
    refused: [(&'static str, u64); 2],
    /// Timeouts by kind label.
    timeouts: [(&'static str, u64); 4],
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::http::Method;

    #[test]
    fn requests_count_exactly() {
        static M: Metrics = Metrics::new();
        M.request(&Method::GET, 200, 10, Duration::from_millis(1));
        M.request(&Method::GET, 200, 5, Duration::from_millis(2));
        M.request(&Method::HEAD, 304, 0, Duration::ZERO);
        M.request(&Method::POST, 405, 7, Duration::from_secs(1));
        M.request(&Method::DELETE, 405, 0, Duration::from_secs(1));
        M.request(&Method::GET, 42, 0, Duration::from_secs(1));
        M.request(&Method::GET, 600, 0, Duration::from_secs(1));
        assert_eq!(M.requests_with(&Method::GET, 200), 2);
        assert_eq!(M.requests_with(&Method::HEAD, 304), 1);
        assert_eq!(M.requests_with(&Method::GET, 304), 0);
        assert_eq!(M.requests_with(&Method::PUT, 405), 2);
        assert_eq!(M.requests_with(&Method::GET, 0), 2);
        assert_eq!(M.totals(), (7, 22));
    }

    #[test]
    fn requests_from_many_threads_sum_exactly() {
        static M: Metrics = Metrics::new();
        std::thread::scope(|scope| {
            for t in 0..8u64 {
                scope.spawn(move || {
                    for i in 0..10_000u64 {
                        M.request(&Method::GET, 200, t + i % 3, Duration::from_micros(i));
                    }
                });
            }
        });
        assert_eq!(M.requests_with(&Method::GET, 200), 80_000);
        let bytes: u64 = (0..8u64).map(|t| (0..10_000u64).map(|i| t + i % 3).sum::<u64>()).sum();
        assert_eq!(M.totals(), (80_000, bytes));
        let snap = M.snapshot();
        assert_eq!(snap.buckets.iter().sum::<u64>(), 80_000);
        let nanos: u64 = 8 * (0..10_000u64).map(|i| i * 1000).sum::<u64>();
        assert!((snap.sum_seconds - nanos as f64 / 1e9).abs() < 1e-6);
    }

    #[test]
    fn connections_and_timeouts() {
        static M: Metrics = Metrics::new();
        M.connection_closed();
        assert_eq!(M.open(), 0, "the gauge never shows below zero");
        M.connection_accepted();
        M.connection_accepted();
        M.connection_accepted();
        M.connection_closed();
        M.connection_refused(Refusal::Proxy);
        M.connection_refused(Refusal::Proxy);
        M.timeout(Timeout::Handshake);
        let snap = M.snapshot();
        assert_eq!((snap.accepted, snap.open), (3, 1));
        assert_eq!(snap.refused, [("proxy_header", 2), ("tls_handshake", 0)]);
        assert_eq!(snap.timeouts[3], ("handshake", 1));
        assert_eq!(snap.timeouts.iter().map(|t| t.1).sum::<u64>(), 1);
    }

    #[test]
    fn global_is_one_instance() {
        assert!(std::ptr::eq(global(), global()));
        assert!(started() <= SystemTime::now());
    }
}
