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
//! a load), and sees the flag then.

use super::idle::IdleList;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::Notify;

/// The shutdown's side: hands out tickets, and drains.
#[derive(Debug, Clone, Default)]
pub(super) struct Drain {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Set once, when the shutdown begins.
    draining: AtomicBool,
    /// Connections accepted and not yet finished (tickets alive).
    live: AtomicUsize,
    /// Notified when `live` reaches zero.
    finished: Notify,
}

/// A connection's side, held from its accept until it has finished.
#[derive(Debug)]
pub(super) struct Ticket {
    shared: Arc<Shared>,
}

impl Drain {
    /// A ticket for a connection just accepted: the shutdown waits for it.
    pub(super) fn ticket(&self) -> Ticket {
        self.shared.live.fetch_add(1, Ordering::AcqRel);
        Ticket { shared: self.shared.clone() }
    }

    /// Asks every connection to finish, wakes those parked on a read, and
    /// waits until every ticket is gone.
    pub(super) async fn shutdown(&self, conns: &IdleList) {
        self.shared.draining.store(true, Ordering::SeqCst);
        conns.wake_all();
        loop {
            let mut finished = pin!(self.shared.finished.notified());
            // Registered before the count is read, so a last ticket dropped
            // in between still wakes this wait.
            finished.as_mut().enable();
            if self.shared.live.load(Ordering::Acquire) == 0 {
                return;
            }
            finished.await;
        }
    }
}

impl Ticket {
    fn draining(&self) -> bool {
        self.shared.draining.load(Ordering::Acquire)
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

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.shared.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.finished.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
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
    async fn the_shutdown_asks_each_connection_once_and_waits_for_every_ticket() {
        // Nothing accepted: the shutdown returns at once.
        let idle = IdleList::default();
        tokio::time::timeout(Duration::from_secs(1), Drain::default().shutdown(&idle)).await.unwrap();

        let drain = Drain::default();
        let (ticket, waker) = (drain.ticket(), Arc::new(Mutex::new(None)));
        let calls = Arc::new(AtomicUsize::new(0));
        let (conn, seen) = (Conn { waker: waker.clone(), left: None }, calls.clone());
        let serving = tokio::spawn(async move {
            let out = ticket
                .serve(conn, |mut c| {
                    seen.fetch_add(1, Ordering::SeqCst);
                    c.left = Some(3);
                })
                .await;
            drop(ticket);
            out
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!serving.is_finished() && calls.load(Ordering::SeqCst) == 0, "served until the drain");
        let waiter = drain.clone();
        let shutting = tokio::spawn(async move { waiter.shutdown(&IdleList::default()).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!shutting.is_finished(), "the shutdown waits for the live ticket");
        // Whatever the connection waits on wakes it: it sees the drain then.
        let parked = waker.lock().unwrap().take();
        parked.unwrap().wake();
        assert_eq!(tokio::time::timeout(Duration::from_secs(1), serving).await.unwrap().unwrap(), "finished");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "asked once, though polled four times since");
        tokio::time::timeout(Duration::from_secs(1), shutting).await.unwrap().unwrap();

        // A connection first polled after the drain began is asked at once.
        let ticket = drain.ticket();
        let conn = Conn { waker: Arc::default(), left: None };
        assert_eq!(ticket.serve(conn, |mut c| c.left = Some(0)).await, "finished");
    }
}
