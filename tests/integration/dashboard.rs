//! The admin dashboard (`GET /` of `--admin-listen`, static/dashboard.html)
//! in a real browser: headless Chromium, driven over WebDriver by
//! `dashboard.py` (which reuses `browser.py`'s driver), clicks a row's
//! Prewarm and sees its residency strip fill, clicks another's Evict and
//! sees the row go, with the results on the status line, the budget gauge
//! filled in, no script error and no request to another origin; and behind
//! `--admin-token-file` it asks for the token before it shows anything.
//! Screenshots under `target/dashboard*/`.

use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const MIB: usize = 1 << 20;

/// Runs `dashboard.py` against the admin listener `admin` with output under
/// `out` (relative to the crate) and returns its JSON report; fails the test
/// if a step failed.
fn dashboard_py(out: &str, admin: &str, args: &[&str]) -> Value {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join(out);
    let _ = std::fs::remove_dir_all(&out);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/dashboard.py");
    let mut argv = vec![script.to_str().unwrap(), "--admin", admin, "--out", out.to_str().unwrap()];
    argv.extend_from_slice(args);
    let run = run("python3", &argv);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "dashboard.py failed: {stderr}");
    let v: Value = serde_json::from_slice(&run.stdout).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&v).unwrap());
    let errors: Vec<String> = v["failed_steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| format!("{}: {}", step.as_str().unwrap(), v[step.as_str().unwrap()]["error"]))
        .collect();
    assert!(errors.is_empty(), "{}\n#status showed: {}", errors.join("\n"), v["seen"]["status"]);
    v
}

/// One request to the admin listener, with the bearer token if given.
fn admin_req(srv: &Server, method: &str, target: &str, token: Option<&str>) -> Resp {
    let addr = srv.admin();
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    request_to(port, &format!("{method} {target} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n{auth}\r\n"))
}

/// `GET /cache` as JSON.
fn cache_json(srv: &Server, token: Option<&str>) -> Value {
    let r = admin_req(srv, "GET", "/cache", token);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice(&r.body).unwrap()
}

/// The `/cache` entry of `path` (the whole-file one, not a compressed variant).
fn entry(listing: &Value, path: &str) -> Option<Value> {
    listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path && e["coding"].is_null())
        .cloned()
}

/// Drops the files' pages from the page cache: written back first
/// (`fdatasync`: dirty pages cannot be dropped), then
/// `POSIX_FADV_DONTNEED`. Pages the server has faulted into its own page
/// tables stay (neither this nor `drop_caches` unmaps them), which is why
/// the test maps the files with a one-page range request, not a full GET.
fn drop_pages(files: &[&Path]) {
    let script = "import os, sys\n\
                  for p in sys.stdin.read().split('\\n'):\n    \
                      fd = os.open(p, os.O_RDONLY)\n    \
                      os.fdatasync(fd)\n    \
                      os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)\n    \
                      os.close(fd)\n";
    let list: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let out = python(script, list.join("\n").as_bytes());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `(cells, '#' cells)` of a strip.
fn strip_counts(e: &Value) -> (usize, usize) {
    let s = e["strip"].as_str().unwrap();
    (s.chars().count(), s.chars().filter(|&c| c == '#').count())
}

/// Paths of the rows a step reported.
fn row_paths(rows: &Value) -> Vec<String> {
    rows.as_array().unwrap().iter().map(|r| r["path"].as_str().unwrap().to_owned()).collect()
}

/// Whether some `#status` text the page showed contains `needle`, with
/// class `cls`.
fn status_has(statuses: &Value, needle: &str, cls: &str) -> bool {
    statuses
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["text"].as_str().unwrap().contains(needle) && s["cls"] == cls)
}

