//! What browsers (and people sharing a directory) get: listings as HTML
//! and JSON, sorted on the server, cached yet never stale; downloads that
//! keep their names; HTML error pages; `--not-found-page` and `--fallback`;
//! `wget -r` mirroring through the listing.

use crate::common::*;
use std::os::unix::fs::symlink;
use std::time::Duration;

/// The names a listing page links, in order (the text of each row's name).
fn html_rows(body: &[u8]) -> Vec<String> {
    let html = String::from_utf8_lossy(body);
    html.split("<td class=\"name\"><a href=\"")
        .skip(1)
        .filter_map(|row| {
            let (href, rest) = row.split_once('"')?;
            let name = rest.split_once("<span>")?.1.split_once("</span>")?.0;
            (href != "../").then(|| name.to_owned())
        })
        .collect()
}

fn json(srv: &Server, path: &str) -> serde_json::Value {
    let r = srv.req("GET", path, &[("Accept", "application/json")]);
    assert_eq!(r.status, 200, "{path}: {}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_slice(&r.body).unwrap()
}

fn json_names(v: &serde_json::Value) -> Vec<String> {
    v["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_owned()).collect()
}

/// Parses `body` with html5lib in strict mode (any HTML5 parse error fails).
fn assert_parses_as_html5(body: &[u8], what: &str) {
    let out =
        python("import html5lib, sys; html5lib.HTMLParser(strict=True).parse(sys.stdin.buffer.read())", body);
    assert!(out.status.success(), "{what} is not clean HTML5: {}", String::from_utf8_lossy(&out.stderr));
}

fn set_mtime(path: &std::path::Path, secs: i64) {
    let out = run("touch", &["-h", "-d", &format!("@{secs}"), path.to_str().unwrap()]);
    assert!(out.status.success());
}

#[test]
fn the_listing_shows_exactly_what_a_click_serves() {
    let outside = Scratch::new("browse-outside");
    outside.write("secret.txt", b"TOP-SECRET");
    let s = Scratch::new("browse");
    s.write("b.txt", b"bee");
    s.write("a.txt", b"a");
    s.write("sub/inner.txt", b"inner");
    s.write(".env", b"HIDDEN");
    s.write("<img src=x onerror=alert(1)>.txt", b"xss");
    s.write("résumé 2026 ✓.txt", b"cv");
    s.write("back\\slash.txt", b"unreachable by any URL");
    symlink("a.txt", s.join("link_in")).unwrap();
    symlink("sub", s.join("dirlink_in")).unwrap();
    symlink(outside.join("secret.txt"), s.join("link_out")).unwrap();
    symlink("missing", s.join("dangling")).unwrap();
    assert!(run("mkfifo", &[s.join("fifo").to_str().unwrap()]).status.success());
    let _sock = std::os::unix::net::UnixListener::bind(s.join("sock")).unwrap();
    let srv = Server::start(&s.path);
    let r = srv.req("GET", "/", &[("Accept", "text/html")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    // Listings are compressed too: they vary with both.
    assert_eq!(r.header("vary"), Some("accept, accept-encoding"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'none'; script-src 'sha256-"), "{csp}");
    let names = html_rows(&r.body);
    assert_eq!(
        names,
        [
            "dirlink_in/",
            "sub/",
            "&lt;img src=x onerror=alert(1)&gt;.txt",
            "a.txt",
            "b.txt",
            "link_in",
            "résumé 2026 ✓.txt"
        ],
        "directories first, natural order; no dotfile, link out of ROOT, dangling link, FIFO, socket or unreachable name"
    );
    let body = String::from_utf8_lossy(&r.body);
    assert!(!body.contains("<img src=x"), "a name never becomes markup");
    assert_parses_as_html5(&r.body, "the listing");
    assert_parses_as_html5(&srv.req("GET", "/nope", &[("Accept", "text/html")]).body, "the 404 page");
    // Every link works: exactly the files a click serves.
    for href in body.split("<td class=\"name\"><a href=\"").skip(1).map(|r| r.split('"').next().unwrap()) {
        let status = srv.get(&format!("/{href}")).status;
        assert_eq!(status, 200, "/{href}");
    }
    // --hidden lists dotfiles; --follow-symlinks-outside-root lists links out.
    let all = Launch::new(&s.path).args(&["--hidden", "--follow-symlinks-outside-root"]).start();
    let names = json_names(&json(&all, "/"));
    assert!(names.contains(&".env".to_owned()) && names.contains(&"link_out".to_owned()), "{names:?}");
    assert!(!names.contains(&"dangling".to_owned()) && !names.contains(&"fifo".to_owned()));
    assert_eq!(all.get("/link_out").body, b"TOP-SECRET");
    // The breadcrumbs and the parent link of a subdirectory.
    let sub = String::from_utf8(srv.get("/sub/").body).unwrap();
    assert!(sub.contains("<a href=\"../\">root</a>") && sub.contains("href=\"../\""));
    assert!(sub.contains("<title>Index of /sub/</title>"));
    // Off: 404 as for any missing file.
    let off = Launch::new(&s.path).arg("--listing=false").start();
    assert_eq!(off.get("/").status, 404);
    assert_eq!(off.get("/sub/").status, 404);
}

#[test]
fn entries_that_cannot_be_inspected_are_listed_without_size() {
    let s = Scratch::new("browse-perm");
    s.write("shared/readable.txt", b"x");
    s.write("private/p.txt", b"y");
    s.write("closed/file.txt", b"z");
    set_mode(&s.join("private"), 0o711); // others may pass, not read
    set_mode(&s.join("private/p.txt"), 0o600);
    set_mode(&s.join("closed"), 0o700);
    symlink("../private/p.txt", s.join("shared/link")).unwrap();
    s.write("shared/mine-only.bin", &[7u8; 5000]);
    set_mode(&s.join("shared/mine-only.bin"), 0o600);
    let mut srv = Launch::new(&s.path).unprivileged().start();
    let r = srv.get("/shared/");
    assert_eq!(r.status, 200, "{}", srv.log());
    assert_eq!(html_rows(&r.body), ["link", "mine-only.bin", "readable.txt"]);
    assert!(String::from_utf8_lossy(&r.body).contains("<td class=\"size\"></td>"));
    let v = json(&srv, "/shared/");
    assert_eq!(v["entries"][0]["size"], serde_json::Value::Null, "the link's target cannot be read");
    assert_eq!(v["entries"][1]["size"], serde_json::Value::Null, "a file mapserve may not read: no size");
    assert_eq!(v["entries"][1]["modified"], serde_json::Value::Null);
    assert_eq!(srv.get("/shared/mine-only.bin").status, 403);
    assert_eq!(v["entries"][2]["size"], 1);
    assert_eq!(srv.get("/shared/link").status, 403, "and a click gets 403");
    let r = srv.req("GET", "/closed/", &[("Accept", "text/html")]);
    assert_eq!(r.status, 403);
    assert!(!String::from_utf8_lossy(&r.body).contains("closed"), "no path in an error page");
    assert!(srv.alive());
}

#[test]
fn json_and_every_sort_order_with_their_own_validators() {
    let s = Scratch::new("browse-sort");
    for (name, size, mtime) in [
        ("file10", 5, 1_700_000_300),
        ("File2", 30, 1_700_000_100),
        ("file1", 20, 1_700_000_200),
        ("Z", 1, 1_700_000_400),
    ] {
        let p = s.write(name, &vec![b'x'; size]);
        set_mtime(&p, mtime);
    }
    s.write("dir10/x", b"");
    s.write("dir9/x", b"");
    set_mtime(&s.join("dir10"), 1_600_000_000);
    set_mtime(&s.join("dir9"), 1_650_000_000);
    let srv = Server::start(&s.path);
    let cases = [
        ("", vec!["dir9", "dir10", "file1", "File2", "file10", "Z"]),
        ("?sort=name&order=desc", vec!["dir10", "dir9", "Z", "file10", "File2", "file1"]),
        ("?sort=size", vec!["dir9", "dir10", "Z", "file10", "file1", "File2"]),
        ("?sort=size&order=desc", vec!["dir10", "dir9", "File2", "file1", "file10", "Z"]),
        ("?sort=modified&order=asc", vec!["dir10", "dir9", "File2", "file1", "file10", "Z"]),
        ("?sort=modified&order=desc", vec!["dir9", "dir10", "Z", "file10", "file1", "File2"]),
    ];
    let mut etags = std::collections::HashSet::new();
    for (query, want) in &cases {
        let v = json(&srv, &format!("/{query}"));
        assert_eq!(json_names(&v), *want, "JSON {query}");
        assert_eq!(v["path"], "/");
        let same = srv.get(&format!("/{}{}format=json", query, if query.is_empty() { "?" } else { "&" }));
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&same.body).unwrap(), v, "?format=json");
        let html = srv.get(&format!("/{query}"));
        let names: Vec<String> =
            html_rows(&html.body).into_iter().map(|n| n.trim_end_matches('/').to_owned()).collect();
        assert_eq!(names, *want, "HTML {query}");
        for r in [&same, &html] {
            assert!(
                etags.insert(r.header("etag").unwrap().to_owned()),
                "every representation has its own ETag"
            );
            assert_eq!(r.content_length(), Some(r.body.len() as u64));
        }
    }
    let file1 = &json(&srv, "/")["entries"][2];
    assert_eq!(file1["type"], "file");
    assert_eq!(file1["size"], 20);
    assert_eq!(file1["modified"], "2023-11-14T22:16:40Z");
    assert_eq!(file1["href"], "file1", "relative to the listing's URL");
    assert_eq!(json(&srv, "/")["entries"][0]["type"], "dir");
    // Revalidation, HEAD, and Range ignored.
    let r = srv.get("/?sort=size");
    let etag = r.header("etag").unwrap().to_owned();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"));
    let lm = r.header("last-modified").unwrap().to_owned();
    let again = srv.req("GET", "/?sort=size", &[("If-None-Match", &etag)]);
    assert_eq!((again.status, again.body.len()), (304, 0));
    assert_eq!(again.header("vary"), Some("accept, accept-encoding"));
    assert_eq!(srv.req("GET", "/?sort=size", &[("If-Modified-Since", &lm)]).status, 304);
    let head = srv.req("HEAD", "/?sort=size", &[]);
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(head.header("etag"), Some(etag.as_str()));
    assert_eq!(head.content_length(), r.content_length());
    let ranged = srv.req("GET", "/?sort=size", &[("Range", "bytes=0-9")]);
    assert_eq!((ranged.status, ranged.body.len()), (200, r.body.len()), "Range is ignored on a listing");
    assert_eq!(ranged.header("accept-ranges"), None);
    // A change gives a new ETag.
    s.write("new", b"n");
    let changed = srv.get("/?sort=size");
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
    assert_eq!(srv.req("GET", "/?sort=size", &[("If-None-Match", &etag)]).status, 200);
}

#[test]
fn a_change_shows_in_the_very_next_listing() {
    for mode in ["inotify", "stat"] {
        let s = Scratch::new("browse-fresh");
        s.write("d/keep.txt", b"k");
        let srv = Launch::new(&s.path).args(&["--revalidate", mode]).start();
        let listed = |path: &str| json_names(&json(&srv, path));
        assert_eq!(listed("/d/"), ["keep.txt"]);
        for i in 0..200 {
            let name = format!("f{i}.txt");
            std::fs::write(s.join(&format!("d/{name}")), b"x").unwrap();
            assert_eq!(listed("/d/"), [name.clone(), "keep.txt".to_owned()], "{mode}: created, round {i}");
            let html = srv.get("/d/");
            assert!(html_rows(&html.body).contains(&name), "{mode}: HTML too, round {i}");
            if i % 2 == 0 {
                std::fs::remove_file(s.join(&format!("d/{name}"))).unwrap();
            } else {
                std::fs::rename(s.join(&format!("d/{name}")), s.join(&format!("moved-{i}"))).unwrap();
            }
            assert_eq!(listed("/d/"), ["keep.txt"], "{mode}: deleted or moved away, round {i}");
        }
        // A file written in place shows its new size at once with inotify;
        // within the listing lifetime (2 s) with stat.
        std::fs::write(s.join("d/keep.txt"), b"longer").unwrap();
        let size = |srv: &Server| json(srv, "/d/")["entries"][0]["size"].as_u64();
        if mode == "inotify" {
            assert_eq!(size(&srv), Some(6));
        } else {
            assert!(eventually(Duration::from_secs(5), || size(&srv) == Some(6)));
        }
        // An index created after the listing was cached takes its place, and
        // the listing comes back when it goes.
        assert!(html_rows(&srv.get("/d/").body).contains(&"keep.txt".to_owned()));
        std::fs::write(s.join("d/index.html"), b"<p>index</p>").unwrap();
        assert_eq!(srv.get("/d/").body, b"<p>index</p>", "{mode}");
        std::fs::remove_file(s.join("d/index.html")).unwrap();
        assert!(html_rows(&srv.get("/d/").body).contains(&"keep.txt".to_owned()), "{mode}");
        // Renaming the directory itself.
        std::fs::rename(s.join("d"), s.join("e")).unwrap();
        assert_eq!(srv.get("/d/").status, 404, "{mode}");
        assert_eq!(listed("/e/"), ["keep.txt"]);
    }
}

#[test]
fn a_huge_directory_lists_within_its_cap() {
    let s = Scratch::new("browse-huge");
    std::fs::create_dir(s.join("many")).unwrap();
    for i in 0..100_000 {
        std::fs::File::create(s.join(&format!("many/file-{i:06}"))).unwrap();
    }
    let srv = Server::start(&s.path);
    let before = status_kb(srv.pid(), "RssAnon");
    let r = srv.get("/many/");
    assert_eq!(r.status, 200);
    let rows = html_rows(&r.body);
    assert_eq!(rows.len(), 10_000);
    assert_eq!((rows[0].as_str(), rows[9_999].as_str()), ("file-000000", "file-009999"));
    assert!(String::from_utf8_lossy(&r.body).contains("90,000 more entries not shown"));
    let v = json(&srv, "/many/?sort=name&order=desc");
    assert_eq!(v["entries"].as_array().unwrap().len(), 10_000);
    assert_eq!(v["entries"][0]["name"], "file-099999");
    assert_eq!(v["more"], 90_000);
    let grown = status_kb(srv.pid(), "RssAnon").saturating_sub(before);
    eprintln!("RssAnon grew {grown} KiB for two listings of 100,000 entries");
    assert!(grown < 64 * 1024, "RssAnon grew {grown} KiB");
    let all = Launch::new(&s.path).args(&["--listing-max-entries", "100000"]).start();
    assert_eq!(json(&all, "/many/")["entries"].as_array().unwrap().len(), 100_000);
}

#[test]
fn downloads_keep_their_names_and_change_nothing_else() {
    let s = Scratch::new("browse-dl");
    let data = pattern(300_000, 7);
    s.write("docs/résumé 2026 ✓.bin", &data);
    let srv = Server::start(&s.path);
    let path = "/docs/r%C3%A9sum%C3%A9%202026%20%E2%9C%93.bin";
    let plain = srv.get(path);
    assert_eq!(plain.header("content-disposition"), None);
    let dl = srv.get(&format!("{path}?download"));
    assert_eq!(
        dl.header("content-disposition"),
        Some(
            "attachment; filename=\"r_sum_ 2026 _.bin\"; filename*=UTF-8''r%C3%A9sum%C3%A9%202026%20%E2%9C%93.bin"
        )
    );
    assert_eq!(dl.body, data);
    for h in ["etag", "last-modified", "content-length", "content-type", "accept-ranges"] {
        assert_eq!(dl.header(h), plain.header(h), "{h}");
    }
    let etag = plain.header("etag").unwrap();
    let range =
        srv.req("GET", &format!("{path}?download="), &[("Range", "bytes=1000-1999"), ("If-Range", etag)]);
    assert_eq!(range.status, 206);
    assert_eq!(range.body, &data[1000..2000]);
    assert!(range.header("content-disposition").is_some());
    let nm = srv.req("GET", &format!("{path}?download"), &[("If-None-Match", etag)]);
    assert_eq!(nm.status, 304);
    // wget and aria2c save under the name the header gives.
    let out = Scratch::new("browse-dl-out");
    let url = srv.url(&format!("{path}?download"));
    let wget = run("wget", &["-q", "--content-disposition", "-P", out.path.to_str().unwrap(), &url]);
    assert!(wget.status.success(), "{}", String::from_utf8_lossy(&wget.stderr));
    assert_eq!(sha256_file(&out.join("résumé 2026 ✓.bin")), sha256_file(&s.join("docs/résumé 2026 ✓.bin")));
    // Resumed: the second half after a cut.
    std::fs::write(out.join("part.bin"), &data[..150_000]).unwrap();
    let curl = run("curl", &["-sf", "-C", "-", "-o", out.join("part.bin").to_str().unwrap(), &url]);
    assert!(curl.status.success());
    assert_eq!(std::fs::read(out.join("part.bin")).unwrap(), data);
}

#[test]
fn error_pages_for_browsers_and_text_for_the_rest() {
    let s = Scratch::new("browse-errors");
    s.write("f.txt", b"0123456789");
    s.write("secret/locked.txt", b"x");
    set_mode(&s.join("secret/locked.txt"), 0o600);
    let srv = Launch::new(&s.path).unprivileged().start();
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], u16);
    let cases: [Case; 4] = [
        ("GET", "/no/such/thing.txt", &[], 404),
        ("GET", "/secret/locked.txt", &[], 403),
        ("DELETE", "/f.txt", &[], 405),
        ("GET", "/f.txt", &[("Range", "bytes=50-60")], 416),
    ];
    for (method, path, extra, status) in cases {
        let mut headers = extra.to_vec();
        headers.push(("Accept", browser));
        let page = srv.req(method, path, &headers);
        assert_eq!(page.status, status, "{path}");
        assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"), "{path}");
        assert_eq!(page.header("vary"), Some("accept"));
        assert!(page.header("content-security-policy").is_some_and(|c| !c.contains("script-src")), "{path}");
        let html = String::from_utf8_lossy(&page.body);
        assert!(
            html.contains("<!DOCTYPE html>")
                && html.contains("href=\"/\"")
                && html.contains(&status.to_string())
        );
        for leak in ["thing.txt", "such", "secret", "locked", "f.txt", "Permission", "denied"] {
            assert!(!html.contains(leak), "{path}: the page mentions {leak}");
        }
        let text = srv.req(method, path, extra);
        assert_eq!(text.status, status);
        assert_eq!(text.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(text.header("vary"), Some("accept"), "{path}: the text varies too");
        let curl = srv.req(method, path, &[extra, &[("Accept", "*/*")]].concat());
        assert_eq!(
            curl.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "curl's */* is not a preference"
        );
        let head = srv.req("HEAD", path, &headers);
        assert!(head.body.is_empty());
    }
    assert_eq!(srv.req("DELETE", "/f.txt", &[("Accept", browser)]).header("allow"), Some("GET, HEAD"));
    assert_eq!(
        srv.req("GET", "/f.txt", &[("Range", "bytes=50-60"), ("Accept", browser)]).header("content-range"),
        Some("bytes */10")
    );
}

#[test]
fn not_found_page_and_spa_fallback() {
    let s = Scratch::new("browse-pages");
    s.write("404.html", b"<h1>custom 404</h1>");
    s.write("app/index.html", b"<div id=app></div>");
    s.write("app/main.js", b"console.log(1)");
    let browser = [("Accept", "text/html,*/*;q=0.8")];
    let srv =
        Launch::new(&s.path).args(&["--not-found-page", "404.html", "--fallback", "app/index.html"]).start();
    let r = srv.req("GET", "/settings/profile", &browser);
    assert_eq!(
        (r.status, &r.body[..]),
        (200, &b"<div id=app></div>"[..]),
        "a browser navigating gets the app"
    );
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(r.header("vary").is_some_and(|v| v.contains("accept")));
    let r = srv.req("GET", "/assets/missing.js", &[("Accept", "*/*")]);
    assert_eq!((r.status, &r.body[..]), (404, &b"<h1>custom 404</h1>"[..]), "a missing asset still gets 404");
    assert_eq!(r.header("etag"), None);
    assert_eq!(srv.req("HEAD", "/assets/missing.js", &[]).body.len(), 0);
    assert_eq!(srv.get("/app/main.js").body, b"console.log(1)", "files are served as they are");
    let only_404 = Launch::new(&s.path).args(&["--not-found-page", "404.html", "--listing=false"]).start();
    let r = only_404.req("GET", "/nope", &browser);
    assert_eq!((r.status, &r.body[..]), (404, &b"<h1>custom 404</h1>"[..]));
    assert_eq!(only_404.get("/app/").status, 200, "the index still wins");
    // A page that is itself missing: the built-in 404.
    std::fs::remove_file(s.join("404.html")).unwrap();
    assert_eq!(only_404.get("/nope").body, b"404 not found\n");
    // A bad page path stops start-up.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mapserve"))
        .args([s.path.to_str().unwrap(), "--fallback", "../etc/passwd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fallback"));
}

#[test]
fn wget_mirrors_a_tree_through_the_listing() {
    let s = Scratch::new("browse-wget");
    let files = [
        "tree/a.txt",
        "tree/sub/b.bin",
        "tree/sub/deeper/c with space.txt",
        "tree/sub/ü.txt",
        "tree/big.bin",
    ];
    for (i, f) in files.iter().enumerate() {
        s.write(f, &pattern(if f.ends_with("big.bin") { 3 << 20 } else { 1000 + i * 777 }, i as u64));
    }
    s.write("outside-tree.txt", b"not below tree/");
    let srv = Server::start(&s.path);
    let out = Scratch::new("browse-wget-out");
    let wget = run(
        "wget",
        &["-r", "-np", "-nH", "-q", "-e", "robots=off", "-P", out.path.to_str().unwrap(), &srv.url("/tree/")],
    );
    assert!(wget.status.success(), "every link worked: {}", String::from_utf8_lossy(&wget.stderr));
    for f in files {
        assert_eq!(sha256_file(&out.join(f)), sha256_file(&s.join(f)), "{f}");
    }
    assert!(!out.join("outside-tree.txt").exists(), "-np stays below the start");
    // Each file was fetched once: besides the files, only listing pages.
    let mut extra = Vec::new();
    let mut stack = vec![out.path.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(&out.path).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p);
            } else if !files.contains(&rel.as_str()) {
                extra.push(rel);
            }
        }
    }
    assert!(extra.iter().all(|p| p.rsplit('/').next().unwrap().starts_with("index.html")), "{extra:?}");
}
