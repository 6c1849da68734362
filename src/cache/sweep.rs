//! The background sweep: every [`SWEEP_INTERVAL`] it re-checks every cached
//! entry and drops changed or deleted ones (so a deleted file's mapping does
//! not pin its disk space once no response uses it), drops windows whose
//! entry is gone, counts resident bytes, and prunes watches nobody needs.

use super::{Cached, Content, SWEEP_INTERVAL, Shared, budget};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

pub(super) fn sweep_loop(shared: Weak<Shared>) {
    loop {
        std::thread::sleep(SWEEP_INTERVAL);
        let Some(shared) = shared.upgrade() else { return };
        sweep_once(&shared);
    }
}

pub(super) fn sweep_once(shared: &Shared) {
    // Once for the whole pass (hits may skip it with `inotify-async`): the
    // sweep sees every change made before it started.
    if let Some(watcher) = &shared.watcher {
        watcher.sync();
    }
    budget::with_inline_unmap(|| {
        let mut resident = 0u64;
        for (key, value) in shared.table.snapshot() {
            match value {
                Cached::File(entry) => {
                    if shared.is_fresh(&entry) {
                        if let Content::Mapped(w) = &entry.content {
                            resident += w.refresh_residency();
                        }
                    } else {
                        shared.forget(&key, &entry);
                    }
                }
                // Belt and braces: a window whose entry is gone.
                Cached::Window(w) if w.is_orphan() => {
                    drop(
                        shared
                            .table
                            .remove_if(&key, |v| matches!(v, Cached::Window(x) if Arc::ptr_eq(x, &w))),
                    );
                }
                Cached::Window(w) => resident += w.refresh_residency(),
            }
        }
        shared.resident.store(resident, Ordering::Relaxed);
        if let Some(watcher) = &shared.watcher {
            watcher.prune();
        }
    });
}