#[test]
fn chromium_prewarm_fills_a_strip_and_evict_removes_a_row() {
    if !works("chromedriver", &["--version"]) {
        skip("chromium_prewarm_fills_a_strip_and_evict_removes_a_row", "chromedriver is not installed");
        return;
    }
    let s = Scratch::new("dashboard");
    // Mapped whole: above the 64 KiB small-file limit, below the window size.
    let a = s.write("a.bin", &pattern(8 * MIB, 11));
    let b = s.write("b.bin", &pattern(8 * MIB, 12));
    let srv = Launch::new(&s.path).args(&["--admin-listen", "127.0.0.1:0"]).start();
    // One request each maps the file. A range of one page: a whole GET
    // would fault every page into the server's page tables, where they
    // stay resident whatever the page cache is told.
    for p in ["/a.bin", "/b.bin"] {
        let r = srv.req("GET", p, &[("Range", "bytes=0-99")]);
        assert_eq!(r.status, 206, "{p}");
    }
    // Loading a mapping asks for readahead (MADV_WILLNEED): drop the pages
    // again until no strip is full.
    let cold = eventually(Duration::from_secs(10), || {
        drop_pages(&[&a, &b]);
        std::thread::sleep(Duration::from_millis(100));
        let v = cache_json(&srv, None);
        ["/a.bin", "/b.bin"].iter().all(|p| {
            entry(&v, p).is_some_and(|e| {
                let (cells, full) = strip_counts(&e);
                e["kind"] == "mapping" && cells > 0 && full < cells
            })
        })
    });
    assert!(cold, "the strips stay full: {}", cache_json(&srv, None));
    let admin = srv.admin_url("");

    let v = dashboard_py("target/dashboard", &admin, &["--prewarm", "/a.bin", "--evict", "/b.bin"]);

    // The table as first shown: both files, mapped, neither strip full.
    let load = &v["load"];
    assert_eq!(load["title"], "mapserve cache");
    assert_eq!(row_paths(&load["rows"]), ["/a.bin", "/b.bin"], "{load}");
    for r in load["rows"].as_array().unwrap() {
        assert_eq!(r["kind"], "mapping", "{r}");
        assert_eq!(r["cells"].as_array().unwrap().len(), 64, "an 8 MiB file has 2048 pages: 64 cells {r}");
        assert!(r["res"].as_u64().unwrap() < 64, "not full before: {r}");
        for a in ["evict", "prewarm", "pin"] {
            assert!(r["actions"].as_array().unwrap().iter().any(|x| x == a), "{a} in {r}");
        }
    }

    // Prewarm, clicked in the page: every cell of the strip resident, as
    // many cells as /cache's strip has characters, all '#'.
    let pre = &v["prewarm"];
    let after = &pre["after"];
    let cells = after["cells"].as_array().unwrap();
    assert!(!cells.is_empty() && cells.iter().all(|c| c == "res"), "{pre}");
    let listing = cache_json(&srv, None);
    let e = entry(&listing, "/a.bin").expect("/a.bin is still cached");
    let (n, full) = strip_counts(&e);
    assert_eq!(
        (cells.len(), after["res"].as_u64().unwrap() as usize),
        (n, full),
        "the page shows /cache's strip: {e}"
    );
    assert_eq!(full, n, "/cache: every page group resident: {e}");
    assert_eq!(e["resident_pages"], e["pages"], "{e}");
    assert!(
        status_has(&pre["status"], "loaded /a.bin", "ok"),
        "#status showed the prewarm's result: {}",
        pre["status"]
    );

    // Evict, clicked in the page: the row goes, and the entry with it.
    let ev = &v["evict"];
    assert_eq!(ev["before"]["path"], "/b.bin", "{ev}");
    assert_eq!(ev["gone"], true);
    assert_eq!(ev["rows_after"], serde_json::json!(["/a.bin"]), "{ev}");
    assert!(entry(&cache_json(&srv, None), "/b.bin").is_none(), "/b.bin is no longer cached");
    assert!(
        status_has(&ev["status"], "evicted /b.bin", "ok"),
        "#status showed the eviction: {}",
        ev["status"]
    );

    // The gauge shows the budget; nothing went wrong in the page; every
    // request went to the admin listener itself.
    let c = &v["checks"];
    let gtext = c["gtext"].as_str().unwrap();
    assert!(!gtext.trim().is_empty() && gtext != "—", "#gtext: {c}");
    assert!(gtext.contains(" of 1.0 GiB"), "the default budget: {gtext}");
    assert!(c["gauge"].as_str().unwrap().contains("pinned"), "{c}");
    assert_eq!(c["status_final"]["cls"], "ok", "{c}");
    assert_eq!(c["page_errors"], serde_json::json!([]), "uncaught script errors");
    assert_eq!(c["csp"], serde_json::json!([]), "Content-Security-Policy violations");
    assert_eq!(c["dialogs"], serde_json::json!([]));
    assert_eq!(c["origin"], admin.trim_end_matches('/'));
    assert_eq!(c["foreign"], serde_json::json!([]), "requests to another origin: {c}");
    let resources: Vec<&str> =
        c["resources"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(resources.iter().any(|r| r.ends_with("/cache")), "the page polled cache: {resources:?}");
    assert!(resources.iter().any(|r| r.contains("/cache/prewarm?path=")), "{resources:?}");
    assert!(resources.iter().any(|r| r.contains("/cache/evict?path=")), "{resources:?}");
    if !v["console_errors"].is_null() {
        assert_eq!(v["console_errors"], serde_json::json!([]), "the browser console");
    }
}

#[test]
fn chromium_asks_for_the_admin_token_then_shows_the_table() {
    if !works("chromedriver", &["--version"]) {
        skip("chromium_asks_for_the_admin_token_then_shows_the_table", "chromedriver is not installed");
        return;
    }
    let s = Scratch::new("dashboard-auth");
    s.write("hello.txt", b"hello, dashboard\n");
    let secret = Scratch::new("dashboard-token");
    let token = "dashboard-test-token-5f2c9a";
    let file = secret.write("token", format!("{token}\n").as_bytes());
    let srv = Launch::new(&s.path)
        .args(&["--admin-listen", "127.0.0.1:0", "--admin-token-file", file.to_str().unwrap()])
        .start();
    assert_eq!(srv.get("/hello.txt").status, 200);
    assert_eq!(admin_req(&srv, "GET", "/cache", None).status, 401, "the API wants the token");
    assert!(entry(&cache_json(&srv, Some(token)), "/hello.txt").is_some());

    let v = dashboard_py(
        "target/dashboard-auth",
        &srv.admin_url(""),
        &["--steps", "auth,checks", "--token", token],
    );
    let a = &v["auth"];
    assert_eq!(a["auth_shown"], true, "the token form: {a}");
    assert_eq!(a["main_hidden_before"], true, "nothing shown without the token: {a}");
    assert_eq!(a["rows_before"], 0);
    assert_eq!(a["focused"], "token", "the form takes focus");
    assert_eq!(a["auth_hidden_after"], true, "{a}");
    assert_eq!(a["main_shown_after"], true, "{a}");
    assert_eq!(a["rows"], serde_json::json!(["/hello.txt"]), "{a}");
    assert!(a["gtext"].as_str().unwrap().contains(" of "), "{a}");
    let c = &v["checks"];
    assert_eq!(c["page_errors"], serde_json::json!([]));
    assert_eq!(c["csp"], serde_json::json!([]));
    assert_eq!(c["foreign"], serde_json::json!([]), "{c}");
    // The one refused poll before the token is the only complaint allowed.
    if let Some(errors) = v["console_errors"].as_array() {
        for e in errors {
            let e = e.as_str().unwrap();
            assert!(e.contains("/cache") && e.contains("401"), "the browser console: {e}");
        }
    }
}
