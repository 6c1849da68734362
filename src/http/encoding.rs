//! `Accept-Encoding` (RFC 9110 §12.5.3): what content codings a client
//! accepts, with what preference, and which one to send. Pure.
//!
//! * Codings are compared case-insensitively; `*` stands for every coding not
//!   named; q-values are kept in thousandths (`q=0.5` is 500).
//! * A header that does not parse (bad q-value, empty member with
//!   parameters, junk) is treated as absent, as the issue tracker and most
//!   servers do: the client gets what a client that sent nothing gets.
//! * No header: every coding is acceptable, but nothing is preferred, so the
//!   server sends identity. An empty header accepts only identity.
//! * `identity` is acceptable unless `identity;q=0`, or `*;q=0` without an
//!   entry for identity.
//! * Among acceptable codings with the same q, the server prefers br, then
//!   zstd, then gzip, then identity.

/// The content codings mapserve knows, in order of preference at equal q.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Coding {
    /// Brotli.
    Br,
    /// Zstandard.
    Zstd,
    /// gzip.
    Gzip,
    /// No coding.
    Identity,
}

impl Coding {
    /// Every coding, in order of preference.
    pub const ALL: [Coding; 4] = [Coding::Br, Coding::Zstd, Coding::Gzip, Coding::Identity];

    /// The token, as in `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
            Coding::Identity => "identity",
        }
    }
}

/// What a client's `Accept-Encoding` says: q (0..=1000) per known coding, if
/// named; q for `*`, if named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accepted {
    named: [Option<u16>; 4],
    star: Option<u16>,
    /// Whether a header was sent at all (and parsed).
    present: bool,
}

impl Accepted {
    /// The q-value of `coding` under this header (0: not acceptable).
    pub fn q(&self, coding: Coding) -> u16 {
        if !self.present {
            // No header: anything is acceptable; only identity is preferred.
            return if coding == Coding::Identity { 1000 } else { 1 };
        }
        if let Some(q) = self.named[coding as usize] {
            return q;
        }
        match (coding, self.star) {
            (_, Some(q)) => q,
            (Coding::Identity, None) => 1,
            (_, None) => 0,
        }
    }

    /// The coding to send, among those `available` (identity is always
    /// available): highest q first, then br, zstd, gzip, identity. `None`
    /// when none is acceptable (identity excluded too).
    pub fn choose(&self, available: &[Coding]) -> Option<Coding> {
        Coding::ALL
            .into_iter()
            .filter(|c| *c == Coding::Identity || available.contains(c))
            .map(|c| (self.q(c), c))
            .filter(|(q, _)| *q > 0)
            .max_by(|(qa, ca), (qb, cb)| qa.cmp(qb).then(cb.cmp(ca)))
            .map(|(_, c)| c)
    }
}

/// Parses every `Accept-Encoding` field line of a request.
pub fn parse<'a>(values: impl Iterator<Item = &'a [u8]>) -> Accepted {
    let mut accepted = Accepted { present: false, ..Accepted::default() };
    for value in values {
        accepted.present = true;
        for member in value.split(|&b| b == b',') {
            if parse_member(member.trim_ascii(), &mut accepted).is_none() {
                return Accepted::default();
            }
        }
    }
    accepted
}

