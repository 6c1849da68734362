//! Validators that replicas share (`--etag`), tested behind a real nginx:
//! two instances over two copies of a tree (different inodes and mtimes)
//! behind one round-robin upstream, and the shipped nginx slice-cache
//! example (`config/nginx.conf`) in front of one instance.

use crate::common::*;
use std::time::Duration;

/// A tree with a small, a mid-size and a large file (hashed in the
/// background with `--etag content`), copied with other mtimes.
fn two_copies(s: &Scratch) -> (std::path::PathBuf, std::path::PathBuf) {
    let a = s.join("a");
    for (name, len, seed) in [("small.txt", 10_000, 1), ("mid.bin", 3 << 20, 2), ("big.bin", 12 << 20, 3)] {
        s.write(&format!("a/{name}"), &pattern(len, seed));
    }
    let b = s.join("b");
    assert!(run("cp", &["-r", a.to_str().unwrap(), b.to_str().unwrap()]).status.success());
    for name in ["small.txt", "mid.bin", "big.bin"] {
        let path = b.join(name);
        assert!(run("touch", &["-d", "2020-01-02 03:04:05", path.to_str().unwrap()]).status.success());
    }
    (a, b)
}

fn etag_of(port: u16, path: &str) -> String {
    let r = request_to(port, &format!("HEAD {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
    assert_eq!(r.status, 200, "{path}");
    r.header("etag").unwrap().to_owned()
}

fn round_robin(s: &Scratch, backends: &[&Server]) -> Nginx {
    let port = free_port();
    let servers: String = backends.iter().map(|b| format!("server 127.0.0.1:{};", b.port)).collect();
    let conf = format!(
        "events {{}}\nhttp {{ access_log off; upstream replicas {{ {servers} keepalive 8; }}\n\
         server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://replicas; \
         proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }} }}\n"
    );
    Nginx::start(&s.join("nginx"), &conf, port)
}

fn count_status(srv: &Server, status: u16) -> usize {
    srv.log()
        .lines()
        .filter(|l| l.contains("mapserve::access") && l.contains(&format!("status={status} ")))
        .count()
}

#[test]
fn content_etags_agree_across_replicas_so_revalidation_and_resume_work_behind_round_robin() {
    let s = Scratch::new("replicas");
    let (a, b) = two_copies(&s);
    let one = Launch::new(&a).args(&["--etag", "content"]).start();
    let two = Launch::new(&b).args(&["--etag", "content"]).start();
    // The large file is hashed in the background: both converge.
    for path in ["/small.txt", "/mid.bin", "/big.bin"] {
        let agreed =
            eventually(Duration::from_secs(20), || etag_of(one.port, path) == etag_of(two.port, path));
        assert!(agreed, "{path}: {} vs {}", etag_of(one.port, path), etag_of(two.port, path));
    }
    let nginx = round_robin(&s, &[&one, &two]);
    for path in ["/small.txt", "/mid.bin", "/big.bin"] {
        let etag = etag_of(nginx.port, path);
        for _ in 0..4 {
            let r = request_to(
                nginx.port,
                &format!(
                    "GET {path} HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n"
                ),
            );
            assert_eq!(r.status, 304, "{path} revalidated against either replica");
        }
        // A download resumed on the other replica is byte-exact.
        let whole = std::fs::read(a.join(&path[1..])).unwrap();
        let half = whole.len() / 2;
        let first = request_to(
            nginx.port,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: t\r\nRange: bytes=0-{}\r\nConnection: close\r\n\r\n",
                half - 1
            ),
        );
        let rest = request_to(
            nginx.port,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: t\r\nRange: bytes={half}-\r\nIf-Range: {etag}\r\nConnection: close\r\n\r\n"
            ),
        );
        assert_eq!((first.status, rest.status), (206, 206), "{path}");
        assert_eq!([first.body, rest.body].concat(), whole, "{path}: the two halves make the file");
    }
    assert!(count_status(&one, 304) >= 4 && count_status(&two, 304) >= 4, "both replicas answered 304s");
    assert!(count_status(&one, 206) >= 1 && count_status(&two, 206) >= 1, "both replicas answered ranges");
}

