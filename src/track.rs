//! Per-connection activity shared between the connection's I/O wrapper and
//! its requests: how many responses are in flight, and a counter bumped when a
//! request starts. The I/O wrapper reads these to tell an idle connection from
//! a slow request head from a busy one (see `server::conn`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Shared by a connection and its requests.
#[derive(Debug, Default)]
pub struct ConnTracker {
    in_flight: AtomicUsize,
    started: AtomicU64,
}

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

    /// Marks a request as started; the guard marks its response finished when
    /// dropped (with the response body, or with the handler if it is cancelled).
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.started.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestGuard { tracker: self.clone() }
    }
}

/// Held for as long as a response is in flight.
#[derive(Debug)]
pub struct RequestGuard {
    tracker: Arc<ConnTracker>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.tracker.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
