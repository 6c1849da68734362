//! The background applier of `--revalidate inotify-async`: one thread per
//! watcher, named `mapserve-inotify`, blocks in `poll(2)` on the inotify
//! descriptor and applies events as soon as the kernel queues them, so that
//! cache hits need not ask (no `FIONREAD` per hit, only an atomic load).
//!
//! * It reads and applies under the same lock and `busy` protocol as
//!   [`Watcher::sync`], so a strict sync running meanwhile (a body's check
//!   before a chunk, a load) still waits for events this thread has read
//!   but not yet applied.
//! * It holds the watcher only for one poll (at most [`POLL_TIMEOUT`]) and
//!   the drain that may follow; between polls it holds a `Weak`, so it ends
//!   within that timeout once its cache is dropped.
//! * If it cannot start, or `poll` fails, hits fall back to the strict
//!   [`Watcher::sync`]: the flag that lets them skip it is cleared.
//!
//! The price is a window in which a hit still trusts a token whose change is
//! queued but not yet applied: the wake-up of this thread plus the drain
//! (README, "How changes on disk are picked up", for the measured bound).

use super::Watcher;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

/// Longest the thread blocks before it checks that its watcher still exists.
pub(super) const POLL_TIMEOUT: Timespec = Timespec { tv_sec: 0, tv_nsec: 500_000_000 };

impl Watcher {
    /// Starts the applier thread; from then on [`Watcher::sync_hit`] skips
    /// the `FIONREAD`. `None` when the thread cannot start: hits then stay
    /// strict. The handle is only for tests (the thread ends by itself once
    /// the watcher is dropped).
    pub fn apply_in_background(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        let weak = Arc::downgrade(self);
        // Raised before the thread starts, so that a thread that fails at
        // once clears it for good.
        self.background.store(true, Ordering::Relaxed);
        match std::thread::Builder::new().name("mapserve-inotify".into()).spawn(move || run(&weak)) {
            Ok(handle) => Some(handle),
            Err(e) => {
                self.background.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, "cannot start the inotify thread; each cache hit makes one FIONREAD");
                None
            }
        }
    }
}

/// Polls and applies until the watcher is gone (or `poll` fails).
fn run(weak: &Weak<Watcher>) {
    while let Some(watcher) = weak.upgrade() {
        let mut fds = [PollFd::new(&watcher.fd, PollFlags::IN)];
        let polled = poll(&mut fds, Some(&POLL_TIMEOUT));
        let revents = fds[0].revents();
        match polled {
            Ok(0) | Err(Errno::INTR) => {}
            Ok(_) if revents.contains(PollFlags::IN) => watcher.apply_queued(),
            outcome => {
                watcher.background.store(false, Ordering::Relaxed);
                tracing::warn!(
                    ?outcome,
                    ?revents,
                    "the inotify thread stopped; each cache hit makes one FIONREAD from now on"
                );
                return;
            }
        }
    }
}
