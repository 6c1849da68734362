//! Request path -> a safe path relative to ROOT.
//!
//! The URI path is split on `/` first and each segment is percent-decoded
//! exactly once, so `%2F` can never introduce a separator and `%252e` stays the
//! literal `%2e`. A decoded segment that is `.` or `..`, or that contains NUL,
//! `/` or `\`, rejects the whole request (400); so does a drive prefix such as
//! `C:` in the first segment. Empty segments (`//`) are dropped. A segment that
//! starts with `.` is a dotfile: 404 unless hidden files are served.
//!
//! Pure: no file-system access. Opening the result beneath ROOT without races
//! is `fs`'s job.

use std::borrow::Cow;

/// Longest decoded path accepted (Linux `PATH_MAX`); longer is "name too long".
pub const MAX_PATH_BYTES: usize = 4096;

/// A validated relative path: segments joined by `/`, no leading slash. It
/// borrows the request's own bytes when decoding would change nothing (no
/// escape, no empty segment: the usual request), so a cache hit never copies
/// its path; [`Rel::into_owned`] makes the [`RelPath`] a later step keeps.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rel<'a> {
    bytes: Cow<'a, [u8]>,
    trailing_slash: bool,
}

/// A validated relative path that owns its bytes.
pub type RelPath = Rel<'static>;

impl Rel<'_> {
    /// The relative path, e.g. `docs/a.txt`; empty for the root.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether the request path ended in `/` (a directory was asked for).
    pub fn has_trailing_slash(&self) -> bool {
        self.trailing_slash
    }

    /// The same path, owning its bytes (a copy only if it borrowed them).
    pub fn into_owned(self) -> RelPath {
        Rel { bytes: Cow::Owned(self.bytes.into_owned()), trailing_slash: self.trailing_slash }
    }

    /// This path joined with one more (already valid) segment.
    pub fn join(&self, segment: &[u8]) -> RelPath {
        let mut bytes = self.bytes.to_vec();
        if !bytes.is_empty() {
            bytes.push(b'/');
        }
        bytes.extend_from_slice(segment);
        Rel { bytes: Cow::Owned(bytes), trailing_slash: false }
    }
}

/// Why a request path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Malformed or dangerous: traversal, NUL, backslash, bad escape (400).
    #[error("bad request path")]
    Invalid,
    /// A dotfile while hidden files are not served (404).
    #[error("hidden path")]
    Hidden,
    /// Longer than the file system allows (404).
    #[error("path too long")]
    TooLong,
}

/// Parses the path component of a request URI (no query string).
pub fn parse(uri_path: &str, serve_hidden: bool) -> Result<Rel<'_>, PathError> {
    let Some(raw) = uri_path.as_bytes().strip_prefix(b"/") else {
        return Err(PathError::Invalid);
    };
    // While no segment is empty or escaped, decoding would copy the bytes as
    // they are, so the same checks run on the request's own bytes; the first
    // that is hands the whole path to decoding, which decides the same for
    // the segments before it.
    let (mut hidden, mut end) = (false, 0);
    for (i, segment) in raw.split(|&b| b == b'/').enumerate() {
        if segment.is_empty() || segment.contains(&b'%') {
            return parse_decoding(raw, serve_hidden);
        }
        check_segment(segment, i == 0, &mut hidden)?;
        end += segment.len() + usize::from(i > 0);
        if end > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
    }
    if hidden && !serve_hidden {
        return Err(PathError::Hidden);
    }
    Ok(Rel { bytes: Cow::Borrowed(raw), trailing_slash: false })
}

/// [`parse`] for a path with escapes or empty segments (`raw` without its
/// leading `/`): each segment decoded into a new buffer, empty ones dropped.
fn parse_decoding(raw: &[u8], serve_hidden: bool) -> Result<Rel<'static>, PathError> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut hidden = false;
    let mut first = true;
    for segment in raw.split(|&b| b == b'/') {
        if segment.is_empty() {
            continue;
        }
        if !bytes.is_empty() {
            bytes.push(b'/');
        }
        let seg_start = bytes.len();
        decode_into(segment, &mut bytes)?;
        check_segment(bytes.get(seg_start..).unwrap_or_default(), first, &mut hidden)?;
        if bytes.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
        first = false;
    }
    if hidden && !serve_hidden {
        return Err(PathError::Hidden);
    }
    let trailing_slash = raw.is_empty() || raw.ends_with(b"/");
    Ok(Rel { bytes: Cow::Owned(bytes), trailing_slash })
}

