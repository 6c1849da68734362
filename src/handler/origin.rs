//! Who a request comes from and where to send it back: the client, scheme
//! and path prefix after the trusted-proxy rules (`--trusted-proxy`), and
//! the `Location` of a directory asked for without its slash.

use super::{App, ConnInfo};
use crate::http::forwarded;
use crate::peer::Peer;
use http::HeaderValue;
use http::request::Parts;

/// Who sent a request and how, after the trusted-proxy rules.
#[derive(Debug, Default)]
pub(super) struct Origin {
    /// The client (a trusted proxy's word, else the connection's peer).
    pub client: Option<Peer>,
    /// The client used HTTPS (a trusted proxy's word, else TLS here).
    pub https: bool,
    /// The path prefix a trusted proxy serves this tree under.
    pub prefix: Option<String>,
}

/// The client, scheme and prefix of a request on `conn`.
pub(super) fn origin(app: &App, conn: Option<&ConnInfo>, req: &Parts) -> Origin {
    let Some(conn) = conn else { return Origin::default() };
    let trusted = !app.trusted.is_empty()
        && match conn.peer.ip() {
            Some(ip) => app.trusted.trusts(ip),
            None => app.trusted.unix,
        };
    if !trusted {
        return Origin { client: Some(conn.peer), https: conn.tls.is_some(), prefix: None };
    }
    let told =
        forwarded::believe(&app.trusted.nets, req.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
    Origin {
        client: Some(told.client.map_or(conn.peer, Peer::Forwarded)),
        https: told.https.unwrap_or(conn.tls.is_some()),
        prefix: told.prefix,
    }
}

/// `Location` for a directory asked for without its trailing slash: the
/// request's own (still encoded) path with the slash added and the query
/// kept. A path, not an absolute URL, so it stays right behind a proxy;
/// repeated slashes are collapsed so that `//host/dir` cannot become a
/// protocol-relative redirect to another site. A trusted proxy's path
/// prefix (already checked: `/a/b`, no `//`) goes in front.
pub(super) fn directory_location(req: &Parts, prefix: Option<&str>) -> HeaderValue {
    let mut location = String::with_capacity(req.uri.path().len() + 2);
    location.push_str(prefix.unwrap_or_default());
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
