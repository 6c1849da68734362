//! `Accept` (RFC 9110 §12.5.1), reduced to the one question mapserve asks:
//! does the client prefer HTML, JSON, or neither? Pure.
//!
//! * A media type's q is the q of the most specific range that matches it
//!   (`text/html` over `text/*` over `*/*`); no match is q=0.
//! * **HTML** is preferred when `text/html` is named and acceptable, and no
//!   type named explicitly has a higher q: what every browser's navigation
//!   sends (`text/html,application/xhtml+xml,...,*/*;q=0.8`). `*/*` alone
//!   (curl, wget, fetch) is not a preference for HTML.
//! * **JSON** is preferred when `application/json` is named and its q is
//!   higher than HTML's.
//! * A header that does not parse counts as absent (no preference).
//!
//! Tokens and q-values are read as `Accept-Encoding`'s are (`encoding`).

use super::encoding::{is_tchar, qvalue};

/// What the client prefers, as far as mapserve's answers go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preferred {
    /// An HTML page (browsers).
    Html,
    /// JSON.
    Json,
    /// No preference among those (scripts, `*/*`, no header).
    Other,
}

/// One media range: type, subtype (either may be `*`), q in thousandths.
struct Range<'a> {
    kind: &'a [u8],
    sub: &'a [u8],
    q: u16,
}

/// The preference expressed by the `Accept` field lines `values`.
pub fn preferred<'a>(values: impl Iterator<Item = &'a [u8]>) -> Preferred {
    let mut ranges = Vec::new();
    for value in values {
        for member in value.split(|&b| b == b',') {
            let member = member.trim_ascii();
            if member.is_empty() {
                continue;
            }
            match parse_range(member) {
                Some(r) => ranges.push(r),
                None => return Preferred::Other,
            }
        }
    }
    let q = |kind: &[u8], sub: &[u8]| -> u16 {
        let mut best: Option<(u8, u16)> = None;
        for r in &ranges {
            let specificity = match (r.kind, r.sub) {
                (b"*", b"*") => 0,
                (k, b"*") if k.eq_ignore_ascii_case(kind) => 1,
                (k, s) if k.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(sub) => 2,
                _ => continue,
            };
            if best.is_none_or(|(s, _)| specificity > s) {
                best = Some((specificity, r.q));
            }
        }
        best.map_or(0, |(_, q)| q)
    };
    let named = |kind: &[u8], sub: &[u8]| {
        ranges.iter().any(|r| r.kind.eq_ignore_ascii_case(kind) && r.sub.eq_ignore_ascii_case(sub))
    };
    let html = q(b"text", b"html");
    let json = q(b"application", b"json");
    let top_named = ranges.iter().filter(|r| r.kind != b"*" && r.sub != b"*").map(|r| r.q).max();
    if named(b"application", b"json") && json > 0 && json > html {
        Preferred::Json
    } else if named(b"text", b"html") && html > 0 && top_named.is_none_or(|top| html >= top) {
        Preferred::Html
    } else {
        Preferred::Other
    }
}

fn parse_range(member: &[u8]) -> Option<Range<'_>> {
    let mut parts = member.split(|&b| b == b';');
    let media = parts.next()?.trim_ascii();
    let slash = media.iter().position(|&b| b == b'/')?;
    let (kind, sub) = (media.get(..slash)?, media.get(slash + 1..)?);
    if !is_token(kind) || !is_token(sub) || (kind == b"*" && sub != b"*") {
        return None;
    }
    let mut q = 1000;
    for param in parts {
        let param = param.trim_ascii();
        let eq = param.iter().position(|&b| b == b'=')?;
        let (name, value) = (param.get(..eq)?.trim_ascii(), param.get(eq + 1..)?.trim_ascii());
        if name.eq_ignore_ascii_case(b"q") {
            q = qvalue(value)?;
        }
    }
    Some(Range { kind, sub, q })
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pref(v: &str) -> Preferred {
        preferred(std::iter::once(v.as_bytes()))
    }

    #[test]
    fn browsers_prefer_html_and_scripts_do_not() {
        let chrome = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,\
                      image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7";
        let firefox = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert_eq!(pref(chrome), Preferred::Html);
        assert_eq!(pref(firefox), Preferred::Html);
        assert_eq!(preferred(std::iter::empty()), Preferred::Other);
        for other in
            ["*/*", "text/*", "image/webp,*/*", "text/plain", "text/html;q=0", "TEXT/HTML;q=0.5, text/plain"]
        {
            assert_eq!(pref(other), Preferred::Other, "{other}");
        }
        assert_eq!(pref("Text/HTML"), Preferred::Html);
        assert_eq!(pref("text/plain;q=0.5, text/html"), Preferred::Html);
    }

    #[test]
    fn json_when_it_outranks_html() {
        assert_eq!(pref("application/json"), Preferred::Json);
        assert_eq!(pref("application/json, */*;q=0.1"), Preferred::Json);
        assert_eq!(pref("text/html;q=0.9, application/json"), Preferred::Json);
        assert_eq!(pref("text/html, application/json"), Preferred::Html);
        assert_eq!(pref("application/json;q=0"), Preferred::Other);
    }

    proptest::proptest! {
        /// Any bytes give an answer, and adding `*/*` never makes HTML or
        /// JSON preferred where it was not.
        #[test]
        fn any_header_gives_an_answer(v in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            let p = preferred(std::iter::once(v.as_slice()));
            let with_star = [v.as_slice(), b", */*;q=0.01"].concat();
            let q = preferred(std::iter::once(with_star.as_slice()));
            proptest::prop_assert!(q == p || q == Preferred::Other || p == Preferred::Other);
        }
    }

    #[test]
    fn malformed_headers_count_as_absent() {
        for bad in ["text/html;q=2", "html", "text/html;q=0.5000", "*/html", "text/html;q", "text/ html x"] {
            assert_eq!(pref(bad), Preferred::Other, "{bad}");
        }
        assert_eq!(pref("text/html ; q=1.0 , ,"), Preferred::Html);
    }
}
