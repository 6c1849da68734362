//! RFC 9110 behaviour over real sockets: methods, HEAD, ranges, multipart,
//! preconditions, content types, redirects, HTTP/1.0, pipelining and h2c.

use crate::common::*;
use std::io::{Read, Write};

fn site() -> (Scratch, Vec<u8>) {
    let s = Scratch::new("http");
    let data = pattern(100_000, 1);
    s.write("data.bin", &data);
    s.write("hello.txt", b"hello world\n");
    s.write("empty.txt", b"");
    s.write("app.js", b"let x = 1;\n");
    s.write("lib.wasm", b"\0asm");
    s.write("page.html", b"<p>hi</p>");
    s.write("dir/index.html", b"<h1>index</h1>");
    s.write("dir/noindex/x.txt", b"x");
    s.write("space name.txt", b"spaced");
    (s, data)
}

#[test]
fn get_serves_the_file_with_every_header() {
    let (s, data) = site();
    let srv = Server::start(&s.path);
    let r = srv.get("/data.bin");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    assert_eq!(r.content_length(), Some(100_000));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(r.header("date").is_some());
    assert!(r.header("last-modified").is_some());
    let etag = r.header("etag").unwrap();
    assert!(etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"), "strong: {etag}");
}

#[test]
fn head_sends_exactly_the_get_headers_and_no_body() {
    let (s, _) = site();
    let srv = Server::start(&s.path);
    for path in ["/data.bin", "/hello.txt", "/empty.txt", "/missing", "/dir"] {
        let get = srv.get(path);
        let raw = srv.raw(format!("HEAD {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes());
        let head = Resp::parse(&raw, true);
        let strip = |r: &Resp| {
            let mut h: Vec<_> = r.headers.iter().filter(|(k, _)| k != "date").cloned().collect();
            h.sort();
            h
        };
        assert_eq!(get.status, head.status, "{path}");
        assert_eq!(strip(&get), strip(&head), "{path}");
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(raw.len(), end, "HEAD {path} carried a body");
    }
}

#[test]
fn other_methods_get_405_with_allow() {
    let (s, _) = site();
    let srv = Server::start(&s.path);
    for method in ["POST", "PUT", "DELETE", "PATCH", "TRACE", "OPTIONS", "BREW"] {
        let r = srv.req(method, "/hello.txt", &[("Content-Length", "0")]);
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
}

#[test]
fn content_types_follow_the_rules() {
    let (s, _) = site();
    let srv = Server::start(&s.path);
    let cases = [
        ("/hello.txt", "text/plain; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/lib.wasm", "application/wasm"),
        ("/page.html", "text/html; charset=utf-8"),
        ("/data.bin", "application/octet-stream"),
    ];
    for (path, ct) in cases {
        assert_eq!(srv.get(path).header("content-type"), Some(ct), "{path}");
    }
}

#[test]
fn single_ranges_follow_rfc_9110() {
    let (s, data) = site();
    let srv = Server::start(&s.path);
    let len = data.len();
    let cases: &[(&str, usize, usize)] = &[
        ("bytes=0-499", 0, 499),
        ("bytes=1000-", 1000, len - 1),
        ("bytes=-500", len - 500, len - 1),
        ("bytes=-200000", 0, len - 1),
        ("bytes=99999-5000000", 99_999, 99_999),
        ("Bytes=0-4", 0, 4),
        ("bytes=0-4,2-9", 0, 9),
    ];
    for &(range, a, b) in cases {
        let r = srv.req("GET", "/data.bin", &[("Range", range)]);
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(r.header("content-range").unwrap(), format!("bytes {a}-{b}/{len}"), "{range}");
        assert_eq!(r.body, &data[a..=b], "{range}");
        assert_eq!(r.content_length(), Some((b - a + 1) as u64));
        assert!(r.header("etag").is_some() && r.header("last-modified").is_some());
    }
}

#[test]
fn ignored_and_unsatisfiable_ranges() {
    let (s, data) = site();
    let srv = Server::start(&s.path);
    for range in ["items=0-5", "bytes=5-3", "bytes=abc", "bytes=0-,0-"] {
        let r = srv.req("GET", "/data.bin", &[("Range", range)]);
        assert_eq!(r.status, 200, "{range}");
        assert_eq!(r.body, data);
    }
    for range in ["bytes=100000-", "bytes=-0", "bytes=200000-300000", "bytes=18446744073709551615-"] {
        let r = srv.req("GET", "/data.bin", &[("Range", range)]);
        assert_eq!(r.status, 416, "{range}");
        assert_eq!(r.header("content-range"), Some("bytes */100000"));
        assert_eq!(r.body.len() as u64, r.content_length().unwrap());
    }
    let r = srv.req("GET", "/empty.txt", &[("Range", "bytes=0-")]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */0"));
    // Range on two field lines combines into no valid range set: ignored.
    let r = srv.req("GET", "/data.bin", &[("Range", "bytes=0-9"), ("Range", "bytes=20-29")]);
    assert_eq!((r.status, r.body.len()), (200, data.len()));
    // HEAD ignores Range (range handling is defined for GET only).
    let r = srv.req("HEAD", "/data.bin", &[("Range", "bytes=0-9")]);
    assert_eq!((r.status, r.content_length()), (200, Some(100_000)));
}

#[test]
fn multiple_ranges_come_back_as_multipart_with_exact_length() {
    let (s, data) = site();
    let srv = Server::start(&s.path);
    let r = srv.req("GET", "/data.bin", &[("Range", "bytes=90000-90009,0-9,500-599")]);
    assert_eq!(r.status, 206);
    assert!(r.header("content-range").is_none(), "no top-level Content-Range on multipart");
    let ct = r.header("content-type").unwrap();
    let boundary = ct.strip_prefix("multipart/byteranges; boundary=").unwrap();
    assert_eq!(r.content_length(), Some(r.body.len() as u64));
    // Parse the parts back.
    let delimiter = format!("\r\n--{boundary}");
    let text = r.body.clone();
    let mut parts = Vec::new();
    let mut rest = &text[..];
    loop {
        assert!(rest.starts_with(delimiter.as_bytes()));
        rest = &rest[delimiter.len()..];
        if rest == b"--\r\n" {
            break;
        }
        let end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&rest[..end]).to_string();
        let cr = head.lines().find_map(|l| l.strip_prefix("Content-Range: bytes ")).unwrap().to_owned();
        assert!(head.contains("Content-Type: application/octet-stream"));
        let (span, total) = cr.split_once('/').unwrap();
        assert_eq!(total, "100000");
        let (a, b) = span.split_once('-').unwrap();
        let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
        let body = &rest[end + 4..end + 4 + (b - a + 1)];
        assert_eq!(body, &data[a..=b]);
        parts.push((a, b));
        rest = &rest[end + 4 + (b - a + 1)..];
    }
    assert_eq!(parts, vec![(90000, 90009), (0, 9), (500, 599)], "client order kept");
}

#[test]
fn too_many_ranges_are_answered_whole() {
    let (s, data) = site();
    let srv = Server::start(&s.path);
    let many: Vec<String> = (0..65).map(|i| format!("{}-{}", i * 100, i * 100)).collect();
    let r = srv.req("GET", "/data.bin", &[("Range", &format!("bytes={}", many.join(",")))]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
}

#[test]
fn preconditions_follow_rfc_9110_order_over_the_wire() {
    let (s, data) = site();
    let srv = Server::start(&s.path);
    let first = srv.get("/data.bin");
    let etag = first.header("etag").unwrap().to_owned();
    let lm = first.header("last-modified").unwrap().to_owned();
    let weak = format!("W/{etag}");
    let past = "Sat, 01 Jan 2000 00:00:00 GMT";
    let future = "Fri, 01 Jan 2100 00:00:00 GMT";
    let cases: Vec<(Vec<(&str, &str)>, u16)> = vec![
        (vec![("If-None-Match", &etag)], 304),
        (vec![("If-None-Match", &weak)], 304),
        (vec![("If-None-Match", "\"other\"")], 200),
        (vec![("If-None-Match", "*")], 304),
        (vec![("If-Modified-Since", &lm)], 304),
        (vec![("If-Modified-Since", past)], 200),
        (vec![("If-Modified-Since", "garbage")], 200),
        (vec![("If-None-Match", "\"other\""), ("If-Modified-Since", future)], 200),
        (vec![("If-Match", &etag)], 200),
        (vec![("If-Match", &weak)], 412),
        (vec![("If-Match", "\"other\"")], 412),
        (vec![("If-Match", "*")], 200),
        (vec![("If-Unmodified-Since", past)], 412),
        (vec![("If-Unmodified-Since", future)], 200),
        (vec![("If-Unmodified-Since", "foo")], 200),
        (vec![("If-Match", &etag), ("If-Unmodified-Since", past)], 200),
        (vec![("If-Match", "\"x\""), ("If-None-Match", &etag)], 412),
    ];
    for (headers, status) in cases {
        let r = srv.req("GET", "/data.bin", &headers);
        assert_eq!(r.status, status, "{headers:?}");
        if status == 304 {
            assert!(r.body.is_empty());
            assert_eq!(r.header("etag"), Some(etag.as_str()));
            assert_eq!(r.header("last-modified"), Some(lm.as_str()));
        }
        if status == 200 {
            assert_eq!(r.body, data);
        }
    }
}

#[test]
fn if_range_honours_only_strong_current_validators() {
    let (s, data) = site();
    let path = s.join("data.bin");
    // An mtime well in the past makes Last-Modified a strong validator.
    run("touch", &["-d", "2020-01-01 00:00:00", path.to_str().unwrap()]);
    let srv = Server::start(&s.path);
    let first = srv.get("/data.bin");
    let etag = first.header("etag").unwrap().to_owned();
    let lm = first.header("last-modified").unwrap().to_owned();
    let weak = format!("W/{etag}");
    let cases: Vec<(&str, u16)> = vec![
        (&etag, 206),
        (&lm, 206),
        (&weak, 200),
        ("\"stale\"", 200),
        ("Wed, 01 Jan 2020 00:00:01 GMT", 200),
        ("not a validator", 200),
    ];
    for (if_range, status) in cases {
        let r = srv.req("GET", "/data.bin", &[("Range", "bytes=10-19"), ("If-Range", if_range)]);
        assert_eq!(r.status, status, "If-Range: {if_range}");
        let expect: &[u8] = if status == 206 { &data[10..20] } else { &data };
        assert_eq!(r.body, expect);
    }
}

#[test]
fn cache_control_is_configurable_and_repeated_on_304() {
    let (s, _) = site();
    let srv = Launch::new(&s.path).args(&["--cache-control", "public, max-age=60"]).start();
    let r = srv.get("/hello.txt");
    assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
    let etag = r.header("etag").unwrap().to_owned();
    let r = srv.req("GET", "/hello.txt", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
}

#[test]
fn directories_redirect_and_serve_their_index() {
    let (s, _) = site();
    let srv = Server::start(&s.path);
    let r = srv.get("/dir");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/dir/"));
    let r = srv.get("/dir?x=1&y=2");
    assert_eq!(r.header("location"), Some("/dir/?x=1&y=2"));
    let r = srv.get("//dir");
    assert_eq!(r.header("location"), Some("/dir/"), "never a protocol-relative URL");
    let r = srv.get("/dir/");
    assert_eq!((r.status, &r.body[..]), (200, &b"<h1>index</h1>"[..]));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let off = Launch::new(&s.path).arg("--listing=false").start();
    assert_eq!(srv.get("/dir/noindex/").status, 200, "a directory without an index is listed");
    assert_eq!(off.get("/dir/noindex/").status, 404, "or not");
    assert_eq!(srv.get("/hello.txt/").status, 404);
    assert_eq!(off.get("/").status, 404, "no index.html at the root, and no listing");
    let r = srv.get("/");
    assert_eq!(r.status, 200, "the root's listing");
    assert!(String::from_utf8_lossy(&r.body).contains("<table id=\"listing\""));
    // The cached listing gives way to an index created after it.
    s.write("index.html", b"root index");
    assert_eq!(srv.get("/").body, b"root index");
    assert_eq!(off.get("/").body, b"root index");
}

#[test]
fn query_strings_never_change_the_file() {
    let (s, _) = site();
    let srv = Server::start(&s.path);
    let r = srv.get("/hello.txt?../../etc/passwd&x=%00");
    assert_eq!((r.status, &r.body[..]), (200, &b"hello world\n"[..]));
    assert_eq!(srv.get("/space%20name.txt").body, b"spaced");
}

#[test]
fn http_1_0_and_missing_or_duplicate_host() {
    let (s, _) = site();
    let srv = Server::start(&s.path);
    let raw = srv.raw(b"GET /hello.txt HTTP/1.0\r\n\r\n");
    let r = Resp::parse(&raw, false);
    assert_eq!((r.status, &r.body[..]), (200, &b"hello world\n"[..]));
    assert!(
        String::from_utf8_lossy(&raw).starts_with("HTTP/1.0 200")
            || String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200")
    );
    let r = Resp::parse(&srv.raw(b"GET /hello.txt HTTP/1.1\r\nConnection: close\r\n\r\n"), false);
    assert_eq!(r.status, 400, "HTTP/1.1 without Host");
    let r = Resp::parse(
        &srv.raw(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n"),
        false,
    );
    assert_eq!(r.status, 400, "two Host headers");
}

#[test]
fn keep_alive_and_pipelining_answer_in_order() {
    let (s, data) = site();
    let srv = Server::start(&s.path);
    let req = b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /data.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\n\r\nHEAD /data.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /missing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let raw = srv.raw(req);
    let (r1, rest) = Resp::parse_one(&raw, false);
    let (r2, rest) = Resp::parse_one(rest, false);
    let (r3, rest) = Resp::parse_one(rest, true);
    let (r4, rest) = Resp::parse_one(rest, false);
    assert_eq!((r1.status, &r1.body[..]), (200, &b"hello world\n"[..]));
    assert_eq!((r2.status, &r2.body[..]), (206, &data[..10]));
    assert_eq!((r3.status, r3.body.len()), (200, 0));
    assert_eq!(r4.status, 404);
    assert!(rest.is_empty());
}

#[test]
fn h2c_prior_knowledge_serves_files_and_ranges() {
    let (s, data) = site();
    let srv = Server::start(&s.path);
    let out_path = s.join("h2.out");
    let out = run(
        "curl",
        &[
            "-sS",
            "--http2-prior-knowledge",
            "-o",
            out_path.to_str().unwrap(),
            "-w",
            "%{http_version} %{http_code}",
            &srv.url("/data.bin"),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");
    assert_eq!(std::fs::read(&out_path).unwrap(), data);
    let out = run("curl", &["-sS", "--http2-prior-knowledge", "-r", "5-14", &srv.url("/data.bin")]);
    assert_eq!(out.stdout, &data[5..15]);
}

#[test]
fn any_range_request_returns_exactly_the_file_slices() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let s = Scratch::new("prop206");
    let small = pattern(5_000, 21);
    let large = pattern(300_000, 22);
    s.write("small.bin", &small);
    s.write("large.bin", &large);
    let srv = Server::start(&s.path);
    let spec = prop_oneof![
        (0u64..400_000, 0u64..400_000).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        (0u64..400_000).prop_map(|a| format!("{a}-")),
        (1u64..400_000).prop_map(|n| format!("-{n}")),
    ];
    let strategy = (proptest::collection::vec(spec, 1..4), any::<bool>());
    let mut runner = TestRunner::new(Config { cases: 150, failure_persistence: None, ..Config::default() });
    runner
        .run(&strategy, |(specs, use_large)| {
            let (path, data) = if use_large { ("/large.bin", &large) } else { ("/small.bin", &small) };
            let header = format!("bytes={}", specs.join(","));
            let r = srv.req("GET", path, &[("Range", &header)]);
            prop_assert_eq!(r.content_length(), Some(r.body.len() as u64));
            match r.status {
                200 => prop_assert_eq!(&r.body, data),
                416 => prop_assert_eq!(
                    r.header("content-range").unwrap().to_owned(),
                    format!("bytes */{}", data.len())
                ),
                206 => {
                    if let Some(cr) = r.header("content-range") {
                        let span = cr.strip_prefix("bytes ").unwrap().split('/').next().unwrap();
                        let (a, b) = span.split_once('-').unwrap();
                        let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
                        prop_assert_eq!(&r.body[..], &data[a..=b]);
                    } else {
                        let ct = r.header("content-type").unwrap();
                        let boundary = ct.split("boundary=").nth(1).unwrap();
                        let body = String::from_utf8_lossy(&r.body).into_owned();
                        let close = format!("--{boundary}--\r\n");
                        prop_assert!(body.ends_with(&close));
                        // Every part's bytes equal the slice its Content-Range names.
                        let mut rest = &r.body[..];
                        let delim = format!("\r\n--{boundary}\r\n");
                        while let Some(pos) = rest.windows(delim.len()).position(|w| w == delim.as_bytes()) {
                            rest = &rest[pos + delim.len()..];
                            let end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                            let head = String::from_utf8_lossy(&rest[..end]).into_owned();
                            let cr =
                                head.lines().find_map(|l| l.strip_prefix("Content-Range: bytes ")).unwrap();
                            let (a, b) = cr.split('/').next().unwrap().split_once('-').unwrap();
                            let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
                            prop_assert_eq!(&rest[end + 4..end + 4 + b - a + 1], &data[a..=b]);
                            rest = &rest[end + 4 + b - a + 1..];
                        }
                    }
                }
                other => prop_assert!(false, "status {}", other),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn oversized_request_heads_get_431() {
    let (s, _) = site();
    let srv = Server::start(&s.path);
    let big = format!(
        "GET /hello.txt HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(70_000)
    );
    assert_eq!(Resp::parse(&srv.raw(big.as_bytes()), false).status, 431);
    let fine = format!(
        "GET /hello.txt HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(30_000)
    );
    assert_eq!(Resp::parse(&srv.raw(fine.as_bytes()), false).status, 200);
}

#[test]
fn framing_edges_get_the_status_rfc_9112_asks_for() {
    let (s, _) = site();
    let srv = Server::start(&s.path);
    let raw = |head: &str| Resp::parse(&srv.raw(head.as_bytes()), true);
    // An invalid Host: 400 (RFC 9112 §3.2).
    for host in ["a b/c", "x@y", "[::1", "h:8o"] {
        let r = raw(&format!("GET /hello.txt HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"));
        assert_eq!(r.status, 400, "Host: {host}");
    }
    for host in ["example.com:8080", "[::1]:80", "127.0.0.1", ""] {
        let r = raw(&format!("GET /hello.txt HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"));
        assert_eq!(r.status, 200, "Host: {host}");
    }
    // A transfer coding other than chunked: 501, and the connection closes.
    let r =
        raw("GET /hello.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(r.status, 501);
    assert_eq!(r.header("connection"), Some("close"));
    // A request line over 8 KiB: 414, whether it fits hyper's buffer or not.
    for len in [10_000, 100_000] {
        let head = format!("GET /{} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "a".repeat(len));
        let mut c = std::net::TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let _ = c.write_all(head.as_bytes());
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        let r = Resp::parse(&out, false);
        assert_eq!((r.status, &r.body[..]), (414, &b"414 URI too long\n"[..]), "{len}-byte target");
    }
    // Two Range lines are not one valid Range: the whole file.
    let r = srv.req("GET", "/hello.txt", &[("Range", "bytes=0-1"), ("Range", "bytes=2-3")]);
    assert_eq!(r.status, 200);
    // Requests refused before the handler still leave an access line.
    let _ = srv.raw(b"GET /x HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n");
    assert!(
        eventually(std::time::Duration::from_secs(3), || {
            let log = srv.log();
            log.contains("status=414") && log.contains("status=400 bytes=0 complete=false ending=\"refused\"")
        }),
        "{}",
        srv.log()
    );
}
