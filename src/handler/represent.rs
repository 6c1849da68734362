//! The representation step (RFC 9110 §12.5.3): which coding of the found
//! file to send, among those the client accepts and the server has.
//!
//! * Candidates: a precompressed sidecar per coding (when `--precompressed`
//!   and one lies next to the file), and every coding when the type and size
//!   are compressed on the fly.
//! * The client's `Accept-Encoding` ranks them (q first, then br, zstd,
//!   gzip); for the best, a fresh sidecar is used, else the compressed
//!   variant if it is ready (or quick to make); when neither, the next best
//!   is tried, and identity comes last. A client that refuses identity and
//!   accepts nothing available still gets identity (RFC 9110 §12.5.3 lets
//!   the server disregard the field rather than answer 406), as nginx and
//!   Caddy do.
//! * `vary` says whether this response must add `Vary: Accept-Encoding`
//!   itself: for types compressed on the fly, the prebuilt headers already
//!   carry it; a type that is not, but has a sidecar, varies all the same.

use super::App;
use crate::cache::{Content, Entry, Face};
use crate::http::encoding::{self, Coding};
use http::request::Parts;
use http::{HeaderValue, header};
use std::sync::Arc;

/// The chosen representation.
#[derive(Debug)]
pub(super) struct Chosen {
    /// The entry whose bytes are sent (the file, its sidecar or a variant).
    pub entry: Arc<Entry>,
    /// The headers to send with them.
    pub face: Face,
    /// Add `Vary: Accept-Encoding` (not in the prebuilt headers).
    pub vary: bool,
}

impl Chosen {
    /// The entry as it is.
    pub(super) fn identity(entry: Arc<Entry>, vary: bool) -> Chosen {
        Chosen { entry, face: Face::Own, vary }
    }
}

/// Chooses what to send for `entry`.
pub(super) async fn choose(app: &App, req: &Parts, entry: Arc<Entry>) -> Chosen {
    let rules = &app.policy.compress;
    if matches!(entry.content, Content::Dir) || entry.headers.content_encoding.is_some() {
        return Chosen::identity(entry, false);
    }
    let on_the_fly = rules.applies(entry.headers.content_type.as_bytes(), entry.len());
    let mut fields = req.headers.get_all(header::ACCEPT_ENCODING).iter().peekable();
    let asked = fields.peek().is_some();
    if !asked && (on_the_fly || !rules.precompressed) {
        return Chosen::identity(entry, false);
    }
    let sidecars = if rules.precompressed { app.cache.sidecars(&entry) } else { 0 };
    let vary = sidecars != 0 && !on_the_fly;
    if !asked {
        return Chosen::identity(entry, vary);
    }
    let accepted = encoding::parse(fields.map(HeaderValue::as_bytes));
    let has_sidecar = |c: Coding| sidecars & (1 << c as u8) != 0;
    let mut available: Vec<Coding> =
        [Coding::Br, Coding::Zstd, Coding::Gzip].into_iter().filter(|&c| on_the_fly || has_sidecar(c)).collect();
    while let Some(coding) = accepted.choose(&available).filter(|&c| c != Coding::Identity) {
        if has_sidecar(coding) {
            if let Some(sidecar) = app.cache.sidecar(&entry, coding).await {
                return Chosen { entry: sidecar, face: Face::Sidecar(coding), vary: false };
            }
        }
        if on_the_fly {
            if let Some(variant) = app.cache.compressed(&entry, coding).await {
                return Chosen::identity(variant, false);
            }
        }
        available.retain(|&c| c != coding);
    }
    Chosen::identity(entry, vary)
}
