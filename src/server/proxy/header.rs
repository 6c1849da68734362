//! PROXY protocol headers, versions 1 and 2 (`HAProxy`'s `proxy-protocol.txt`).
//!
//! A load balancer in front of the server may open each connection with a
//! header that names the real client. [`parse`] reads it incrementally from
//! the bytes received so far:
//!
//! * The first byte decides the version: `P` starts a v1 text line, `0x0D`
//!   starts the v2 binary signature; anything else is an error at once, so a
//!   client speaking HTTP or TLS directly is turned away without waiting.
//! * v1 is `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n` with single
//!   spaces, or `PROXY UNKNOWN[ <anything>]\r\n`, at most [`MAX_V1`] bytes.
//!   Addresses must match the keyword's family; ports are decimal 0-65535
//!   without sign or leading zeros. A bare LF, or a CR not followed by LF, is
//!   an error.
//! * v2 is the 12-byte signature, a version/command byte (version 2; command
//!   LOCAL or PROXY), a family/transport byte, a big-endian length and that
//!   many bytes: the address block and then TLVs (`type`, 2-byte length,
//!   value), which are skipped but must be well formed. The length is capped
//!   so that a whole header is at most [`MAX_V2`] bytes. LOCAL ignores the
//!   family and the block. UNSPEC ignores the block. Only the seven family /
//!   transport pairs the spec defines are accepted.
//! * Every byte is checked as soon as it arrives: a prefix that can still
//!   grow into a valid header is [`Parsed::Incomplete`], anything else is an
//!   error. [`Parsed::Done`] counts only the header's bytes.
//! * IPv4-mapped IPv6 addresses stay IPv6 here; the caller normalises them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What a complete PROXY header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyHeader {
    /// v2 LOCAL command (health checks from the proxy itself): use the real peer.
    Local,
    /// The proxy conveyed the client's address (TCP over IPv4/IPv6).
    Proxied {
        /// The client's address and port.
        source: SocketAddr,
        /// The address and port the client connected to on the proxy.
        destination: SocketAddr,
    },
    /// v1 `UNKNOWN`, or v2 PROXY with `AF_UNSPEC` / `AF_UNIX` / non-stream
    /// transport: no usable address; use the real peer.
    Unknown,
}

/// Outcome of [`parse`] on the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// More bytes may still complete a valid header: read more and call again.
    Incomplete,
    /// A whole header; the first `consumed` bytes are the header, the rest
    /// belong to the application protocol.
    Done {
        /// What the header said.
        header: ProxyHeader,
        /// How many bytes of the input the header occupies.
        consumed: usize,
    },
}

/// Why the bytes cannot be (the start of) a valid PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProxyError(pub &'static str);

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid PROXY protocol header: {}", self.0)
    }
}

impl std::error::Error for ProxyError {}

/// The longest v1 header, CRLF included (from the spec).
pub(crate) const MAX_V1: usize = 107;

/// The most bytes a v2 header may have after its 16-byte fixed part.
///
/// `HAProxy` sends at most a few hundred bytes (36 for IPv6 addresses plus
/// TLVs such as ALPN, authority <= 255, unique ID <= 128, CRC32C and SSL
/// details); AWS and GCP load balancers send less. 1024 leaves room for all
/// of those while bounding what is buffered per connection before it is
/// known to be from a proxy.
pub(crate) const MAX_V2_PAYLOAD: usize = 1024;

/// The longest v2 header this parser accepts (the most bytes `parse` needs).
pub(crate) const MAX_V2: usize = 16 + MAX_V2_PAYLOAD;

/// The 12 bytes every v2 header starts with.
pub(crate) const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Parses a PROXY header from the start of `buf` (all bytes received so far).
///
/// Returns `Incomplete` while `buf` is a prefix of some valid header, `Done`
/// once a header is complete.
///
/// # Errors
///
/// As soon as `buf` cannot be the start of a valid header.
pub(crate) fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    match buf.first() {
        None => Ok(Parsed::Incomplete),
        Some(b'P') => parse_v1(buf),
        Some(0x0D) => parse_v2(buf),
        Some(_) => Err(ProxyError("not a PROXY protocol header")),
    }
}

