//! Single-flight: concurrent requests for the same missing key share one
//! load. The first caller runs it; the others wait for its result. If the
//! first caller is cancelled (its client went away), a waiter takes over.
//!
//! A caller that joined a load may have started after the load did, so it
//! is told that it did not lead: the cache then checks the result is still
//! current before using it (a change made after the load began and before
//! the caller arrived must show). A finished load is never handed to a
//! caller that arrives after it finished: that one starts a new load.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

type Cell<T> = Arc<OnceCell<T>>;

/// In-progress loads, by key.
#[derive(Debug)]
pub(super) struct Flights<T> {
    map: Mutex<HashMap<Box<[u8]>, Cell<T>>>,
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Flights { map: Mutex::new(HashMap::new()) }
    }
}

impl<T> Flights<T> {
    /// Keys with a load under way.
    pub(super) fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether a load of `key` is under way.
    pub(super) fn contains(&self, key: &[u8]) -> bool {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).contains_key(key)
    }

    /// Capacity of the map (it is shrunk when it empties out).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).capacity()
    }
}

impl<T: Clone> Flights<T> {
    /// Runs `load` for `key`, unless a load for it is already under way, in
    /// which case its result is shared. Also says whether this caller ran
    /// the load (false: it joined one that may have begun before it came).
    pub(super) async fn run<F, Fut>(&self, key: &[u8], load: F) -> (T, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let cell = {
            let mut map = self.lock();
            let slot = map.entry(key.into()).or_default();
            if slot.initialized() {
                // Finished, and its leader not yet gone: not for newcomers.
                *slot = Cell::default();
            }
            slot.clone()
        };
        // Removes the key when this caller leaves, finished or cancelled,
        // unless other callers still wait for the same load.
        let _leave = Leave { flights: self, key, cell: &cell };
        let led = std::sync::atomic::AtomicBool::new(false);
        let value = cell
            .get_or_init(|| {
                led.store(true, std::sync::atomic::Ordering::Relaxed);
                load()
            })
            .await
            .clone();
        (value, led.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<[u8]>, Cell<T>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The map entry's last interested caller removes it. Callers take their
/// clone of the cell under the lock and drop this under the lock, so the
/// count of clones says exactly who still waits: the map's own, this one's,
/// and any others. A finished load is removed at once (later callers start
/// a new one, so they see changes made since).
struct Leave<'a, T> {
    flights: &'a Flights<T>,
    key: &'a [u8],
    cell: &'a Cell<T>,
}

impl<T> Drop for Leave<'_, T> {
    fn drop(&mut self) {
        let mut map = self.flights.map.lock().unwrap_or_else(|e| e.into_inner());
        let ours = map.get(self.key).is_some_and(|c| Arc::ptr_eq(c, self.cell));
        if ours && (self.cell.initialized() || Arc::strong_count(self.cell) <= 2) {
            map.remove(self.key);
            // A burst of distinct keys must not leave a large table behind.
            if map.capacity() > 64 && map.len() < map.capacity() / 8 {
                let keep = map.len() * 2;
                map.shrink_to(keep);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_cancelled_caller_leaves_no_key_behind() {
        let flights = Flights::<u32>::default();
        for i in 0..100_000u32 {
            let key = i.to_le_bytes();
            let fut = flights.run(&key, std::future::pending::<u32>);
            let mut fut = std::pin::pin!(fut);
            // Polled once (the load started), then dropped: a client gone.
            assert!(futures_poll_once(fut.as_mut()).await.is_none());
        }
        assert_eq!(flights.len(), 0, "cancelled loads left keys behind");
        assert!(flights.capacity() < 1 << 12, "the map shrinks back ({})", flights.capacity());
    }

    #[tokio::test]
    async fn a_waiter_takes_over_when_the_first_caller_is_cancelled() {
        let flights = Arc::new(Flights::<u32>::default());
        let first = flights.run(b"k", std::future::pending::<u32>);
        let mut first = Box::pin(first);
        assert!(futures_poll_once(first.as_mut()).await.is_none());
        let second = tokio::spawn({
            let flights = flights.clone();
            async move { flights.run(b"k", || async { 5 }).await }
        });
        tokio::task::yield_now().await;
        drop(first);
        assert_eq!(second.await.unwrap(), (5, true), "the waiter ran the load");
        assert_eq!(flights.len(), 0);
    }

    async fn futures_poll_once<F: Future + ?Sized>(mut fut: std::pin::Pin<&mut F>) -> Option<F::Output> {
        std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
            std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
            std::task::Poll::Pending => std::task::Poll::Ready(None),
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_run() {
        let flights = Arc::new(Flights::<u32>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(tokio::sync::Barrier::new(20));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (flights, runs, barrier) = (flights.clone(), runs.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    flights
                        .run(b"k", || async {
                            runs.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            7
                        })
                        .await
                })
            })
            .collect();
        let mut leaders = 0;
        for t in tasks {
            let (value, led) = t.await.unwrap();
            assert_eq!(value, 7);
            leaders += usize::from(led);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1, "the others are told they joined");
        // Later calls start a new flight.
        assert_eq!(flights.run(b"k", || async { 8 }).await, (8, true));
    }

    #[tokio::test]
    async fn a_finished_load_is_not_handed_to_a_newcomer() {
        let flights = Flights::<u32>::default();
        // The leader's result is in, but the leader has not left yet.
        let cell = {
            let mut map = flights.lock();
            map.entry((*b"k").into()).or_default().clone()
        };
        cell.set(1).unwrap();
        assert_eq!(flights.run(b"k", || async { 2 }).await, (2, true));
        drop(cell);
    }
}