/// The checks on one decoded segment: not `.` or `..`, no NUL, `/` or `\`,
/// no drive prefix as the `first`; a dotfile sets `hidden`.
fn check_segment(decoded: &[u8], first: bool, hidden: &mut bool) -> Result<(), PathError> {
    if decoded == b"." || decoded == b".." {
        return Err(PathError::Invalid);
    }
    if decoded.iter().any(|&b| b == 0 || b == b'/' || b == b'\\') {
        return Err(PathError::Invalid);
    }
    if first && is_drive_prefix(decoded) {
        return Err(PathError::Invalid);
    }
    if decoded.first() == Some(&b'.') {
        *hidden = true;
    }
    Ok(())
}

/// Whether a directory entry named `name` could be reached by a request
/// path through [`parse`] (so that a listing shows exactly what a click
/// serves): not `.` or `..`, no NUL, `/` or `\\`, not a drive prefix at the
/// top (`at_top`), and not a dotfile unless hidden files are served.
pub fn servable_name(name: &[u8], at_top: bool, serve_hidden: bool) -> bool {
    !name.is_empty()
        && name != b"."
        && name != b".."
        && !name.iter().any(|&b| b == 0 || b == b'/' || b == b'\\')
        && !(at_top && is_drive_prefix(name))
        && (serve_hidden || name.first() != Some(&b'.'))
}

/// `C:` as a whole segment: a Windows drive prefix, meaningless here and refused.
fn is_drive_prefix(segment: &[u8]) -> bool {
    matches!(segment, [letter, b':'] if letter.is_ascii_alphabetic())
}

