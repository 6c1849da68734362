//! The access log: one line per request.
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
//! flood is one line a request up to [`CANCELLED_PER_SEC`] a second, then
//! one line saying how many more were cancelled, so that a client cannot
//! fill the disk with the server's log.

use crate::peer::Peer;
use std::sync::Mutex;
use std::time::Instant;

/// Cancelled-request lines logged per connection per second, at most.
pub(crate) const CANCELLED_PER_SEC: u32 = 20;

/// What the access line says about a request, known when it starts.
#[derive(Debug)]
pub struct AccessRecord {
    /// Client address.
    pub client: Peer,
    /// The client used HTTPS (here, or at a trusted proxy).
    pub https: bool,
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
}

/// How a response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
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

/// Writes the line of a finished request.
pub(crate) fn finish(record: &AccessRecord, bytes: u64, ending: Ending, repeats: Option<&Repeats>) {
    if ending == Ending::Cancelled && repeats.is_some_and(|r| !r.allow()) {
        return;
    }
    tracing::info!(
        target: "mapserve::access",
        client = %record.client,
        scheme = %if record.https { "https" } else { "http" },
        method = %record.method,
        target = %record.target,
        version = ?record.version,
        status = record.status,
        bytes,
        complete = ending == Ending::Complete,
        ending = ending.as_str(),
        ms = format_args!("{:.3}", record.start.elapsed().as_secs_f64() * 1000.0),
    );
}

/// Writes the line of a request refused before it reached the handler.
pub(crate) fn refused(client: Peer, status: u16, why: &str) {
    tracing::info!(
        target: "mapserve::access",
        %client,
        method = "-",
        target = "-",
        status,
        bytes = 0,
        complete = false,
        ending = "refused",
        why,
    );
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
