//! Per-connection state shared between the connection's I/O wrapper and its
//! requests:
//!
//! * how many responses are in flight, and a counter bumped when a request
//!   starts: the I/O wrapper reads these to tell an idle connection from a
//!   slow request head from a busy one (see `server::conn`);
//! * the file mappings this connection's response bodies have read from
//!   (their guard probes, not the bytes: nothing here keeps a mapping
//!   alive). The I/O wrapper uses them twice: a large write that lies inside
//!   one of them is moved to the socket with `vmsplice` + `splice` instead of
//!   being copied (see `server::zerocopy`), and a write is refused when one of
//!   them has been poisoned by the SIGBUS guard, since bytes copied out of it
//!   in user space (h2 copies small frames) may be zeros.

mod ledger;

use crate::mmap::guard::Probe;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Mapped slices shorter than this are written with `writev`: a copy is
/// cheaper than the extra system calls of splicing.
pub const MIN_SPLICE: usize = 64 << 10;

/// Most mappings remembered per connection. A connection whose responses
/// read from more at once (many HTTP/2 streams) forgets the oldest: their
/// large chunks are then copied instead of spliced, and any SIGBUS repair
/// anywhere aborts the connection (it can no longer tell whether it was one
/// of its own).
const PROBES: usize = 32;

/// Shared by a connection and its requests.
#[derive(Debug, Default)]
pub struct ConnTracker {
    in_flight: AtomicUsize,
    started: AtomicU64,
    probe_count: AtomicUsize,
    probes: Mutex<Probes>,
    refused: std::sync::atomic::AtomicU16,
    repeats: crate::access_log::Repeats,
    /// HTTP/1 over a plain socket: bytes written are counted per response.
    ledger_on: std::sync::atomic::AtomicBool,
    /// The access log is on: what it logs is what the ledger counts.
    ledger_wanted: std::sync::atomic::AtomicBool,
    ledger: Mutex<ledger::Ledger>,
    quota: Arc<crate::quota::Quota>,
    /// Coarse-clock milliseconds since the last response ended with none
    /// left in flight; 0 while one is in flight (or before the first).
    idle_since: AtomicU64,
    close_requested: std::sync::atomic::AtomicBool,
    h2: std::sync::atomic::AtomicBool,
    read_waker: Mutex<Option<std::task::Waker>>,
}

#[derive(Debug, Default)]
struct Probes {
    list: VecDeque<Probe>,
    overflowed: bool,
}

impl ConnTracker {
    /// A tracker for a new connection.
    pub fn new() -> Arc<ConnTracker> {
        Arc::new(ConnTracker::default())
    }