fn decode_into(segment: &[u8], out: &mut Vec<u8>) -> Result<(), PathError> {
    let mut i = 0;
    while let Some(&b) = segment.get(i) {
        if b == b'%' {
            let hi = segment.get(i + 1).and_then(|&h| hex(h));
            let lo = segment.get(i + 2).and_then(|&l| hex(l));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(PathError::Invalid),
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(path: &str) -> String {
        String::from_utf8(parse(path, false).unwrap().as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn ordinary_paths_resolve() {
        assert_eq!(ok("/"), "");
        assert_eq!(ok("/a.txt"), "a.txt");
        assert_eq!(ok("/sub/a.txt"), "sub/a.txt");
        assert_eq!(ok("/sub//a.txt"), "sub/a.txt");
        assert_eq!(ok("/%73ub/a.txt"), "sub/a.txt");
        assert_eq!(ok("/space%20name.txt"), "space name.txt");
        assert_eq!(ok("/caf%C3%A9"), "café");
        assert_eq!(ok("/a:b"), "a:b");
        assert_eq!(ok("/100%25"), "100%");
        assert_eq!(ok("/%252e%252e/x"), "%2e%2e/x");
        assert!(parse("/dir/", false).unwrap().has_trailing_slash());
        assert!(!parse("/dir", false).unwrap().has_trailing_slash());
        assert!(parse("/", false).unwrap().has_trailing_slash());
    }

    #[test]
    fn traversal_and_junk_are_refused() {
        let bad = [
            "/..",
            "/../etc/passwd",
            "/a/../b",
            "/%2e%2e/x",
            "/%2E%2E/x",
            "/.%2e/x",
            "/./a",
            "/a/.",
            "/a%2f..%2fb",
            "/a%2F",
            "/%00",
            "/a%00.txt",
            "/a\\b",
            "/a%5cb",
            "/..%5c..",
            "/C:",
            "/c:/windows",
            "/C%3A/x",
            "/%zz",
            "/%4",
            "/%",
            "relative",
            "",
        ];
        for path in bad {
            assert_eq!(parse(path, true), Err(PathError::Invalid), "{path:?}");
        }
    }

    #[test]
    fn dotfiles_are_hidden_unless_enabled() {
        assert_eq!(parse("/.env", false), Err(PathError::Hidden));
        assert_eq!(parse("/.git/config", false), Err(PathError::Hidden));
        assert_eq!(parse("/a/%2egit/config", false), Err(PathError::Hidden));
        assert_eq!(ok_hidden("/.well-known/x"), ".well-known/x");
        assert_eq!(parse("/..", false), Err(PathError::Invalid), "traversal is 400 even when hidden");
    }

    fn ok_hidden(path: &str) -> String {
        String::from_utf8(parse(path, true).unwrap().as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn overlong_paths_are_too_long() {
        let long = format!("/{}", "a/".repeat(3000));
        assert_eq!(parse(&long, false), Err(PathError::TooLong));
    }

    #[test]
    fn a_plain_path_is_borrowed_and_an_escaped_one_decoded() {
        assert!(matches!(parse("/docs/a.txt", false).unwrap().bytes, Cow::Borrowed(b"docs/a.txt")));
        assert!(matches!(parse("/docs/a%20b", false).unwrap().bytes, Cow::Owned(_)));
        assert!(matches!(parse("/docs//a", false).unwrap().bytes, Cow::Owned(_)));
        // Past the length limit first, then a bad segment: too long, as when decoding.
        let long = format!("/{}..", "a/".repeat(2100));
        assert_eq!(parse(&long, false), Err(PathError::TooLong));
        assert_eq!(parse(&long, false), parse_decoding(long.as_bytes().get(1..).unwrap(), false));
    }

    #[test]
    fn join_adds_a_segment() {
        assert_eq!(parse("/", false).unwrap().join(b"index.html").as_bytes(), b"index.html");
        assert_eq!(parse("/d/", false).unwrap().join(b"index.html").as_bytes(), b"d/index.html");
    }

    proptest! {
        #[test]
        fn resolved_path_never_leaves_root(s in "(/([a-z.%25/\\\\]|%2[eEfF]|%5[cC]|%00|\\.\\.){0,6}){1,6}") {
            if let Ok(p) = parse(&s, true) {
                let bytes = p.as_bytes();
                prop_assert!(!bytes.starts_with(b"/"));
                for seg in bytes.split(|&b| b == b'/').filter(|_| !bytes.is_empty()) {
                    prop_assert!(!seg.is_empty() && seg != b"." && seg != b"..");
                    prop_assert!(!seg.contains(&0) && !seg.contains(&b'\\'));
                }
                // Joining with a root and normalising lexically stays under it.
                let joined = std::path::Path::new("/srv/root").join(std::str::from_utf8(bytes).unwrap());
                let mut depth = 0i32;
                for c in joined.strip_prefix("/srv/root").unwrap().components() {
                    match c {
                        std::path::Component::Normal(_) => depth += 1,
                        _ => prop_assert!(false, "non-normal component in {:?}", joined),
                    }
                }
                prop_assert_eq!(depth as usize, bytes.split(|&b| b == b'/').filter(|s| !s.is_empty()).count());
            }
        }

        /// The parser agrees with the reference model on arbitrary paths
        /// built from the characters that matter.
        #[test]
        fn agrees_with_the_model(s in "/([a-zA-Z.%0-9/\\\\:]|%2[eEfF]|%5[cC]|%00|%[0-9a-fA-F]{2}|%[g-z]){0,24}", hidden: bool) {
            let got = parse(&s, hidden).map(|p| (p.as_bytes().to_vec(), p.has_trailing_slash()));
            let model = crate::http::model::request_path(s.as_bytes(), hidden).map(|(segs, slash)| (segs.join(&b'/'), slash));
            let got_kind = got.as_ref().map_err(|e| match e { PathError::Invalid => 0, PathError::Hidden => 1, PathError::TooLong => 2 });
            prop_assert_eq!(got_kind.cloned(), model, "{}", s);
        }

        /// Borrowing the request's bytes decides exactly as decoding them.
        #[test]
        fn borrowing_agrees_with_decoding(s in "/([a-zA-Z.0-9/\\\\:\\x00]|C:|%2[eE]|\\.\\.){0,40}", hidden: bool) {
            let raw = s.as_bytes().get(1..).unwrap_or_default();
            prop_assert_eq!(parse(&s, hidden), parse_decoding(raw, hidden), "{}", s);
        }

        #[test]
        fn decoding_happens_exactly_once(name in "[a-zA-Z0-9 ._~%-]{1,20}") {
            // Encode every byte, request it, and get the original name back.
            let encoded: String = name.bytes().map(|b| format!("%{b:02X}")).collect();
            match parse(&format!("/{encoded}"), true) {
                Ok(p) => prop_assert_eq!(p.as_bytes(), name.as_bytes()),
                Err(e) => prop_assert!(name == "." || name == ".." || is_drive_prefix(name.as_bytes()), "{:?}", e),
            }
        }
    }
}

#[cfg(test)]
mod servable_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A listed name is exactly a name a click on its link can reach.
        #[test]
        fn servable_names_are_the_ones_parse_accepts(
            name in proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'\\'), Just(b':'), Just(b'C'), Just(0u8), any::<u8>()], 1..6),
            hidden: bool,
            top: bool,
        ) {
            let encoded: String = name.iter().map(|b| format!("%{b:02X}")).collect();
            let uri = if top { format!("/{encoded}") } else { format!("/dir/{encoded}") };
            let parsed = parse(&uri, hidden);
            let want = if top { name.clone() } else { [b"dir/".as_slice(), &name].concat() };
            prop_assert_eq!(servable_name(&name, top, hidden), parsed.map(|p| p.as_bytes() == want).unwrap_or(false));
        }

        /// No request path gives a key that starts with `/` or NUL: the
        /// cache keeps listings and windows under such keys.
        #[test]
        fn keys_never_start_with_a_slash_or_nul(uri in "(/|%2[fF]|%00|%01|a|\\.){1,12}") {
            if let Ok(p) = parse(&uri, true) {
                prop_assert!(!matches!(p.as_bytes().first(), Some(b'/' | 0)));
            }
        }
    }
}
