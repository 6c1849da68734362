//! CORS (the Fetch standard's CORS protocol) for a read-only file server:
//! which origins may read responses, what they may see, and the answer to a
//! preflight. Pure: headers in, headers out.
//!
//! * `*`: every response says `Access-Control-Allow-Origin: *` (no
//!   credentials, so no `Vary: Origin` is needed).
//! * A list: a request whose `Origin` is in it gets that origin back; every
//!   response says `Vary: Origin`, since whether the header is there depends
//!   on it.
//! * Scripts may read the headers a player or a PDF viewer needs for ranges
//!   and revalidation (`Access-Control-Expose-Headers`).
//! * A preflight (`OPTIONS` with `Access-Control-Request-Method`) gets 204
//!   with the methods (GET, HEAD), the request headers mapserve reads
//!   (Range and the conditionals) plus those the request asked for, and how
//!   long to cache the answer.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers scripts may read.
pub const EXPOSE: HeaderValue = HeaderValue::from_static(
    "Content-Length, Content-Range, Accept-Ranges, ETag, Last-Modified, Content-Encoding",
);
/// Methods a cross-origin request may use.
pub const METHODS: HeaderValue = HeaderValue::from_static("GET, HEAD");
/// Request headers always allowed.
const ALLOW_HEADERS: &str =
    "Range, If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since, If-Range";
/// How long a browser may reuse a preflight answer (seconds; browsers cap
/// it, Chromium at 2 hours).
pub const MAX_AGE: HeaderValue = HeaderValue::from_static("7200");
const ANY: HeaderValue = HeaderValue::from_static("*");
const ORIGIN: HeaderValue = HeaderValue::from_static("origin");
const REQUEST_HEADERS: HeaderValue = HeaderValue::from_static("access-control-request-headers");

/// Which origins may read responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// Any origin.
    Any,
    /// These origins (serialized as browsers send them: `https://a.example`).
    Origins(Vec<HeaderValue>),
}

impl Cors {
    /// From the configured list: `["*"]` (or any entry `*`) means any.
    pub fn new(origins: &[String]) -> Cors {
        if origins.iter().any(|o| o == "*") {
            return Cors::Any;
        }
        Cors::Origins(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect())
    }

    /// Adds the CORS headers of an actual response to a request from
    /// `origin`.
    pub fn apply(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        match self {
            Cors::Any => {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY);
            }
            Cors::Origins(list) => {
                headers.append(header::VARY, ORIGIN);
                match origin.filter(|o| list.iter().any(|l| l.as_bytes().eq_ignore_ascii_case(o.as_bytes())))
                {
                    Some(origin) => {
                        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                    }
                    None => return,
                }
            }
        }
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE);
    }

    /// The headers of the 204 answering a preflight whose request headers
    /// are `req` (Origin and the Access-Control-Request-* ones).
    pub fn preflight(&self, req: &HeaderMap) -> HeaderMap {
        let mut headers = HeaderMap::new();
        self.apply(req.get(header::ORIGIN), &mut headers);
        headers.remove(header::ACCESS_CONTROL_EXPOSE_HEADERS);
        if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
            return headers;
        }
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, METHODS);
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers(req));
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, MAX_AGE);
        // The allowed headers echo the request's.
        headers.append(header::VARY, REQUEST_HEADERS);
        headers
    }
}

/// Whether `req` (an OPTIONS request) is a CORS preflight.
pub fn is_preflight(req: &HeaderMap) -> bool {
    req.contains_key(header::ORIGIN) && req.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Range and the conditionals, then every well-formed header name the
/// preflight asked for (lowercased; duplicates dropped).
fn allow_headers(req: &HeaderMap) -> HeaderValue {
    let mut value = String::from(ALLOW_HEADERS);
    let fixed: Vec<String> = ALLOW_HEADERS.split(", ").map(str::to_ascii_lowercase).collect();
    let mut seen: Vec<String> = Vec::new();
    for line in req.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        for name in line.as_bytes().split(|&b| b == b',') {
            let Ok(name) = HeaderName::from_bytes(name.trim_ascii()) else { continue };
            let name = name.as_str().to_owned();
            if !fixed.contains(&name) && !seen.contains(&name) && seen.len() < 64 {
                value.push_str(", ");
                value.push_str(&name);
                seen.push(name);
            }
        }
    }
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static(ALLOW_HEADERS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn any_origin() {
        let cors = Cors::new(&["*".into()]);
        let mut h = HeaderMap::new();
        cors.apply(None, &mut h);
        assert_eq!(h["access-control-allow-origin"], "*");
        assert_eq!(h["access-control-expose-headers"], EXPOSE);
        assert!(!h.contains_key("vary"));
    }

    #[test]
    fn listed_origins_are_echoed_and_others_get_nothing_but_vary() {
        let cors = Cors::new(&["https://a.example".into(), "http://b.example:8080".into()]);
        let mut h = HeaderMap::new();
        cors.apply(Some(&HeaderValue::from_static("http://b.example:8080")), &mut h);
        assert_eq!(h["access-control-allow-origin"], "http://b.example:8080");
        assert_eq!(h["vary"], "origin");
        let mut h = HeaderMap::new();
        cors.apply(Some(&HeaderValue::from_static("https://evil.example")), &mut h);
        assert!(!h.contains_key("access-control-allow-origin"));
        assert!(!h.contains_key("access-control-expose-headers"));
        assert_eq!(h["vary"], "origin");
    }

    #[test]
    fn preflight_allows_ranges_conditionals_and_what_was_asked() {
        let cors = Cors::new(&["https://a.example".into()]);
        let r = req(&[
            ("origin", "https://a.example"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "range, x-custom,X-Custom, bad name"),
        ]);
        assert!(is_preflight(&r));
        let h = cors.preflight(&r);
        assert_eq!(h["access-control-allow-origin"], "https://a.example");
        assert_eq!(h["access-control-allow-methods"], "GET, HEAD");
        assert_eq!(h["access-control-allow-headers"], format!("{ALLOW_HEADERS}, x-custom").as_str());
        assert_eq!(h["access-control-max-age"], "7200");
        let h = cors
            .preflight(&req(&[("origin", "https://no.example"), ("access-control-request-method", "GET")]));
        assert!(!h.contains_key("access-control-allow-methods"), "not an allowed origin");
        assert!(!is_preflight(&req(&[("origin", "https://a.example")])));
    }
}
