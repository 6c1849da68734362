//! The soak driver (`scripts/soak` runs it): a long mixed load against a
//! running mapserve on 127.0.0.1, bounded in time, that checks every byte it
//! receives.
//!
//! The files live in `--root` and follow a content model, so that any byte of
//! any response can be checked: byte `i` of version `v` of file `f` is a
//! function of (f, v, i), never zero. Some files are replaced by rename with
//! a new version every few seconds, some are appended to every second (an
//! appended file's bytes depend on (f, i) only, so every version is a prefix
//! of the next), the rest never change.
//!
//! HTTP/1.1 workers (raw sockets, keep-alive) and HTTP/2 workers (hyper's
//! client, several streams per connection) pick at random: whole downloads,
//! single and multiple ranges, conditional requests with the ETag they saw,
//! aborted downloads and slow readers. A body that is not exactly what some
//! version of its file holds at those offsets is an integrity failure; an
//! unexpected status or a broken transfer that was not aborted on purpose is
//! an error. Prints one JSON summary.
//!
//! `cargo run --release --example soak -- --addr 127.0.0.1:PORT --root DIR --secs N`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use http_body_util::BodyExt;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Byte `i` of version `v` of file `f`: never zero.
fn byte(f: u64, v: u64, i: u64) -> u8 {
    let mut x = (f << 40) ^ (v << 20) ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    1 + (x % 255) as u8
}

fn content(f: u64, v: u64, len: u64) -> Vec<u8> {
    (0..len).map(|i| byte(f, v, i)).collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Static,
    Replaced,
    Appended,
}

struct File {
    id: u64,
    name: String,
    kind: Kind,
    /// Versions that exist or existed (replaced files), and the length each.
    versions: Mutex<Vec<(u64, u64)>>,
}

impl File {
    /// Whether `body` is exactly bytes `[first, first + len)` of some version.
    fn matches(&self, first: u64, body: &[u8]) -> bool {
        let versions = self.versions.lock().unwrap().clone();
        let fits = |len: u64| first + body.len() as u64 <= len;
        match self.kind {
            // Every version is a prefix of the next: the bytes alone decide.
            Kind::Appended => body.iter().enumerate().all(|(k, &b)| b == byte(self.id, 0, first + k as u64)),
            _ => versions.iter().any(|&(v, len)| {
                fits(len) && body.iter().enumerate().all(|(k, &b)| b == byte(self.id, v, first + k as u64))
            }),
        }
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    integrity: AtomicU64,
    aborts: AtomicU64,
    not_modified: AtomicU64,
    h2: AtomicU64,
}

struct World {
    files: Vec<File>,
    addr: String,
    root: PathBuf,
    stop: AtomicBool,
    c: Counters,
    etags: Mutex<HashMap<u64, String>>,
    errors_seen: Mutex<Vec<String>>,
}

impl World {
    fn error(&self, what: String) {
        self.c.errors.fetch_add(1, Ordering::Relaxed);
        let mut seen = self.errors_seen.lock().unwrap();
        if seen.len() < 20 {
            seen.push(what);
        }
    }

