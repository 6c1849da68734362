//! The connection's I/O wrapper: any [`Transport`] (TCP, unix socket, TLS)
//! with mapserve's timeouts (`clock`), zero-copy sends of mapped file data
//! over plain TCP ([`super::zerocopy`]), and the checks hyper does not make:
//!
//! * a write is refused when a mapping this connection read from was
//!   poisoned by the SIGBUS guard (bytes copied out of it may be zeros);
//! * HTTP/2: control-frame floods get GOAWAY and are closed ([`h2frames`]);
//! * HTTP/1: a request line longer than 8 KiB gets 414 at once ([`h1line`]);
//! * an idle keep-alive connection asked to make room (the connection cap
//!   is reached) is closed (`server::idle`).
//!
//! It knows whether a request is in flight from the connection's
//! `ConnTracker`, which the handler and response body update. Writes are
//! forwarded vectored, so hyper keeps writing bodies straight from the
//! mappings (`writev`), with no copy.

mod clock;
pub mod h1line;
pub mod h2frames;
pub mod transport;

pub use clock::Timeouts;
pub use transport::{Checked, PoisonWatch, Rewind, Transport};

use super::zerocopy::{self, MIN_SPLICE, NoPipe, Splicer};
use crate::track::ConnTracker;
use clock::Clock;
use h2frames::{FloodGuard, FrameScanner};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What a connection is known to speak before its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Plain TCP: HTTP/2 if it begins with the preface, else HTTP/1.
    Sniff,
    /// TLS negotiated `http/1.1` (or no ALPN).
    H1,
    /// TLS negotiated `h2`.
    H2,
}

/// What the connection speaks, once its first bytes are seen.
#[derive(Debug)]
enum Proto {
    /// The bytes so far are the first `seen` bytes of the HTTP/2 preface
    /// (a client may send it in pieces: hyper waits for all of it).
    Unknown {
        seen: usize,
    },
    H1(h1line::LineScanner),
    H2 {
        read: FrameScanner,
        write: FrameScanner,
        guard: FloodGuard,
    },
}

/// A stream with timeouts and checks.
#[derive(Debug)]
pub struct ConnIo<S> {
    stream: S,
    tracker: Arc<ConnTracker>,
    clock: Clock,
    proto: Proto,
    splicer: Splicer,
    poison: PoisonWatch,
    /// Bytes were written since the last flush completed.
    unflushed: bool,
    /// When HTTP/2 DATA was last written (coarse-clock milliseconds).
    last_data_ms: u64,
    /// The last write carried HTTP/2 DATA.
    wrote_data: bool,
}

/// How long an HTTP/2 connection must have written no DATA before it counts
/// as idle for making room at the connection cap (h2 keeps writing a
/// response it has buffered after the response body ended).
const QUIET_MS: u64 = 1000;

const URI_TOO_LONG: &str = "414 URI too long\n";

impl<S: Transport> ConnIo<S> {
    /// Wraps an accepted stream.
    pub fn new(stream: S, tracker: Arc<ConnTracker>, limits: Timeouts, start: Start) -> ConnIo<S> {
        ConnIo {
            stream,
            tracker,
            clock: Clock::new(limits),
            // Under TLS, ALPN has chosen: HTTP/1 needs no look at the first
            // bytes, and h2 is still checked for its preface.
            proto: match start {
                Start::H1 => Proto::H1(h1line::LineScanner::default()),
                Start::Sniff | Start::H2 => Proto::Unknown { seen: 0 },
            },
            splicer: Splicer::default(),
            poison: PoisonWatch::new(),
            unflushed: false,
            last_data_ms: 0,
            wrote_data: false,
        }
    }

    fn is_h2(&self) -> bool {
        matches!(self.proto, Proto::H2 { .. })
    }

