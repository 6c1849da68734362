//! Conditional requests (RFC 9110 §13): evaluate `If-Match`,
//! `If-Unmodified-Since`, `If-None-Match`, `If-Modified-Since` and `If-Range`
//! in the order of §13.2.2 and return a [`Decision`].
//!
//! Pure: reads request headers and the representation's validators, decides,
//! and leaves building the response to `response`.

use http::{HeaderMap, HeaderValue, header};
use std::time::SystemTime;

/// The validators of the selected representation.
#[derive(Debug, Clone, Copy)]
pub struct Validators<'a> {
    /// The strong entity tag, with its quotes, e.g. `"1f-64a1"`.
    pub etag: &'a [u8],
    /// Last-Modified in whole seconds since the epoch, when sent.
    pub last_modified: Option<u64>,
    /// Whether Last-Modified is a strong validator (§8.8.2.2): at least one
    /// second older than the response's Date.
    pub last_modified_is_strong: bool,
}

/// The outcome of evaluating preconditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Perform the method. `use_range` is false when `If-Range` did not match
    /// (send the whole representation with 200).
    Proceed {
        /// Whether a `Range` header may be honoured.
        use_range: bool,
    },
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    PreconditionFailed,
}

/// Evaluates the preconditions of a GET or HEAD request per RFC 9110 §13.2.2.
///
/// 1. `If-Match` (strong comparison) -> 412 when false.
/// 2. Without `If-Match`: `If-Unmodified-Since` -> 412 when modified since.
/// 3. `If-None-Match` (weak comparison) -> 304 for GET/HEAD when it matches.
/// 4. Without `If-None-Match`: `If-Modified-Since` -> 304 when not modified.
/// 5. GET with `Range` and `If-Range`: honour the range only when `If-Range`
///    matches a strong ETag, or equals a strong Last-Modified exactly.
///
/// Invalid dates are ignored (§13.1.3, §13.1.4), as is a date condition when
/// the representation has no Last-Modified.
///
/// A request with none of these fields proceeds, range and all; most carry
/// none, so the caller looks for one first ([`is_precondition`], in the pass
/// over the header lines it makes anyway) and calls this only when it finds
/// one.
pub fn evaluate(headers: &HeaderMap, is_get: bool, v: &Validators<'_>) -> Decision {
    let opaque = opaque_of(v.etag);
    if headers.contains_key(header::IF_MATCH) {
        if !list_matches(headers, header::IF_MATCH, opaque, Comparison::Strong) {
            return Decision::PreconditionFailed;
        }
    } else if let (Some(since), Some(modified)) =
        (single_date(headers, header::IF_UNMODIFIED_SINCE), v.last_modified)
    {
        if modified > since {
            return Decision::PreconditionFailed;
        }
    }
    if headers.contains_key(header::IF_NONE_MATCH) {
        if list_matches(headers, header::IF_NONE_MATCH, opaque, Comparison::Weak) {
            return Decision::NotModified;
        }
    } else if let (Some(since), Some(modified)) =
        (single_date(headers, header::IF_MODIFIED_SINCE), v.last_modified)
    {
        if modified <= since {
            return Decision::NotModified;
        }
    }
    let use_range = !is_get
        || !headers.contains_key(header::RANGE)
        || match headers.get(header::IF_RANGE) {
            None => true,
            Some(value) => if_range_matches(value, opaque, v),
        };
    Decision::Proceed { use_range }
}

/// Whether `name` is one of the five fields [`evaluate`] reads.
pub fn is_precondition(name: &header::HeaderName) -> bool {
    name == header::IF_MATCH
        || name == header::IF_NONE_MATCH
        || name == header::IF_MODIFIED_SINCE
        || name == header::IF_UNMODIFIED_SINCE
        || name == header::IF_RANGE
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Strong,
    Weak,
}

/// The opaque part of our own (strong, quoted) tag.
fn opaque_of(etag: &[u8]) -> &[u8] {
    etag.strip_prefix(b"\"").and_then(|s| s.strip_suffix(b"\"")).unwrap_or(etag)
}

