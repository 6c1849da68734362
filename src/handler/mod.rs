//! The request pipeline, top to bottom:
//!
//! 1. **Method**: GET and HEAD; anything else is 405 with `Allow`, except a
//!    CORS preflight (`OPTIONS`) when `--cors` is on.
//! 2. **Host**: an HTTP/1.1 request needs exactly one Host (RFC 9112 §3.2).
//! 3. **Path**: decode and validate (`path`); `/dir/` asks for `dir/index.html`.
//! 4. **Cache**: the entry in its current state (`cache`); a directory asked
//!    for without its slash is redirected.
//! 5. **Browse**: `/dir/` without an index gets its listing (cached like a
//!    file; looked up right after the index, so a cached index costs nothing
//!    more); a missing path gets the `--fallback` page when the client
//!    prefers HTML.
//! 6. **Representation**: identity, a precompressed sidecar or a compressed
//!    variant, by `Accept-Encoding` (`represent`); everything after applies
//!    to the chosen one.
//! 7. **Preconditions**: RFC 9110 §13.2.2 (`http::conditional`).
//! 8. **Range**: for GET, when `If-Range` allows (`http::range`); never for
//!    a listing.
//! 9. **Response**: built in one place (`response`); `?download` adds
//!    `Content-Disposition`; the body logs the access line and releases the
//!    connection's in-flight mark when it ends.
//! 10. **Errors**: an HTML page for clients that prefer HTML, short text for
//!     the rest; a 404 is the `--not-found-page` file when one is set.
//! 11. **Operator headers**: `--header` on every response, `[[headers]]`
//!     rules on 200, 206 and 304, then CORS (`http::rules`, `http::cors`).
//!
//! [`handle_now`] runs the whole pipeline as plain calls, and answers every
//! request that waits for nothing: a cached entry, a refusal. When a step
//! must wait (a load, an open, a compression, the not-found page), it hands
//! a [`Later`] to [`handle_later`], which runs the steps as a future
//! (`serve`). So a hit builds no future, and one with nothing to await moves
//! no state into one.

use crate::access_log::{AccessRecord, Throttle};
use crate::body::FileBody;
use crate::cache::{Content, Entry, FileCache, ListingRules};
use crate::error::ServeError;
use crate::http::accept::{self, Preferred};
use crate::http::cors::Cors;
use crate::http::rules::HeaderRules;
use crate::listing::Variant;
use crate::path::{self, RelPath};
use crate::peer::Peer;
use crate::response::{self, Policy};
use crate::track::{ConnTracker, RequestGuard};
use arc_swap::ArcSwap;
use http::request::Parts;
use http::{HeaderValue, Method, Response, header};
use serve::Now;
use std::sync::Arc;
use std::time::Instant;

mod origin;
mod plan;
mod represent;
mod serve;

/// Shared state of the application.
#[derive(Debug)]
pub struct App {
    /// The cache.
    pub cache: FileCache,
    /// Serve dotfiles.
    pub hidden: bool,
    /// Multipart range cap.
    pub max_ranges: usize,
    /// Response policy.
    pub policy: Policy,
    /// Emit access log lines.
    pub access_log: bool,
    /// Their format.
    pub access_log_format: crate::access_log::format::Format,
    /// What browsers get: listings, fallback and not-found pages.
    pub browse: Browse,
    /// `--header` and `[[headers]]`.
    pub rules: HeaderRules,
    /// `--cors` (`None`: off).
    pub cors: Option<Cors>,
    /// Peers whose forwarded headers are believed.
    pub trusted: crate::config::TrustedProxies,
}

/// Listings, the SPA fallback and the not-found page.
#[derive(Debug, Clone, Default)]
pub struct Browse {
    /// List directories without an index (`None`: 404).
    pub listing: Option<ListingRules>,
    /// The file whose bytes answer a 404.
    pub not_found_page: Option<RelPath>,
    /// The file served for a missing path to clients that prefer HTML.
    pub fallback: Option<RelPath>,
}