#[test]
fn strict_etags_differ_across_replicas_and_metadata_etags_are_nginx_s() {
    let s = Scratch::new("strict-replicas");
    let (a, b) = two_copies(&s);
    let one = Launch::new(&a).start();
    let two = Launch::new(&b).start();
    assert_ne!(etag_of(one.port, "/small.txt"), etag_of(two.port, "/small.txt"), "strict: per copy");
    // Same mtimes, other inodes: metadata agrees; and it is nginx's own ETag.
    let c = s.join("c");
    assert!(run("cp", &["-a", a.to_str().unwrap(), c.to_str().unwrap()]).status.success());
    let meta_a = Launch::new(&a).args(&["--etag", "metadata"]).start();
    let meta_c = Launch::new(&c).args(&["--etag", "metadata"]).start();
    let tag = etag_of(meta_a.port, "/small.txt");
    assert_eq!(tag, etag_of(meta_c.port, "/small.txt"));
    let port = free_port();
    let conf = format!(
        "events {{}}\nhttp {{ access_log off; server {{ listen 127.0.0.1:{port}; root {}; }} }}\n",
        a.display()
    );
    let nginx = Nginx::start(&s.join("nginx"), &conf, port);
    assert_eq!(etag_of(nginx.port, "/small.txt"), tag, "nginx and mapserve --etag metadata agree");
    // Above --etag-hash-max, content falls back to the metadata form.
    let capped = Launch::new(&a).args(&["--etag", "content", "--etag-hash-max", "1KiB"]).start();
    assert_eq!(etag_of(capped.port, "/small.txt"), tag);
    let hashed = Launch::new(&a).args(&["--etag", "content"]).start();
    assert_ne!(etag_of(hashed.port, "/small.txt"), tag);
}

#[test]
fn a_file_rewritten_with_other_bytes_gets_another_content_etag() {
    let s = Scratch::new("content-change");
    s.write("f.txt", b"first version");
    let srv = Launch::new(&s.path).args(&["--etag", "content"]).start();
    let before = etag_of(srv.port, "/f.txt");
    // Same size, other bytes, mtime put back: only the content tells.
    let mtime = std::fs::metadata(s.join("f.txt")).unwrap().modified().unwrap();
    std::fs::write(s.join("f.txt"), b"other version").unwrap();
    std::fs::File::options().write(true).open(s.join("f.txt")).unwrap().set_modified(mtime).unwrap();
    let after = settled(Duration::from_secs(5), || etag_of(srv.port, "/f.txt"));
    assert_ne!(before, after);
    assert_eq!(srv.get("/f.txt").body, b"other version");
    // And the same bytes again give the first tag back.
    std::fs::write(s.join("f.txt"), b"first version").unwrap();
    assert_eq!(settled(Duration::from_secs(5), || etag_of(srv.port, "/f.txt")), before);
}

/// `config/nginx.conf` as shipped, with only its port, upstream and paths
/// replaced.
fn shipped_nginx_conf(listen: u16, upstream: u16, dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/nginx.conf")).unwrap();
    let mut out = text.clone();
    for (from, to) in [
        ("listen 80;", format!("listen 127.0.0.1:{listen};")),
        ("server 127.0.0.1:8080;", format!("server 127.0.0.1:{upstream};")),
        ("/var/cache/nginx/mapserve", dir.join("cache").display().to_string()),
        ("/var/log/nginx/mapserve-front.log", dir.join("front.log").display().to_string()),
    ] {
        assert!(out.contains(from), "config/nginx.conf no longer has `{from}`");
        out = out.replace(from, &to);
    }
    out
}

/// curl through nginx from 127.0.0.2, so that the client differs from
/// nginx's own address: returns (headers, body).
fn curl_from_2(args: &[&str]) -> (String, Vec<u8>) {
    curl_from("127.0.0.2", args)
}

/// curl from the loopback address `from`: returns (headers, body).
fn curl_from(from: &str, args: &[&str]) -> (String, Vec<u8>) {
    let s = std::env::temp_dir().join(format!("mapserve-curl-{}-{}", std::process::id(), free_port()));
    let mut argv = vec!["-s", "--interface", from, "-D", s.to_str().unwrap()];
    argv.extend_from_slice(args);
    let out = run("curl", &argv);
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let headers = std::fs::read_to_string(&s).unwrap_or_default();
    let _ = std::fs::remove_file(&s);
    (headers, out.stdout)
}

