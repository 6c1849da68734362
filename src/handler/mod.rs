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

use crate::access_log::{AccessRecord, Throttle};
use crate::body::stream::Source;
use crate::cache::{Content, Entry, FileCache, Held, HoldError, ListingRules, Reads};
use crate::error::ServeError;
use crate::fs::FsError;
use crate::http::accept::{self, Preferred};
use crate::http::cors::{self, Cors};
use crate::http::rules::HeaderRules;
use crate::listing::Variant;
use crate::path::{self, RelPath};
use crate::peer::Peer;
use crate::quota::Quota;
use crate::response::{self, Plan, Policy};
use crate::track::ConnTracker;
use arc_swap::ArcSwap;
use axum::extract::{Request, State};
use http::request::Parts;
use http::{HeaderValue, Method, Response, Version, header};
use std::sync::Arc;
use std::time::Instant;

mod origin;
mod plan;
mod represent;

use origin::directory_location;
use plan::plan;

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

/// The axum handler for every path.
pub async fn handle(State(scope): State<Scope>, req: Request) -> axum::response::Response {
    let app = scope.app.load_full();
    let conn = scope.conn;
    let start = Instant::now();
    let (req, _body) = req.into_parts();
    let origin = origin::origin(&app, conn.as_ref(), &req);
    let guard = conn.as_ref().map(|c| c.tracker.begin());
    let head = req.method == Method::HEAD;
    let quota = conn.as_ref().and_then(|c| c.tracker.quota());
    let mut response = match serve(&app, &req, head, quota, origin.prefix.as_deref()).await {
        Ok(response) => response,
        Err(ServeError::NotFound) if app.browse.not_found_page.is_some() => {
            match Box::pin(not_found_page(&app, &req, head, quota)).await {
                Some(response) => response,
                None => response::error(&ServeError::NotFound, head, prefers(&req) == Preferred::Html),
            }
        }
        Err(e) => {
            // At most 10 such lines a second: they can come once per request.
            static THROTTLE: Throttle = Throttle::new(10);
            match &e {
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
            response::error(&e, head, prefers(&req) == Preferred::Html)
        }
    };
    finish(&app, &req, &mut response);
    let status = response.status().as_u16();
    let record = match origin.client.filter(|_| app.access_log) {
        Some(client) => {
            let tls = conn.as_ref().and_then(|c| c.tls);
            let mut record =
                AccessRecord::of(&req, (client, origin.https, tls), status, (start, app.access_log_format));
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
    response.map(axum::body::Body::new)
}

async fn serve(
    app: &App,
    req: &Parts,
    head: bool,
    quota: Option<&Arc<Quota>>,
    prefix: Option<&str>,
) -> Result<Response<crate::body::FileBody>, ServeError> {
    let method = &req.method;
    let options = method == Method::OPTIONS && app.cors.is_some();
    if method != Method::GET && method != Method::HEAD && !options {
        return Err(ServeError::MethodNotAllowed);
    }
    // One pass over the few header lines instead of two hashed lookups.
    let (mut hosts, mut host_ok, mut coded) = (0, true, false);
    for (name, value) in &req.headers {
        if name == header::HOST {
            hosts += 1;
            host_ok &= crate::http::host::valid_host(value.as_bytes());
        } else if name == header::TRANSFER_ENCODING {
            coded = true;
        }
    }
    if hosts > 1 || !host_ok || (hosts == 0 && req.version == Version::HTTP_11) {
        return Err(ServeError::BadRequest);
    }
    let codings = || req.headers.get_all(header::TRANSFER_ENCODING).iter().map(HeaderValue::as_bytes);
    if coded && !crate::http::host::known_transfer_coding(codings()) {
        return Err(ServeError::NotImplemented);
    }
    if let Some(cors) = app.cors.as_ref().filter(|_| options) {
        let preflight = cors::is_preflight(&req.headers).then(|| cors.preflight(&req.headers));
        return Ok(response::options(preflight));
    }
    let rel = path::parse(req.uri.path(), app.hidden)?;
    let listing = app.browse.listing.filter(|_| rel.has_trailing_slash());
    // Borrowed unless an index is asked for: no copy of the path on a hit.
    let index = rel.has_trailing_slash().then(|| rel.join(b"index.html"));
    let key = index.as_ref().unwrap_or(&rel);
    let cached = app.cache.lookup(key.as_bytes());
    if cached.is_none() && listing.is_some() {
        // A cached listing is current only while no index.html appeared.
        if let Some(entry) = app.cache.lookup_listing(rel.as_bytes(), variant(req)) {
            return send(app, req, head, quota, entry, Role::Asked).await;
        }
    }
    let missed = cached.is_none();
    let found = match cached {
        Some(entry) => Ok(entry),
        // Boxed so that the handler's future stays small on the hit path.
        None => Box::pin(app.cache.load(key.as_bytes())).await,
    };
    let entry = match found {
        Ok(entry) if matches!(entry.content, Content::Dir) && !rel.has_trailing_slash() => {
            return Ok(response::redirect(directory_location(req, prefix), head));
        }
        // `dir/index.html` is a directory: as if there were no index.
        Ok(entry) if matches!(entry.content, Content::Dir) => Err(FsError::NotFound),
        other => other,
    };
    let (entry, role) = match (entry, listing) {
        (Ok(entry), _) => (entry, Role::Asked),
        (Err(FsError::NotFound), Some(rules)) => {
            match Box::pin(app.cache.load_listing(rel.as_bytes(), variant(req), rules)).await {
                Ok(entry) => (entry, Role::Asked),
                Err(FsError::NotFound) => (Box::pin(fallback(app, req)).await?, Role::Fallback),
                Err(e) => return Err(e.into()),
            }
        }
        // Boxed: the rare paths must not grow the hit path's future.
        (Err(FsError::NotFound), None) => (Box::pin(fallback(app, req)).await?, Role::Fallback),
        (Err(e), _) => return Err(e.into()),
    };
    let mut response = send(app, req, head, quota, entry, role).await?;
    if missed {
        response.body_mut().mark_loaded();
    }
    Ok(response)
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

/// The `--not-found-page` file as a 404, if it can be served.
async fn not_found_page(
    app: &App,
    req: &Parts,
    head: bool,
    quota: Option<&Arc<Quota>>,
) -> Option<Response<crate::body::FileBody>> {
    let page = app.browse.not_found_page.as_ref()?;
    let entry = app.cache.get(page.as_bytes()).await.ok().filter(|e| !matches!(e.content, Content::Dir))?;
    send(app, req, head, quota, entry, Role::NotFound).await.ok()
}

/// Decides and builds the response for a found entry.
async fn send(
    app: &App,
    req: &Parts,
    head: bool,
    quota: Option<&Arc<Quota>>,
    asked: Arc<Entry>,
    role: Role,
) -> Result<Response<crate::body::FileBody>, ServeError> {
    let download =
        (role == Role::Asked && !asked.headers.listing && wants_download(req)).then(|| asked.clone());
    let chosen = match role {
        Role::NotFound => represent::Chosen::identity(asked, false),
        Role::Asked | Role::Fallback => match represent::choose_now(app, req, asked) {
            Ok(chosen) => chosen,
            // Boxed: loading a sidecar or compressing must not grow the
            // hit path's future.
            Err(asked) => Box::pin(represent::choose(app, req, asked)).await,
        },
    };
    let represent::Chosen { mut entry, mut face, mut vary, asked } = chosen;
    let plan_for = |entry: &Entry, face, vary: bool| match role {
        Role::NotFound => Plan::Full,
        _ => {
            let h = entry.face(face);
            // One of several codings of the resource: coded, or could be.
            let varies = vary
                || h.content_encoding.is_some()
                || app.policy.compress.applies(h.compressible, entry.len());
            plan(app, req, entry, face, varies)
        }
    };
    let mut plan = plan_for(&entry, face, vary);
    let held = match hold(app, &entry, reads(&plan, head), quota).await {
        // A sidecar replaced between the lookup and the open: the file
        // itself (the sidecar's new version is not known to be fresh).
        Err(HoldError::Stale) if asked.is_some() => {
            entry = asked.unwrap_or(entry);
            (face, vary) = (crate::cache::Face::Own, true);
            plan = plan_for(&entry, face, vary);
            hold(app, &entry, reads(&plan, head), quota).await
        }
        // Replaced between the lookup and the open: serve the new version.
        Err(HoldError::Stale) => {
            let key = entry.key.clone();
            entry = Box::pin(app.cache.reload(&key, &entry)).await?;
            plan = plan_for(&entry, face, vary);
            hold(app, &entry, reads(&plan, head), quota).await
        }
        other => other,
    };
    let held = match held {
        Ok(held) => held,
        Err(HoldError::Stale) => return Err(ServeError::NotFound),
        Err(HoldError::Fs(e)) => return Err(e.into()),
    };
    let Held { fd, window, pread, file_slot, pin } = held;
    let source = Source { fd, pread, quota: quota.cloned(), pin: pin.map(Arc::new) };
    let html_errors = plan == Plan::Unsatisfiable && prefers(req) == Preferred::Html;
    let ctx = response::FileContext {
        policy: &app.policy,
        cache: &app.cache,
        source,
        window,
        html_errors,
        vary_encoding: vary,
    };
    let mut response = response::file(&entry, face, plan, head, &ctx);
    response.body_mut().hold(file_slot);
    match role {
        Role::Asked => {
            if let Some(asked) = download {
                response::attach(&mut response, &asked);
            }
        }
        Role::Fallback => {
            response::varies_with_accept(&mut response);
            // Not the file the path names: no path rule applies to it.
            response.extensions_mut().insert(StandIn);
        }
        Role::NotFound => response::as_not_found(&mut response, app.browse.fallback.is_some()),
    }
    Ok(response)
}

/// `?download` (any value, or none) in the query.
fn wants_download(req: &Parts) -> bool {
    req.uri.query().is_some_and(|q| crate::http::query::parse(Some(q)).download)
}

/// What the response holds: decided at once on the hit path, with the
/// blocking pool only when a file must be opened again.
async fn hold(
    app: &App,
    entry: &Arc<Entry>,
    reads: Reads,
    quota: Option<&Arc<Quota>>,
) -> Result<Held, HoldError> {
    match app.cache.hold_now(entry, reads, quota) {
        Some(held) => held,
        None => Box::pin(app.cache.hold_for(entry, reads, quota)).await,
    }
}

/// What the response planned reads of the file.
fn reads(plan: &Plan, head: bool) -> Reads {
    match plan {
        _ if head => Reads::Nothing,
        Plan::Full => Reads::One { first: 0, len: u64::MAX },
        Plan::Single(r) => Reads::One { first: r.first, len: r.len() },
        Plan::Multi(_) => Reads::Several,
        Plan::NotModified | Plan::PreconditionFailed | Plan::Unsatisfiable => Reads::Nothing,
    }
}