/// The longest v1 line without its CRLF.
const V1_LINE_MAX: usize = MAX_V1 - 2;

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let Some(cr) = buf.iter().take(MAX_V1).position(|&b| b == b'\r' || b == b'\n') else {
        if buf.len() > V1_LINE_MAX {
            return Err(ProxyError("v1 header has no CRLF within 107 bytes"));
        }
        v1_fields(buf, false)?;
        return Ok(Parsed::Incomplete);
    };
    if buf.get(cr) == Some(&b'\n') {
        return Err(ProxyError("v1 header ends in LF without CR"));
    }
    if cr > V1_LINE_MAX {
        return Err(ProxyError("v1 header has no CRLF within 107 bytes"));
    }
    let (line, crlf) = buf.split_at_checked(cr).unwrap_or((buf, &[]));
    let header = v1_fields(line, true)?;
    match (crlf, header) {
        ([] | [_], _) => Ok(Parsed::Incomplete),
        ([_, b'\n', ..], Some(header)) => Ok(Parsed::Done { header, consumed: cr.saturating_add(2) }),
        ([_, b'\n', ..], None) => Err(ProxyError("v1 header incomplete")),
        (_, _) => Err(ProxyError("v1 header has CR without LF")),
    }
}

/// Checks the v1 line (without CRLF). If `complete` is false the last field
/// may be cut short and only has to be a prefix of something valid; the
/// header is returned only for a complete line.
fn v1_fields(line: &[u8], complete: bool) -> Result<Option<ProxyHeader>, ProxyError> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let last = fields.len().saturating_sub(1);
    let mut v6 = false;
    for (i, &field) in fields.iter().enumerate() {
        let partial = !complete && i == last;
        match i {
            0 if field == b"PROXY" || (partial && b"PROXY".starts_with(field)) => {}
            0 => return Err(ProxyError("v1 header must start with \"PROXY \"")),
            // After "UNKNOWN " anything may follow up to the CRLF.
            1 if field == b"UNKNOWN" && !partial => {
                return Ok(complete.then_some(ProxyHeader::Unknown));
            }
            1 => {
                v6 = match field {
                    b"TCP4" => false,
                    b"TCP6" => true,
                    _ if partial
                        && [&b"TCP4"[..], b"TCP6", b"UNKNOWN"].iter().any(|k| k.starts_with(field)) =>
                    {
                        false
                    }
                    _ => return Err(ProxyError("v1 protocol must be TCP4, TCP6 or UNKNOWN")),
                }
            }
            2 | 3 if partial => {
                if !ip_prefix_ok(field, v6) {
                    return Err(ProxyError("bad v1 address"));
                }
            }
            2 | 3 => {
                parse_ip(field, v6)?;
            }
            4 | 5 if partial => {
                if !port_prefix_ok(field) {
                    return Err(ProxyError("bad v1 port"));
                }
            }
            4 | 5 => {
                parse_port(field)?;
            }
            _ => return Err(ProxyError("too many fields in v1 header")),
        }
    }
    if !complete {
        return Ok(None);
    }
    let [_, _, src, dst, sport, dport] = fields.as_slice() else {
        return Err(ProxyError("too few fields in v1 header"));
    };
    Ok(Some(ProxyHeader::Proxied {
        source: SocketAddr::new(parse_ip(src, v6)?, parse_port(sport)?),
        destination: SocketAddr::new(parse_ip(dst, v6)?, parse_port(dport)?),
    }))
}

fn parse_ip(field: &[u8], v6: bool) -> Result<IpAddr, ProxyError> {
    let text = std::str::from_utf8(field).map_err(|_| ProxyError("bad v1 address"))?;
    let ip =
        if v6 { text.parse::<Ipv6Addr>().map(IpAddr::V6) } else { text.parse::<Ipv4Addr>().map(IpAddr::V4) };
    ip.map_err(|_| ProxyError("bad v1 address"))
}

/// Whether `field` can still grow into an address of the given family.
fn ip_prefix_ok(field: &[u8], v6: bool) -> bool {
    if v6 {
        // The longest IPv6 text is "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255".
        field.len() <= 45
            && field.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            && !field.windows(3).any(|w| w == b":::")
    } else {
        let parts: Vec<&[u8]> = field.split(|&b| b == b'.').collect();
        let last = parts.len().saturating_sub(1);
        parts.len() <= 4
            && parts
                .iter()
                .enumerate()
                .all(|(i, part)| (i == last || !part.is_empty()) && part.len() <= 3 && decimal_ok(part, 255))
    }
}

