//! What of a representation to send: preconditions (RFC 9110 §13.2.2), then
//! the range (`If-Range`, `Range`), as one [`Plan`].

use super::App;
use crate::cache::Entry;
use crate::http::conditional::{self, Decision, Validators};
use crate::http::range::{self, RangeOutcome};
use crate::response::Plan;
use http::request::Parts;
use http::{Method, header};
use std::time::SystemTime;

/// Preconditions (RFC 9110 §13.2.2), then the range, decide what to send
/// of the representation (`entry` seen as `face`; `varies`: the resource has
/// several codings).
pub(super) fn plan(app: &App, req: &Parts, entry: &Entry, face: crate::cache::Face, varies: bool) -> Plan {
    let h = entry.face(face);
    // One pass over the request's few header lines finds the range and
    // whether any precondition is there, instead of a hashed lookup each for
    // `Range` and `If-Range` on every request.
    let (mut range, mut ranges, mut preconditions, mut if_range) = (None, 0u32, false, false);
    for (name, value) in &req.headers {
        if name == header::RANGE {
            range = Some(value);
            ranges += 1;
        } else if conditional::is_precondition(name) {
            preconditions = true;
            if_range |= name == header::IF_RANGE;
        }
    }
    let is_get = req.method == Method::GET;
    let use_range = !preconditions || {
        let validators = Validators {
            etag: h.etag.as_bytes(),
            last_modified: h.last_modified_secs,
            // Only If-Range asks whether Last-Modified is strong (§8.8.2.2).
            // It never is for a resource with several codings: the codings
            // share the date but not the bytes, so a range resumed by date
            // could splice one coding onto another.
            last_modified_is_strong: !varies
                && if_range
                && h.last_modified_secs.is_some_and(|lm| lm.saturating_add(1) <= now_secs()),
        };
        match conditional::evaluate(&req.headers, is_get, &validators) {
            Decision::NotModified => return Plan::NotModified,
            Decision::PreconditionFailed => return Plan::PreconditionFailed,
            Decision::Proceed { use_range } => use_range,
        }
    };
    // A listing is generated: Range is ignored (RFC 9110 §14.2 allows it),
    // and so is a Range sent on more than one field line.
    match (is_get && use_range && !h.listing, range) {
        (true, Some(value)) if ranges == 1 => {
            match range::evaluate(value.as_bytes(), entry.len(), app.max_ranges) {
                RangeOutcome::Full => Plan::Full,
                RangeOutcome::Unsatisfiable => Plan::Unsatisfiable,
                RangeOutcome::Single(r) => Plan::Single(r),
                // A coded body in multipart/byteranges would read as a coded
                // multipart body: send it whole.
                RangeOutcome::Multi(_) if h.content_encoding.is_some() => Plan::Full,
                RangeOutcome::Multi(v) => Plan::Multi(v),
            }
        }
        _ => Plan::Full,
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