/// How a found entry is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// What was asked for.
    Asked,
    /// The `--fallback` page, standing in for a missing path.
    Fallback,
    /// The `--not-found-page`, sent whole with 404.
    NotFound,
}

/// Per-connection facts.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The peer (or the client a PROXY header named).
    pub peer: Peer,
    /// The connection's activity tracker.
    pub tracker: Arc<ConnTracker>,
    /// The connection's TLS version (`None`: not TLS).
    pub tls: Option<&'static str>,
}

/// The handler's state: the application, and the connection the request
/// arrived on. The server builds one per connection, so no per-request
/// extension map is needed to carry the connection.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The application; a reload swaps it, and each request takes the one
    /// current when it starts.
    pub app: Arc<ArcSwap<App>>,
    /// The connection (absent when the handler is driven without one).
    pub conn: Option<ConnInfo>,
}

impl Scope {
    /// A scope over a fixed application.
    pub fn new(app: Arc<App>, conn: Option<ConnInfo>) -> Scope {
        Scope { app: Arc::new(ArcSwap::new(app)), conn }
    }
}

/// A request [`handle_now`] could not finish at once: [`handle_later`]
/// does, as a future.
#[derive(Debug)]
pub struct Later {
    app: Arc<App>,
    req: Parts,
    start: Instant,
    origin: origin::Origin,
    guard: Option<RequestGuard>,
    step: Step,
}

/// Where [`handle_later`] picks up.
#[derive(Debug)]
enum Step {
    /// Serving the admitted path, from the entry already found, if one was.
    Serve(RelPath, Option<Arc<Entry>>),
    /// Sending the `--not-found-page` for a missing path.
    NotFoundPage,
}

/// The whole pipeline for a request that waits for nothing (a cached
/// entry, a refusal); `Err` when something must be awaited.
pub fn handle_now(scope: &Scope, req: Parts) -> Result<Response<FileBody>, Box<Later>> {
    let start = Instant::now();
    // A guard, not a clone: no write to the application's shared count,
    // whose cache line would move between the workers' cores.
    let app = scope.app.load();
    let conn = scope.conn.as_ref();
    let origin = origin::origin(&app, conn, &req);
    let guard = conn.map(|c| c.tracker.begin());
    let head = req.method == Method::HEAD;
    let quota = conn.and_then(|c| c.tracker.quota());
    let step = match serve::serve_now(&app, &req, head, quota, origin.prefix.as_deref()) {
        Now::Done(Err(ServeError::NotFound)) if app.browse.not_found_page.is_some() => Step::NotFoundPage,
        Now::Done(result) => return Ok(complete(&app, conn, &req, (start, origin, guard), result)),
        Now::Later(rel, found) => Step::Serve(rel, found),
    };
    Err(Box::new(Later { app: arc_swap::Guard::into_inner(app), req, start, origin, guard, step }))
}

/// The rest of a request [`handle_now`] handed on.
pub async fn handle_later(scope: Scope, later: Box<Later>) -> Response<FileBody> {
    let Later { app, req, start, origin, guard, step } = *later;
    let conn = scope.conn.as_ref();
    let head = req.method == Method::HEAD;
    let quota = conn.and_then(|c| c.tracker.quota());
    let result = match step {
        Step::Serve(rel, found) => {
            serve::serve(&app, &req, head, quota, origin.prefix.as_deref(), (rel, found)).await
        }
        Step::NotFoundPage => Err(ServeError::NotFound),
    };
    let result = match result {
        Err(ServeError::NotFound) if app.browse.not_found_page.is_some() => {
            Box::pin(serve::not_found_page(&app, &req, head, quota)).await.ok_or(ServeError::NotFound)
        }
        other => other,
    };
    complete(&app, conn, &req, (start, origin, guard), result)
}

