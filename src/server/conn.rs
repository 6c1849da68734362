//! The connection's I/O wrapper: a `TcpStream` that enforces mapserve's
//! three timeouts, which hyper does not provide in the form needed.
//!
//! * **header**: from the first byte of a request head (or from accept) until
//!   the request starts, at most `header_timeout` (slowloris defence);
//! * **idle**: with no request in flight and no partial head, a connection
//!   silent for `idle_timeout` is closed (keep-alive idle);
//! * **send**: a write that makes no progress for `send_timeout` fails, so a
//!   client that stops reading is dropped and its mapping released (hyper
//!   has no write timeout: HTTP-NOTES F3).
//!
//! It knows whether a request is in flight from the connection's
//! [`ConnTracker`], which the handler and response body update. Writes are
//! forwarded vectored, so hyper keeps writing bodies straight from the
//! mappings (`writev`), with no copy.

use super::zerocopy::{self, MIN_SPLICE, NoPipe, Splicer};
use crate::track::ConnTracker;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
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

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// A `TcpStream` with timeouts.
///
/// Times are kept in milliseconds of the coarse monotonic clock (a memory
/// read, no TSC), and the timer is re-armed only when it fires or when a
/// deadline moves earlier: activity merely pushes deadlines later, so a busy
/// keep-alive connection does no timer work per request.
#[derive(Debug)]
pub struct ConnIo {
    stream: TcpStream,
    tracker: Arc<ConnTracker>,
    limits: Timeouts,
    timer: Option<Pin<Box<Sleep>>>,
    timer_at: Option<u64>,
    last_activity: u64,
    head_since: Option<u64>,
    seen_started: u64,
    write_blocked_since: Option<u64>,
    is_h2: Option<bool>,
    splicer: Splicer,
    seen_epoch: u64,
}

