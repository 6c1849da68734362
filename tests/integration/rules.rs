//! Operator headers and CORS over the wire: `--header` on every response,
//! `[[headers]]` glob rules on 200, 206 and 304 of files and listings (later
//! rules win), start-up refusing a bad rule by name, and `--cors` with its
//! preflight; without `--cors`, OPTIONS stays 405.

use crate::common::*;

const RULES: &str = r#"
header = ["X-Served-By: mapserve"]
cache-control = "no-cache"

[[headers]]
match = "/assets/**"
set = { "Cache-Control" = "public, max-age=31536000, immutable", "X-Asset" = "yes" }

[[headers]]
match = "/assets/*.html"
set = { "Cache-Control" = "no-store" }

[[headers]]
match = "/docs/"
set = { "X-Listing" = "1" }
"#;

#[test]
fn header_rules_apply_in_order_to_200_206_and_304_and_header_to_everything() {
    let s = Scratch::new("rules");
    s.write("assets/app.js", &pattern(5_000, 1));
    s.write("assets/page.html", b"<p>hi</p>");
    s.write("assets/deep/x.css", b"body{}");
    s.write("docs/a.txt", b"a");
    s.write("top.txt", b"top");
    let cfg = s.write("mapserve.toml", RULES.as_bytes());
    let srv = Launch::new(&s.path).arg("-c").arg(cfg.to_str().unwrap()).start();
    let immutable = "public, max-age=31536000, immutable";
    let r = srv.get("/assets/app.js");
    assert_eq!(r.header("cache-control"), Some(immutable));
    assert_eq!(r.header("x-asset"), Some("yes"));
    assert_eq!(r.header("x-served-by"), Some("mapserve"));
    let etag = r.header("etag").unwrap().to_owned();
    let r = srv.req("GET", "/assets/app.js", &[("Range", "bytes=0-9")]);
    assert_eq!((r.status, r.header("cache-control")), (206, Some(immutable)));
    let r = srv.req("GET", "/assets/app.js", &[("If-None-Match", &etag)]);
    assert_eq!((r.status, r.header("cache-control")), (304, Some(immutable)));
    assert_eq!(r.header("x-asset"), Some("yes"));
    assert_eq!(srv.get("/assets/deep/x.css").header("cache-control"), Some(immutable), "** crosses segments");
    let r = srv.get("/assets/page.html");
    assert_eq!(r.header("cache-control"), Some("no-store"), "the later rule wins");
    assert_eq!(r.header("x-asset"), Some("yes"), "and the earlier one's other headers stay");
    let r = srv.get("/top.txt");
    assert_eq!(r.header("cache-control"), Some("no-cache"), "--cache-control where no rule matches");
    assert_eq!(r.header("x-asset"), None);
    let r = srv.req("GET", "/docs/", &[("Accept", "text/html")]);
    assert_eq!((r.status, r.header("x-listing")), (200, Some("1")), "listings too");
    // The --fallback page stands in for a missing path: no path rule.
    s.write("index.html", b"<!doctype html><p>app</p>");
    let cfg = s.path.join("mapserve.toml");
    let spa =
        Launch::new(&s.path).arg("-c").arg(cfg.to_str().unwrap()).args(&["--fallback", "index.html"]).start();
    let r = spa.req("GET", "/assets/route/that/is/not/a/file", &[("Accept", "text/html")]);
    assert_eq!((r.status, r.header("x-asset")), (200, None));
    assert_eq!(r.header("x-served-by"), Some("mapserve"));
    // Errors get --header but no path rule.
    let r = srv.get("/assets/missing.js");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-served-by"), Some("mapserve"));
    assert_eq!(r.header("x-asset"), None);
    assert_eq!(r.header("cache-control"), None);
    // curl sees them too.
    let out = run("curl", &["-sfI", &srv.url("/assets/app.js")]);
    assert!(String::from_utf8_lossy(&out.stdout).to_ascii_lowercase().contains("x-asset: yes"));
}