/// Whether any member of the `If-Match`/`If-None-Match` list (all field lines
/// together) matches our tag. `*` matches any current representation.
fn list_matches(headers: &HeaderMap, name: header::HeaderName, opaque: &[u8], cmp: Comparison) -> bool {
    headers.get_all(name).iter().any(|value| {
        let bytes = value.as_bytes();
        if trim(bytes) == b"*" {
            return true;
        }
        EntityTags::new(bytes).any(|tag| tag.opaque == opaque && (cmp == Comparison::Weak || !tag.weak))
    })
}

/// `If-Range` (§13.1.5): a strong ETag compared strongly, or an HTTP-date that
/// equals a strong Last-Modified. Anything else does not match.
fn if_range_matches(value: &HeaderValue, opaque: &[u8], v: &Validators<'_>) -> bool {
    let bytes = trim(value.as_bytes());
    if bytes.starts_with(b"W/") {
        return false;
    }
    if let Some(inner) = bytes.strip_prefix(b"\"") {
        // Exactly one strong entity-tag, nothing after it (not a list).
        return inner.strip_suffix(b"\"").is_some_and(|tag| tag == opaque && is_etagc(tag));
    }
    match (parse_date(value), v.last_modified) {
        (Some(date), Some(modified)) => v.last_modified_is_strong && date == modified,
        _ => false,
    }
}

/// A date header with exactly one field line holding a valid HTTP-date.
fn single_date(headers: &HeaderMap, name: header::HeaderName) -> Option<u64> {
    let mut all = headers.get_all(name).iter();
    match (all.next(), all.next()) {
        (Some(value), None) => parse_date(value),
        _ => None,
    }
}

/// Parses IMF-fixdate, RFC 850 and asctime (§5.6.7) into epoch seconds.
pub fn parse_date(value: &HeaderValue) -> Option<u64> {
    let text = value.to_str().ok()?;
    let time = httpdate::parse_http_date(text.trim()).ok()?;
    time.duration_since(SystemTime::UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// `etagc = %x21 / %x23-7E / obs-text` (RFC 9110 §8.8.3), for every byte.
fn is_etagc(opaque: &[u8]) -> bool {
    opaque.iter().all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// One parsed entity-tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityTag<'a> {
    /// `W/` prefix present.
    pub weak: bool,
    /// The characters between the quotes.
    pub opaque: &'a [u8],
}

/// Iterator over the entity-tags of a comma-separated list (§8.8.3). A
/// malformed member is skipped up to the next comma.
#[derive(Debug)]
pub struct EntityTags<'a> {
    rest: &'a [u8],
}

impl<'a> EntityTags<'a> {
    /// Starts iterating over one field value.
    pub fn new(value: &'a [u8]) -> Self {
        Self { rest: value }
    }
}

impl<'a> Iterator for EntityTags<'a> {
    type Item = EntityTag<'a>;

    fn next(&mut self) -> Option<EntityTag<'a>> {
        loop {
            let s = trim_start_list(self.rest);
            if s.is_empty() {
                self.rest = s;
                return None;
            }
            let (weak, body) = match s.strip_prefix(b"W/") {
                Some(body) => (true, body),
                None => (false, s),
            };
            let parsed = body.strip_prefix(b"\"").and_then(|inner| {
                let close = inner.iter().position(|&b| b == b'"')?;
                let (opaque, after) = inner.split_at(close);
                let valid = is_etagc(opaque);
                let after = trim(after.get(1..).unwrap_or_default());
                let after_ok = after.is_empty() || after.starts_with(b",");
                (valid && after_ok).then_some((opaque, after))
            });
            match parsed {
                Some((opaque, after)) => {
                    self.rest = after;
                    return Some(EntityTag { weak, opaque });
                }
                None => {
                    // Skip the malformed member.
                    let comma = s.iter().position(|&b| b == b',').unwrap_or(s.len());
                    self.rest = s.get(comma..).unwrap_or_default();
                }
            }
        }
    }
}

fn trim_start_list(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b',', rest @ ..] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests;
