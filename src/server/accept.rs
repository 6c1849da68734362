//! Accepting connections and serving each one.
//!
//! * A semaphore caps concurrent connections. At the cap, the next client is
//!   accepted and waits for a slot, and the connection idle the longest (a
//!   keep-alive connection between requests) is asked to close to make room
//!   ([`super::idle`]); with none idle, clients wait in the kernel's backlog.
//! * Accept errors such as EMFILE back off (5 ms doubling to 1 s) instead of
//!   ending the loop.
//! * Each connection gets `TCP_NODELAY`, the timeout wrapper
//!   ([`super::conn`]) and hyper-util's auto builder.

use super::conn::{ConnIo, Timeouts};
use super::idle::IdleList;
use crate::handler::{App, ConnInfo, Scope};
use crate::track::ConnTracker;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// How often, at the cap, the longest-idle connection is asked again.
const RECLAIM_RETRY: Duration = Duration::from_millis(250);

/// What every accept loop shares.
#[derive(Clone)]
pub(super) struct Acceptor {
    /// The application.
    pub app: Arc<App>,
    /// hyper's connection builder.
    pub builder: Arc<auto::Builder<super::exec::StreamExec>>,
    /// Tracks connections for the graceful shutdown.
    pub graceful: Arc<GracefulShutdown>,
    /// The connection cap.
    pub slots: Arc<Semaphore>,
    /// Keep-alive connections that may be closed to make room.
    pub idle: Arc<IdleList>,
    /// The connection timeouts.
    pub timeouts: Timeouts,
}

impl Acceptor {
    /// Accepts on `listener` until `stop` changes.
    pub(super) async fn run(self, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(5);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        if is_resource_error(&e) {
                            tracing::warn!(error = %e, retry_in = ?backoff, "accept failed; backing off");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(1));
                        }
                        continue;
                    }
                },
                _ = stop.changed() => return,
            };
            backoff = Duration::from_millis(5);
            let Some(permit) = self.slot(&mut stop).await else { return };
            self.serve(stream, peer, permit);
        }
    }

    /// A connection slot: at once, or after asking the longest-idle
    /// connection to close, or when one frees.
    async fn slot(&self, stop: &mut watch::Receiver<bool>) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Some(permit);
        }
        // Ask again while waiting, more connections each time: one asked to
        // close declines if it is not really idle (its last bytes still going
        // out), and others may have gone idle since.
        let mut attempt = 0u32;
        loop {
            let ask = 1 << attempt.min(6);
            attempt = attempt.saturating_add(1);
            if self.idle.close_oldest(ask) > 0 {
                tracing::debug!(
                    attempt,
                    "at the connection cap: asking the longest-idle connections to close"
                );
            }
            tokio::select! {
                permit = self.slots.clone().acquire_owned() => return permit.ok(),
                _ = tokio::time::sleep(RECLAIM_RETRY) => {}
                _ = stop.changed() => return None,
            }
        }
    }

    fn serve(&self, stream: tokio::net::TcpStream, peer: std::net::SocketAddr, permit: OwnedSemaphorePermit) {
        let _ = stream.set_nodelay(true);
        let tracker = ConnTracker::new();
        let info = ConnInfo { peer, tracker: tracker.clone() };
        self.idle.register(&tracker);
        let io = TokioIo::new(ConnIo::new(stream, tracker.clone(), self.timeouts));
        let service = crate::app::service::<Incoming>(Scope { app: self.app.clone(), conn: Some(info) });
        let per_conn = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            tower::ServiceExt::oneshot(service.clone(), req)
        });
        let connection = self.builder.serve_connection(io, per_conn).into_owned();
        let watched = self.graceful.watch(connection);
        tokio::spawn(async move {
            let ended = watched.await;
            if let Some(status) = tracker.refused() {
                crate::access::refused(peer, status, "request line too long");
            } else if let Err(e) = &ended {
                if let Some((status, why)) = rejected(e.as_ref()) {
                    crate::access::refused(peer, status, why);
                }
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            tracker.repeats().flush(peer);
            drop(permit);
        });
    }
}

/// The status hyper answered a request it could not parse with (it never
/// reached the handler), for the access log.
fn rejected(e: &(dyn std::error::Error + 'static)) -> Option<(u16, &'static str)> {
    let e = e.downcast_ref::<hyper::Error>()?;
    if e.is_parse_too_large() {
        Some((431, "request head too large"))
    } else if e.is_parse() {
        Some((400, "malformed request"))
    } else {
        None
    }
}

/// Errors that mean "out of something": retrying at once would spin.
fn is_resource_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}