/// Steps 10 and 11, and what the body reports when it ends.
fn complete(
    app: &App,
    conn: Option<&ConnInfo>,
    req: &Parts,
    (start, origin, guard): (Instant, origin::Origin, Option<RequestGuard>),
    result: Result<Response<FileBody>, ServeError>,
) -> Response<FileBody> {
    let mut response = match result {
        Ok(response) => response,
        Err(e) => refusal(&e, req),
    };
    finish(app, req, &mut response);
    let status = response.status().as_u16();
    let record = match origin.client.filter(|_| app.access_log) {
        Some(client) => {
            let tls = conn.and_then(|c| c.tls);
            let mut record =
                AccessRecord::of(req, (client, origin.https, tls), status, (start, app.access_log_format));
            record.coding = response
                .headers()
                .get(header::CONTENT_ENCODING)
                .and_then(|v| {
                    crate::http::encoding::Coding::ALL
                        .into_iter()
                        .find(|c| c.token().as_bytes() == v.as_bytes())
                })
                .map(crate::http::encoding::Coding::token);
            Some(record)
        }
        None => None,
    };
    let tally = crate::access_log::Tally { method: req.method.clone(), status, start };
    response.body_mut().attach(record, tally, guard);
    response
}

/// The error response, logged when the fault is the server's.
fn refusal(e: &ServeError, req: &Parts) -> Response<crate::body::FileBody> {
    // At most 10 such lines a second: they can come once per request.
    static THROTTLE: Throttle = Throttle::new(10);
    match e {
        ServeError::Internal(cause) => {
            if let Some(left_out) = THROTTLE.allow() {
                tracing::error!(path = %req.uri.path(), %cause, left_out, "request failed");
            }
        }
        ServeError::Unavailable(cause) => {
            if let Some(left_out) = THROTTLE.allow() {
                tracing::warn!(path = %req.uri.path(), %cause, left_out, "answered 503");
            }
        }
        _ => {}
    }
    response::error(e, req.method == Method::HEAD, prefers(req) == Preferred::Html)
}

/// Marks a response that is not of the file its path names (the
/// `--fallback` page).
#[derive(Debug, Clone, Copy)]
struct StandIn;

/// Operator headers and CORS, on whatever the response is.
fn finish(app: &App, req: &Parts, response: &mut Response<crate::body::FileBody>) {
    let status = response.status().as_u16();
    let stand_in = response.extensions().get::<StandIn>().is_some();
    let headers = response.headers_mut();
    app.rules.apply_global(headers);
    if app.rules.has_paths() && matches!(status, 200 | 206 | 304) && !stand_in {
        if let Ok(rel) = path::parse(req.uri.path(), app.hidden) {
            let mut decoded = String::from("/");
            decoded.push_str(&String::from_utf8_lossy(rel.as_bytes()));
            if rel.has_trailing_slash() && !rel.as_bytes().is_empty() {
                decoded.push('/');
            }
            app.rules.apply_paths(&decoded, headers);
        }
    }
    if let Some(cors) = &app.cors {
        if req.method != Method::OPTIONS {
            cors.apply(req.headers.get(header::ORIGIN), headers);
        }
    }
}

/// The listing variant a request asks for.
fn variant(req: &Parts) -> Variant {
    Variant::of(&crate::http::query::parse(req.uri.query()), prefers(req) == Preferred::Json)
}

/// What the request's `Accept` prefers.
fn prefers(req: &Parts) -> Preferred {
    accept::preferred(req.headers.get_all(header::ACCEPT).iter().map(HeaderValue::as_bytes))
}

/// The `--fallback` page for a missing path, when the client prefers HTML
/// (a browser navigating); otherwise the path stays missing.
async fn fallback(app: &App, req: &Parts) -> Result<Arc<Entry>, ServeError> {
    let Some(page) = app.browse.fallback.as_ref().filter(|_| prefers(req) == Preferred::Html) else {
        return Err(ServeError::NotFound);
    };
    match app.cache.get(page.as_bytes()).await {
        Ok(entry) if !matches!(entry.content, Content::Dir) => Ok(entry),
        _ => Err(ServeError::NotFound),
    }
}