#[test]
fn the_shipped_nginx_slice_cache_serves_ranges_resumes_and_repeats_exactly() {
    let s = Scratch::new("slice");
    let size = 200_000_000usize;
    let data = pattern(size, 9);
    let file = s.write("root/big.bin", &data);
    let want = sha256_file(&file);
    let srv = Launch::new(&s.join("root")).args(&["--trusted-proxy", "127.0.0.1"]).start();
    let dir = s.join("nginx");
    std::fs::create_dir_all(dir.join("cache")).unwrap();
    set_mode(&dir.join("cache"), 0o777);
    let port = free_port();
    let nginx = Nginx::start(&dir, &shipped_nginx_conf(port, srv.port, &dir), port);
    let url = format!("http://127.0.0.1:{}/big.bin", nginx.port);

    // A whole download, through 1 MiB slices.
    let out = s.join("got.bin");
    let (headers, _) = curl_from_2(&["-o", out.to_str().unwrap(), &url]);
    assert!(headers.starts_with("HTTP/1.1 200"), "{headers}");
    assert_eq!(sha256_file(&out), want, "the whole file through the slice cache");
    // A resumed download: the first 50 MB, then the rest with -C -.
    let part = s.join("part.bin");
    curl_from_2(&["-r", "0-49999999", "-o", part.to_str().unwrap(), &url]);
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 50_000_000);
    curl_from_2(&["-C", "-", "-o", part.to_str().unwrap(), &url]);
    assert_eq!(sha256_file(&part), want, "resumed download");
    // Several ranges in one request: nginx's slice module answers them with
    // the whole file (it sets `single_range`), which must still be exact.
    let (headers, body) = curl_from_2(&["-r", "0-99,150000000-150000099,199999900-199999999", &url]);
    assert!(headers.starts_with("HTTP/1.1 200"), "{headers}");
    assert!(body == data, "the multi-range answer is the exact file");
    // Every request nginx made so far: mapserve logged the real client
    // (nginx's X-Forwarded-For), not nginx.
    let log = srv.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("mapserve::access")).collect();
    assert!(
        !lines.is_empty() && lines.iter().all(|l| l.contains("client=127.0.0.2 ")),
        "{}",
        lines.join("\n")
    );
    // The same ranges straight from mapserve: one multipart/byteranges.
    let direct =
        srv.req("GET", "/big.bin", &[("Range", "bytes=0-99,150000000-150000099,199999900-199999999")]);
    assert_eq!(direct.status, 206);
    let boundary = direct.header("content-type").unwrap().split("boundary=").nth(1).unwrap().to_owned();
    let parts = multipart_bodies(&direct.body, &boundary);
    assert_eq!(parts, vec![&data[0..100], &data[150_000_000..150_000_100], &data[199_999_900..200_000_000]]);
    // A second pass is served from nginx's cache: mapserve sees no request.
    // It comes from its own address, so any request it caused would be
    // logged with that client; the log is read after mapserve has exited,
    // when every line is written (counting lines while it runs raced with
    // the last line of the first pass).
    let (headers, body) = curl_from("127.0.0.3", &["-r", "100000000-100999999", &url]);
    assert!(headers.to_ascii_lowercase().contains("x-cache-status: hit"), "{headers}");
    assert_eq!(body, &data[100_000_000..101_000_000]);
    let again = s.join("again.bin");
    let (headers, _) = curl_from("127.0.0.3", &["-o", again.to_str().unwrap(), &url]);
    assert!(headers.to_ascii_lowercase().contains("x-cache-status: hit"), "{headers}");
    assert_eq!(sha256_file(&again), want);
    drop(nginx);
    let log = log_at_exit(srv);
    let reached: Vec<&str> = log.lines().filter(|l| l.contains("client=127.0.0.3 ")).collect();
    assert!(reached.is_empty(), "the second pass reached mapserve:\n{}", reached.join("\n"));
    assert!(log.contains("client=127.0.0.2 "), "the log names the first pass's client");
}

/// The bodies of a multipart/byteranges payload.
fn multipart_bodies<'a>(body: &'a [u8], boundary: &str) -> Vec<&'a [u8]> {
    let sep = format!("\r\n--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(at) = find(rest, sep.as_bytes()) {
        rest = &rest[at + sep.len()..];
        let Some(head_end) = find(rest, b"\r\n\r\n") else { break };
        let start = head_end + 4;
        let end = find(&rest[start..], sep.as_bytes()).map_or(rest.len(), |e| start + e);
        parts.push(&rest[start..end]);
    }
    parts
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
