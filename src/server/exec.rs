//! hyper's executor for HTTP/2 streams: every stream runs as a task of its
//! own, and here each one is wrapped in a watchdog.
//!
//! A stream whose flow-control window stays at zero is never polled by
//! hyper again, and no socket write blocks, so neither the connection's send
//! timeout nor any clock of hyper's ever fires: the stream would keep its
//! response (a mapping, a descriptor, a share of the budget) for as long as
//! the client likes. The watchdog counts a stream as making progress each
//! time something wakes it (new flow-control capacity, a chunk read from
//! disk, the client resetting it); one that nothing has woken for the send
//! timeout is dropped. Dropping a stream's task resets the stream
//! (RST_STREAM, CANCEL) and releases everything its response held, while the
//! other streams of the connection carry on, as nginx does at
//! `send_timeout`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Streams dropped by the watchdog since start.
pub(super) static STALLED_STREAMS: AtomicU64 = AtomicU64::new(0);

/// Spawns HTTP/2 stream tasks on tokio, each under a watchdog.
#[derive(Debug, Clone, Copy)]
pub(super) struct StreamExec {
    /// How long a stream may go without being woken.
    pub stall: Duration,
}

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(Watchdog::new(fut, self.stall));
    }
}

/// Remembers that the inner future was woken, then wakes the task.
#[derive(Debug, Default)]
struct Flag {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

/// A stream task with a deadline that every wake-up pushes back.
struct Watchdog<F> {
    inner: Option<Pin<Box<F>>>,
    flag: Arc<Flag>,
    inner_waker: Waker,
    stall: Duration,
    deadline: Instant,
    timer: Pin<Box<Sleep>>,
}

impl<F: Future<Output = ()>> Watchdog<F> {
    fn new(fut: F, stall: Duration) -> Watchdog<F> {
        let flag = Arc::new(Flag { woken: AtomicBool::new(true), task: Mutex::new(None) });
        let deadline = Instant::now() + stall;
        Watchdog {
            inner: Some(Box::pin(fut)),
            inner_waker: Waker::from(flag.clone()),
            flag,
            stall,
            deadline,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

impl<F: Future<Output = ()>> Future for Watchdog<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        {
            let mut task = this.flag.task.lock().unwrap_or_else(|e| e.into_inner());
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        if this.flag.woken.swap(false, Ordering::AcqRel) {
            let Some(inner) = this.inner.as_mut() else { return Poll::Ready(()) };
            if inner.as_mut().poll(&mut Context::from_waker(&this.inner_waker)).is_ready() {
                return Poll::Ready(());
            }
            // Pushed back lazily: the timer is re-armed only when it fires.
            this.deadline = Instant::now() + this.stall;
        }
        loop {
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= this.deadline {
                // Nothing woke the stream for the whole period: reset it.
                STALLED_STREAMS.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(stall = ?this.stall, "HTTP/2 stream made no progress; reset");
                this.inner = None;
                return Poll::Ready(());
            }
            let deadline = this.deadline;
            this.timer.as_mut().reset(deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stream_woken_in_time_runs_and_a_stalled_one_is_dropped() {
        struct Dropped(Arc<AtomicBool>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let stall = Duration::from_secs(10);
        // Woken every 5 s for a minute: never stalled, finishes.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(1);
        let alive = tokio::spawn(Watchdog::new(
            async move {
                while let Some(n) = rx.recv().await {
                    if n == 12 {
                        return;
                    }
                }
            },
            stall,
        ));
        for n in 1..=12 {
            tokio::time::sleep(Duration::from_secs(5)).await;
            tx.send(n).await.unwrap();
        }
        alive.await.unwrap();
        // Never woken: dropped (not finished) after the stall period.
        let dropped = Arc::new(AtomicBool::new(false));
        let guard = Dropped(dropped.clone());
        let started = Instant::now();
        tokio::spawn(Watchdog::new(
            async move {
                let _guard = guard;
                std::future::pending::<()>().await
            },
            stall,
        ))
        .await
        .unwrap();
        assert!(dropped.load(Ordering::SeqCst));
        assert!(started.elapsed() >= stall && started.elapsed() < stall * 2);
    }
}