    fn integrity(&self, what: String) {
        self.c.integrity.fetch_add(1, Ordering::Relaxed);
        self.error(format!("INTEGRITY {what}"));
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What one request asks for.
enum Ask {
    Whole,
    Range(u64, u64),
    Multi,
    Conditional,
}

fn setup(root: &std::path::Path) -> Vec<File> {
    let mut files = Vec::new();
    let mut add = |name: String, kind: Kind, len: u64| {
        let id = files.len() as u64;
        std::fs::write(root.join(&name), content(id, 0, len)).unwrap();
        files.push(File { id, name, kind, versions: Mutex::new(vec![(0, len)]) });
    };
    for i in 0..40u64 {
        add(format!("small{i}.bin"), Kind::Static, 1 + i * 1600);
    }
    for i in 0..12u64 {
        add(format!("medium{i}.bin"), Kind::Static, 100_000 + i * 700_000);
    }
    for i in 0..2u64 {
        add(format!("large{i}.bin"), Kind::Static, (40 + 30 * i) << 20);
    }
    for i in 0..8u64 {
        add(format!("replaced{i}.bin"), Kind::Replaced, 50_000 + i * 400_000);
    }
    for i in 0..4u64 {
        add(format!("appended{i}.log"), Kind::Appended, 10_000 + i * 90_000);
    }
    files
}

/// Replaces and appends while the load runs.
fn mutate(w: &World) {
    let mut rng = Rng(0x5eed);
    let mut version = 1u64;
    while !w.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(500));
        for f in &w.files {
            match f.kind {
                Kind::Replaced if rng.below(4) == 0 => {
                    let len = 20_000 + rng.below(3 << 20);
                    // Known before it becomes visible.
                    f.versions.lock().unwrap().push((version, len));
                    let tmp = w.root.join(format!(".{}.tmp", f.name));
                    std::fs::write(&tmp, content(f.id, version, len)).unwrap();
                    std::fs::rename(&tmp, w.root.join(&f.name)).unwrap();
                    version += 1;
                }
                Kind::Appended => {
                    let (_, len) = *f.versions.lock().unwrap().last().unwrap();
                    let add = 1 + rng.below(20_000);
                    let bytes: Vec<u8> = (len..len + add).map(|i| byte(f.id, 0, i)).collect();
                    std::fs::OpenOptions::new()
                        .append(true)
                        .open(w.root.join(&f.name))
                        .unwrap()
                        .write_all(&bytes)
                        .unwrap();
                    f.versions.lock().unwrap().push((0, len + add));
                }
                _ => {}
            }
        }
    }
}

/// One HTTP/1.1 keep-alive client.
fn h1_worker(w: &World, seed: u64) {
    let mut rng = Rng(seed);
    let mut conn: Option<std::io::BufReader<TcpStream>> = None;
    while !w.stop.load(Ordering::Relaxed) {
        let f = &w.files[rng.below(w.files.len() as u64) as usize];
        let len = f.versions.lock().unwrap().first().map(|v| v.1).unwrap_or(1);
        let ask = match rng.below(10) {
            0..=3 => Ask::Whole,
            4..=6 => {
                let a = rng.below(len);
                Ask::Range(a, a + rng.below(200_000))
            }
            7 => Ask::Multi,
            _ => Ask::Conditional,
        };
        let (abort_after, slow) = match rng.below(20) {
            0 => (Some(rng.below(100_000) as usize), false),
            1 => (None, true),
            _ => (None, false),
        };
        let mut headers = String::new();
        match &ask {
            Ask::Range(a, b) => headers.push_str(&format!("Range: bytes={a}-{b}\r\n")),
            Ask::Multi => headers.push_str("Range: bytes=0-9,100-199,-50\r\n"),
            Ask::Conditional => {
                if let Some(tag) = w.etags.lock().unwrap().get(&f.id) {
                    headers.push_str(&format!("If-None-Match: {tag}\r\n"));
                }
            }
            Ask::Whole => {}
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match TcpStream::connect(&w.addr) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    conn.insert(std::io::BufReader::with_capacity(256 << 10, s))
                }
                Err(e) => {
                    w.error(format!("connect: {e}"));
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            },
        };
        let req = format!("GET /{} HTTP/1.1\r\nHost: soak\r\n{headers}\r\n", f.name);
        w.c.requests.fetch_add(1, Ordering::Relaxed);
        if c.get_mut().write_all(req.as_bytes()).is_err() {
            conn = None;
            continue;
        }
        match read_response(c, abort_after, slow) {
            Ok(Some((status, hdrs, body))) => {
                w.c.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                check(w, f, &ask, status, &hdrs, &body);
            }
            Ok(None) => {
                w.c.aborts.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
            Err(e) => {
                w.error(format!("h1 {}: {e}", f.name));
                conn = None;
            }
        }
    }
}

/// Status, headers and body of one response.
type Response = (u16, Vec<(String, String)>, Vec<u8>);

/// One response from a keep-alive connection; `Ok(None)` when aborted on
/// purpose after `abort_after` body bytes.
fn read_response(
    c: &mut std::io::BufReader<TcpStream>,
    abort_after: Option<usize>,
    slow: bool,
) -> std::io::Result<Option<Response>> {
    use std::io::BufRead;
    let mut line = String::new();
    c.read_line(&mut line)?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        c.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let len: usize =
        headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let len = if status == 304 { 0 } else { len };
    let mut body = vec![0u8; len];
    let mut got = 0;
    while got < len {
        if abort_after.is_some_and(|n| got >= n) {
            return Ok(None);
        }
        let want = if slow { (len - got).min(16 << 10) } else { len - got };
        let n = c.read(&mut body[got..got + want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("short body {got} of {len}"),
            ));
        }
        got += n;
        if slow {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(Some((status, headers, body)))
}

fn check(w: &World, f: &File, ask: &Ask, status: u16, headers: &[(String, String)], body: &[u8]) {
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if let Some(tag) = header("etag") {
        w.etags.lock().unwrap().insert(f.id, tag.to_owned());
    }
    match (ask, status) {
        (_, 304) => {
            w.c.not_modified.fetch_add(1, Ordering::Relaxed);
        }
        (Ask::Whole | Ask::Conditional, 200) | (Ask::Range(..) | Ask::Multi, 200) => {
            if !f.matches(0, body) {
                w.integrity(format!("{} 200: {} bytes match no version", f.name, body.len()));
            }
        }
        (Ask::Range(..) | Ask::Multi, 206)
            if !header("content-type").is_some_and(|t| t.starts_with("multipart/byteranges")) =>
        {
            let first = header("content-range")
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse().ok());
            match first {
                Some(first) if f.matches(first, body) => {}
                _ => {
                    w.integrity(format!("{} 206 at {first:?}: {} bytes match no version", f.name, body.len()))
                }
            }
        }
        (Ask::Range(..) | Ask::Multi, 206) => {
            // Every part's bytes, found by its Content-Range.
            let text = body;
            let mut at = 0;
            while let Some(pos) = find(&text[at..], b"Content-Range: bytes ") {
                let start = at + pos + 21;
                let line_end = start + find(&text[start..], b"\r\n").unwrap_or(0);
                let spec = String::from_utf8_lossy(&text[start..line_end]).into_owned();
                let (range, _) = spec.split_once('/').unwrap_or(("0-0", ""));
                let (a, b) = range.split_once('-').unwrap_or(("0", "0"));
                let (a, b): (u64, u64) = (a.parse().unwrap_or(0), b.parse().unwrap_or(0));
                let data_start = line_end + find(&text[line_end..], b"\r\n\r\n").unwrap_or(0) + 4;
                let data_end = (data_start + (b - a + 1) as usize).min(text.len());
                if !f.matches(a, &text[data_start..data_end]) {
                    w.integrity(format!("{} multipart part {spec}", f.name));
                }
                at = data_end;
            }
        }
        (Ask::Range(..) | Ask::Multi, 416) => {}
        (_, s) => w.error(format!("{}: unexpected status {s}", f.name)),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|x| x == needle)
}

/// One HTTP/2 connection with several concurrent streams.
async fn h2_worker(w: Arc<World>, seed: u64) {
    let mut rng = Rng(seed);
    while !w.stop.load(Ordering::Relaxed) {
        let Ok(stream) = tokio::net::TcpStream::connect(&w.addr).await else {
            w.error("h2 connect".into());
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let io = hyper_util::rt::TokioIo::new(stream);
        let Ok((sender, conn)) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await
        else {
            w.error("h2 handshake".into());
            continue;
        };
        tokio::spawn(conn);
        // A few rounds of 8 concurrent streams on this connection.
        for _ in 0..1 + rng.below(20) {
            if w.stop.load(Ordering::Relaxed) {
                break;
            }
            let mut tasks = Vec::new();
            for _ in 0..8 {
                let f_idx = rng.below(w.files.len() as u64) as usize;
                let len = w.files[f_idx].versions.lock().unwrap()[0].1;
                let a = rng.below(len);
                let range = (rng.below(2) == 0).then(|| (a, a + rng.below(300_000)));
                let abort = rng.below(15) == 0;
                let (w2, mut sender) = (w.clone(), sender.clone());
                tasks.push(tokio::spawn(async move {
                    let f = &w2.files[f_idx];
                    let mut req = http::Request::get(format!("http://soak/{}", f.name));
                    if let Some((a, b)) = range {
                        req = req.header("range", format!("bytes={a}-{b}"));
                    }
                    let req = req.body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
                    w2.c.requests.fetch_add(1, Ordering::Relaxed);
                    w2.c.h2.fetch_add(1, Ordering::Relaxed);
                    let resp = match sender.send_request(req).await {
                        Ok(r) => r,
                        Err(e) => return w2.error(format!("h2 {}: {e}", f.name)),
                    };
                    let status = resp.status().as_u16();
                    let headers: Vec<(String, String)> = resp
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                        .collect();
                    if abort {
                        // Drop the response mid-way: the stream is reset.
                        w2.c.aborts.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    match resp.into_body().collect().await {
                        Ok(body) => {
                            let body = body.to_bytes();
                            w2.c.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                            let ask = match range {
                                Some((a, b)) => Ask::Range(a, b),
                                None => Ask::Whole,
                            };
                            check(&w2, f, &ask, status, &headers, &body);
                        }
                        Err(e) => w2.error(format!("h2 body {}: {e}", f.name)),
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let addr = arg("--addr").expect("--addr HOST:PORT");
    let root = PathBuf::from(arg("--root").expect("--root DIR"));
    let secs: u64 = arg("--secs").and_then(|s| s.parse().ok()).unwrap_or(60);
    if arg("--setup").is_some() {
        setup(&root);
        return;
    }
    let files = setup(&root);
    let w = Arc::new(World {
        files,
        addr,
        root,
        stop: AtomicBool::new(false),
        c: Counters::default(),
        etags: Mutex::new(HashMap::new()),
        errors_seen: Mutex::new(Vec::new()),
    });
    let start = Instant::now();
    let mut threads = Vec::new();
    {
        let w = w.clone();
        threads.push(std::thread::spawn(move || mutate(&w)));
    }
    for i in 0..6 {
        let w = w.clone();
        threads.push(std::thread::spawn(move || h1_worker(&w, 0x1234_5678 + i)));
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let h2: Vec<_> = (0..3).map(|i| rt.spawn(h2_worker(w.clone(), 0xabcd_ef01 + i))).collect();
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(200));
    }
    w.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    rt.block_on(async {
        for t in h2 {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
    });
    let c = &w.c;
    let summary = serde_json::json!({
        "secs": start.elapsed().as_secs(),
        "requests": c.requests.load(Ordering::Relaxed),
        "h2_requests": c.h2.load(Ordering::Relaxed),
        "bytes": c.bytes.load(Ordering::Relaxed),
        "not_modified": c.not_modified.load(Ordering::Relaxed),
        "aborts": c.aborts.load(Ordering::Relaxed),
        "errors": c.errors.load(Ordering::Relaxed),
        "integrity_failures": c.integrity.load(Ordering::Relaxed),
        "first_errors": *w.errors_seen.lock().unwrap(),
    });
    println!("{summary}");
}