    /// Looks at bytes just read; an error closes the connection.
    fn on_read(&mut self, mut data: &[u8]) -> io::Result<()> {
        if let Proto::Unknown { seen } = self.proto {
            let rest = h2frames::PREFACE.get(seen..).unwrap_or_default();
            let n = data.len().min(rest.len());
            if data.get(..n) == rest.get(..n) {
                if seen + n < h2frames::PREFACE.len() {
                    // Still a prefix of the preface: wait for more.
                    self.proto = Proto::Unknown { seen: seen + n };
                    self.clock.on_read(&self.tracker, false);
                    return Ok(());
                }
                // The whole preface: HTTP/2, frames from here on.
                self.tracker.set_h2();
                self.proto = Proto::H2 {
                    read: FrameScanner::frames(),
                    write: FrameScanner::frames(),
                    guard: FloodGuard::new(clock::now_ms()),
                };
                data = data.get(n..).unwrap_or_default();
            } else {
                // Not the preface ("PRI" can begin no method): HTTP/1, fed
                // with the bytes held back too.
                let mut lines = h1line::LineScanner::default();
                lines.feed(h2frames::PREFACE.get(..seen).unwrap_or_default());
                self.proto = Proto::H1(lines);
                if self.stream.plain() {
                    self.tracker.enable_ledger();
                }
            }
        }
        self.clock.on_read(&self.tracker, self.is_h2());
        match &mut self.proto {
            Proto::H1(lines) => {
                if lines.feed(data) {
                    self.refuse_uri_too_long();
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "request line too long (414)"));
                }
            }
            Proto::H2 { read, write, guard } => {
                let now = clock::now_ms();
                let mut flood = false;
                read.feed(data, |frame| flood |= !guard.on_frame(frame, now));
                if flood {
                    // GOAWAY only between two frames of ours.
                    if write.at_boundary() && !self.splicer.has_pending() {
                        let _ = self.stream.write_now(&h2frames::goaway_enhance_your_calm(guard.last_stream));
                    }
                    static THROTTLE: crate::access_log::Throttle = crate::access_log::Throttle::new(10);
                    if let Some(left_out) = THROTTLE.allow() {
                        tracing::warn!(
                            left_out,
                            "HTTP/2 control-frame flood: GOAWAY (ENHANCE_YOUR_CALM), connection closed"
                        );
                    }
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "HTTP/2 control-frame flood"));
                }
            }
            Proto::Unknown { .. } => {}
        }
        Ok(())
    }

    /// Answers 414 when nothing else is being written (best effort: the
    /// connection closes right after).
    fn refuse_uri_too_long(&mut self) {
        // Never into the middle of an earlier response still queued.
        if self.tracker.in_flight() > 0 || self.splicer.has_pending() || self.unflushed {
            return;
        }
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let response = format!(
            "HTTP/1.1 414 URI Too Long\r\ndate: {date}\r\ncontent-type: text/plain; charset=utf-8\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{URI_TOO_LONG}",
            URI_TOO_LONG.len()
        );
        let _ = self.stream.write_now(response.as_bytes());
        self.tracker.note_refused(414);
    }

    /// Bytes were written: note it, and feed HTTP/2's frame tracking.
    fn on_written(&mut self, bufs: &[io::IoSlice<'_>], mut n: usize) {
        if n > 0 {
            self.unflushed = true;
        }
        if self.tracker.ledger_on() {
            self.tracker.ledger_written(bufs, n);
        }
        if let Proto::H2 { write, guard, .. } = &mut self.proto {
            guard.on_written(n as u64);
            let mut data = write.payload_left() > 0;
            for b in bufs {
                if n == 0 {
                    break;
                }
                let take = n.min(b.len());
                // Payload bytes are skipped by count, never read.
                write.feed(b.get(..take).unwrap_or_default(), |frame| data |= frame.kind == 0);
                n -= take;
            }
            self.wrote_data = data;
            if data {
                self.last_data_ms = clock::now_ms();
            }
        }
    }

    /// Whether the connection may be closed to make room: between requests,
    /// nothing written left unflushed (HTTP/1: hyper flushes once a response
    /// is all written), and on HTTP/2 no mapped chunk still buffered and no
    /// DATA written for a moment (a slow download whose body ended but
    /// whose bytes still go out is not idle).
    fn idle_for_reclaim(&mut self) -> bool {
        let h2_quiet = !self.is_h2()
            || (self.tracker.chunks_settled()
                && clock::now_ms().saturating_sub(self.last_data_ms) >= QUIET_MS);
        self.clock.is_idle(&self.tracker) && !self.unflushed && h2_quiet
    }

    /// The write path when large mapped slices may be among `bufs` on plain
    /// TCP: bytes before the first such slice go out with `MSG_MORE`; the
    /// slice itself is spliced through a pipe without a copy.
    fn poll_write_spliced(
        splicer: &mut Splicer,
        tracker: &ConnTracker,
        tcp: &TcpStream,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(splicer.poll_drain(tcp, cx))?;
        let first_mapped = bufs
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len() >= MIN_SPLICE)
            .find_map(|(i, b)| tracker.mapping_of(b).map(|probe| (i, probe)));
        match first_mapped {
            None => poll_writev(tcp, cx, bufs),
            Some((0, probe)) => {
                let Some(data) = bufs.first() else { return Poll::Ready(Ok(0)) };
                let mut n = match splicer.fill(&probe, data) {
                    Ok(filled) => filled?,
                    // No pipe to be had: copy instead.
                    Err(NoPipe) => return poll_writev(tcp, cx, &bufs[..1]),
                };
                if n == 0 {
                    // The pipe is full: drain it (registering for writability).
                    ready!(splicer.poll_drain(tcp, cx))?;
                    n = match splicer.fill(&probe, data) {
                        Ok(filled) => filled?,
                        Err(NoPipe) => return poll_writev(tcp, cx, &bufs[..1]),
                    };
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                }
                // The bytes are in the pipe, so they count as written (the
                // ledger takes back what never leaves it); a failed drain
                // shows on the next write, which drains first.
                if let Err(e) = splicer.drain_now(tcp) {
                    tracing::debug!(error = %e, "splice to the socket failed");
                }
                Poll::Ready(Ok(n))
            }
            Some((i, _)) => {
                let head = bufs.get(..i).unwrap_or_default();
                loop {
                    ready!(tcp.poll_write_ready(cx))?;
                    match zerocopy::send_more(tcp, head) {
                        Ok(n) => return Poll::Ready(Ok(n)),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
            }
        }
    }

    /// Pipe bytes left to drain go first (only plain TCP has any).
    fn poll_drain_pipe(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream.tcp() {
            Some(tcp) if self.splicer.has_pending() => self.splicer.poll_drain(tcp, cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    /// The SIGBUS guard repaired a fault somewhere since this connection last
    /// wrote: if it was in a mapping this connection read from, bytes already
    /// copied out of it in user space (h2 copies small frames) may be zeros,
    /// so the connection is aborted before they reach the wire.
    fn check_poison(&mut self) -> io::Result<()> {
        self.poison.check(&self.tracker)
    }

    fn write_result(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.clock.on_write_progress(&self.tracker, self.is_h2(), self.wrote_data);
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                self.clock.on_write_blocked();
                match self.clock.poll(cx, &self.tracker) {
                    Some(e) => Poll::Ready(Err(e)),
                    None => Poll::Pending,
                }
            }
        }
    }
}

impl<S> Drop for ConnIo<S> {
    /// The connection is gone: responses still waiting for their bytes to
    /// go out are reported with what went (`track::ledger`).
    fn drop(&mut self) {
        if self.tracker.ledger_on() {
            self.tracker.ledger_close(self.splicer.pending() as u64);
        }
    }
}

/// `writev` on a TCP socket through a shared reference.
fn poll_writev(tcp: &TcpStream, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
    loop {
        ready!(tcp.poll_write_ready(cx))?;
        match tcp.try_write_vectored(bufs) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return Poll::Ready(r),
        }
    }
}

impl<S: Transport> AsyncRead for ConnIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.tracker.take_close_request() && this.idle_for_reclaim() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "idle connection closed to make room",
            )));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let filled = buf.filled();
                if filled.len() > before {
                    this.on_read(filled.get(before..).unwrap_or_default())?;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.tracker.park_reader(cx.waker());
                match this.clock.poll(cx, &this.tracker) {
                    Some(e) => Poll::Ready(Err(e)),
                    None => Poll::Pending,
                }
            }
        }
    }
}

