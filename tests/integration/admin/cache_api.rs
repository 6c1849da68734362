//! The cache API: prewarm (on request and at start) against the kernel's
//! residency, evict against `/proc/PID/maps` while a response is in flight,
//! pins against a budget squeeze, and `/cache`'s sorting, limits and
//! refusals.

use super::*;
use std::time::Duration;

fn fully_resident(e: &serde_json::Value) -> bool {
    let pages = e["pages"].as_u64().unwrap();
    pages > 0
        && e["resident_pages"].as_u64() == Some(pages)
        && e["strip"].as_str().is_some_and(|s| !s.is_empty() && s.chars().all(|c| c == '#'))
}

#[test]
fn prewarm_makes_a_dropped_file_fully_resident_again() {
    let s = Scratch::new("adm-prewarm");
    let path = write_cold(&s, "big.bin", &pattern(20_000_000, 4));
    let srv = Launch::new(&s.path).args(&["--admin-listen", "127.0.0.1:0"]).start();
    // One byte: the file is mapped, but mapserve touches almost none of it
    // (a whole GET would fault every page into its page tables, and mapped
    // pages cannot be dropped).
    let r = srv.req("GET", "/big.bin", &[("Range", "bytes=0-0")]);
    assert_eq!((r.status, r.body.len()), (206, 1));
    let e = entry_now(&srv, "/big.bin").expect("mapped by the request");
    assert_eq!(e["kind"], "mapping");
    let pages = e["pages"].as_u64().unwrap();
    assert_eq!(pages * rustix::param::page_size() as u64, pages_of(20_000_000));
    let cold = || {
        drop_pages(&path);
        entry_now(&srv, "/big.bin").unwrap()["resident_pages"].as_u64().unwrap() < pages
    };
    if !eventually(Duration::from_secs(3), cold) {
        let _ = std::fs::write("/proc/sys/vm/drop_caches", "1");
        if !cold() {
            return skip("prewarm_makes_a_dropped_file_fully_resident_again", "the kernel keeps the pages");
        }
    }
    let e = entry_now(&srv, "/big.bin").unwrap();
    assert!(!fully_resident(&e) && e["strip"].as_str().unwrap().contains('.'), "{e}");

    let done = admin_post(&srv, "/cache/prewarm?path=/big.bin");
    assert_eq!(done["loaded"], serde_json::json!([{"path": "/big.bin", "bytes": 20_000_000}]), "{done}");
    assert_eq!(done["did_not_fit"], serde_json::json!([]));
    assert_eq!(done["failed"], serde_json::json!([]));
    let e = entry_now(&srv, "/big.bin").unwrap();
    assert!(fully_resident(&e), "after prewarm: {e}");
    assert_eq!(e["resident_bytes"], e["mapped"]);
    assert_eq!(e["strip"].as_str().unwrap().len(), 64);
}

