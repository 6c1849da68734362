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
use crate::cache::{Content, Entry, Face, Ready};
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
    /// For a sidecar: the file asked for, to fall back on if the sidecar
    /// turns out replaced when it is opened.
    pub asked: Option<Arc<Entry>>,
}

impl Chosen {
    /// The entry as it is.
    pub(super) fn identity(entry: Arc<Entry>, vary: bool) -> Chosen {
        Chosen { entry, face: Face::Own, vary, asked: None }
    }

    fn sidecar(sidecar: Arc<Entry>, coding: Coding, asked: Arc<Entry>) -> Chosen {
        Chosen { entry: sidecar, face: Face::Sidecar(coding), vary: false, asked: Some(asked) }
    }
}

/// What the request accepts and the entry offers.
struct Negotiation {
    accepted: encoding::Accepted,
    sidecars: u8,
    on_the_fly: bool,
    /// Identity must add `Vary: Accept-Encoding` itself.
    vary: bool,
    /// The candidates not yet tried (at most three: kept on the stack).
    slots: [Coding; 3],
    len: usize,
}

impl Negotiation {
    fn has_sidecar(&self, c: Coding) -> bool {
        self.sidecars & (1 << c as u8) != 0
    }

    /// The best candidate left, if the client accepts it.
    fn next(&self) -> Option<Coding> {
        self.accepted.choose(&self.slots[..self.len]).filter(|&c| c != Coding::Identity)
    }

    /// Drops `coding` from the candidates.
    fn drop(&mut self, coding: Coding) {
        if let Some(at) = self.slots[..self.len].iter().position(|&c| c == coding) {
            self.slots.swap(at, self.len - 1);
            self.len -= 1;
        }
    }
}

/// The negotiation for `entry`, or `Err(vary)` when identity is the answer
/// without one.
fn negotiation(app: &App, req: &Parts, entry: &Entry) -> Result<Negotiation, bool> {
    let rules = &app.policy.compress;
    if matches!(entry.content, Content::Dir) || entry.headers.content_encoding.is_some() {
        return Err(false);
    }
    let on_the_fly = rules.applies(entry.headers.compressible, entry.len());
    let mut fields = req.headers.get_all(header::ACCEPT_ENCODING).iter().peekable();
    let asked = fields.peek().is_some();
    if !asked && (on_the_fly || !rules.precompressed) {
        return Err(false);
    }
    let sidecars = if rules.precompressed { app.cache.sidecars(entry) } else { 0 };
    let vary = sidecars != 0 && !on_the_fly;
    if !asked {
        return Err(vary);
    }
    let mut n = Negotiation {
        accepted: encoding::parse(fields.map(HeaderValue::as_bytes)),
        sidecars,
        on_the_fly,
        vary,
        slots: [Coding::Identity; 3],
        len: 0,
    };
    for c in [Coding::Br, Coding::Zstd, Coding::Gzip] {
        if on_the_fly || n.has_sidecar(c) {
            n.slots[n.len] = c;
            n.len += 1;
        }
    }
    Ok(n)
}

/// Chooses what to send for `entry` without waiting: `Err(entry)` when the
/// best choice needs a sidecar loaded or a compression made first (then
/// [`choose`] decides, awaiting them). The hit path stays synchronous, so
/// the handler's future does not grow.
pub(super) fn choose_now(app: &App, req: &Parts, entry: Arc<Entry>) -> Result<Chosen, Arc<Entry>> {
    let mut n = match negotiation(app, req, &entry) {
        Ok(n) => n,
        Err(vary) => return Ok(Chosen::identity(entry, vary)),
    };
    // Once one background compression is under way, the others only serve
    // what is ready: one request starts at most one.
    let mut started = false;
    while let Some(coding) = n.next() {
        if n.has_sidecar(coding) {
            match app.cache.sidecar_now(&entry, coding) {
                Some(Some(sidecar)) => return Ok(Chosen::sidecar(sidecar, coding, entry)),
                Some(None) => {}
                None => return Err(entry),
            }
        }
        if n.on_the_fly {
            match app.cache.compressed_now(&entry, coding, !started) {
                Ready::Now(Some(variant)) => return Ok(Chosen::identity(variant, false)),
                Ready::Now(None) => {}
                Ready::Pending => started = true,
                Ready::Wait(_) => return Err(entry),
            }
        }
        n.drop(coding);
    }
    Ok(Chosen::identity(entry, n.vary))
}

/// Chooses what to send for `entry`, loading sidecars and compressing as
/// needed.
pub(super) async fn choose(app: &App, req: &Parts, entry: Arc<Entry>) -> Chosen {
    let mut n = match negotiation(app, req, &entry) {
        Ok(n) => n,
        Err(vary) => return Chosen::identity(entry, vary),
    };
    let mut started = false;
    while let Some(coding) = n.next() {
        if n.has_sidecar(coding) {
            if let Some(sidecar) = app.cache.sidecar(&entry, coding).await {
                return Chosen::sidecar(sidecar, coding, entry);
            }
        }
        if n.on_the_fly {
            if let Some(variant) = app.cache.compressed(&entry, coding, !started).await {
                return Chosen::identity(variant, false);
            }
            // A larger file: its compression runs in the background now.
            started |= entry.len() > crate::compress::WAIT_MAX;
        }
        n.drop(coding);
    }
    Chosen::identity(entry, n.vary)
}
