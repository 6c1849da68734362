//! The admin listener (`--admin-listen`): metrics, health checks, the cache
//! API and its dashboard, on a listener of its own. Nothing here is
//! reachable from the file listeners, where `/metrics` is a file path like
//! any other.
//!
//! | Route | |
//! |---|---|
//! | `GET /` | the dashboard page (static, no data in it) |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /readyz` | 200 once every listener accepts, 503 before and from SIGTERM on |
//! | `GET /metrics` | Prometheus / OpenMetrics text |
//! | `GET /cache` | the budget, counters, and one object per entry (`cache`) |
//! | `POST /cache/{prewarm,evict,pin,unpin}` | by `path=`, `glob=`, or `all=1` |
//!
//! With `--admin-token-file`, every route but the page and the two health
//! checks (which load balancers probe without credentials, and which tell
//! nothing) needs `Authorization: Bearer <token>`, compared in constant
//! time.

mod cache;

use crate::cache::FileCache;
use crate::handler::App;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the server takes traffic: `ready` once every listener accepts,
/// `draining` from the stop signal on.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    draining: AtomicBool,
}

impl Health {
    /// Every listener accepts.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    /// The stop signal came: no longer ready.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// `Ok` when ready, else why not.
    pub fn ready(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::SeqCst) {
            Err("draining")
        } else if self.ready.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err("starting")
        }
    }
}

/// What the admin routes read.
#[derive(Debug)]
pub struct AdminState {
    /// The cache.
    pub cache: FileCache,
    /// The application as now configured (hidden files, for paths).
    pub app: Arc<ArcSwap<App>>,
    /// Readiness.
    pub health: Arc<Health>,
    /// The bearer token, if one is required.
    pub token: Option<String>,
    /// When the process started.
    pub started: std::time::Instant,
    /// The access log's sink, for its counters.
    pub access: Option<crate::access_log::sink::Sink>,
}

/// The body type of every admin response.
pub type Body = axum::body::Body;

/// Answers one admin request.
pub async fn handle<B>(state: Arc<AdminState>, req: Request<B>) -> Response<Body> {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let query = req.uri().query().unwrap_or_default().to_owned();
    let open = matches!(path.as_str(), "/" | "/healthz" | "/readyz");
    if !open && !authorized(state.token.as_deref(), req.headers()) {
        let mut r = text(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let get = method == Method::GET || method == Method::HEAD;
    let response = match (path.as_str(), get, method == Method::POST) {
        ("/", true, _) => page(),
        ("/healthz", true, _) => text(StatusCode::OK, "ok\n"),
        ("/readyz", true, _) => match state.health.ready() {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("{why}\n")),
        },
        ("/metrics", true, _) => {
            metrics(&state, req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()))
        }
        ("/cache", true, _) => cache::list(&state, &query).await,
        ("/cache/prewarm" | "/cache/evict" | "/cache/pin" | "/cache/unpin", _, true) => {
            cache::act(&state, &path, &query).await
        }
        ("/" | "/healthz" | "/readyz" | "/metrics" | "/cache", _, _) => not_allowed("GET, HEAD"),
        ("/cache/prewarm" | "/cache/evict" | "/cache/pin" | "/cache/unpin", _, _) => not_allowed("POST"),
        _ => text(StatusCode::NOT_FOUND, "no such admin route\n"),
    };
    if method == Method::HEAD {
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, Body::default());
    }
    response
}

/// Whether `headers` carry the bearer token (always, when none is set).
fn authorized(token: Option<&str>, headers: &http::HeaderMap) -> bool {
    use subtle::ConstantTimeEq;
    let Some(token) = token else { return true };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    // Compare digests of equal length, so that not even the length leaks.
    let digest = |b: &[u8]| xxhash_rust::xxh3::xxh3_128(b).to_le_bytes();
    let equal: bool = digest(given).ct_eq(&digest(token.as_bytes())).into();
    equal && given.ct_eq(token.as_bytes()).into()
}

/// `/metrics`: OpenMetrics for a scraper that asks for it (Prometheus
/// does), the classic text format otherwise (curl, promtool).
fn metrics(state: &AdminState, accept: Option<&str>) -> Response<Body> {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = state.cache.stats();
    let gauges = crate::metrics::expose::Gauges {
        cache_by_kind: state.cache.kinds(),
        cache_hits: stats.hits,
        cache_misses: stats.misses,
        cache_loads: stats.loads,
        cache_evictions: state.cache.evictions(),
        cache_limit_bytes: state.cache.max_bytes(),
        cache_pinned_bytes: state.cache.pinned_bytes(),
        mapped_bytes: crate::mmap::mapped_bytes(),
        resident_bytes: stats.resident,
        sigbus_repairs: crate::mmap::guard::repairs(),
        unmaps_inline: crate::cache::budget::UNMAPS.inline.load(Relaxed),
        unmaps_reaper: crate::cache::budget::UNMAPS.reaper.load(Relaxed),
        pread_spans: stats.pread_spans,
        watch_overflows: crate::cache::watch::overflows(),
        access_log_dropped: state.access.as_ref().map_or(0, |s| s.dropped()),
        compressions: stats.compressions,
    };
    let format = crate::metrics::expose::Format::from_accept(accept);
    let body = crate::metrics::expose::encode_as(crate::metrics::global(), &gauges, format);
    respond(StatusCode::OK, format.content_type(), body.into_bytes())
}

fn page() -> Response<Body> {
    let mut r =
        respond(StatusCode::OK, "text/html; charset=utf-8", crate::pages::DASHBOARD.as_bytes().to_vec());
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
        ),
    );
    r
}

fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// A plain-text response.
pub fn text(status: StatusCode, body: &str) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body.as_bytes().to_vec())
}

/// A JSON response of `value`.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            respond(status, "application/json", body)
        }
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode\n"),
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Body::from(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_must_match_exactly() {
        let mut h = http::HeaderMap::new();
        assert!(authorized(None, &h));
        assert!(!authorized(Some("0123456789abcdef"), &h));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer 0123456789abcdef"));
        assert!(authorized(Some("0123456789abcdef"), &h));
        assert!(!authorized(Some("0123456789abcdeg"), &h));
        assert!(!authorized(Some("0123456789abcdef0"), &h));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic 0123456789abcdef"));
        assert!(!authorized(Some("0123456789abcdef"), &h));
    }

    #[test]
    fn readiness_follows_start_and_drain() {
        let h = Health::default();
        assert_eq!(h.ready(), Err("starting"));
        h.set_ready();
        assert_eq!(h.ready(), Ok(()));
        h.set_draining();
        assert_eq!(h.ready(), Err("draining"));
    }
}
