//! Steps 1 to 9 of the pipeline, twice: [`serve_now`] runs them as plain
//! calls and finishes every request whose entry is cached and needs nothing
//! awaited (the hit path builds no future at all); it hands anything else
//! to [`serve`], the same steps as a future, which loads, opens and
//! compresses on the blocking pool. Both end in [`build`], so a response is
//! the same whichever path made it.

use super::origin::directory_location;
use super::plan::plan;
use super::{App, Role, StandIn, fallback, prefers, represent, variant};
use crate::body::stream::Source;
use crate::cache::{Content, Entry, Face, Held, HoldError, Reads};
use crate::error::ServeError;
use crate::fs::FsError;
use crate::http::accept::Preferred;
use crate::http::cors;
use crate::path::{self, Rel, RelPath};
use crate::quota::Quota;
use crate::response::{self, Plan};
use http::request::Parts;
use http::{HeaderValue, Method, Response, Version, header};
use std::sync::Arc;

/// What [`serve_now`] did.
// The large variant is the hit's: boxing it would cost an allocation a hit.
#[allow(clippy::large_enum_variant)]
pub(super) enum Now {
    /// The request is answered (or refused).
    Done(Result<Response<crate::body::FileBody>, ServeError>),
    /// Something must be awaited: [`serve`] takes over, from the admitted
    /// path and the entry the lookup found, if it found one (so a hit is
    /// counted once, and nothing is checked twice).
    Later(RelPath, Option<Arc<Entry>>),
}

/// The request as far as no step waits.
pub(super) fn serve_now(
    app: &App,
    req: &Parts,
    head: bool,
    quota: Option<&Arc<Quota>>,
    prefix: Option<&str>,
) -> Now {
    let rel = match admit(app, req) {
        Ok(Admitted::Path(rel)) => rel,
        Ok(Admitted::Preflight) => return Now::Done(Ok(preflight(app, req))),
        Err(e) => return Now::Done(Err(e)),
    };
    if rel.has_trailing_slash() {
        // An index, a listing: the future's path.
        return Now::Later(rel.into_owned(), None);
    }
    let Some(entry) = app.cache.lookup(rel.as_bytes()) else { return Now::Later(rel.into_owned(), None) };
    if matches!(entry.content, Content::Dir) {
        return Now::Done(Ok(response::redirect(directory_location(req, prefix), head)));
    }
    match send_now(app, req, head, quota, entry, Role::Asked) {
        Ok(response) => Now::Done(Ok(response)),
        Err(entry) => Now::Later(rel.into_owned(), Some(entry)),
    }
}

/// What [`admit`] let through.
enum Admitted<'a> {
    /// A CORS preflight, answered without the file system.
    Preflight,
    /// A GET or HEAD of this path (borrowed from the request when it had
    /// nothing to decode).
    Path(Rel<'a>),
}

/// Steps 1 to 3: the method, the Host field, the transfer codings and the
/// path.
fn admit<'r>(app: &App, req: &'r Parts) -> Result<Admitted<'r>, ServeError> {
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
    if options {
        return Ok(Admitted::Preflight);
    }
    Ok(Admitted::Path(path::parse(req.uri.path(), app.hidden)?))
}

/// The answer to `OPTIONS` when `--cors` is on.
fn preflight(app: &App, req: &Parts) -> Response<crate::body::FileBody> {
    let preflight = app
        .cors
        .as_ref()
        .filter(|_| cors::is_preflight(&req.headers))
        .map(|cors| cors.preflight(&req.headers));
    response::options(preflight)
}

/// The request [`serve_now`] admitted (`rel`), awaiting whatever it needs;
/// `found` is the entry it already looked up. [`serve_now`] looks up every
/// path but a directory's, so only the index of one is looked up here: a
/// miss goes straight to the load, not through the same lookup again.
pub(super) async fn serve(
    app: &App,
    req: &Parts,
    head: bool,
    quota: Option<&Arc<Quota>>,
    prefix: Option<&str>,
    (rel, found): (RelPath, Option<Arc<Entry>>),
) -> Result<Response<crate::body::FileBody>, ServeError> {
    let listing = app.browse.listing.filter(|_| rel.has_trailing_slash());
    // Borrowed unless an index is asked for: no copy of the path on a hit.
    let index = rel.has_trailing_slash().then(|| rel.join(b"index.html"));
    let key = index.as_ref().unwrap_or(&rel);
    let cached = found.or_else(|| index.as_ref().and_then(|index| app.cache.lookup(index.as_bytes())));
    if cached.is_none() && listing.is_some() {
        // A cached listing is current only while no index.html appeared.
        if let Some(entry) = app.cache.lookup_listing(rel.as_bytes(), variant(req)) {
            return send(app, req, head, quota, entry, Role::Asked).await;
        }
    }
    let missed = cached.is_none();
    let found = match cached {
        Some(entry) => Ok(entry),
        // Boxed so that this future stays small.
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
        // Boxed: the rare paths must not grow this future.
        (Err(FsError::NotFound), None) => (Box::pin(fallback(app, req)).await?, Role::Fallback),
        (Err(e), _) => return Err(e.into()),
    };
    let mut response = send(app, req, head, quota, entry, role).await?;
    if missed {
        response.body_mut().mark_loaded();
    }
    Ok(response)
}

