//! `/metrics`: counters that move exactly with the traffic, an exposition
//! promtool accepts, and mapped bytes that match the kernel's account.

use super::*;
use std::time::Duration;

const OK_GET: &str = "mapserve_http_requests_total{code=\"200\",method=\"GET\"}";
const MISSING_GET: &str = "mapserve_http_requests_total{code=\"404\",method=\"GET\"}";

#[test]
fn one_request_moves_the_request_counter_by_exactly_one() {
    let s = Scratch::new("adm-count");
    s.write("a.txt", b"hello");
    let srv = Launch::new(&s.path).args(&["--admin-listen", "127.0.0.1:0"]).start();
    let ok = |t: &str| series(t, OK_GET).unwrap_or(0.0);
    let missing = |t: &str| series(t, MISSING_GET).unwrap_or(0.0);
    let requests = || cache(&srv, "")["counters"]["requests"].as_u64().unwrap();
    let before = scrape(&srv);
    let requests_before = requests();
    // Scrapes and /cache reads are admin traffic: they count nothing.
    assert_eq!(ok(&scrape(&srv)), ok(&before), "a scrape counted itself");
    assert_eq!(requests(), requests_before, "/cache reads counted as requests");

    assert_eq!(srv.get("/a.txt").status, 200);
    let rose = eventually(Duration::from_secs(5), || ok(&scrape(&srv)) > ok(&before));
    assert!(rose, "the GET was not counted:\n{}", scrape(&srv));
    // Settled (scraped repeatedly meanwhile): exactly one more.
    let counts = || {
        let t = scrape(&srv);
        (ok(&t), missing(&t))
    };
    let after = settled(Duration::from_secs(5), counts);
    assert_eq!(after, (ok(&before) + 1.0, missing(&before)), "200 GET moved by other than one");

    assert_eq!(srv.get("/nope.txt").status, 404);
    assert!(eventually(Duration::from_secs(5), || missing(&scrape(&srv)) > missing(&before)));
    let last = settled(Duration::from_secs(5), counts);
    assert_eq!(last.1, missing(&before) + 1.0, "404 GET moved by other than one");
    assert_eq!(last.0, ok(&before) + 1.0, "a 404 moved the 200 series");
    assert_eq!(requests(), requests_before + 2, "/cache counters.requests");
}

