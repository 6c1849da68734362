//! The one place that builds responses: statuses, headers and bodies.
//!
//! Handlers decide (`http::conditional`, `http::range`) and pass a [`Plan`];
//! this module turns it into a `Response<FileBody>`. Every 200/206 carries an
//! exact Content-Length; HEAD gets exactly GET's headers and no body; 304
//! repeats the validators and Cache-Control a 200 would carry. Listings are
//! entries too: `Cache-Control: no-cache` (revalidate every time, so a new
//! file shows at once), `Vary: Accept`, no ranges. Errors are a small HTML
//! page (`pages`) for clients that prefer HTML and short text otherwise.

use crate::body::{FileBody, Part};
use crate::cache::entry::Headers;
use crate::cache::{Content, Entry, Face, FileCache};
use crate::compress::CompressRules;
use crate::error::ServeError;
use crate::http::multipart;
use crate::http::range::ByteRange;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use std::sync::Arc;

/// Response policy from the configuration.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `Cache-Control` for file responses.
    pub cache_control: Option<HeaderValue>,
    /// What is compressed on the fly, and whether sidecars are used.
    pub compress: CompressRules,
}

/// What building a file response needs besides the entry.
#[derive(Debug)]
pub struct FileContext<'a> {
    /// Response policy.
    pub policy: &'a Policy,
    /// The cache (mapped and windowed bodies fetch windows from it).
    pub cache: &'a FileCache,
    /// How file spans are read (descriptor, `pread`, the connection's quota).
    pub source: crate::body::stream::Source,
    /// For a windowed entry without a descriptor: the cached window that
    /// holds the whole (single) span.
    pub window: Option<Arc<crate::cache::Window>>,
    /// Answer a 416 with the HTML page.
    pub html_errors: bool,
    /// The representation varies with `Accept-Encoding` even though its type
    /// is not compressed on the fly (a sidecar exists).
    pub vary_encoding: bool,
}

/// What to send for a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// 200 with the whole file.
    Full,
    /// 206 with one range.
    Single(ByteRange),
    /// 206 `multipart/byteranges`.
    Multi(Vec<ByteRange>),
    /// 304.
    NotModified,
    /// 412.
    PreconditionFailed,
    /// 416.
    Unsatisfiable,
}

const ALLOW: HeaderValue = HeaderValue::from_static("GET, HEAD");
const BYTES: HeaderValue = HeaderValue::from_static("bytes");
const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const HTML: HeaderValue = HeaderValue::from_static("text/html; charset=utf-8");
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");
const ACCEPT: HeaderValue = HeaderValue::from_static("accept");
const ACCEPT_ENCODING: HeaderValue = HeaderValue::from_static("accept-encoding");
const ACCEPT_BOTH: HeaderValue = HeaderValue::from_static("accept, accept-encoding");
const LISTING_CSP: HeaderValue = HeaderValue::from_static(crate::pages::LISTING_CSP);
const ERROR_CSP: HeaderValue = HeaderValue::from_static(crate::pages::ERROR_CSP);

/// Builds the response for `entry`, with the headers of its `face`,
/// according to `plan`.
pub fn file(
    entry: &Arc<Entry>,
    face: Face,
    plan: Plan,
    head: bool,
    ctx: &FileContext<'_>,
) -> Response<FileBody> {
    let mut response = build_file(entry, entry.face(face), plan, head, ctx);
    if ctx.vary_encoding {
        vary_encoding(response.headers_mut());
    }
    response
}

fn build_file(
    entry: &Arc<Entry>,
    h: &Headers,
    plan: Plan,
    head: bool,
    ctx: &FileContext<'_>,
) -> Response<FileBody> {
    let policy = ctx.policy;
    let len = entry.len();
    let span = |first: u64, len: u64| span(ctx, entry, first, len);
    let (status, headers, body) = match plan {
        Plan::NotModified => {
            let headers = h.not_modified.get_or_init(|| validators(h, len, policy)).clone();
            return build(StatusCode::NOT_MODIFIED, headers, FileBody::empty());
        }
        Plan::PreconditionFailed => {
            let headers = validators(h, len, policy);
            return text(StatusCode::PRECONDITION_FAILED, headers, "412 precondition failed\n", head);
        }
        Plan::Unsatisfiable => {
            let mut headers = validators(h, len, policy);
            headers.insert(header::CONTENT_RANGE, unsatisfied_range(len));
            headers.insert(header::ACCEPT_RANGES, BYTES);
            let status = StatusCode::RANGE_NOT_SATISFIABLE;
            // The body depends on Accept, whichever it is.
            headers.append(header::VARY, ACCEPT);
            if let Some(page) = ctx.html_errors.then(|| crate::pages::error_page(416)).flatten() {
                return html(status, headers, page, head);
            }
            return text(status, headers, "416 range not satisfiable\n", head);
        }
        Plan::Full => (StatusCode::OK, full(h, len, policy), FileBody::one(span(0, len))),
        Plan::Single(r) => {
            let mut headers = h
                .partial
                .get_or_init(|| {
                    let mut headers = full(h, len, policy);
                    headers.insert(header::CONTENT_RANGE, BYTES);
                    headers
                })
                .clone();
            headers.insert(header::CONTENT_RANGE, content_range(r, len));
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(r.len()));
            (StatusCode::PARTIAL_CONTENT, headers, FileBody::one(span(r.first, r.len())))
        }
        Plan::Multi(ranges) => {
            let ct = h.content_type.as_bytes();
            let m = multipart::plan(&ranges, len, ct, multipart::new_boundary());
            let mut headers = full(h, len, policy);
            let ct = format!("multipart/byteranges; boundary={}", m.boundary);
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(&ct).unwrap_or(TEXT));
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(m.content_length));
            let mut parts = Vec::with_capacity(m.parts.len() * 2 + 1);
            for (head_bytes, r) in m.parts {
                parts.push(Part::Ready(head_bytes));
                parts.push(span(r.first, r.len()));
            }
            parts.push(Part::Ready(m.trailer));
            (StatusCode::PARTIAL_CONTENT, headers, FileBody::new(parts, None))
        }
    };
    let body = if head { FileBody::empty() } else { body.pinning(entry.clone()) };
    build(status, headers, body)
}

