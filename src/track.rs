//! Per-connection state shared between the connection's I/O wrapper and its
//! requests:
//!
//! * how many responses are in flight, and a counter bumped when a request
//!   starts: the I/O wrapper reads these to tell an idle connection from a
//!   slow request head from a busy one (see `server::conn`);
//! * the large slices of file mappings that response bodies have handed to
//!   hyper: when hyper writes one of them, the I/O wrapper moves it to the
//!   socket with `vmsplice` + `splice` instead of copying it (see
//!   `server::zerocopy`). Holding the `Bytes` here keeps the mapping, and so
//!   the address range, alive until the bytes have been handed to the kernel.

use crate::mmap::guard::Probe;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Mapped slices shorter than this are written with `writev`: a copy is
/// cheaper than the extra system calls of splicing.
pub const MIN_SPLICE: usize = 64 << 10;

/// Shared by a connection and its requests.
#[derive(Debug, Default)]
pub struct ConnTracker {
    in_flight: AtomicUsize,
    started: AtomicU64,
    has_mapped: AtomicBool,
    mapped: Mutex<VecDeque<Bytes>>,
    probes: Mutex<VecDeque<Probe>>,
}

/// Most poison probes remembered per connection.
const PROBES: usize = 8;

impl ConnTracker {
    /// A tracker for a new connection.
    pub fn new() -> Arc<ConnTracker> {
        Arc::new(ConnTracker::default())
    }

    /// Responses started and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Requests started so far.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Acquire)
    }

    /// Records a slice of a file mapping that a body has just handed to hyper.
    pub fn offer_mapped(&self, chunk: Bytes) {
        let mut q = self.mapped.lock().unwrap_or_else(|e| e.into_inner());
        q.push_back(chunk);
        self.has_mapped.store(true, Ordering::Release);
    }

    /// Whether any offered mapped slice is still unwritten (cheap check).
    pub fn has_mapped(&self) -> bool {
        self.has_mapped.load(Ordering::Acquire)
    }

    /// Whether `[ptr, ptr + len)` lies inside an offered mapped slice. Slices
    /// offered before the matching one have been written already (hyper
    /// writes in order) and are forgotten.
    pub fn is_mapped(&self, ptr: usize, len: usize) -> bool {
        let mut q = self.mapped.lock().unwrap_or_else(|e| e.into_inner());
        let end = ptr.saturating_add(len);
        let found = q.iter().position(|c| {
            let start = c.as_ptr() as usize;
            ptr >= start && end <= start.saturating_add(c.len())
        });
        match found {
            Some(i) => {
                q.drain(..i);
                true
            }
            None => false,
        }
    }

    /// Forgets the first offered slice if `[..end)` finished it.
    pub fn wrote_up_to(&self, end: usize) {
        let mut q = self.mapped.lock().unwrap_or_else(|e| e.into_inner());
        if q.front().is_some_and(|c| c.as_ptr() as usize + c.len() == end) {
            q.pop_front();
        }
        if q.is_empty() {
            self.has_mapped.store(false, Ordering::Release);
        }
    }

    /// Remembers the mapping a chunk came from, so that the connection can
    /// tell whether bytes it is about to write were read from a mapping the
    /// SIGBUS guard has since poisoned (see `server::conn`).
    pub fn note_probe(&self, probe: Probe) {
        let mut q = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        if q.back() != Some(&probe) && !q.contains(&probe) {
            if q.len() == PROBES {
                q.pop_front();
            }
            q.push_back(probe);
        }
    }

    /// Whether any remembered mapping is poisoned.
    pub fn any_poisoned(&self) -> bool {
        let q = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        q.iter().any(Probe::is_poisoned)
    }

    /// Marks a request as started; the guard marks its response finished when
    /// dropped (with the response body, or with the handler if it is cancelled).
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.started.fetch_add(1, Ordering::AcqRel);
        if self.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            // Nothing in flight: every byte of earlier responses is written.
            self.probes.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
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
        self.tracker.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
