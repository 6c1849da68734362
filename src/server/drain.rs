//! The graceful shutdown: every connection is asked to finish (HTTP/1 ends
//! after the response in flight, or at once when idle; HTTP/2 sends GOAWAY
//! and finishes its open streams), and the shutdown waits until all have.
//!
//! hyper-util's `GracefulShutdown` does the same with a `watch` channel whose
//! `changed()` future every connection polls on every wake-up, and polling a
//! waiting `Notified` takes one of the channel's few shared locks: a lock
//! per wake-up, shared by every connection on every worker. Here a
//! connection reads one flag instead (written once, at shutdown, so the
//! cache line stays shared), and the shutdown wakes the connections itself:
//! through the reader each connection parks on its tracker
//! ([`crate::track::ConnTracker::wake_reader`]). A connection that is not
//! parked on a read is waiting on something that wakes it anyway (a write,
//! a load), and sees the flag then. Nothing counts connections here: each
//! holds a permit of the connection cap's semaphore until its task ends, so
//! the shutdown waits until it can take every permit back.

use super::idle::IdleList;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Semaphore;

/// Whether the shutdown has begun; cloned into every connection's state.
#[derive(Debug, Clone, Default)]
pub(super) struct Drain {
    draining: Arc<AtomicBool>,
}

impl Drain {
    /// Asks every connection to finish, wakes those parked on a read, and
    /// waits until every one of the `cap` permits of `slots` (the connection
    /// cap, a permit held by each connection's task) is free again.
    pub(super) async fn shutdown(&self, conns: &IdleList, slots: &Semaphore, cap: usize) {
        self.draining.store(true, Ordering::SeqCst);
        conns.wake_all();
        // Taken back for good: nothing accepts any more.
        let mut left = cap;
        while left > 0 {
            let n = u32::try_from(left).unwrap_or(u32::MAX);
            let Ok(permits) = slots.acquire_many(n).await else { return };
            permits.forget();
            left -= n as usize;
        }
    }

    fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Runs `conn` to its end, calling `shutdown` on it once, at the first
    /// wake-up after the drain began.
    pub(super) async fn serve<C: Future>(&self, conn: C, shutdown: impl Fn(Pin<&mut C>)) -> C::Output {
        let mut conn = pin!(conn);
        let mut asked = false;
        poll_fn(move |cx| {
            loop {
                if !asked && self.draining() {
                    asked = true;
                    shutdown(conn.as_mut());
                }
                let poll = conn.as_mut().poll(cx);
                // Read again after a pending poll: a shutdown that looked for
                // this connection's parked reader before it parked (and so
                // woke nothing) set the flag first, and the tracker's lock
                // orders the two, so the flag is seen here.
                if poll.is_pending() && !asked && self.draining() {
                    continue;
                }
                return poll;
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Poll, Waker};
    use std::time::Duration;

    /// A connection stand-in: pending (its waker kept, as a socket would
    /// keep it) until asked to shut down, then ready after three more polls,
    /// waking itself for each, as a connection finishing its streams would.
    struct Conn {
        waker: Arc<Mutex<Option<Waker>>>,
        left: Option<u32>,
    }

    impl Future for Conn {
        type Output = &'static str;
        fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<&'static str> {
            match self.left {
                None => {
                    *self.waker.lock().unwrap() = Some(cx.waker().clone());
                    Poll::Pending
                }
                Some(0) => Poll::Ready("finished"),
                Some(n) => {
                    self.left = Some(n - 1);
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            }
        }
    }

    #[tokio::test]
    async fn the_shutdown_asks_each_connection_once_and_waits_for_every_permit() {
        // Nothing accepted: the shutdown returns at once.
        let (idle, slots) = (IdleList::default(), Arc::new(Semaphore::new(2)));
        let (unused, none_taken) = (Drain::default(), Semaphore::new(2));
        tokio::time::timeout(Duration::from_secs(1), unused.shutdown(&idle, &none_taken, 2)).await.unwrap();

        // A connection holds its permit until its task ends, as accepted ones do.
        let (drain, waker) = (Drain::default(), Arc::new(Mutex::new(None)));
        let permit = slots.clone().try_acquire_owned().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let (conn, seen, its) = (Conn { waker: waker.clone(), left: None }, calls.clone(), drain.clone());
        let serving = tokio::spawn(async move {
            let out = its
                .serve(conn, |mut c| {
                    seen.fetch_add(1, Ordering::SeqCst);
                    c.left = Some(3);
                })
                .await;
            drop(permit);
            out
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!serving.is_finished() && calls.load(Ordering::SeqCst) == 0, "served until the drain");
        let (waiter, cap) = (drain.clone(), slots.clone());
        let shutting = tokio::spawn(async move { waiter.shutdown(&IdleList::default(), &cap, 2).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!shutting.is_finished(), "the shutdown waits for the live connection's permit");
        // Whatever the connection waits on wakes it: it sees the drain then.
        let parked = waker.lock().unwrap().take();
        parked.unwrap().wake();
        assert_eq!(tokio::time::timeout(Duration::from_secs(1), serving).await.unwrap().unwrap(), "finished");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "asked once, though polled four times since");
        tokio::time::timeout(Duration::from_secs(1), shutting).await.unwrap().unwrap();

        // A connection first polled after the drain began is asked at once.
        let conn = Conn { waker: Arc::default(), left: None };
        assert_eq!(drain.serve(conn, |mut c| c.left = Some(0)).await, "finished");
    }
}
