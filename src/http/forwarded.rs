//! Trusted proxies and the headers they forward.
//!
//! A request's forwarding headers are believed only when the connection's
//! peer is inside one of the configured trusted networks ([`Cidr`]); from
//! anyone else they are ignored, since any client can send them.
//!
//! From a trusted peer, [`resolve`] reads:
//!
//! * **Client address** from `Forwarded` (RFC 7239) if that header is present
//!   at all, else from `X-Forwarded-For`. All lines of the header form one
//!   comma list, in order. The list is walked from the right (the hop nearest
//!   to us): trusted addresses are skipped, and the first untrusted one is the
//!   client. If every entry is trusted, the leftmost is the client. If the walk
//!   meets an entry that is not an address (garbage, `unknown`, an obfuscated
//!   `_name`, a `Forwarded` element without `for=`), it stops with no client:
//!   the proxy that wrote that entry is trusted, but it did not say who it
//!   talked to, and the entries further left were written by someone we
//!   cannot vouch for, so the caller keeps the peer address.
//! * **Scheme** (`https`): with `Forwarded`, the `proto=` of the element where
//!   the walk stopped (the chosen client's hop, written by a trusted proxy).
//!   If that element has no `proto=`, `X-Forwarded-Proto` is used: its first
//!   value (the client-facing proxy's). Only `http` and `https` (any case)
//!   count. A malformed `Forwarded` header (bad token, unterminated quote,
//!   a parameter repeated within an element, no elements) makes both client
//!   and scheme unknown: no fallback to the `X-Forwarded-*` headers.
//! * **Path prefix** from the first `X-Forwarded-Prefix` line: valid UTF-8,
//!   starting with `/`, at most 256 bytes, only RFC 3986 path characters
//!   (unreserved, `%XX`, sub-delims, `:`, `@`, `/`), no `//`, and no `.` or
//!   `..` segment (also not as `%2e`). A trailing `/` is dropped, so `/`
//!   alone means no prefix. It may contain `&` and `'`: escape it for HTML.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are treated as IPv4
//! everywhere. IPv4 and IPv6 networks never match each other's addresses:
//! `::/0` trusts no IPv4 peer.

use crate::config::cidr::{Cidr, normalise};
use std::net::IpAddr;

/// What a trusted proxy told us.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// The client's address, if it could be determined; else keep the peer's.
    pub client: Option<IpAddr>,
    /// `Some(true)` if the client used HTTPS, `Some(false)` for plain HTTP.
    pub https: Option<bool>,
    /// The path prefix the proxy serves us under, without trailing `/`.
    pub prefix: Option<String>,
}

/// Reads the forwarding headers of one request, if `peer` is trusted.
///
/// `headers` is any iterator of (lower-case header name, raw value bytes) of
/// one request. The peer address is normalised here too. See the module
/// documentation for the rules.
#[must_use]
pub fn resolve<'a>(
    peer: IpAddr,
    trusted: &[Cidr],
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> Forwarded {
    if !is_trusted(normalise(peer), trusted) {
        return Forwarded::default();
    }
    believe(trusted, headers)
}

/// Reads the forwarding headers of a request from a peer already known to
/// be trusted (an address in `trusted`, or a unix-socket peer the operator
/// trusts). `trusted` still decides which hops of the list are skipped.
pub fn believe<'a>(trusted: &[Cidr], headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> Forwarded {
    let (mut forwarded, mut xff, mut xfp, mut prefix) = (Vec::new(), Vec::new(), Vec::new(), None);
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("forwarded") {
            forwarded.push(value);
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            xff.push(value);
        } else if name.eq_ignore_ascii_case("x-forwarded-proto") {
            xfp.push(value);
        } else if name.eq_ignore_ascii_case("x-forwarded-prefix") && prefix.is_none() {
            prefix = Some(value);
        }
    }
    let prefix = prefix.and_then(parse_prefix);
    if forwarded.is_empty() {
        let hops: Vec<Option<IpAddr>> = xff
            .iter()
            .flat_map(|line| line.split(|&b| b == b','))
            .map(trim_ows)
            .filter(|entry| !entry.is_empty())
            .map(parse_xff_entry)
            .collect();
        let (_, client) = walk(&hops, trusted);
        return Forwarded { client, https: first_scheme(&xfp), prefix };
    }
    let mut elements = Vec::new();
    if forwarded.iter().any(|line| parse_forwarded(line, &mut elements).is_none()) || elements.is_empty() {
        return Forwarded { client: None, https: None, prefix };
    }
    let hops: Vec<Option<IpAddr>> = elements.iter().map(|e| e.node).collect();
    let (stop, client) = walk(&hops, trusted);
    let https = match stop.and_then(|i| elements.get(i)).and_then(|e| e.proto.as_deref()) {
        Some(proto) => scheme(proto),
        None => first_scheme(&xfp),
    };
    Forwarded { client, https, prefix }
}

fn is_trusted(ip: IpAddr, trusted: &[Cidr]) -> bool {
    trusted.iter().any(|cidr| cidr.contains(ip))
}

/// Walks the hops from the right; returns where it stopped and the client.
/// `None` hops are unparseable: the walk stops there without a client.
fn walk(hops: &[Option<IpAddr>], trusted: &[Cidr]) -> (Option<usize>, Option<IpAddr>) {
    let mut chosen = (None, None);
    for (i, hop) in hops.iter().enumerate().rev() {
        let Some(ip) = hop.map(normalise) else {
            return (Some(i), None);
        };
        chosen = (Some(i), Some(ip));
        if !is_trusted(ip, trusted) {
            break;
        }
    }
    chosen
}

/// Strips spaces and tabs (HTTP's optional whitespace) from both ends.
fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