#[test]
fn prewarm_at_start_loads_the_matching_files_fully_resident() {
    let s = Scratch::new("adm-prewarm-start");
    let a = write_cold(&s, "a.bin", &pattern(3_000_000, 1));
    write_cold(&s, "b.bin", &pattern(1_000_000, 2));
    write_cold(&s, "sub/c.bin", &pattern(500_000, 3));
    write_cold(&s, "d.txt", &pattern(200_000, 4));
    if works("fincore", &["--version"]) {
        let res = run("fincore", &["--bytes", "--noheadings", "--output", "RES", a.to_str().unwrap()]);
        let res: u64 = String::from_utf8_lossy(&res.stdout).trim().parse().unwrap_or(u64::MAX);
        assert!(res < 3_000_000, "a.bin must start cold ({res} bytes in the page cache)");
    }
    let srv = Launch::new(&s.path).args(&["--admin-listen", "127.0.0.1:0", "--prewarm", "*.bin"]).start();
    assert!(eventually(Duration::from_secs(15), || srv.log().contains("prewarm: done")), "{}", srv.log());
    let done = srv.log().lines().find(|l| l.contains("prewarm: done")).unwrap().to_owned();
    assert!(done.contains("loaded=2") && done.contains("failed=0"), "{done}");
    let listing = cache(&srv, "");
    let mut paths: Vec<&str> =
        listing["entries"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    paths.sort();
    // `*` does not cross `/`; d.txt does not match.
    assert_eq!(paths, ["/a.bin", "/b.bin"], "{listing}");
    for p in ["/a.bin", "/b.bin"] {
        let e = entry(&listing, p).unwrap();
        assert!(fully_resident(e), "{p} after --prewarm: {e}");
    }
}

#[test]
fn an_evicted_mapping_lives_until_its_last_response_ends() {
    let s = Scratch::new("adm-evict");
    // Larger than loopback's socket buffers (about 4 MiB) can swallow, so
    // the server still has bytes to send while curl is stalled.
    let big = s.write("big.bin", &pattern(16_000_000, 5));
    let srv = Launch::new(&s.path).args(&["--admin-listen", "127.0.0.1:0"]).start();
    let mut curl = SlowCurl::start(&srv.url("/big.bin"));
    await_in_flight(&srv, "/big.bin");
    assert!(maps_file(srv.pid(), &big));
    let unmaps = |t: &str| {
        series(t, "mapserve_unmaps_total{path=\"inline\"}").unwrap()
            + series(t, "mapserve_unmaps_total{path=\"reaper\"}").unwrap()
    };
    let unmaps_before = unmaps(&scrape(&srv));

    let out = admin_post(&srv, "/cache/evict?path=/big.bin");
    assert_eq!(out["evicted"], serde_json::json!(["/big.bin"]));
    let listing = cache(&srv, "");
    assert!(entry(&listing, "/big.bin").is_none(), "evicted but listed: {listing}");
    assert_eq!(listing["budget"]["entries"], 0);
    // The response in flight keeps its mapping.
    let unmapped = eventually(Duration::from_millis(700), || !maps_file(srv.pid(), &big));
    assert!(!unmapped, "unmapped under a response in flight");
    assert!(curl.running(), "curl ended early: the test proves nothing");
    assert!(series(&scrape(&srv), "mapserve_mapped_bytes").unwrap() as u64 >= pages_of(16_000_000));

    curl.kill();
    assert!(
        eventually(Duration::from_secs(10), || !maps_file(srv.pid(), &big)),
        "still mapped after the last response ended: {}",
        srv.log()
    );
    let after = scrape(&srv);
    assert_eq!(series(&after, "mapserve_mapped_bytes"), Some(0.0));
    assert_eq!(unmaps(&after), unmaps_before + 1.0);
    // The next request maps it afresh.
    assert_eq!(srv.get("/big.bin").body.len(), 16_000_000);
    assert!(entry_now(&srv, "/big.bin").is_some());
}

#[test]
fn a_pinned_entry_survives_a_squeeze_that_evicts_the_rest() {
    let s = Scratch::new("adm-pin");
    for (i, name) in ["p1.bin", "p2.bin"].iter().enumerate() {
        s.write(name, &pattern(3_000_000, i as u64));
    }
    let others: Vec<String> = (1..=6).map(|i| format!("/f{i}.bin")).collect();
    for (i, p) in others.iter().enumerate() {
        s.write(&p[1..], &pattern(2_000_000, 10 + i as u64));
    }
    let budget = ["--cache-max-bytes", "8MiB", "--small-file-max", "16KiB", "--window-size", "4MiB"];
    let srv = Launch::new(&s.path)
        .args(&["--admin-listen", "127.0.0.1:0", "--cache-pin-max", "50%"])
        .args(&budget)
        .start();
    let squeeze = || {
        for p in &others {
            assert_eq!(srv.get(p).body.len(), 2_000_000);
        }
    };
    let pinned = |p: &str| entry_now(&srv, p).map(|e| e["pinned"] == true);
    let evictions = || cache(&srv, "")["counters"]["evictions"].as_u64().unwrap();

    let out = admin_post(&srv, "/cache/pin?path=/p1.bin");
    assert_eq!((&out["pinned"], &out["refused"]), (&serde_json::json!(["/p1.bin"]), &serde_json::json!([])));
    let budget = cache(&srv, "")["budget"].clone();
    assert_eq!(budget["pin_max"], 4 << 20, "{budget}");
    assert!(budget["pinned"].as_u64().unwrap() >= 3_000_000, "{budget}");
    let before = evictions();
    for _ in 0..3 {
        squeeze();
        assert_eq!(pinned("/p1.bin"), Some(true), "the pinned entry was evicted");
    }
    assert!(evictions() > before, "the squeeze evicted nothing");
    let metric = series(&scrape(&srv), "mapserve_cache_evictions_total").unwrap();
    assert!(metric as u64 > before);
    let listing = cache(&srv, "");
    let left = others.iter().filter(|p| entry(&listing, p).is_some()).count();
    assert!(left <= 2, "8 MiB minus the pin holds two 2 MB files, not {left}: {listing}");

    // A second 3 MB pin would take pins past 50% of 8 MiB.
    let out = admin_post(&srv, "/cache/pin?path=/p2.bin");
    assert_eq!(out["pinned"], serde_json::json!([]), "{out}");
    assert_eq!(out["refused"][0]["path"], "/p2.bin", "{out}");
    assert!(out["refused"][0]["reason"].as_str().unwrap().contains("cache-pin-max"), "{out}");
    assert_ne!(pinned("/p2.bin"), Some(true));

    let out = admin_post(&srv, "/cache/unpin?path=/p1.bin");
    assert_eq!(out["unpinned"], serde_json::json!(["/p1.bin"]));
    assert_eq!(pinned("/p1.bin"), Some(false));
    let mut evicted = false;
    for _ in 0..3 {
        squeeze();
        evicted = pinned("/p1.bin").is_none();
        if evicted {
            break;
        }
    }
    assert!(evicted, "unpinned, it still survives every squeeze: {}", cache(&srv, ""));
}

#[test]
fn cache_listing_sorts_limits_and_refuses_bad_requests() {
    let s = Scratch::new("adm-sort");
    let sizes = [("a.bin", 200_000), ("b.bin", 1_000_000), ("c.bin", 500_000), ("small.txt", 1000)];
    for (i, (name, len)) in sizes.iter().enumerate() {
        s.write(name, &pattern(*len, i as u64));
    }
    let srv = Launch::new(&s.path).args(&["--admin-listen", "127.0.0.1:0"]).start();
    for (name, _) in sizes {
        assert_eq!(srv.get(&format!("/{name}")).status, 200);
    }
    for _ in 0..3 {
        assert_eq!(srv.get("/a.bin").status, 200);
    }
    let field = |v: &serde_json::Value, k: &str| -> Vec<serde_json::Value> {
        v["entries"].as_array().unwrap().iter().map(|e| e[k].clone()).collect()
    };
    let num = |v: &serde_json::Value, k: &str| -> Vec<f64> {
        field(v, k).iter().map(|x| x.as_f64().unwrap()).collect()
    };
    let descending = |xs: &[f64]| xs.windows(2).all(|w| w[0] >= w[1]);

    let by_path = cache(&srv, "?sort=path");
    assert_eq!(field(&by_path, "path"), ["/a.bin", "/b.bin", "/c.bin", "/small.txt"]);
    assert_eq!(field(&cache(&srv, ""), "path"), field(&by_path, "path"), "path is the default");
    let small = entry(&by_path, "/small.txt").unwrap();
    assert_eq!(
        (small["kind"].as_str(), small["mapped"].as_u64(), small["strip"].as_str()),
        (Some("copy"), Some(0), Some(""))
    );
    assert_eq!(entry(&by_path, "/b.bin").unwrap()["kind"], "mapping");
    let by_bytes = cache(&srv, "?sort=bytes");
    assert_eq!(field(&by_bytes, "path"), ["/b.bin", "/c.bin", "/a.bin", "/small.txt"]);
    let by_hits = cache(&srv, "?sort=hits");
    assert_eq!(field(&by_hits, "path")[0], "/a.bin");
    assert_eq!(num(&by_hits, "hits")[0], 3.0, "three lookups found it: {by_hits}");
    assert!(descending(&num(&by_hits, "hits")));
    assert!(descending(&num(&cache(&srv, "?sort=idle"), "idle_seconds")));
    assert!(descending(&num(&cache(&srv, "?sort=resident"), "resident_bytes")));
    assert!(descending(&num(&cache(&srv, "?sort=in_flight"), "in_flight")));
    assert_eq!(field(&cache(&srv, "?sort=bytes&limit=2"), "path"), ["/b.bin", "/c.bin"]);
    assert_eq!(cache(&srv, "?limit=0")["entries"], serde_json::json!([]));
    assert_eq!(cache(&srv, "?limit=0")["budget"]["entries"], 4, "limit trims the list, not the budget");

    let admin = srv.admin();
    for q in ["?sort=size", "?sort=BYTES", "?limit=x", "?limit=-1", "?sort=bytes&limit=1.5"] {
        assert_eq!(admin_get(&srv, &format!("/cache{q}")).status, 400, "/cache{q}");
    }
    for q in [
        "/cache/evict?path=/../x",
        "/cache/evict?path=/.env",
        "/cache/pin?path=/a/../../x",
        "/cache/evict?path=a.bin",
        "/cache/evict?path=%2F..%2Fx",
        "/cache/evict",
        "/cache/evict?path=/a.bin&glob=*",
        "/cache/pin?glob=a[",
        "/cache/prewarm?all=1",
    ] {
        let r = call(&admin, "POST", q, &[]);
        assert_eq!(r.status, 400, "POST {q}: {}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(cache(&srv, "")["budget"]["entries"], 4, "a refused action changed nothing");
    for (method, path, allow) in [
        ("GET", "/cache/evict?all=1", "POST"),
        ("GET", "/cache/pin?path=/a.bin", "POST"),
        ("PUT", "/cache/prewarm?path=/a.bin", "POST"),
        ("POST", "/cache", "GET, HEAD"),
        ("POST", "/metrics", "GET, HEAD"),
    ] {
        let r = call(&admin, method, path, &[]);
        assert_eq!((r.status, r.header("allow")), (405, Some(allow)), "{method} {path}");
    }
    assert_eq!(cache(&srv, "")["budget"]["entries"], 4, "a GET on evict evicted");
    assert_eq!(admin_get(&srv, "/nope").status, 404);
    assert_eq!(admin_get(&srv, "/cache/").status, 404);

    // Well-formed actions: a missing file fails with a reason; a glob evicts.
    let out = admin_post(&srv, "/cache/prewarm?path=/missing.bin");
    assert_eq!(out["failed"][0]["path"], "/missing.bin", "{out}");
    assert!(!out["failed"][0]["reason"].as_str().unwrap().is_empty());
    let out = admin_post(&srv, "/cache/evict?glob=*.bin");
    assert_eq!(out["evicted"], serde_json::json!(["/a.bin", "/b.bin", "/c.bin"]));
    assert_eq!(field(&cache(&srv, ""), "path"), ["/small.txt"]);
    let out = admin_post(&srv, "/cache/evict?all=1");
    assert_eq!(out["evicted"], serde_json::json!(["/small.txt"]));
    assert_eq!(cache(&srv, "")["entries"], serde_json::json!([]));
}
