//! A real browser: headless Chromium, driven over WebDriver by
//! `browser.py`, renders the listing (screenshots under
//! `target/browser/`), sorts by clicking a column header, filters as keys
//! are typed, turns dark with `prefers-color-scheme: dark`, runs no script
//! from a file name, saves downloads under their non-ASCII names, and shows
//! the 404 page.

use crate::common::*;

fn png_size(path: &str) -> (u32, u32) {
    let data = std::fs::read(path).unwrap();
    assert_eq!(&data[..8], b"\x89PNG\r\n\x1a\n", "{path} is a PNG");
    let be = |at: usize| u32::from_be_bytes(data[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

/// `rgb(r, g, b)` -> relative luminance in 0..=1 (sRGB, roughly).
fn luminance(css: &str) -> f64 {
    let nums: Vec<f64> = css
        .trim_start_matches("rgba(")
        .trim_start_matches("rgb(")
        .trim_end_matches(')')
        .split(',')
        .map(|n| n.trim().parse().unwrap())
        .collect();
    (0.2126 * nums[0] + 0.7152 * nums[1] + 0.0722 * nums[2]) / 255.0
}

/// Runs `browser.py` against `base` with output under `out` (relative to
/// the crate), and returns its JSON report (every step done) and `out`.
fn browser_py(out: &str, base: &str, args: &[&str]) -> (serde_json::Value, std::path::PathBuf) {
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(out);
    let _ = std::fs::remove_dir_all(&out);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/browser.py");
    let mut argv = vec![script.to_str().unwrap(), "--base", base, "--out", out.to_str().unwrap()];
    argv.extend_from_slice(args);
    let run = run("python3", &argv);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "browser.py failed: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&v).unwrap());
    assert_eq!(v["failed_steps"], serde_json::json!([]), "{stderr}");
    (v, out)
}

#[test]
fn chromium_renders_sorts_filters_and_downloads() {
    if !works("chromedriver", &["--version"]) {
        skip("chromium_renders_sorts_filters_and_downloads", "chromedriver is not installed");
        return;
    }
    let s = Scratch::new("browser");
    s.write("docs/readme.md", b"# docs");
    s.write("photos/cat.jpg", &pattern(2000, 1));
    s.write("abacus.md", &pattern(300, 2));
    s.write("cabbage.csv", &pattern(50_000, 3));
    s.write("zebra.bin", &pattern(1_500_000, 4));
    s.write("a.txt", b"a");
    s.write("<img src=x onerror=alert(1)>.txt", b"xss");
    let cv = s.write("résumé 2026 ✓.txt", &pattern(12_345, 5));
    let srv = Server::start(&s.path);
    let (v, out) = browser_py(
        "target/browser",
        &srv.url(""),
        &["--filter-text", "ab", "--download-name", "résumé 2026 ✓.txt"],
    );
    // The page's own script runs under its Content-Security-Policy (the
    // filter below works), and nothing was refused.
    let console = v["console_errors"].to_string();
    assert!(!console.contains("Content Security Policy"), "{console}");
    let rows = |x: &serde_json::Value| -> Vec<String> {
        x.as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect()
    };
    let l = &v["listing"];
    assert_eq!(l["title"], "Index of /");
    let xss = "<img src=x onerror=alert(1)>.txt";
    assert_eq!(
        rows(&l["rows"]),
        ["docs/", "photos/", xss, "a.txt", "abacus.md", "cabbage.csv", "résumé 2026 ✓.txt", "zebra.bin"]
    );
    assert_eq!(l["filter_visible"], true, "the script shows the filter box");
    let (w, h) = png_size(l["screenshot"]["path"].as_str().unwrap());
    assert!(w >= 1000 && h >= 500, "{w}x{h}");
    assert!(l["screenshot"]["bytes"].as_u64().unwrap() > 10_000, "a real picture, not a blank page");
    let sorted = &v["sort_by_size"];
    assert!(sorted["url"].as_str().unwrap().ends_with("?sort=size&order=asc"));
    assert_eq!(
        rows(&sorted["rows"]),
        ["docs/", "photos/", "a.txt", xss, "abacus.md", "résumé 2026 ✓.txt", "cabbage.csv", "zebra.bin"]
    );
    assert!(sorted["url_second_click"].as_str().unwrap().ends_with("?sort=size&order=desc"));
    assert_eq!(
        rows(&sorted["rows_second_click"]),
        ["photos/", "docs/", "zebra.bin", "cabbage.csv", "résumé 2026 ✓.txt", "abacus.md", xss, "a.txt"]
    );
    assert_eq!(rows(&v["filter"]["visible_rows"]), ["abacus.md", "cabbage.csv"]);
    let dark = &v["dark"];
    assert!(luminance(dark["background"].as_str().unwrap()) < 0.2, "{dark}");
    assert!(luminance(dark["background_light"].as_str().unwrap()) > 0.8, "{dark}");
    png_size(&out.join("listing-dark.png").to_string_lossy());
    // Keyboard: a skip link first, then the breadcrumbs, the filter, the
    // sort links and the rows, each visibly focused; `/` jumps to the filter.
    let order: Vec<&serde_json::Value> = v["keyboard"]["order"].as_array().unwrap().iter().collect();
    let label = |i: usize| order[i]["label"].as_str().unwrap_or_default().to_owned();
    assert_eq!(label(0), "a[href=#listing]", "{order:?}");
    let filter_at = (0..order.len()).find(|&i| label(i) == "#filter").expect("the filter takes focus");
    let sort_at =
        (0..order.len()).find(|&i| label(i).starts_with("a[href=?sort=")).expect("sort links take focus");
    let row_at = (0..order.len()).find(|&i| label(i) == "a[href=docs/]").expect("rows take focus");
    assert!(filter_at < sort_at && sort_at < row_at, "{order:?}");
    assert!(order.iter().all(|o| o["outline"] == true), "every focused element is visibly marked: {order:?}");
    assert_eq!(v["keyboard"]["slash_focuses"], "filter");
    // A phone: nothing wider than the screen.
    let phone = &v["phone"];
    assert_eq!(phone["inner"], phone["scroll"], "{phone}");
    png_size(&out.join("listing-phone.png").to_string_lossy());
    let x = &v["xss"];
    assert_eq!(x["dialogs"], serde_json::json!([]), "no script ran");
    assert_eq!(x["alert_opened"], false);
    assert_eq!(x["img_in_table"], 0);
    assert_eq!(x["xss_row_text"], xss, "the name shows as text");
    assert!(
        v["download"]["href"].as_str().unwrap().ends_with(".txt?download"),
        "the script turns download links into ?download URLs: {}",
        v["download"]["href"]
    );
    let want = sha256_file(&cv);
    for step in ["download", "download_query"] {
        let d = &v[step];
        assert_eq!(d["saved_name"], "résumé 2026 ✓.txt", "{step}: {d}");
        assert_eq!(d["sha256"].as_str().unwrap(), want, "{step}");
    }
    let nf = &v["not_found"];
    assert_eq!(nf["http_status"], 404);
    assert_eq!(nf["has_link_to_root"], true);
    assert!(nf["title"].as_str().unwrap().contains("404"), "{nf}");
    png_size(&out.join("not-found.png").to_string_lossy());
}

#[test]
fn chromium_runs_a_compressed_script_and_reads_ranges_across_origins_only_with_cors() {
    if !works("chromedriver", &["--version"]) {
        skip(
            "chromium_runs_a_compressed_script_and_reads_ranges_across_origins_only_with_cors",
            "chromedriver is not installed",
        );
        return;
    }
    let s = Scratch::new("browser-enc");
    let mut js = String::from("window.__ran = 42;\ndocument.title = 'ran';\n");
    for i in 0..800 {
        js.push_str(&format!("function unused{i}(a, b) {{ return a * {i} + b; }}\n"));
    }
    s.write("enc/app.js", js.as_bytes());
    s.write("enc/page.html", b"<!doctype html><html><head><title>enc</title><script src=\"app.js\"></script></head><body></body></html>");
    s.write("media.bin", &pattern(100_000, 7));
    let page = Server::start(&s.path);
    let origin = page.url("");
    let origin = origin.trim_end_matches('/');
    // The listed origin is the page's; a server without --cors beside it.
    let with_cors = Launch::new(&s.path).arg(&format!("--cors={origin}")).start();
    let without = Server::start(&s.path);
    // What Chromium gets for its Accept-Encoding: brotli.
    let r = page.req("HEAD", "/enc/app.js", &[("Accept-Encoding", "gzip, deflate, br, zstd")]);
    assert_eq!(r.header("content-encoding"), Some("br"));
    let cors =
        ["--steps", "encoded_script,cors", "--cors-ok", &with_cors.url(""), "--cors-off", &without.url("")];
    let (v, _) = browser_py("target/browser-enc", origin, &cors);
    let e = &v["encoded_script"];
    assert_eq!(e["ran"], 42, "the brotli-encoded script ran");
    assert_eq!(e["title"], "ran");
    let (enc, dec) = (e["encoded_body_size"].as_u64().unwrap(), e["decoded_body_size"].as_u64().unwrap());
    assert_eq!(dec, js.len() as u64, "decoded to the file's length");
    assert!(enc * 5 < dec, "it travelled compressed: {enc} of {dec} bytes");
    let c = &v["cors"]["with_cors"];
    assert_eq!(c["origin"], origin);
    assert_eq!(c["single"]["status"], 206, "{c}");
    assert_eq!(c["single"]["bytes"], 100);
    assert_eq!(c["single"]["content_range"], "bytes 0-99/100000", "Content-Range is exposed");
    assert!(c["single"]["etag"].as_str().is_some_and(|t| t.starts_with('"')), "ETag is exposed");
    assert_eq!(c["multi"]["status"], 206, "the preflighted two-range request: {c}");
    assert!(c["multi"]["content_type"].as_str().unwrap().starts_with("multipart/byteranges"));
    let n = &v["cors"]["without_cors"];
    for kind in ["single", "multi"] {
        assert!(
            n[kind]["error"].as_str().is_some_and(|e| e.contains("TypeError")),
            "{kind} without --cors: {n}"
        );
    }
}
