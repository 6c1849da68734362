//! Request framing checks the handler makes before anything else, pure:
//!
//! * `Host` syntax (RFC 9112 §3.2, RFC 3986 §3.2.2): `uri-host [":" port]`,
//!   where the host is a bracketed IP literal, an IPv4 address or a
//!   registered name of unreserved characters, percent-escapes and
//!   sub-delimiters. Anything else (`a b/c`, `x@y`) is a 400, as RFC 9112
//!   requires for an invalid Host. An empty value is valid.
//! * `Transfer-Encoding` (RFC 9112 §6.1): the only coding mapserve knows is
//!   `chunked`, once; any other list (`identity, chunked`, `gzip, chunked`)
//!   is a 501 Not Implemented, and the connection closes, since the
//!   request's framing cannot be trusted.

/// Whether `value` is a valid `Host` field value.
pub fn valid_host(value: &[u8]) -> bool {
    let (host, port) = match value.first() {
        Some(b'[') => match value.iter().position(|&b| b == b']') {
            Some(close) => {
                let inside = value.get(1..close).unwrap_or_default();
                if !valid_ip_literal(inside) {
                    return false;
                }
                match value.get(close + 1..).unwrap_or_default() {
                    [] => return true,
                    [b':', port @ ..] => (&[][..], port),
                    _ => return false,
                }
            }
            None => return false,
        },
        _ => match value.iter().rposition(|&b| b == b':') {
            Some(colon) => {
                (value.get(..colon).unwrap_or_default(), value.get(colon + 1..).unwrap_or_default())
            }
            None => (value, &[][..]),
        },
    };
    port.iter().all(u8::is_ascii_digit) && valid_reg_name(host)
}

/// `unreserved / sub-delims` (RFC 3986), as a table: a Host is checked on
/// every request.
const REG_NAME: [bool; 256] = {
    let mut t = [false; 256];
    let allowed = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=";
    let mut i = 0;
    while i < allowed.len() {
        t[allowed[i] as usize] = true;
        i += 1;
    }
    t
};

fn valid_reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = name.get(i) {
        if b == b'%' {
            let hex = |j: usize| name.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !REG_NAME[usize::from(b)] {
            return false;
        }
        i += 1;
    }
    true
}

fn valid_ip_literal(inside: &[u8]) -> bool {
    match inside.first() {
        // IPvFuture: "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
        Some(b'v' | b'V') => {
            inside.len() > 3
                && inside.contains(&b'.')
                && inside.iter().all(|&b| b != b'[' && b != b']' && b > b' ')
        }
        Some(_) => {
            inside.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.') && inside.contains(&b':')
        }
        None => false,
    }
}

/// Whether a request's `Transfer-Encoding` values are exactly one
/// `chunked` (the only coding understood).
pub fn known_transfer_coding<'a>(values: impl Iterator<Item = &'a [u8]>) -> bool {
    let mut codings = values.flat_map(|v| v.split(|&b| b == b',')).map(<[u8]>::trim_ascii);
    matches!((codings.next(), codings.next()), (Some(c), None) if c.eq_ignore_ascii_case(b"chunked"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hosts() {
        for ok in [
            &b""[..],
            b"example.com",
            b"example.com:8080",
            b"127.0.0.1",
            b"127.0.0.1:80",
            b"[::1]",
            b"[::1]:8080",
            b"[2001:db8::7]",
            b"[v1.fe80::a+en1]",
            b"xn--bcher-kva.example",
            b"a%20b",
            b"host:",
            b"under_score.test",
        ] {
            assert!(valid_host(ok), "{:?}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"a b/c"[..],
            b"a b",
            b"x/y",
            b"user@host",
            b"host:80x",
            b"[::1",
            b"[::1]x",
            b"[]",
            b"a%2",
            b"a%zz",
            b"h\0st",
            b"[not-ip]",
            b"caf\xc3\xa9",
        ] {
            assert!(!valid_host(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn transfer_codings() {
        let one = |v: &'static [u8]| known_transfer_coding(std::iter::once(v));
        assert!(one(b"chunked"));
        assert!(one(b" Chunked "));
        assert!(!one(b"identity, chunked"));
        assert!(!one(b"gzip, chunked"));
        assert!(!one(b"chunked, chunked"));
        assert!(!one(b"identity"));
        assert!(!one(b""));
        assert!(!known_transfer_coding([&b"gzip"[..], b"chunked"].into_iter()), "split over two lines");
    }

    proptest! {
        /// A host built from the allowed parts is accepted; one with a
        /// space, slash or `@` anywhere is not.
        #[test]
        fn generated_hosts(name in "[a-zA-Z0-9._~!$&'()*+,;=-]{0,30}", port in proptest::option::of(0u32..70000),
                           bad in "[ /@\\[\\]\"<>^`{|}]", at in 0usize..30) {
            let mut host = name.clone();
            if let Some(p) = port { host.push_str(&format!(":{p}")); }
            prop_assert!(valid_host(host.as_bytes()));
            let mut broken = name;
            broken.insert_str(at.min(broken.len()), &bad);
            prop_assert!(!valid_host(broken.as_bytes()), "{}", broken);
        }
    }
}