#[test]
fn promtool_accepts_the_metrics_after_mixed_traffic() {
    if !works("promtool", &["--version"]) {
        return skip("promtool_accepts_the_metrics_after_mixed_traffic", "no promtool (Debian: prometheus)");
    }
    let s = Scratch::new("adm-promtool");
    s.write("a.bin", &pattern(200_000, 1));
    s.write("app.js", "function f() { return 1; }\n".repeat(200).as_bytes());
    s.write("dir/x.txt", b"x");
    s.write("dir/y.txt", b"y");
    let srv = Launch::new(&s.path).args(&["--admin-listen", "127.0.0.1:0"]).start();

    let full = srv.get("/a.bin");
    assert_eq!(full.status, 200);
    assert_eq!(srv.req("GET", "/a.bin", &[("Range", "bytes=0-99")]).status, 206);
    let etag = full.header("etag").unwrap().to_owned();
    assert_eq!(srv.req("GET", "/a.bin", &[("If-None-Match", &etag)]).status, 304);
    assert_eq!(srv.get("/missing.bin").status, 404);
    assert_eq!(srv.req("HEAD", "/a.bin", &[]).status, 200);
    let h2 = run(
        "curl",
        &["-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version}", &srv.url("/a.bin")],
    );
    assert_eq!(String::from_utf8_lossy(&h2.stdout), "2", "an HTTP/2 request");
    let listing = srv.req("GET", "/dir/", &[("Accept", "text/html")]);
    assert_eq!(listing.status, 200);
    assert!(String::from_utf8_lossy(&listing.body).contains("x.txt"), "a listing");
    let gz = srv.req("GET", "/app.js", &[("Accept-Encoding", "gzip")]);
    assert_eq!((gz.status, gz.header("content-encoding")), (200, Some("gzip")));

    let text = settled(Duration::from_secs(5), || {
        let t = scrape(&srv);
        // Only the values matter for settling; the uptime and CPU lines move.
        t.lines().filter(|l| l.starts_with("mapserve_http_requests_total")).collect::<Vec<_>>().join("\n")
    });
    for code in ["206", "304", "404"] {
        assert!(text.contains(&format!("code=\"{code}\",method=\"GET\"}} 1")), "no {code}: {text}");
    }
    assert!(text.contains("code=\"200\",method=\"HEAD\"} 1"), "{text}");
    let body = scrape(&srv);
    assert!(series(&body, "mapserve_compressions_total").unwrap() >= 1.0);
    assert!(series(&body, "mapserve_cache_entries{kind=\"listing\"}").unwrap() >= 1.0);
    assert!(series(&body, "mapserve_cache_entries{kind=\"compressed\"}").unwrap() >= 1.0);

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{body}");

    // A scraper that asks for OpenMetrics gets it.
    let om =
        call(&srv.admin(), "GET", "/metrics", &[("Accept", "application/openmetrics-text; version=1.0.0")]);
    assert_eq!(om.status, 200);
    assert!(om.header("content-type").unwrap().starts_with("application/openmetrics-text"));
    assert!(om.body.ends_with(b"# EOF\n"), "OpenMetrics ends with # EOF");
    let classic = admin_get(&srv, "/metrics");
    assert!(classic.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
}

#[test]
fn mapped_bytes_equal_what_proc_maps_shows() {
    let s = Scratch::new("adm-mapped");
    let sizes: [(&str, usize); 3] =
        [("one.bin", 100 * 1024 + 1), ("three.bin", 3_000_000), ("five.bin", 5_000_000)];
    for (i, (name, len)) in sizes.iter().enumerate() {
        s.write(name, &pattern(*len, i as u64));
    }
    s.write("small.txt", &pattern(1000, 9));
    let srv = Launch::new(&s.path).args(&["--admin-listen", "127.0.0.1:0"]).start();
    assert_eq!(maps_bytes_under(srv.pid(), &s.path), 0, "nothing mapped before any request");
    for (name, len) in sizes {
        assert_eq!(srv.get(&format!("/{name}")).body.len(), len);
    }
    assert_eq!(srv.get("/small.txt").status, 200);
    let idle = || {
        let c = cache(&srv, "");
        c["entries"].as_array().unwrap().iter().all(|e| e["in_flight"] == 0)
    };
    assert!(eventually(Duration::from_secs(10), idle), "responses still in flight: {}", cache(&srv, ""));

    let want: u64 = sizes.iter().map(|(_, len)| pages_of(*len as u64)).sum();
    let maps = maps_bytes_under(srv.pid(), &s.path);
    let metric = series(&scrape(&srv), "mapserve_mapped_bytes").unwrap() as u64;
    let listing = cache(&srv, "");
    let entries_mapped: u64 =
        listing["entries"].as_array().unwrap().iter().map(|e| e["mapped"].as_u64().unwrap()).sum();
    assert_eq!(maps, want, "/proc/PID/maps: the three files, page-rounded");
    assert_eq!(metric, maps, "mapserve_mapped_bytes vs /proc/PID/maps");
    assert_eq!(listing["mapped_bytes"].as_u64().unwrap(), maps, "/cache mapped_bytes vs /proc/PID/maps");
    assert_eq!(entries_mapped, maps, "the entries' mapped bytes vs /proc/PID/maps");
    let small = entry(&listing, "/small.txt").unwrap();
    assert_eq!((small["kind"].as_str(), small["mapped"].as_u64()), (Some("copy"), Some(0)), "{small}");
}