impl<S: Transport> AsyncWrite for ConnIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.check_poison()?;
        // Bytes in the pipe go first.
        if let Poll::Ready(Err(e)) = this.poll_drain_pipe(cx) {
            return Poll::Ready(Err(e));
        }
        let r = if this.splicer.has_pending() {
            Poll::Pending
        } else {
            Pin::new(&mut this.stream).poll_write(cx, buf)
        };
        if let Poll::Ready(Ok(n)) = r {
            this.on_written(&[io::IoSlice::new(buf)], n);
        }
        this.write_result(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.check_poison()?;
        let r = match this.stream.tcp() {
            Some(tcp) if this.splicer.has_pending() || this.tracker.has_probes() => {
                Self::poll_write_spliced(&mut this.splicer, &this.tracker, tcp, cx, bufs)
            }
            _ => Pin::new(&mut this.stream).poll_write_vectored(cx, bufs),
        };
        if let Poll::Ready(Ok(n)) = r {
            this.on_written(bufs, n);
        }
        this.write_result(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.splicer.has_pending() {
            let r = this.poll_drain_pipe(cx).map_ok(|()| 1);
            if let Poll::Ready(Err(e)) = this.write_result(cx, r) {
                return Poll::Ready(Err(e));
            }
            if this.splicer.has_pending() {
                return Poll::Pending;
            }
        }
        let flushed = ready!(Pin::new(&mut this.stream).poll_flush(cx));
        if flushed.is_ok() {
            this.unflushed = false;
            if this.tracker.ledger_on() {
                this.tracker.ledger_flushed();
            }
            // Everything earlier responses read is on its way, and no chunk
            // of theirs waits in h2's buffers: their mappings no longer
            // concern this connection.
            if this.tracker.in_flight() == 0 && this.tracker.chunks_settled() && this.tracker.has_probes() {
                this.tracker.forget_probes();
            }
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
