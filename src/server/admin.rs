//! Serving the admin routes (`crate::admin`) on their own listener: a TCP
//! address or a unix socket (mode 0600: the admin API steers the cache).
//! At most [`ADMIN_CONNECTIONS`] connections at once, each with a request
//! head timeout; it keeps serving while the file listeners drain, so that
//! `/readyz` can say 503 until the process exits.

use super::listener::{Accepted, Listener};
use crate::admin::{AdminState, handle};
use crate::config::ListenAddr;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// Most admin connections at once.
const ADMIN_CONNECTIONS: usize = 64;
/// How long a request head may take.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Permissions of an admin unix socket.
const ADMIN_UNIX_MODE: u32 = 0o600;

/// Binds the admin address.
pub(super) async fn bind(addr: &ListenAddr) -> io::Result<Listener> {
    match addr {
        ListenAddr::Tcp(addr) => Listener::tcp(*addr, false).await,
        ListenAddr::Unix(path) => Listener::unix(path, ADMIN_UNIX_MODE),
    }
}

/// Accepts and serves admin connections until the task is dropped.
pub(super) async fn run(listener: Arc<Listener>, state: Arc<AdminState>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(ADMIN_CONNECTIONS));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEAD_TIMEOUT).keep_alive(true);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(16);
    let builder = Arc::new(builder);
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let accepted = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (state, builder) = (state.clone(), builder.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(state, req).await) }
            });
            let ended = match accepted {
                Accepted::Tcp(s, _) => builder.serve_connection(TokioIo::new(s), service).await,
                Accepted::Unix(s) => builder.serve_connection(TokioIo::new(s), service).await,
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
            drop(permit);
        });
    }
}
