//! Accepting connections and serving each one.
//!
//! * A semaphore caps concurrent connections, whatever the listener. At the
//!   cap, the next client is accepted and waits for a slot, and the
//!   connection idle the longest (a keep-alive connection between requests)
//!   is asked to close to make room ([`super::idle`]); with none idle,
//!   clients wait in the kernel's backlog.
//! * Accept errors such as EMFILE back off (5 ms doubling to 1 s) instead of
//!   ending the loop.
//! * Before HTTP, within the header timeout: the PROXY protocol header when
//!   `--proxy-protocol` is on, then the TLS handshake on a TLS listener.
//! * Each connection gets the timeout wrapper ([`super::conn`]) and hyper:
//!   on plain TCP and unix sockets the auto builder (HTTP/1, or HTTP/2 with
//!   prior knowledge when the preface comes); under TLS the protocol ALPN
//!   chose, nothing else.

use super::conn::{Checked, ConnIo, Rewind, Start, Timeouts, Transport};
use super::drain::Drain;
use super::idle::IdleList;
use super::listener::{Accepted, Listener};
use super::proxy::header::ProxyHeader;
use super::tls::Tls;
use crate::handler::{App, ConnInfo, Scope};
use crate::peer::Peer;
use crate::track::ConnTracker;
use arc_swap::ArcSwap;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// How often, at the cap, the longest-idle connection is asked again.
const RECLAIM_RETRY: Duration = Duration::from_millis(250);

/// hyper's connection builders: by sniffing (plain), or as ALPN chose.
#[derive(Debug)]
pub(super) struct Builders {
    /// HTTP/1, or h2c when the preface comes.
    pub auto: auto::Builder<super::exec::StreamExec>,
    /// HTTP/1 only (ALPN `http/1.1` or none).
    pub h1: auto::Builder<super::exec::StreamExec>,
    /// HTTP/2 only (ALPN `h2`).
    pub h2: auto::Builder<super::exec::StreamExec>,
}

/// What every accept loop shares.
#[derive(Clone)]
pub(super) struct Acceptor {
    /// What every connection shares.
    pub serving: Arc<Serving>,
    /// The connection cap.
    pub slots: Arc<Semaphore>,
}

/// What every connection shares.
pub(super) struct Serving {
    /// The application, swapped whole by a reload.
    pub app: Arc<ArcSwap<App>>,
    /// hyper's connection builders.
    pub builders: Builders,
    /// Keep-alive connections that may be closed to make room.
    pub idle: Arc<IdleList>,
    /// The connection timeouts (a reload applies them to new connections).
    pub timeouts: Arc<ArcSwap<Timeouts>>,
    /// Connections begin with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// TLS, when any listener needs it.
    pub tls: Option<Tls>,
    /// Whether the graceful shutdown has begun.
    pub drain: Drain,
}

/// A connection ready for HTTP.
enum Ready {
    Tcp(Rewind<tokio::net::TcpStream>),
    Unix(Rewind<tokio::net::UnixStream>),
    Tls(Box<tokio_rustls::server::TlsStream<Checked<Rewind<tokio::net::TcpStream>>>>, Start),
}

impl Acceptor {
    /// Accepts on `listener` until `stop` changes.
    pub(super) async fn run(self, listener: Arc<Listener>, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(5);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
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
            let serving = self.serving.clone();
            let tls = listener.tls;
            tokio::spawn(async move {
                serving.connection(accepted, tls).await;
                drop(permit);
            });
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
            if self.serving.idle.close_oldest(ask) > 0 {
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
}

impl Serving {
    /// One connection, from accept to its end.
    async fn connection(&self, accepted: Accepted, tls: bool) {
        let _open = Open::new();
        let timeouts = **self.timeouts.load();
        let tracker = ConnTracker::new();
        let socket_peer = match &accepted {
            Accepted::Tcp(_, peer) => Peer::Addr(*peer),
            Accepted::Unix(_) => Peer::Unix,
        };
        let ready = if self.proxy_protocol || tls {
            match tokio::time::timeout(timeouts.header, self.prepare(accepted, tls, &tracker)).await {
                Ok(Ok(ready)) => ready,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %socket_peer, error = %e, "connection closed before HTTP");
                    return;
                }
                Err(_) => {
                    crate::metrics::global().timeout(crate::metrics::Timeout::Handshake);
                    tracing::debug!(peer = %socket_peer, "connection closed: no PROXY header or TLS handshake within the header timeout");
                    return;
                }
            }
        } else {
            match accepted {
                Accepted::Tcp(s, peer) => (Ready::Tcp(Rewind::new(s, Bytes::new())), Peer::Addr(peer)),
                Accepted::Unix(s) => (Ready::Unix(Rewind::new(s, Bytes::new())), Peer::Unix),
            }
        };
        match ready {
            (Ready::Tcp(s), peer) => {
                if let Some(tcp) = s.tcp() {
                    let _ = tcp.set_nodelay(true);
                }
                self.serve(s, (peer, Start::Sniff, None), &self.builders.auto, (timeouts, tracker)).await;
            }
            (Ready::Unix(s), peer) => {
                self.serve(s, (peer, Start::Sniff, None), &self.builders.auto, (timeouts, tracker)).await;
            }
            (Ready::Tls(s, start), peer) => {
                let builder = if start == Start::H2 { &self.builders.h2 } else { &self.builders.h1 };
                let version = super::tls::version_name(s.get_ref().1.protocol_version());
                self.serve(s, (peer, start, version), builder, (timeouts, tracker)).await;
            }
        }
    }

