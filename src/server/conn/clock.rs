//! The three connection timeouts, which hyper does not provide in the form
//! needed:
//!
//! * **header**: from the first byte of a request head (or from accept) until
//!   the request starts, at most `header_timeout` (slowloris defence);
//! * **idle**: with no request in flight and no partial head, a connection is
//!   closed `idle_timeout` after its last activity. On HTTP/1 any traffic is
//!   activity. On HTTP/2 only requests are: the time a request started or a
//!   response was last in flight. PING, SETTINGS or WINDOW_UPDATE frames
//!   (and the server's answers to them) do not keep a connection open;
//! * **send**: a write that makes no progress for `send_timeout` fails, so a
//!   client that stops reading is dropped and what its response held is
//!   released (hyper has no write timeout).
//!
//! Times are milliseconds of the coarse monotonic clock (a memory read), and
//! the timer is re-armed only when it fires or when a deadline moves earlier:
//! activity merely pushes deadlines later, so a busy keep-alive connection
//! does no timer work per request.

use crate::track::ConnTracker;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The three connection timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Request-head timeout.
    pub header: Duration,
    /// Idle keep-alive timeout.
    pub idle: Duration,
    /// Write-progress timeout.
    pub send: Duration,
}

/// Counts a timeout that closes a connection, by kind.
fn count_timeout(what: &str) {
    use crate::metrics::Timeout;
    let kind = match what {
        "send timeout" => Timeout::Send,
        "request header timeout" => Timeout::Header,
        _ => Timeout::Idle,
    };
    crate::metrics::global().timeout(kind);
}

/// Milliseconds on the coarse monotonic clock.
pub(super) fn now_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    (t.tv_sec as u64).saturating_mul(1000).saturating_add(t.tv_nsec as u64 / 1_000_000)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A connection's deadlines.
#[derive(Debug)]
pub(super) struct Clock {
    limits: Timeouts,
    timer: Option<Pin<Box<Sleep>>>,
    timer_at: Option<u64>,
    last_activity: u64,
    head_since: Option<u64>,
    seen_started: u64,
    write_blocked_since: Option<u64>,
    /// A timeout has fired (and been counted).
    fired: bool,
}

impl Clock {
    /// The clock of a connection accepted now: the header clock runs, so a
    /// client that connects and sends nothing is closed after the header
    /// timeout.
    pub(super) fn new(limits: Timeouts) -> Clock {
        let now = now_ms();
        Clock {
            limits,
            timer: None,
            timer_at: None,
            last_activity: now,
            head_since: Some(now),
            seen_started: 0,
            write_blocked_since: None,
            fired: false,
        }
    }

    /// Notes requests that started since the last call.
    fn sync(&mut self, tracker: &ConnTracker, now: u64) {
        let started = tracker.started();
        if started != self.seen_started {
            self.seen_started = started;
            self.head_since = None;
            self.last_activity = now;
        }
        if tracker.in_flight() > 0 {
            self.last_activity = now;
        }
    }

    /// Whether the connection is between requests: one was served, none is
    /// in flight, and nothing of the next one has been read.
    pub(super) fn is_idle(&mut self, tracker: &ConnTracker) -> bool {
        self.sync(tracker, now_ms());
        self.seen_started > 0 && self.head_since.is_none() && tracker.in_flight() == 0
    }

    /// Bytes were read.
    pub(super) fn on_read(&mut self, tracker: &ConnTracker, h2: bool) {
        let now = now_ms();
        self.sync(tracker, now);
        if h2 {
            // Until the first request, the header clock runs; after it, only
            // requests count as activity.
            return;
        }
        self.last_activity = now;
        if self.head_since.is_none() && tracker.in_flight() == 0 {
            self.head_since = Some(now);
        }
    }

    /// A write made progress; `data`: on HTTP/2, it carried DATA frames
    /// (a response still going out after its body ended counts as activity;
    /// PING and SETTINGS acknowledgements do not).
    pub(super) fn on_write_progress(&mut self, tracker: &ConnTracker, h2: bool, data: bool) {
        self.write_blocked_since = None;
        if !h2 || data || tracker.in_flight() > 0 {
            self.last_activity = now_ms();
        }
    }

    /// A write could not proceed.
    pub(super) fn on_write_blocked(&mut self) {
        self.write_blocked_since.get_or_insert_with(now_ms);
    }

    /// Called when an operation is pending: makes sure the timer will wake
    /// the connection by the earliest deadline that applies, and fails once
    /// one has passed.
    ///
    /// While a response is in flight no read deadline applies, but the timer
    /// is still armed (one idle period ahead) so that the connection wakes up
    /// and re-checks after the response ends: nothing else would wake a
    /// connection parked on a read.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>, tracker: &ConnTracker) -> Option<io::Error> {
        for _ in 0..4 {
            let now = now_ms();
            self.sync(tracker, now);
            let mut deadline: Option<(u64, Option<&'static str>)> = self
                .write_blocked_since
                .map(|t| (t.saturating_add(ms(self.limits.send)), Some("send timeout")));
            let read_deadline = if tracker.in_flight() == 0 {
                match self.head_since {
                    Some(t) => (t.saturating_add(ms(self.limits.header)), Some("request header timeout")),
                    None => (self.last_activity.saturating_add(ms(self.limits.idle)), Some("idle timeout")),
                }
            } else {
                (now.saturating_add(ms(self.limits.idle)), None)
            };
            deadline = Some(match deadline {
                Some(d) if d.0 <= read_deadline.0 => d,
                _ => read_deadline,
            });
            let (at, fatal) = deadline?;
            if at <= now {
                match fatal {
                    Some(what) => {
                        if !std::mem::replace(&mut self.fired, true) {
                            count_timeout(what);
                        }
                        return Some(io::Error::new(io::ErrorKind::TimedOut, what));
                    }
                    None => continue,
                }
            }
            // An armed timer that fires no later than needed is kept: when it
            // fires early, the deadline is recomputed and the timer re-armed.
            if self.timer_at.is_none_or(|armed| armed > at) {
                let when = Instant::now() + Duration::from_millis(at - now);
                match self.timer.as_mut() {
                    Some(timer) => timer.as_mut().reset(when),
                    None => self.timer = Some(Box::pin(tokio::time::sleep_until(when))),
                }
                self.timer_at = Some(at);
            }
            let timer = self.timer.as_mut()?;
            if timer.as_mut().poll(cx).is_pending() {
                return None;
            }
            // The timer fired: recompute with the time and state of now.
            self.timer_at = None;
        }
        None
    }
}
