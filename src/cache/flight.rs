//! Single-flight: concurrent requests for the same missing key share one
//! load. The first caller runs it; the others wait for its result. If the
//! first caller is cancelled (its client went away), a waiter takes over.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

type Cell<T> = Arc<OnceCell<T>>;

/// In-progress loads, by key.
#[derive(Debug)]
pub struct Flights<T> {
    map: Mutex<HashMap<Box<[u8]>, Cell<T>>>,
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Flights { map: Mutex::new(HashMap::new()) }
    }
}

impl<T: Clone> Flights<T> {
    /// Runs `load` for `key`, unless a load for it is already under way, in
    /// which case its result is shared.
    pub async fn run<F, Fut>(&self, key: &[u8], load: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let cell = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key.into()).or_default().clone()
        };
        let result = cell.get_or_init(load).await.clone();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            map.remove(key);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

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
        for t in tasks {
            assert_eq!(t.await.unwrap(), 7);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Later calls start a new flight.
        assert_eq!(flights.run(b"k", || async { 8 }).await, 8);
    }
}