/// Whether `field` is (a prefix of) a decimal port without leading zeros.
fn port_prefix_ok(field: &[u8]) -> bool {
    field.len() <= 5 && decimal_ok(field, 65535)
}

/// ASCII digits only, no leading zero unless the number is "0", value <= max.
fn decimal_ok(digits: &[u8], max: u32) -> bool {
    let leading_zero = digits.len() > 1 && digits.first() == Some(&b'0');
    !leading_zero && decimal(digits).is_some_and(|v| v <= max)
}

fn decimal(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &b| {
        let digit = char::from(b).to_digit(10)?;
        acc.checked_mul(10)?.checked_add(digit)
    })
}

fn parse_port(field: &[u8]) -> Result<u16, ProxyError> {
    if field.is_empty() || !port_prefix_ok(field) {
        return Err(ProxyError("bad v1 port"));
    }
    decimal(field).and_then(|v| u16::try_from(v).ok()).ok_or(ProxyError("bad v1 port"))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let seen = buf.len().min(V2_SIGNATURE.len());
    if buf.get(..seen) != V2_SIGNATURE.get(..seen) {
        return Err(ProxyError("bad v2 signature"));
    }
    let Some(&ver_cmd) = buf.get(12) else {
        return Ok(Parsed::Incomplete);
    };
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError("unsupported v2 version"));
    }
    let local = match ver_cmd & 0x0F {
        0 => true,
        1 => false,
        _ => return Err(ProxyError("unknown v2 command")),
    };
    let Some(&fam) = buf.get(13) else {
        return Ok(Parsed::Incomplete);
    };
    // Size of the address block to check, or None to skip the block unread.
    let addr_len = match fam {
        _ if local => None,
        0x00 => None,
        0x11 | 0x12 => Some(12),
        0x21 | 0x22 => Some(36),
        0x31 | 0x32 => Some(216),
        _ => return Err(ProxyError("unknown v2 address family or transport")),
    };
    let (Some(&hi), Some(&lo)) = (buf.get(14), buf.get(15)) else {
        return Ok(Parsed::Incomplete);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len > MAX_V2_PAYLOAD {
        return Err(ProxyError("v2 header longer than the limit"));
    }
    // Offsets below stay under 16 + 1024 + 3 + 65535: saturation never happens.
    let total = len.saturating_add(16);
    if let Some(addr_len) = addr_len {
        if len < addr_len {
            return Err(ProxyError("v2 length shorter than the address block"));
        }
        let mut pos = addr_len.saturating_add(16);
        while pos < total {
            if total.saturating_sub(pos) < 3 {
                return Err(ProxyError("truncated v2 TLV"));
            }
            let (Some(&hi), Some(&lo)) = (buf.get(pos.saturating_add(1)), buf.get(pos.saturating_add(2)))
            else {
                return Ok(Parsed::Incomplete);
            };
            pos = pos.saturating_add(3).saturating_add(usize::from(u16::from_be_bytes([hi, lo])));
            if pos > total {
                return Err(ProxyError("truncated v2 TLV"));
            }
        }
    }
    if buf.len() < total {
        return Ok(Parsed::Incomplete);
    }
    let header = match fam {
        _ if local => ProxyHeader::Local,
        0x11 => ProxyHeader::Proxied {
            source: SocketAddr::new(Ipv4Addr::from(bytes::<4>(buf, 16)?).into(), port(buf, 24)?),
            destination: SocketAddr::new(Ipv4Addr::from(bytes::<4>(buf, 20)?).into(), port(buf, 26)?),
        },
        0x21 => ProxyHeader::Proxied {
            source: SocketAddr::new(Ipv6Addr::from(bytes::<16>(buf, 16)?).into(), port(buf, 48)?),
            destination: SocketAddr::new(Ipv6Addr::from(bytes::<16>(buf, 32)?).into(), port(buf, 50)?),
        },
        _ => ProxyHeader::Unknown,
    };
    Ok(Parsed::Done { header, consumed: total })
}

fn bytes<const N: usize>(buf: &[u8], at: usize) -> Result<[u8; N], ProxyError> {
    at.checked_add(N)
        .and_then(|end| buf.get(at..end))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(ProxyError("v2 address block truncated"))
}

fn port(buf: &[u8], at: usize) -> Result<u16, ProxyError> {
    bytes::<2>(buf, at).map(u16::from_be_bytes)
}

#[cfg(test)]
mod tests;