    /// The PROXY header, then the TLS handshake, as configured.
    async fn prepare(
        &self,
        accepted: Accepted,
        tls: bool,
        tracker: &Arc<ConnTracker>,
    ) -> io::Result<(Ready, Peer)> {
        let (ready, peer) = match accepted {
            Accepted::Tcp(mut s, peer) => {
                let _ = s.set_nodelay(true);
                let (peer, ahead) =
                    self.proxied(&mut s, Peer::Addr(peer)).await.inspect_err(refused_proxy)?;
                (Ready::Tcp(Rewind::new(s, ahead)), peer)
            }
            Accepted::Unix(mut s) => {
                let (peer, ahead) = self.proxied(&mut s, Peer::Unix).await.inspect_err(refused_proxy)?;
                (Ready::Unix(Rewind::new(s, ahead)), peer)
            }
        };
        match (ready, &self.tls) {
            (Ready::Tcp(s), Some(acceptor)) if tls => {
                let (stream, start) =
                    acceptor.accept(Checked::new(s, tracker.clone())).await.inspect_err(|_| {
                        crate::metrics::global().connection_refused(crate::metrics::Refusal::Tls);
                    })?;
                Ok((Ready::Tls(Box::new(stream), start), peer))
            }
            (ready, _) => Ok((ready, peer)),
        }
    }

    /// The client a PROXY header names (when the protocol is on).
    async fn proxied<S: tokio::io::AsyncRead + Unpin>(
        &self,
        s: &mut S,
        socket: Peer,
    ) -> io::Result<(Peer, Bytes)> {
        if !self.proxy_protocol {
            return Ok((socket, Bytes::new()));
        }
        let (header, ahead) = super::proxy::read_header(s).await?;
        let peer = match header {
            ProxyHeader::Proxied { source, .. } => Peer::Addr(source),
            ProxyHeader::Local | ProxyHeader::Unknown => socket,
        };
        Ok((peer, ahead))
    }

    async fn serve<S: Transport>(
        &self,
        stream: S,
        (peer, start, tls_version): (Peer, Start, Option<&'static str>),
        builder: &auto::Builder<super::exec::StreamExec>,
        (timeouts, tracker): (Timeouts, Arc<ConnTracker>),
    ) {
        let info = ConnInfo {
            peer,
            tracker: tracker.clone(),
            tls: tls_version.or(match start {
                Start::H1 | Start::H2 => Some("TLS"),
                Start::Sniff => None,
            }),
        };
        self.idle.register(&tracker);
        if self.app.load().access_log {
            tracker.want_ledger();
        }
        let io = TokioIo::new(ConnIo::new(stream, tracker.clone(), timeouts, start));
        let service = crate::app::service(Scope { app: self.app.clone(), conn: Some(info) });
        let per_conn = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            tower::ServiceExt::oneshot(service.clone(), req)
        });
        let connection = builder.serve_connection(io, per_conn).into_owned();
        let ended = self.drain.serve(connection, auto::Connection::graceful_shutdown).await;
        let refused = |status: u16, why: &str| {
            crate::metrics::global().refused_request(status);
            let app = self.app.load();
            if app.access_log {
                crate::access_log::refused(peer, status, why, app.access_log_format);
            }
        };
        if let Some(status) = tracker.refused() {
            refused(status, "request line too long");
        } else if let Err(e) = &ended {
            if let Some((status, why)) = rejected(e.as_ref()) {
                refused(status, why);
            }
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
        tracker.repeats().flush(peer);
    }
}

/// Counts a connection whose PROXY header was missing or malformed.
fn refused_proxy(_: &io::Error) {
    crate::metrics::global().connection_refused(crate::metrics::Refusal::Proxy);
}

/// An open connection, counted from accept to close.
struct Open;

impl Open {
    fn new() -> Open {
        crate::metrics::global().connection_accepted();
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        crate::metrics::global().connection_closed();
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
