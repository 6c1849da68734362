//! The request pipeline, top to bottom:
//!
//! 1. **Method**: GET and HEAD; anything else is 405 with `Allow`.
//! 2. **Host**: an HTTP/1.1 request needs exactly one Host (RFC 9112 §3.2).
//! 3. **Path**: decode and validate (`path`); `/dir/` asks for `dir/index.html`.
//! 4. **Cache**: the entry in its current state (`cache`); a directory asked
//!    for without its slash is redirected.
//! 5. **Preconditions**: RFC 9110 §13.2.2 (`http::conditional`).
//! 6. **Range**: for GET, when `If-Range` allows (`http::range`).
//! 7. **Response**: built in one place (`response`); the body logs the access
//!    line and releases the connection's in-flight mark when it ends.

use crate::access::{AccessRecord, Throttle};
use crate::body::stream::Source;
use crate::cache::{Content, Entry, FileCache, Held, HoldError, Reads};
use crate::error::ServeError;
use crate::http::conditional::{self, Decision, Validators};
use crate::http::range::{self, RangeOutcome};
use crate::path;
use crate::quota::Quota;
use crate::response::{self, Plan, Policy};
use crate::track::ConnTracker;
use axum::extract::{Request, State};
use http::request::Parts;
use http::{HeaderValue, Method, Response, Version, header};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

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
}

/// Per-connection facts.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The connection's activity tracker.
    pub tracker: Arc<ConnTracker>,
}

/// The handler's state: the application, and the connection the request
/// arrived on. The server builds one per connection, so no per-request
/// extension map is needed to carry the connection.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The application.
    pub app: Arc<App>,
    /// The connection (absent when the handler is driven without one).
    pub conn: Option<ConnInfo>,
}

/// The axum handler for every path.
pub async fn handle(State(scope): State<Scope>, req: Request) -> axum::response::Response {
    let Scope { app, conn } = scope;
    let start = app.access_log.then(Instant::now);
    let (req, _body) = req.into_parts();
    let guard = conn.as_ref().map(|c| c.tracker.begin());
    let head = req.method == Method::HEAD;
    let quota = conn.as_ref().and_then(|c| c.tracker.quota());
    let mut response = match serve(&app, &req, head, quota).await {
        Ok(response) => response,
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
            response::error(&e, head)
        }
    };
    let record = match (&conn, start) {
        (Some(c), Some(start)) => Some(AccessRecord {
            client: c.peer,
            method: req.method.clone(),
            target: req.uri.path_and_query().map_or_else(|| req.uri.to_string(), |pq| pq.to_string()),
            version: req.version,
            status: response.status().as_u16(),
            start,
        }),
        _ => None,
    };
    response.body_mut().attach(record, guard);
    response.map(axum::body::Body::new)
}

async fn serve(
    app: &App,
    req: &Parts,
    head: bool,
    quota: Option<&Arc<Quota>>,
) -> Result<Response<crate::body::FileBody>, ServeError> {
    let method = &req.method;
    if method != Method::GET && method != Method::HEAD {
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
    let rel = path::parse(req.uri.path(), app.hidden)?;
    let key = if rel.has_trailing_slash() { rel.join(b"index.html") } else { rel.clone() };
    let mut entry = match app.cache.lookup(key.as_bytes()) {
        Some(entry) => entry,
        // Boxed so that the handler's future stays small on the hit path.
        None => Box::pin(app.cache.load(key.as_bytes())).await?,
    };
    if let Content::Dir = entry.content {
        if rel.has_trailing_slash() {
            return Err(ServeError::NotFound);
        }
        return Ok(response::redirect(directory_location(req), head));
    }
    let mut plan = plan(app, req, &entry);
    let held = match hold(app, &entry, reads(&plan, head), quota).await {
        // Replaced between the lookup and the open: serve the new version.
        Err(HoldError::Stale) => {
            entry = Box::pin(app.cache.reload(key.as_bytes(), &entry)).await?;
            plan = self::plan(app, req, &entry);
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
    let ctx = response::FileContext { policy: &app.policy, cache: &app.cache, source, window };
    let mut response = response::file(&entry, plan, head, &ctx);
    response.body_mut().hold(file_slot);
    Ok(response)
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

/// Preconditions (RFC 9110 §13.2.2), then the range, decide what to send.
fn plan(app: &App, req: &Parts, entry: &Entry) -> Plan {
    let validators = Validators {
        etag: entry.headers.etag.as_bytes(),
        last_modified: entry.headers.last_modified_secs,
        // Only If-Range asks whether Last-Modified is strong (§8.8.2.2).
        last_modified_is_strong: req.headers.contains_key(header::IF_RANGE)
            && entry.headers.last_modified_secs.is_some_and(|lm| lm.saturating_add(1) <= now_secs()),
    };
    let is_get = req.method == Method::GET;
    match conditional::evaluate(&req.headers, is_get, &validators) {
        Decision::NotModified => Plan::NotModified,
        Decision::PreconditionFailed => Plan::PreconditionFailed,
        Decision::Proceed { use_range } => {
            let mut ranges = req.headers.get_all(header::RANGE).iter();
            match (is_get && use_range, ranges.next(), ranges.next()) {
                (true, Some(value), None) => {
                    match range::evaluate(value.as_bytes(), entry.len(), app.max_ranges) {
                        RangeOutcome::Full => Plan::Full,
                        RangeOutcome::Unsatisfiable => Plan::Unsatisfiable,
                        RangeOutcome::Single(r) => Plan::Single(r),
                        RangeOutcome::Multi(v) => Plan::Multi(v),
                    }
                }
                _ => Plan::Full,
            }
        }
    }
}

/// `Location` for a directory asked for without its trailing slash: the
/// request's own (still encoded) path with the slash added and the query
/// kept. A path, not an absolute URL, so it stays right behind a proxy;
/// repeated slashes are collapsed so that `//host/dir` cannot become a
/// protocol-relative redirect to another site.
fn directory_location(req: &Parts) -> HeaderValue {
    let mut location = String::with_capacity(req.uri.path().len() + 2);
    for segment in req.uri.path().split('/').filter(|s| !s.is_empty()) {
        location.push('/');
        location.push_str(segment);
    }
    location.push('/');
    if let Some(query) = req.uri.query() {
        location.push('?');
        location.push_str(query);
    }
    HeaderValue::from_str(&location).unwrap_or_else(|_| HeaderValue::from_static("/"))
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