/// The headers of a 200 of a representation (`h`, of `len` bytes): built
/// once per entry and face, then cloned.
fn full(h: &Headers, len: u64, policy: &Policy) -> HeaderMap {
    h.full
        .get_or_init(|| {
            let mut headers = validators(h, len, policy);
            headers.insert(header::CONTENT_TYPE, h.content_type.clone());
            if let Some(coding) = h.content_encoding {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding.token()));
            }
            if !h.listing {
                headers.insert(header::ACCEPT_RANGES, BYTES);
            } else if h.content_type == HTML {
                headers.insert(header::CONTENT_SECURITY_POLICY, LISTING_CSP);
            }
            headers.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
            headers.insert(header::CONTENT_LENGTH, h.content_length.clone());
            headers
        })
        .clone()
}

/// ETag, Last-Modified, Cache-Control and Vary: what a 304 repeats from the
/// 200.
fn validators(h: &Headers, len: u64, policy: &Policy) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(10);
    headers.insert(header::ETAG, h.etag.clone());
    if let Some(lm) = &h.last_modified {
        headers.insert(header::LAST_MODIFIED, lm.clone());
    }
    // Encoded, or could have been: the representation varies with
    // Accept-Encoding (types never compressed do not say so).
    let encodes = h.content_encoding.is_some() || policy.compress.applies(h.compressible, len);
    if h.listing {
        headers.insert(header::CACHE_CONTROL, NO_CACHE);
        headers.insert(header::VARY, if encodes { ACCEPT_BOTH } else { ACCEPT });
    } else {
        if let Some(cc) = &policy.cache_control {
            headers.insert(header::CACHE_CONTROL, cc.clone());
        }
        if encodes {
            headers.insert(header::VARY, ACCEPT_ENCODING);
        }
    }
    headers
}

/// Adds `Vary: accept-encoding` unless a Vary value already names it.
fn vary_encoding(headers: &mut HeaderMap) {
    let named = headers.get_all(header::VARY).iter().any(|v| {
        v.as_bytes().split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"accept-encoding"))
    });
    if !named {
        headers.append(header::VARY, ACCEPT_ENCODING);
    }
}

/// Adds `Content-Disposition: attachment` with the file name of `entry`
/// (the file asked for, not a sidecar that stands for it; `?download`) to a
/// 200 or 206; other statuses are left alone.
pub fn attach(response: &mut Response<FileBody>, entry: &Entry) {
    if matches!(response.status(), StatusCode::OK | StatusCode::PARTIAL_CONTENT) {
        let name = entry.key.rsplit(|&b| b == b'/').next().unwrap_or(&entry.key);
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, crate::http::disposition::attachment(name));
    }
}

/// Marks a response chosen by the request's `Accept` (the fallback page).
pub fn varies_with_accept(response: &mut Response<FileBody>) {
    response.headers_mut().append(header::VARY, ACCEPT);
}

/// Turns a full response of the not-found page into a 404: without the
/// validators and range support that belong to the page as a file. With a
/// fallback page, the same path gives browsers a 200: `Vary: Accept`.
pub fn as_not_found(response: &mut Response<FileBody>, varies: bool) {
    *response.status_mut() = StatusCode::NOT_FOUND;
    let headers = response.headers_mut();
    for name in [header::ETAG, header::LAST_MODIFIED, header::ACCEPT_RANGES, header::CACHE_CONTROL] {
        headers.remove(name);
    }
    headers.insert(header::CACHE_CONTROL, NO_CACHE);
    if varies {
        headers.insert(header::VARY, ACCEPT);
    }
}