fn port_ok(port: &str) -> bool {
    (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok()
}

/// `v4`, `v6`, `[v6]`, `[v6]:port` or `v4:port`; None for anything else.
fn parse_xff_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?;
    text.parse().ok().or_else(|| host_port(text, port_ok))
}

/// `v4`, `v4:port`, `[v6]` or `[v6]:port`, with ports accepted by `port_ok`.
fn host_port(text: &str, port_ok: impl Fn(&str) -> bool) -> Option<IpAddr> {
    let (ip, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest.split_once(']')?;
            (IpAddr::V6(v6.parse().ok()?), after)
        }
        None => {
            let (v4, after) = text.find(':').map_or((text, ""), |i| text.split_at(i));
            (IpAddr::V4(v4.parse().ok()?), after)
        }
    };
    (port.is_empty() || port.strip_prefix(':').is_some_and(port_ok)).then_some(ip)
}

/// The first non-empty value of the `X-Forwarded-Proto` list, as a scheme.
fn first_scheme(lines: &[&[u8]]) -> Option<bool> {
    let first =
        lines.iter().flat_map(|line| line.split(|&b| b == b',')).map(trim_ows).find(|v| !v.is_empty())?;
    scheme(first)
}

fn scheme(value: &[u8]) -> Option<bool> {
    match value {
        v if v.eq_ignore_ascii_case(b"https") => Some(true),
        v if v.eq_ignore_ascii_case(b"http") => Some(false),
        _ => None,
    }
}

/// One `Forwarded` element: the address of its `for=` node (None if absent
/// or not an address) and its raw `proto=` value.
struct Element {
    node: Option<IpAddr>,
    proto: Option<Vec<u8>>,
}

/// Appends the elements of one `Forwarded` line; None if it is malformed.
fn parse_forwarded(line: &[u8], out: &mut Vec<Element>) -> Option<()> {
    let mut cur = Cursor { bytes: line, pos: 0 };
    loop {
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        loop {
            cur.skip_ows();
            match cur.peek() {
                None => break,
                Some(b',') => {
                    cur.bump();
                    break;
                }
                Some(b';') => {
                    cur.bump();
                    continue;
                }
                Some(_) => {}
            }
            let name = cur.token()?.to_ascii_lowercase();
            cur.consume(b'=')?;
            let value = if cur.peek() == Some(b'"') { cur.quoted()? } else { cur.token()?.to_vec() };
            if pairs.iter().any(|(seen, _)| *seen == name) {
                return None;
            }
            pairs.push((name, value));
            cur.skip_ows();
            if !matches!(cur.peek(), None | Some(b',' | b';')) {
                return None;
            }
        }
        // Elements with no pairs at all are empty list items: ignored.
        if !pairs.is_empty() {
            let get = |key: &[u8]| pairs.iter().find(|(name, _)| name == key).map(|(_, value)| value.clone());
            out.push(Element { node: get(b"for").and_then(|v| parse_node(&v)), proto: get(b"proto") });
        }
        if cur.peek().is_none() {
            return Some(());
        }
    }
}

/// An RFC 7239 node: `v4`, `v4:port`, `[v6]` or `[v6]:port` (port may be an
/// obfuscated `_name`). `unknown` and `_name` identifiers give None.
fn parse_node(value: &[u8]) -> Option<IpAddr> {
    let obfuscated =
        |p: &str| p.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    let node_port_ok =
        |port: &str| port_ok(port) || port.strip_prefix('_').is_some_and(|p| !p.is_empty() && obfuscated(p));
    host_port(std::str::from_utf8(value).ok()?, node_port_ok)
}

/// A read position in a header value.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn bump(&mut self) {
        self.pos = self.pos.saturating_add(1);
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.bump();
        }
    }

    fn consume(&mut self, byte: u8) -> Option<()> {
        (self.peek() == Some(byte)).then(|| self.bump())
    }

    /// An RFC 9110 token (1*tchar).
    fn token(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
            self.bump();
        }
        self.bytes.get(start..self.pos).filter(|t| !t.is_empty())
    }

    /// A quoted-string starting at the `"`, returned unescaped.
    fn quoted(&mut self) -> Option<Vec<u8>> {
        self.consume(b'"')?;
        let mut out = Vec::new();
        loop {
            let b = self.peek()?;
            self.bump();
            match b {
                b'"' => return Some(out),
                b'\\' => {
                    let escaped = self.peek().filter(|&e| e == b'\t' || (e >= 0x20 && e != 0x7F))?;
                    self.bump();
                    out.push(escaped);
                }
                b'\t' | 0x20..=0x7E | 0x80..=0xFF => out.push(b),
                _ => return None,
            }
        }
    }
}

/// Validates an `X-Forwarded-Prefix` value; see the module documentation.
fn parse_prefix(raw: &[u8]) -> Option<String> {
    let raw = trim_ows(raw);
    if raw.len() > 256 {
        return None;
    }
    let text = std::str::from_utf8(raw).ok()?;
    if !text.starts_with('/') || text.contains("//") {
        return None;
    }
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        let ok = if b == b'%' {
            bytes.next().is_some_and(|h| h.is_ascii_hexdigit())
                && bytes.next().is_some_and(|h| h.is_ascii_hexdigit())
        } else {
            b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b)
        };
        if !ok {
            return None;
        }
    }
    let dot_segment = |seg: &str| matches!(seg.to_ascii_lowercase().replace("%2e", ".").as_str(), "." | "..");
    if text.split('/').any(dot_segment) {
        return None;
    }
    let trimmed = text.strip_suffix('/').unwrap_or(text);
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

#[cfg(test)]
mod tests;
