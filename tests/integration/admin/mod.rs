//! The admin listener (`--admin-listen`): `/metrics` against what the
//! process really does (requests counted once, mappings as `/proc/PID/maps`
//! shows them, promtool's verdict), the cache API (`/cache`, prewarm,
//! evict, pin) against the kernel's residency and mappings, readiness
//! during a graceful stop, and who can reach it (never the file listeners;
//! a token off loopback; a 0600 unix socket).

mod cache_api;
mod listener;
mod metrics;

use crate::common::*;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One request to an admin address (`HOST:PORT` or `unix:PATH`), with
/// `Connection: close`; the parsed response.
pub(crate) fn call(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n");
    if method == "POST" {
        raw.push_str("Content-Length: 0\r\n");
    }
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    fn exchange(mut s: impl Read + Write, raw: &[u8]) -> Vec<u8> {
        s.write_all(raw).unwrap();
        let mut out = Vec::new();
        if let Err(e) = s.read_to_end(&mut out) {
            assert!(e.kind() == std::io::ErrorKind::ConnectionReset && !out.is_empty(), "admin read: {e}");
        }
        out
    }
    let out = match addr.strip_prefix("unix:") {
        Some(path) => {
            let s = std::os::unix::net::UnixStream::connect(path).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            exchange(s, raw.as_bytes())
        }
        None => {
            let s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            exchange(s, raw.as_bytes())
        }
    };
    Resp::parse(&out, method == "HEAD")
}

/// GET on the server's admin listener.
pub(crate) fn admin_get(srv: &Server, path: &str) -> Resp {
    call(&srv.admin(), "GET", path, &[])
}

/// POST on the server's admin listener; the JSON answer (status 200 asserted).
pub(crate) fn admin_post(srv: &Server, path: &str) -> serde_json::Value {
    let r = call(&srv.admin(), "POST", path, &[]);
    assert_eq!(r.status, 200, "POST {path}: {}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice(&r.body).unwrap()
}

/// The `/metrics` text (classic format: no Accept header).
pub(crate) fn scrape(srv: &Server) -> String {
    let r = admin_get(srv, "/metrics");
    assert_eq!(r.status, 200);
    String::from_utf8(r.body).unwrap()
}

/// The value of one series (`name` or `name{labels}`, exactly as exposed).
pub(crate) fn series(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `GET /cache?{query}` as JSON.
pub(crate) fn cache(srv: &Server, query: &str) -> serde_json::Value {
    let r = admin_get(srv, &format!("/cache{query}"));
    assert_eq!(r.status, 200, "/cache{query}: {}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_slice(&r.body).unwrap()
}

/// The entry (not a window) for `path` in a `/cache` listing.
pub(crate) fn entry<'a>(listing: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    listing["entries"].as_array().unwrap().iter().find(|e| e["path"] == path && e["kind"] != "window")
}

/// `/cache`'s entry for `path` right now.
pub(crate) fn entry_now(srv: &Server, path: &str) -> Option<serde_json::Value> {
    entry(&cache(srv, ""), path).cloned()
}

/// Bytes of the process's mappings of files under `dir` (as the kernel
/// resolves paths: `dir` is canonicalized), by `/proc/PID/maps`.
pub(crate) fn maps_bytes_under(pid: u32, dir: &Path) -> u64 {
    let dir = std::fs::canonicalize(dir).unwrap();
    let prefix = format!("{}/", dir.display());
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .filter(|l| l.split_whitespace().nth(5).is_some_and(|p| p.starts_with(&prefix)))
        .map(|l| {
            let (a, b) = l.split_whitespace().next().unwrap().split_once('-').unwrap();
            u64::from_str_radix(b, 16).unwrap() - u64::from_str_radix(a, 16).unwrap()
        })
        .sum()
}

/// Whether `/proc/PID/maps` maps `file`.
pub(crate) fn maps_file(pid: u32, file: &Path) -> bool {
    let file = std::fs::canonicalize(file).unwrap();
    let name = file.to_str().unwrap();
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().nth(5) == Some(name))
}

/// `n` bytes rounded up to whole pages.
pub(crate) fn pages_of(n: u64) -> u64 {
    let page = rustix::param::page_size() as u64;
    n.div_ceil(page) * page
}

/// Writes a file, flushes it to disk (only clean pages can be dropped) and
/// drops its pages from the page cache.
pub(crate) fn write_cold(s: &Scratch, rel: &str, data: &[u8]) -> std::path::PathBuf {
    let p = s.write(rel, data);
    std::fs::File::open(&p).unwrap().sync_all().unwrap();
    drop_pages(&p);
    p
}

/// `posix_fadvise(DONTNEED)` over the whole file: its clean pages that no
/// process has in its page tables leave the page cache.
pub(crate) fn drop_pages(p: &Path) {
    let script = "import os,sys; fd=os.open(sys.stdin.read(), os.O_RDONLY); \
                  os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)";
    let out = python(script, p.to_str().unwrap().as_bytes());
    assert!(out.status.success(), "fadvise: {}", String::from_utf8_lossy(&out.stderr));
}

/// A download the client does not keep up with: curl with `--limit-rate`
/// and its standard output a pipe nobody reads. (`--limit-rate` alone
/// averages over seconds and lets a loopback burst take a whole file in
/// milliseconds; the full pipe stops curl reading the socket, so the server
/// has bytes left to send until curl is killed.) Killed on drop.
pub(crate) struct SlowCurl(Child);

impl SlowCurl {
    pub(crate) fn start(url: &str) -> SlowCurl {
        let child = Command::new("curl")
            .args(["-sS", "--limit-rate", "200k", url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("curl is needed by this test ({e})"));
        SlowCurl(child)
    }

    pub(crate) fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for SlowCurl {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `/cache` shows a response in flight on `path`'s entry.
pub(crate) fn await_in_flight(srv: &Server, path: &str) {
    let busy = || entry_now(srv, path).is_some_and(|e| e["in_flight"].as_u64().unwrap() > 0);
    assert!(eventually(Duration::from_secs(10), busy), "no response in flight on {path}: {}", srv.log());
}