/// `len` bytes of the entry from `first`, as a body part.
fn span(ctx: &FileContext<'_>, entry: &Arc<Entry>, first: u64, len: u64) -> Part {
    match &entry.content {
        Content::Heap(bytes) => Part::Ready(slice(bytes, first, len)),
        Content::Mapped(_) | Content::Windowed(_) | Content::Stream(_) => {
            let mut stream = crate::body::stream::FileStream::new(
                ctx.cache.clone(),
                entry.clone(),
                ctx.source.clone(),
                first,
                len,
            );
            if let Some(window) = &ctx.window {
                stream.start_in(window.clone());
            }
            Part::File(stream)
        }
        Content::Dir => Part::Ready(Bytes::new()),
    }
}

fn slice(bytes: &Bytes, first: u64, len: u64) -> Bytes {
    let start = usize::try_from(first).unwrap_or(usize::MAX).min(bytes.len());
    let end = usize::try_from(first.saturating_add(len)).unwrap_or(usize::MAX).min(bytes.len());
    bytes.slice(start..end)
}

/// `bytes a-b/len`, written without the formatting machinery (this is on
/// every range response).
fn content_range(r: ByteRange, len: u64) -> HeaderValue {
    let mut buf = [0u8; 6 + 3 * 20 + 2];
    buf[..6].copy_from_slice(b"bytes ");
    let mut at = push_u64(&mut buf, 6, r.first);
    buf[at] = b'-';
    at = push_u64(&mut buf, at + 1, r.last);
    buf[at] = b'/';
    at = push_u64(&mut buf, at + 1, len);
    HeaderValue::from_bytes(&buf[..at]).unwrap_or(BYTES)
}

/// Writes `n` in decimal at `buf[at..]`; returns the new end. `buf` has room
/// for 20 digits past `at` (u64::MAX has 20).
fn push_u64(buf: &mut [u8], at: usize, mut n: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let d = &digits[i..];
    buf[at..at + d.len()].copy_from_slice(d);
    at + d.len()
}

fn unsatisfied_range(len: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("bytes */{len}")).unwrap_or(BYTES)
}

/// 204 to an `OPTIONS` request when CORS is on: the preflight's headers,
/// or (not a preflight) just what is allowed.
pub fn options(preflight: Option<HeaderMap>) -> Response<FileBody> {
    let mut headers = preflight.unwrap_or_default();
    headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
    build(StatusCode::NO_CONTENT, headers, FileBody::empty())
}

/// 301 to `location` (a path, so it stays right behind a reverse proxy).
pub fn redirect(location: HeaderValue, head: bool) -> Response<FileBody> {
    let mut headers = HeaderMap::new();
    headers.insert(header::LOCATION, location);
    text(StatusCode::MOVED_PERMANENTLY, headers, "301 moved permanently\n", head)
}

/// The response for a request-path failure: the HTML page when `html` (the
/// client prefers HTML) and the status has one, short text otherwise.
pub fn error(e: &ServeError, head: bool, html: bool) -> Response<FileBody> {
    let mut headers = HeaderMap::new();
    match e {
        ServeError::MethodNotAllowed => {
            headers.insert(header::ALLOW, ALLOW);
        }
        ServeError::Unavailable(_) => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        // The request's framing is unknown: nothing after it can be trusted.
        ServeError::NotImplemented => {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        _ => {}
    }
    let status = e.status();
    if let Some(page) = crate::pages::error_page(status.as_u16()) {
        // The body depends on Accept: caches must know.
        headers.insert(header::VARY, ACCEPT);
        if html {
            return self::html(status, headers, page, head);
        }
    }
    text(status, headers, e.public_text(), head)
}

fn html(status: StatusCode, mut headers: HeaderMap, page: Bytes, head: bool) -> Response<FileBody> {
    headers.insert(header::CONTENT_TYPE, HTML);
    headers.insert(header::CONTENT_SECURITY_POLICY, ERROR_CSP);
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(page.len()));
    let body = if head { FileBody::empty() } else { FileBody::from_bytes(page) };
    build(status, headers, body)
}

fn text(status: StatusCode, mut headers: HeaderMap, body: &'static str, head: bool) -> Response<FileBody> {
    headers.insert(header::CONTENT_TYPE, TEXT);
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let body =
        if head { FileBody::empty() } else { FileBody::from_bytes(Bytes::from_static(body.as_bytes())) };
    build(status, headers, body)
}

fn build(status: StatusCode, headers: HeaderMap, body: FileBody) -> Response<FileBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_matches_the_format_macro() {
        for (a, b, len) in [(0, 0, 1), (1000, 2000, 67_108_864), (u64::MAX - 1, u64::MAX - 1, u64::MAX)] {
            let r = ByteRange { first: a, last: b };
            assert_eq!(content_range(r, len), format!("bytes {a}-{b}/{len}").as_str());
        }
    }
}