/// Milliseconds on the coarse monotonic clock.
fn now_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    (t.tv_sec as u64).saturating_mul(1000).saturating_add(t.tv_nsec as u64 / 1_000_000)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ConnIo {
    /// Wraps an accepted stream. The header clock starts now: a client that
    /// connects and sends nothing is closed after the header timeout.
    pub fn new(stream: TcpStream, tracker: Arc<ConnTracker>, limits: Timeouts) -> ConnIo {
        let now = now_ms();
        ConnIo {
            stream,
            tracker,
            limits,
            timer: None,
            timer_at: None,
            last_activity: now,
            head_since: Some(now),
            seen_started: 0,
            write_blocked_since: None,
            is_h2: None,
            splicer: Splicer::default(),
            seen_epoch: crate::mmap::guard::epoch(),
        }
    }

    fn sync_started(&mut self) {
        let started = self.tracker.started();
        if started != self.seen_started {
            self.seen_started = started;
            self.head_since = None;
        }
    }

    fn on_read(&mut self, data: &[u8]) {
        let now = now_ms();
        self.last_activity = now;
        if self.is_h2.is_none() {
            self.is_h2 = Some(data.starts_with(H2_PREFACE));
        }
        self.sync_started();
        // After the first request, HTTP/2 control frames on an idle
        // connection are not a request head: only the idle clock applies.
        let h2_running = self.is_h2 == Some(true) && self.seen_started > 0;
        if self.head_since.is_none() && self.tracker.in_flight() == 0 && !h2_running {
            self.head_since = Some(now);
        }
    }

    fn on_write_progress(&mut self) {
        self.write_blocked_since = None;
        self.last_activity = now_ms();
    }

    /// Called when an operation is pending: makes sure the timer will wake
    /// the connection by the earliest deadline that applies, and fails once
    /// one has passed.
    ///
    /// While a response is in flight no read deadline applies, but the timer
    /// is still armed (one idle period ahead) so that the connection wakes up
    /// and re-checks after the response ends: nothing else would wake a
    /// connection parked on a read.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        for _ in 0..4 {
            self.sync_started();
            let now = now_ms();
            let mut deadline: Option<(u64, Option<&'static str>)> = self
                .write_blocked_since
                .map(|t| (t.saturating_add(ms(self.limits.send)), Some("send timeout")));
            let read_deadline = if self.tracker.in_flight() == 0 {
                match self.head_since {
                    Some(t) => (t.saturating_add(ms(self.limits.header)), Some("request header timeout")),
                    None => (self.last_activity.saturating_add(ms(self.limits.idle)), Some("idle timeout")),
                }
            } else {
                (now.max(self.last_activity).saturating_add(ms(self.limits.idle)), None)
            };
            deadline = Some(match deadline {
                Some(d) if d.0 <= read_deadline.0 => d,
                _ => read_deadline,
            });
            let (at, fatal) = deadline?;
            if at <= now {
                match fatal {
                    Some(what) => return Some(io::Error::new(io::ErrorKind::TimedOut, what)),
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

    /// The write path when large mapped slices may be among `bufs`: bytes
    /// before the first such slice go out with `MSG_MORE`; the slice itself is
    /// spliced through a pipe without a copy.
    fn poll_write_spliced(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.splicer.poll_drain(&self.stream, cx))?;
        let tracker = &self.tracker;
        let first_mapped = bufs
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len() >= MIN_SPLICE)
            .find_map(|(i, b)| tracker.mapping_of(b).map(|probe| (i, probe)));
        match first_mapped {
            None => Pin::new(&mut self.stream).poll_write_vectored(cx, bufs),
            Some((0, probe)) => {
                let Some(data) = bufs.first() else { return Poll::Ready(Ok(0)) };
                let mut n = match self.splicer.fill(&probe, data) {
                    Ok(filled) => filled?,
                    // No pipe to be had: copy instead.
                    Err(NoPipe) => return Pin::new(&mut self.stream).poll_write_vectored(cx, &bufs[..1]),
                };
                if n == 0 {
                    // The pipe is full: drain it (registering for writability).
                    ready!(self.splicer.poll_drain(&self.stream, cx))?;
                    n = match self.splicer.fill(&probe, data) {
                        Ok(filled) => filled?,
                        Err(NoPipe) => return Pin::new(&mut self.stream).poll_write_vectored(cx, &bufs[..1]),
                    };
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                }
                self.splicer.drain_now(&self.stream)?;
                Poll::Ready(Ok(n))
            }
            Some((i, _)) => {
                let head = bufs.get(..i).unwrap_or_default();
                loop {
                    ready!(self.stream.poll_write_ready(cx))?;
                    match zerocopy::send_more(&self.stream, head) {
                        Ok(n) => return Poll::Ready(Ok(n)),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
            }
        }
    }

    /// The SIGBUS guard repaired a fault somewhere since this connection last
    /// wrote: if it was in a mapping this connection read from, bytes already
    /// copied out of it in user space (h2 copies small frames) may be zeros,
    /// so the connection is aborted before they reach the wire.
    fn check_poison(&mut self) -> io::Result<()> {
        let epoch = crate::mmap::guard::epoch();
        if epoch != self.seen_epoch {
            self.seen_epoch = epoch;
            if self.tracker.may_have_read_poison() {
                return Err(io::Error::other("a mapping this connection read from was truncated (SIGBUS)"));
            }
        }
        Ok(())
    }

    fn write_result(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.on_write_progress();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                self.write_blocked_since.get_or_insert_with(now_ms);
                match self.poll_deadline(cx) {
                    Some(e) => Poll::Ready(Err(e)),
                    None => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let filled = buf.filled();
                if filled.len() > before {
                    this.on_read(filled.get(before..).unwrap_or_default());
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.poll_deadline(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.check_poison()?;
        let r = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.write_result(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.check_poison()?;
        if this.splicer.has_pending() || this.tracker.has_probes() {
            let r = this.poll_write_spliced(cx, bufs);
            return this.write_result(cx, r);
        }
        let r = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.write_result(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.splicer.has_pending() {
            let r = this.splicer.poll_drain(&this.stream, cx).map_ok(|()| 1);
            if let Poll::Ready(Err(e)) = this.write_result(cx, r) {
                return Poll::Ready(Err(e));
            }
            if this.splicer.has_pending() {
                return Poll::Pending;
            }
        }
        let flushed = ready!(Pin::new(&mut this.stream).poll_flush(cx));
        if flushed.is_ok() && this.tracker.in_flight() == 0 && this.tracker.has_probes() {
            // Everything earlier responses read is on its way: their mappings
            // no longer concern this connection.
            this.tracker.forget_probes();
        }
        Poll::Ready(flushed)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = ready!(self.as_mut().poll_flush(cx)) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