fn parse_member(member: &[u8], into: &mut Accepted) -> Option<()> {
    if member.is_empty() {
        return Some(()); // empty list elements are allowed (RFC 9110 §5.6.1)
    }
    let mut parts = member.split(|&b| b == b';');
    let name = parts.next()?.trim_ascii();
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return None;
    }
    let mut q = 1000;
    for param in parts {
        let param = param.trim_ascii();
        let (key, value) = param.split_at(param.iter().position(|&b| b == b'=')?);
        if !key.trim_ascii().eq_ignore_ascii_case(b"q") {
            return None;
        }
        q = qvalue(value.get(1..)?.trim_ascii())?;
    }
    let slot = if name == b"*" {
        &mut into.star
    } else {
        match Coding::ALL.iter().find(|c| name.eq_ignore_ascii_case(c.token().as_bytes())) {
            Some(c) => &mut into.named[*c as usize],
            // `x-gzip` is gzip (RFC 9110 §8.4.1.3); other codings are ignored.
            None if name.eq_ignore_ascii_case(b"x-gzip") => &mut into.named[Coding::Gzip as usize],
            None => return Some(()),
        }
    };
    // A coding named twice: the last one counts.
    *slot = Some(q);
    Some(())
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in
/// thousandths.
pub(super) fn qvalue(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(dot) => (v.get(..dot)?, v.get(dot + 1..)?),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Coding::*;

    fn choose(header: Option<&str>, available: &[Coding]) -> Option<Coding> {
        parse(header.map(str::as_bytes).into_iter()).choose(available)
    }

    #[test]
    fn rfc_9110_cases() {
        let all = [Br, Zstd, Gzip];
        assert_eq!(choose(None, &all), Some(Identity), "no header: identity");
        assert_eq!(choose(Some(""), &all), Some(Identity), "empty: identity only");
        assert_eq!(choose(Some("gzip"), &all), Some(Gzip));
        assert_eq!(choose(Some("gzip, br, zstd"), &all), Some(Br), "equal q: br first");
        assert_eq!(choose(Some("gzip, zstd"), &all), Some(Zstd));
        assert_eq!(choose(Some("br;q=0.5, gzip"), &all), Some(Gzip), "q decides first");
        assert_eq!(choose(Some("br;q=0.5, gzip"), &[Br]), Some(Br), "gzip not available");
        assert_eq!(choose(Some("*"), &all), Some(Br));
        assert_eq!(choose(Some("*;q=0"), &all), None, "nothing acceptable");
        assert_eq!(choose(Some("*;q=0, identity"), &all), Some(Identity));
        assert_eq!(choose(Some("identity;q=0"), &[]), None);
        assert_eq!(choose(Some("identity;q=0, gzip"), &[]), None, "gzip not available, identity refused");
        assert_eq!(choose(Some("GZIP;Q=1.000"), &all), Some(Gzip), "case-insensitive");
        assert_eq!(choose(Some("x-gzip"), &all), Some(Gzip));
        assert_eq!(choose(Some("compress, deflate"), &all), Some(Identity), "unknown codings");
        assert_eq!(choose(Some("br;q=0, *"), &all), Some(Zstd), "a named q=0 beats *");
        assert_eq!(choose(Some("gzip;q=0.001, identity;q=0.0001"), &all), Some(Identity), "bad q: absent");
        assert_eq!(choose(Some("gzip;q=2"), &all), Some(Identity), "q over 1: absent");
        assert_eq!(choose(Some("gzip;level=9"), &all), Some(Identity), "unknown parameter: absent");
        assert_eq!(choose(Some(",gzip,,"), &all), Some(Gzip), "empty elements");
        assert_eq!(
            parse([&b"gzip"[..], b"br;q=0.9"].into_iter()).choose(&all),
            Some(Gzip),
            "several field lines are one list"
        );
    }

    proptest::proptest! {
        /// The parser agrees with the text model of RFC 9110 §12.5.3.
        #[test]
        fn agrees_with_the_model(
            members in proptest::collection::vec(
                ("(br|BR|zstd|gzip|x-gzip|identity|\\*|deflate|a\\{|)", "(;q=(0|1|0\\.[0-9]{0,4}|1\\.0{0,4}|2|x)| ;Q=0\\.5|;foo=1|)"),
                0..5),
            available in proptest::sample::subsequence(vec![Br, Zstd, Gzip], 0..=3),
        ) {
            let header: String = members.iter().map(|(n, q)| format!("{n}{q}")).collect::<Vec<_>>().join(", ");
            let got = parse(std::iter::once(header.as_bytes())).choose(&available);
            proptest::prop_assert_eq!(got, crate::http::model::accept_encoding(Some(&header), &available), "{}", header);
        }
    }

    #[test]
    fn qvalues() {
        assert_eq!(qvalue(b"0"), Some(0));
        assert_eq!(qvalue(b"0.5"), Some(500));
        assert_eq!(qvalue(b"0.125"), Some(125));
        assert_eq!(qvalue(b"1"), Some(1000));
        assert_eq!(qvalue(b"1.000"), Some(1000));
        assert_eq!(qvalue(b"1.001"), None);
        assert_eq!(qvalue(b"0.1234"), None);
        assert_eq!(qvalue(b".5"), None);
        assert_eq!(qvalue(b""), None);
    }
}
