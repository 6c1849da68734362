//! Every live connection, for two things. Idle keep-alive connections, so
//! that the connection cap does not lock new clients out: when the cap is
//! reached, the connection whose last response ended longest ago, and that
//! has none in flight, is asked to close to make room, as nginx does with its
//! reusable connections. The connection itself
//! decides (it closes only if nothing of a next request has been read).
//!
//! And the shutdown's drain ([`super::drain`]), which wakes every connection
//! parked on a read.
//!
//! Cheap when there is no pressure: a connection registers once, when it
//! starts; only the accept loop, at the cap, and the shutdown scan the list.

use crate::track::ConnTracker;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Every live connection.
#[derive(Debug, Default)]
pub(super) struct IdleList {
    conns: Mutex<Vec<Weak<ConnTracker>>>,
}

impl IdleList {
    fn lock(&self) -> MutexGuard<'_, Vec<Weak<ConnTracker>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new connection.
    pub(super) fn register(&self, conn: &Arc<ConnTracker>) {
        let mut conns = self.lock();
        // Amortised clean-up of connections gone since.
        if conns.len() >= 64 && conns.len().is_power_of_two() {
            conns.retain(|w| w.strong_count() > 0);
        }
        conns.push(Arc::downgrade(conn));
    }

    /// Wakes every live connection parked on a read (the shutdown's drain).
    pub(super) fn wake_all(&self) {
        let conns: Vec<Arc<ConnTracker>> = self.lock().iter().filter_map(Weak::upgrade).collect();
        for conn in conns {
            conn.wake_reader();
        }
    }

    /// Asks the `n` connections idle the longest to close; returns how many
    /// were asked.
    pub(super) fn close_oldest(&self, n: usize) -> usize {
        let mut idle: Vec<(u64, Arc<ConnTracker>)> = {
            let mut conns = self.lock();
            conns.retain(|w| w.strong_count() > 0);
            conns.iter().filter_map(Weak::upgrade).filter_map(|c| Some((c.idle_since()?, c))).collect()
        };
        idle.sort_by_key(|(since, _)| *since);
        let asked = idle.len().min(n);
        for (_, conn) in idle.into_iter().take(n) {
            conn.request_close();
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
        let conns: Vec<Arc<ConnTracker>> = (0..4).map(|_| ConnTracker::new()).collect();
        for c in &conns {
            list.register(c);
        }
        // 0 never served; 1 and 3 served and idle (1 first); 2 busy.
        drop(conns[1].begin());
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(conns[3].begin());
        let _busy = conns[2].begin();
        assert_eq!(list.close_oldest(1), 1);
        assert!(conns[1].take_close_request());
        assert!(!conns[3].take_close_request());
        assert_eq!(list.close_oldest(5), 2, "the idle ones only");
        assert!(
            conns[3].take_close_request() && !conns[0].take_close_request() && !conns[2].take_close_request()
        );
        drop(conns);
        drop(_busy);
        assert_eq!(list.close_oldest(5), 0);
        assert!(list.lock().is_empty(), "gone connections are dropped from the list");
    }
}
