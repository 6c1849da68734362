//! Operator header rules: `--header` for every response, and `[[headers]]`
//! tables that match the URL path with a glob, applied to 200, 206 and 304
//! responses of files and listings. Pure.
//!
//! * Globs (globset) match the decoded request path, starting with `/`; `*`
//!   and `?` stay within one segment, `**` crosses them, `{a,b}` and
//!   `[abc]` work as in a shell.
//! * Rules apply in the order written: a later rule's value for a name
//!   replaces an earlier one's, and replaces what mapserve would send
//!   (Cache-Control from `--cache-control`, for one). `Vary` is the
//!   exception: values are added, so the negotiation's own stay.
//! * `--header` values apply first, so a path rule overrides them.
//! * A `Content-Type` from a rule is left off a `multipart/byteranges`
//!   response, whose type describes the parts.

use crate::config::HeaderRule;
use crate::config::rules::glob;
use globset::{GlobSet, GlobSetBuilder};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The compiled rules.
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    global: Vec<(HeaderName, HeaderValue)>,
    paths: Vec<Vec<(HeaderName, HeaderValue)>>,
    set: GlobSet,
}

impl HeaderRules {
    /// Compiles `global` (for every response) and the path rules.
    pub fn new(global: &[(HeaderName, HeaderValue)], rules: &[HeaderRule]) -> Result<Self, globset::Error> {
        let mut set = GlobSetBuilder::new();
        for rule in rules {
            set.add(glob(&rule.glob)?);
        }
        Ok(HeaderRules {
            global: global.to_vec(),
            paths: rules.iter().map(|r| r.set.clone()).collect(),
            set: set.build()?,
        })
    }

    /// Whether there are path rules (the request path is then needed).
    pub fn has_paths(&self) -> bool {
        !self.paths.is_empty()
    }

    /// Adds the `--header` values (every response).
    pub fn apply_global(&self, headers: &mut HeaderMap) {
        set_all(&self.global, headers);
    }

    /// Adds the values of every rule matching `path` (a decoded request
    /// path starting with `/`), in order.
    pub fn apply_paths(&self, path: &str, headers: &mut HeaderMap) {
        for index in self.set.matches(path) {
            if let Some(set) = self.paths.get(index) {
                set_all(set, headers);
            }
        }
    }
}

fn set_all(pairs: &[(HeaderName, HeaderValue)], headers: &mut HeaderMap) {
    for (name, value) in pairs {
        if name == header::VARY {
            headers.append(name, value.clone());
        } else if name == header::CONTENT_TYPE
            && headers
                .get(header::CONTENT_TYPE)
                .is_some_and(|t| t.as_bytes().starts_with(b"multipart/byteranges"))
        {
            continue;
        } else {
            headers.insert(name, value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(n: &str, v: &str) -> (HeaderName, HeaderValue) {
        (HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap())
    }

    fn rule(glob: &str, set: &[(&str, &str)]) -> HeaderRule {
        HeaderRule { glob: glob.into(), set: set.iter().map(|(n, v)| pair(n, v)).collect() }
    }

    #[test]
    fn later_rules_override_and_globs_respect_segments() {
        let rules = HeaderRules::new(
            &[pair("x-served-by", "mapserve"), pair("cache-control", "no-cache")],
            &[
                rule("/assets/**", &[("cache-control", "public, max-age=31536000, immutable")]),
                rule("/assets/*.html", &[("cache-control", "no-store"), ("vary", "cookie")]),
                rule("/*.{js,css}", &[("x-top", "1")]),
            ],
        )
        .unwrap();
        let run = |path: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
            rules.apply_global(&mut h);
            rules.apply_paths(path, &mut h);
            h
        };
        let h = run("/assets/a/b.js");
        assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
        assert_eq!(h["x-served-by"], "mapserve");
        assert!(!h.contains_key("x-top"), "* does not cross /");
        let h = run("/assets/page.html");
        assert_eq!(h["cache-control"], "no-store", "the later rule wins");
        let vary: Vec<_> = h.get_all("vary").iter().collect();
        assert_eq!(vary, ["accept-encoding", "cookie"], "Vary is added to");
        let h = run("/app.css");
        assert_eq!(h["x-top"], "1");
        assert_eq!(h["cache-control"], "no-cache", "--header alone");
    }

    #[test]
    fn content_type_is_kept_off_multipart() {
        let rules = HeaderRules::new(&[], &[rule("/**", &[("content-type", "text/x-custom")])]).unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("multipart/byteranges; boundary=x"));
        rules.apply_paths("/a.txt", &mut h);
        assert_eq!(h["content-type"], "multipart/byteranges; boundary=x");
        let mut h = HeaderMap::new();
        rules.apply_paths("/a.txt", &mut h);
        assert_eq!(h["content-type"], "text/x-custom");
    }
}