    fn probes(&self) -> MutexGuard<'_, Probes> {
        self.probes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Responses started and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Requests started so far.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Acquire)
    }

    /// Remembers the mapping a chunk came from.
    pub fn note_probe(&self, probe: Probe) {
        let mut p = self.probes();
        if p.list.back() == Some(&probe) || p.list.contains(&probe) {
            return;
        }
        if p.list.len() == PROBES {
            p.list.pop_front();
            p.overflowed = true;
        }
        p.list.push_back(probe);
        self.probe_count.store(p.list.len(), Ordering::Release);
    }

    /// Whether any mapping is remembered (cheap check before a write).
    pub fn has_probes(&self) -> bool {
        self.probe_count.load(Ordering::Acquire) > 0
    }

    /// The remembered mapping that `data` lies in, if it is still mapped.
    pub fn mapping_of(&self, data: &[u8]) -> Option<Probe> {
        self.probes().list.iter().rev().find(|p| p.contains(data)).copied()
    }

    /// Whether a remembered mapping is poisoned, or one may have been
    /// forgotten (called only after the guard repaired a fault somewhere).
    pub fn may_have_read_poison(&self) -> bool {
        let p = self.probes();
        p.overflowed || p.list.iter().any(Probe::is_poisoned)
    }

    /// Whether no mapped chunk of this connection's responses is alive
    /// (HTTP/2 holds chunks, and copies from them, after their body ended).
    pub fn chunks_settled(&self) -> bool {
        self.quota.chunks_alive() == 0
    }

    /// Forgets every mapping: called by the connection once all it has
    /// written is flushed, no response is in flight and no chunk is alive.
    pub fn forget_probes(&self) {
        let mut p = self.probes();
        p.list.clear();
        p.overflowed = false;
        self.probe_count.store(0, Ordering::Release);
    }

    /// Records that the connection itself refused a request with `status`
    /// (hyper never saw it): the connection's end logs it.
    pub fn note_refused(&self, status: u16) {
        self.refused.store(status, Ordering::Release);
    }

    /// The status the connection refused a request with, if any.
    pub fn refused(&self) -> Option<u16> {
        Some(self.refused.load(Ordering::Acquire)).filter(|&s| s != 0)
    }

    /// What this connection's responses may hold: only HTTP/2 connections
    /// run several responses at once, so only they are held to a quota (an
    /// HTTP/1 connection has one response at a time, and pays nothing).
    pub fn quota(&self) -> Option<&Arc<crate::quota::Quota>> {
        self.h2.load(Ordering::Relaxed).then_some(&self.quota)
    }

    /// Marks the connection as HTTP/2 (seen by its first bytes).
    pub fn set_h2(&self) {
        self.h2.store(true, Ordering::Relaxed);
    }

    /// The limit on this connection's cancelled-request log lines.
    pub fn repeats(&self) -> &crate::access_log::Repeats {
        &self.repeats
    }

    fn ledger(&self) -> MutexGuard<'_, ledger::Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The access log is on: [`ConnTracker::enable_ledger`] turns the ledger
    /// on. Off, it costs about 5% of a 1 KiB hit's instructions for nothing
    /// but the metrics' byte count, which then counts bytes handed to hyper.
    pub fn want_ledger(&self) {
        self.ledger_wanted.store(true, Ordering::Relaxed);
    }

    /// Counts body bytes written per response from now on, when the access
    /// log wants them.
    pub fn enable_ledger(&self) {
        if self.ledger_wanted.load(Ordering::Relaxed) {
            self.ledger_on.store(true, Ordering::Release);
        }
    }

    /// Whether body bytes written are counted per response.
    pub fn ledger_on(&self) -> bool {
        self.ledger_on.load(Ordering::Acquire)
    }

    /// A body handed `chunk` to hyper; `seq` is its number in the ledger,
    /// given on its first chunk.
    pub fn ledger_chunk(&self, seq: &mut Option<u64>, chunk: &[u8]) {
        let mut ledger = self.ledger();
        let seq = *seq.get_or_insert_with(|| ledger.next());
        ledger.chunk(seq, chunk.as_ptr() as usize, chunk.len());
    }

    /// `n` bytes of `bufs` were written.
    pub fn ledger_written(&self, bufs: &[std::io::IoSlice<'_>], mut n: usize) {
        let mut ledger = self.ledger();
        for b in bufs {
            if n == 0 {
                break;
            }
            let take = n.min(b.len());
            ledger.written(b.as_ptr() as usize, take);
            n -= take;
        }
    }

    /// Body `seq` ended: reported once its bytes are out.
    pub fn ledger_defer(
        &self,
        seq: u64,
        handed: u64,
        ending: crate::access_log::Ending,
        report: crate::access_log::Report,
    ) {
        let ready = self.ledger().defer(seq, handed, ending, report);
        if let Some((report, bytes, ending)) = ready {
            report.send(bytes, ending, Some(&self.repeats));
        }
    }

    /// A flush completed: ended bodies are out in full.
    pub fn ledger_flushed(&self) {
        // Reported under the lock: only this connection takes it, and a
        // report only counts and queues a line.
        let mut ledger = self.ledger();
        while let Some((report, bytes, ending)) = ledger.flushed() {
            report.send(bytes, ending, Some(&self.repeats));
        }
    }

    /// The connection closed with `in_pipe` spliced bytes never sent.
    pub fn ledger_close(&self, in_pipe: u64) {
        let mut out = Vec::new();
        self.ledger().close(in_pipe, &mut out);
        for (report, bytes, ending) in out {
            report.send(bytes, ending, Some(&self.repeats));
        }
    }

    /// Since when (coarse-clock milliseconds) no response has been in
    /// flight; `None` while one is, or before the first request.
    pub fn idle_since(&self) -> Option<u64> {
        Some(self.idle_since.load(Ordering::Acquire)).filter(|&t| t != 0)
    }

    /// Asks the connection to close if it is idle (the connection cap is
    /// reached): wakes its reader, which decides.
    pub fn request_close(&self) {
        self.close_requested.store(true, Ordering::Release);
        self.wake_reader();
    }

    /// Wakes the connection if it is parked on a read, so that it looks at
    /// what changed (a close request, the shutdown's drain).
    pub fn wake_reader(&self) {
        let waker = self.read_waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Whether the connection was asked to close; clears the request.
    pub fn take_close_request(&self) -> bool {
        // A plain load first: this runs on every read.
        self.close_requested.load(Ordering::Relaxed) && self.close_requested.swap(false, Ordering::AcqRel)
    }

    /// Remembers the waker of the connection's pending read.
    pub fn park_reader(&self, waker: &std::task::Waker) {
        let mut w = self.read_waker.lock().unwrap_or_else(|e| e.into_inner());
        if !w.as_ref().is_some_and(|old| old.will_wake(waker)) {
            *w = Some(waker.clone());
        }
    }

    /// Marks a request as started; the guard marks its response finished when
    /// dropped (with the response body, or with the handler if it is cancelled).
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.started.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.idle_since.store(0, Ordering::Release);
        RequestGuard { tracker: self.clone() }
    }
}

/// Held for as long as a response is in flight.
#[derive(Debug)]
pub struct RequestGuard {
    tracker: Arc<ConnTracker>,
}

impl RequestGuard {
    /// The connection this request arrived on.
    pub fn tracker(&self) -> &ConnTracker {
        &self.tracker
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if self.tracker.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
            let ms = (t.tv_sec as u64).saturating_mul(1000).saturating_add(t.tv_nsec as u64 / 1_000_000);
            self.tracker.idle_since.store(ms.max(1), Ordering::Release);
        }
    }
}