#[test]
fn a_bad_rule_stops_start_up_and_names_it() {
    let s = Scratch::new("rules-bad");
    let bin =
        std::env::var("MAPSERVE_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mapserve").to_owned());
    for (text, args, needle) in [
        (
            "[[headers]]\nmatch = \"/a/**\"\nset = { \"Bad Name\" = \"1\" }\n",
            &[][..],
            "[[headers]] #1 (match = \"/a/**\")",
        ),
        ("[[headers]]\nmatch = \"/a/{b\"\nset = { X = \"1\" }\n", &[][..], "[[headers]] #1"),
        (
            "[[headers]]\nmatch = \"/a\"\nset = { \"Content-Length\" = \"1\" }\n",
            &[][..],
            "cannot be overridden",
        ),
        ("", &["--header", "X-Broken"][..], "`X-Broken` is not `Name: value`"),
        ("", &["--cors=ftp:/bad"][..], "cors"),
    ] {
        let cfg = s.write("bad.toml", format!("listen = \"127.0.0.1:0\"\n{text}").as_bytes());
        let out =
            std::process::Command::new(&bin).arg(&s.path).arg("-c").arg(&cfg).args(args).output().unwrap();
        assert!(!out.status.success(), "{text} {args:?} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{text} {args:?}: {err}");
    }
}

#[test]
fn cors_answers_preflights_and_exposes_range_headers() {
    let s = Scratch::new("cors");
    s.write("video.mp4", &pattern(10_000, 2));
    let off = Server::start(&s.path);
    let r = off.req(
        "OPTIONS",
        "/video.mp4",
        &[("Origin", "https://a.example"), ("Access-Control-Request-Method", "GET")],
    );
    assert_eq!(r.status, 405, "without --cors OPTIONS is refused as before");
    let r = off.req("GET", "/video.mp4", &[("Origin", "https://a.example")]);
    assert_eq!(r.header("access-control-allow-origin"), None);

    let any = Launch::new(&s.path).arg("--cors").start();
    let r = any.req("GET", "/video.mp4", &[("Origin", "https://a.example"), ("Range", "bytes=0-9")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let exposed = r.header("access-control-expose-headers").unwrap().to_ascii_lowercase();
    for h in ["content-length", "content-range", "accept-ranges", "etag", "last-modified", "content-encoding"]
    {
        assert!(exposed.contains(h), "{h} exposed: {exposed}");
    }
    let r = any.req(
        "OPTIONS",
        "/video.mp4",
        &[
            ("Origin", "https://a.example"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "range, x-player-id"),
        ],
    );
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, HEAD"));
    let allowed = r.header("access-control-allow-headers").unwrap().to_ascii_lowercase();
    for h in ["range", "if-none-match", "if-range", "if-modified-since", "x-player-id"] {
        assert!(allowed.contains(h), "{h} allowed: {allowed}");
    }
    assert!(r.header("access-control-max-age").is_some());
    assert_eq!(r.body.len(), 0);
    assert!(r.headers.iter().any(|(k, v)| k == "vary" && v.contains("access-control-request-headers")));
    // Framing rules come first: an HTTP/1.1 OPTIONS without Host is 400.
    let raw = any.raw(b"OPTIONS /video.mp4 HTTP/1.1\r\nOrigin: https://a.example\r\nAccess-Control-Request-Method: GET\r\nConnection: close\r\n\r\n");
    assert_eq!(Resp::parse(&raw, false).status, 400);

    let listed = Launch::new(&s.path).arg("--cors=https://a.example,http://localhost:3000").start();
    let r = listed.req("GET", "/video.mp4", &[("Origin", "http://localhost:3000")]);
    assert_eq!(r.header("access-control-allow-origin"), Some("http://localhost:3000"));
    assert!(r.headers.iter().any(|(k, v)| k == "vary" && v.contains("origin")), "Vary: Origin");
    let r = listed.req("GET", "/video.mp4", &[("Origin", "https://evil.example")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None, "an origin not listed");
    assert!(r.headers.iter().any(|(k, v)| k == "vary" && v.contains("origin")));
    let r = listed.req("GET", "/missing", &[("Origin", "https://a.example")]);
    assert_eq!(
        (r.status, r.header("access-control-allow-origin")),
        (404, Some("https://a.example")),
        "errors are readable too"
    );
}