/// What is sent of a found entry, decided.
struct Sending {
    entry: Arc<Entry>,
    face: Face,
    vary: bool,
    plan: Plan,
    held: Held,
    /// `?download`: the entry asked for, whose name the attachment takes.
    download: Option<Arc<Entry>>,
    role: Role,
}

/// Steps 6 to 9 for a found entry, when nothing must be awaited; otherwise
/// the entry back, for [`send`].
fn send_now(
    app: &App,
    req: &Parts,
    head: bool,
    quota: Option<&Arc<Quota>>,
    asked: Arc<Entry>,
    role: Role,
) -> Result<Response<crate::body::FileBody>, Arc<Entry>> {
    let download = download(req, &asked, role);
    let represent::Chosen { entry, face, vary, asked } = match role {
        Role::NotFound => represent::Chosen::identity(asked, false),
        Role::Asked | Role::Fallback => represent::choose_now(app, req, asked)?,
    };
    let plan = plan_of(app, req, &entry, face, vary, role);
    match app.cache.hold_now(&entry, reads(&plan, head), quota) {
        Some(Ok(held)) => {
            Ok(build(app, req, head, quota, Sending { entry, face, vary, plan, held, download, role }))
        }
        // A descriptor to open, or a sidecar replaced: the entry asked for
        // goes to the future's path (a compressed variant, the one other
        // choice, is heap bytes, which never need one).
        _ => Err(asked.unwrap_or(entry)),
    }
}

/// Steps 6 to 9 for a found entry, awaiting what they need.
async fn send(
    app: &App,
    req: &Parts,
    head: bool,
    quota: Option<&Arc<Quota>>,
    asked: Arc<Entry>,
    role: Role,
) -> Result<Response<crate::body::FileBody>, ServeError> {
    let download = download(req, &asked, role);
    let chosen = match role {
        Role::NotFound => represent::Chosen::identity(asked, false),
        Role::Asked | Role::Fallback => match represent::choose_now(app, req, asked) {
            Ok(chosen) => chosen,
            // Boxed: loading a sidecar or compressing must not grow this
            // future.
            Err(asked) => Box::pin(represent::choose(app, req, asked)).await,
        },
    };
    let represent::Chosen { mut entry, mut face, mut vary, asked } = chosen;
    let mut plan = plan_of(app, req, &entry, face, vary, role);
    let held = match hold(app, &entry, reads(&plan, head), quota).await {
        // A sidecar replaced between the lookup and the open: the file
        // itself (the sidecar's new version is not known to be fresh).
        Err(HoldError::Stale) if asked.is_some() => {
            entry = asked.unwrap_or(entry);
            (face, vary) = (Face::Own, true);
            plan = plan_of(app, req, &entry, face, vary, role);
            hold(app, &entry, reads(&plan, head), quota).await
        }
        // Replaced between the lookup and the open: serve the new version.
        Err(HoldError::Stale) => {
            let key = entry.key.clone();
            entry = Box::pin(app.cache.reload(&key, &entry)).await?;
            plan = plan_of(app, req, &entry, face, vary, role);
            hold(app, &entry, reads(&plan, head), quota).await
        }
        other => other,
    };
    let held = match held {
        Ok(held) => held,
        Err(HoldError::Stale) => return Err(ServeError::NotFound),
        Err(HoldError::Fs(e)) => return Err(e.into()),
    };
    Ok(build(app, req, head, quota, Sending { entry, face, vary, plan, held, download, role }))
}

/// `?download` asked of `asked`: the entry whose name the attachment takes.
fn download(req: &Parts, asked: &Arc<Entry>, role: Role) -> Option<Arc<Entry>> {
    let wanted = || req.uri.query().is_some_and(|q| crate::http::query::parse(Some(q)).download);
    (role == Role::Asked && !asked.headers.listing && wanted()).then(|| asked.clone())
}

/// Steps 7 and 8: what of the representation to send.
fn plan_of(app: &App, req: &Parts, entry: &Entry, face: Face, vary: bool, role: Role) -> Plan {
    if role == Role::NotFound {
        return Plan::Full;
    }
    let h = entry.face(face);
    // One of several codings of the resource: coded, or could be.
    let varies =
        vary || h.content_encoding.is_some() || app.policy.compress.applies(h.compressible, entry.len());
    plan(app, req, entry, face, varies)
}

/// Step 9: the response, built in `response`, with the role's marks.
fn build(
    app: &App,
    req: &Parts,
    head: bool,
    quota: Option<&Arc<Quota>>,
    sending: Sending,
) -> Response<crate::body::FileBody> {
    let Sending { entry, face, vary, plan, held, download, role } = sending;
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
    response
}

/// What the response holds: decided at once when it can be, with the
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

/// The `--not-found-page` file as a 404, if it can be served.
pub(super) async fn not_found_page(
    app: &App,
    req: &Parts,
    head: bool,
    quota: Option<&Arc<Quota>>,
) -> Option<Response<crate::body::FileBody>> {
    let page = app.browse.not_found_page.as_ref()?;
    let entry = app.cache.get(page.as_bytes()).await.ok().filter(|e| !matches!(e.content, Content::Dir))?;
    send(app, req, head, quota, entry, Role::NotFound).await.ok()
}
