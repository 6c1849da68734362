//! Idle keep-alive connections, so that the connection cap does not lock new
//! clients out: when the cap is reached, the connections that have been idle
//! longest (a request served, none in flight, nothing of a next one read) are
//! closed to make room, as nginx does with its reusable connections.
//!
//! Cheap when there is no pressure: a connection registers once, when it
//! starts; going idle or busy is one atomic store, and the waker is stored
//! only when it changed. Only the accept loop, at the cap, scans the list.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Waker;

/// One connection's idle state.
#[derive(Debug, Default)]
pub struct IdleSlot {
    /// Milliseconds (coarse monotonic clock) since which the connection has
    /// been idle; 0 while it is not.
    since: AtomicU64,
    close: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl IdleSlot {
    /// The connection went idle at `now_ms` and waits with `waker`.
    pub fn idle(&self, now_ms: u64, waker: &Waker) {
        {
            let mut w = self.waker.lock().unwrap_or_else(|e| e.into_inner());
            if !w.as_ref().is_some_and(|old| old.will_wake(waker)) {
                *w = Some(waker.clone());
            }
        }
        if self.since.load(Ordering::Relaxed) == 0 {
            self.since.store(now_ms.max(1), Ordering::Release);
        }
    }

    /// The connection is busy (reading a request, or one is in flight).
    pub fn busy(&self) {
        if self.since.load(Ordering::Relaxed) != 0 {
            self.since.store(0, Ordering::Release);
        }
    }

    /// Whether the connection was asked to close to make room.
    pub fn must_close(&self) -> bool {
        self.close.load(Ordering::Acquire)
    }
}

/// Every live connection's slot.
#[derive(Debug, Default)]
pub struct IdleList {
    slots: Mutex<Vec<Weak<IdleSlot>>>,
}

impl IdleList {
    fn lock(&self) -> MutexGuard<'_, Vec<Weak<IdleSlot>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection.
    pub fn register(&self) -> Arc<IdleSlot> {
        let slot = Arc::new(IdleSlot::default());
        let mut slots = self.lock();
        // Amortised clean-up of connections gone since.
        if slots.len() >= 64 && slots.len().is_power_of_two() {
            slots.retain(|w| w.strong_count() > 0);
        }
        slots.push(Arc::downgrade(&slot));
        slot
    }

    /// Asks the `n` connections idle the longest to close; returns how many
    /// were asked.
    pub fn close_oldest(&self, n: usize) -> usize {
        let mut idle: Vec<(u64, Arc<IdleSlot>)> = {
            let mut slots = self.lock();
            slots.retain(|w| w.strong_count() > 0);
            slots
                .iter()
                .filter_map(Weak::upgrade)
                .filter_map(|s| {
                    let since = s.since.load(Ordering::Acquire);
                    (since != 0 && !s.must_close()).then_some((since, s))
                })
                .collect()
        };
        idle.sort_by_key(|(since, _)| *since);
        let mut asked = 0;
        for (_, slot) in idle.into_iter().take(n) {
            slot.close.store(true, Ordering::Release);
            if let Some(w) = slot.waker.lock().unwrap_or_else(|e| e.into_inner()).take() {
                w.wake();
            }
            asked += 1;
        }
        asked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_idle_connections_are_asked_to_close_first() {
        let list = IdleList::default();
        let waker = Waker::noop();
        let slots: Vec<Arc<IdleSlot>> = (0..5).map(|_| list.register()).collect();
        slots[3].idle(100, waker);
        slots[1].idle(200, waker);
        slots[4].idle(300, waker);
        slots[4].busy();
        assert_eq!(list.close_oldest(1), 1);
        assert!(slots[3].must_close());
        assert!(!slots[1].must_close());
        assert_eq!(list.close_oldest(5), 1, "only idle ones, and not twice");
        assert!(slots[1].must_close());
        assert!(!slots[0].must_close() && !slots[2].must_close() && !slots[4].must_close());
        drop(slots);
        assert_eq!(list.close_oldest(5), 0);
        assert!(list.lock().is_empty(), "gone connections are dropped from the list");
    }
}
