//! The access log as its readers see it: goaccess parses every `combined`
//! line of a mixed run; every `json` line parses with the right types and
//! facts (cache outcome, coding, range, host); `bytes` is exact for complete
//! downloads (HTTP/1.1 and HTTP/2), for a download stalled past the send
//! timeout and for a client that hangs up; `--access-log-file` reopened by
//! SIGUSR1 loses no line; a log reader that never reads does not slow
//! requests (lines are dropped and counted instead); and bad
//! `--log-level` / `--access-log-format` values stop start-up.

use crate::common::*;
use rustix::process::Signal;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

const REFERER: &str = r#"http://ref.example/a "quoted" page"#;
const AGENT: &str = r#"agent with "quotes" and spaces"#;
/// A raw request whose target holds `%22`, a bare `"` and raw UTF-8 bytes
/// (for the file `say""é.txt`).
const RAW_REQUEST: &[u8] = b"GET /say%22\"\xC3\xA9.txt?n=11 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
const RAW_TARGET: &str = "/say%22\"\u{e9}.txt?n=11";

/// A small text file (compressible), a mapped binary over 64 KiB, a directory.
fn tree(tag: &str) -> Scratch {
    let s = Scratch::new(tag);
    s.write("a.txt", "hello world line\n".repeat(200).as_bytes());
    s.write("big.bin", &pattern(100_000, 3));
    s.write("dir/x.txt", b"x");
    s.write("say\"\"\u{e9}.txt", b"quoted\n");
    s
}

/// curl once: (status, body bytes received, response head and -w line).
fn curl(srv: &Server, target: &str, extra: &[&str]) -> (u16, u64, String) {
    let url = srv.url(target);
    let mut args = vec!["-sS", "-o", "/dev/null", "-D", "-", "-w", "\n%{http_code} %{size_download}"];
    args.extend_from_slice(extra);
    args.push(&url);
    let out = run("curl", &args);
    let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let (code, size) = text.lines().last().unwrap().split_once(' ').unwrap();
    (code.parse().unwrap(), size.parse().unwrap(), text)
}

/// 200, 200 again, HEAD, 304, compressed, 206, a mapped 200, HTTP/2, 404, a
/// listing, a raw target and a malformed request (400), each target unique:
/// what the client saw of each (target, status, body bytes).
fn mixed_run(srv: &Server) -> Vec<(String, u16, u64)> {
    let mut sent = Vec::new();
    let mut get = |target: &str, extra: &[&str], want: u16| {
        let (status, bytes, head) = curl(srv, target, extra);
        assert_eq!(status, want, "{target} {extra:?}: {head}");
        sent.push((target.to_owned(), status, bytes));
        head
    };
    get("/a.txt?n=1", &["-e", REFERER, "-A", AGENT], 200);
    get("/a.txt?n=2", &[], 200);
    let head = get("/a.txt?n=3", &["-I"], 200);
    let etag = head.lines().find_map(|l| l.strip_prefix("etag: ")).expect("an ETag").trim().to_owned();
    get("/a.txt?n=4", &["-H", &format!("If-None-Match: {etag}")], 304);
    let head = get("/a.txt?n=5", &["--compressed"], 200);
    assert!(head.contains("content-encoding: "), "not compressed: {head}");
    get("/big.bin?n=6", &["-r", "0-99"], 206);
    get("/big.bin?n=7", &[], 200);
    let head = get("/big.bin?n=8", &["--http2-prior-knowledge"], 200);
    assert!(head.starts_with("http/2 200"), "{head}");
    get("/missing.txt?n=9", &[], 404);
    get("/dir/?n=10", &[], 200);
    let r = Resp::parse(&srv.raw(RAW_REQUEST), false);
    assert_eq!(r.status, 200);
    sent.push((RAW_TARGET.to_owned(), 200, r.body.len() as u64));
    let r = Resp::parse(&srv.raw(b"GARBAGE\r\n\r\n"), false);
    assert_eq!(r.status, 400);
    sent.push(("-".to_owned(), 400, 0));
    sent
}

/// The lines of a file (none if it does not exist).
fn file_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// The `json` access lines among the server's stderr lines.
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Every key of a `json` line (but `why`) and its type: s string, n string
/// or null, u unsigned integer, f number.
const KEYS: &str = "time:s client:s method:s target:s protocol:s status:u bytes:u referer:n user_agent:n \
                    duration_ms:f host:n range:n scheme:s tls:n cache:s coding:n ending:s";

/// The one JSON line whose target is `target`.
fn line_for<'a>(lines: &'a [Value], target: &str) -> &'a Value {
    let found: Vec<&Value> = lines.iter().filter(|l| l["target"] == target).collect();
    assert_eq!(found.len(), 1, "lines for {target}: {lines:#?}");
    found[0]
}

#[test]
fn goaccess_parses_every_combined_line_of_a_mixed_run() {
    if !works("goaccess", &["--version"]) {
        return skip("goaccess_parses_every_combined_line_of_a_mixed_run", "goaccess is not installed");
    }
    let s = tree("goaccess");
    let out = Scratch::new("goaccess-out");
    let file = out.join("access.log");
    let srv = Launch::new(&s.path)
        .args(&["--access-log-format", "combined", "--access-log-file", file.to_str().unwrap()])
        .start();
    let sent = mixed_run(&srv);
    let stderr = log_at_exit(srv);
    let lines = file_lines(&file);
    assert_eq!(lines.len(), sent.len(), "{lines:#?}");
    assert!(!stderr.contains("\"GET /"), "access lines on stderr too: {stderr}");
    let text = lines.join("\n");
    for want in [
        r#""GET /a.txt?n=1 HTTP/1.1" 200 3400 "http://ref.example/a \x22quoted\x22 page" "agent with \x22quotes\x22 and spaces""#,
        r#""GET /say%22\x22\xC3\xA9.txt?n=11 HTTP/1.1" 200 7 "-" "-""#,
        r#""GET /big.bin?n=8 HTTP/2.0" 200 100000 "#,
        r#" "-" 400 0 "-" "-""#,
    ] {
        assert!(text.contains(want), "no `{want}` in\n{text}");
    }
    let (report, invalid) = (out.join("report.json"), out.join("invalid.txt"));
    let args = format!(
        "{} --log-format=COMBINED -o {} --no-progress --no-global-config --invalid-requests={}",
        file.display(),
        report.display(),
        invalid.display()
    );
    let ga = run("goaccess", &args.split(' ').collect::<Vec<_>>());
    assert!(ga.status.success(), "goaccess: {}", String::from_utf8_lossy(&ga.stderr));
    let json: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let general = &json["general"];
    let invalid = std::fs::read_to_string(&invalid).unwrap_or_default();
    assert_eq!(general["failed_requests"], 0, "goaccess rejected lines:\n{invalid}\nof\n{text}");
    assert_eq!(general["valid_requests"], sent.len(), "{general}");
    assert_eq!(general["total_requests"], sent.len(), "{general}");
}

#[test]
fn every_json_line_parses_with_the_right_types_and_facts() {
    let s = tree("json");
    let out = Scratch::new("json-out");
    let file = out.join("access.json");
    let srv = Launch::new(&s.path)
        .args(&["--access-log-format", "json", "--access-log-file", file.to_str().unwrap()])
        .start();
    let host = format!("127.0.0.1:{}", srv.port);
    let sent = mixed_run(&srv);
    log_at_exit(srv);
    let lines = json_lines(&file_lines(&file).join("\n"));
    assert_eq!(lines.len(), sent.len(), "{lines:#?}");
    for v in &lines {
        let o = v.as_object().unwrap_or_else(|| panic!("not an object: {v}"));
        let refused = o["ending"] == "refused";
        assert_eq!(o.len(), KEYS.split(' ').count() + usize::from(refused), "keys of {v}");
        for (key, kind) in KEYS.split(' ').chain(refused.then_some("why:s")).filter_map(|k| k.split_once(':'))
        {
            let x = &o.get(key).unwrap_or_else(|| panic!("no {key} in {v}"));
            let ok = match kind {
                "s" => x.is_string(),
                "n" => x.is_string() || x.is_null(),
                "u" => x.is_u64(),
                _ => x.as_f64().is_some_and(|d| d >= 0.0),
            };
            assert!(ok, "{key} is not {kind} in {v}");
        }
        let time = o["time"].as_str().unwrap().as_bytes();
        assert!(time.len() == 24 && time[10] == b'T' && time[19] == b'.' && time[23] == b'Z', "{v}");
        assert_eq!(pick(v, &["client", "scheme", "tls"]), json!(["127.0.0.1", "http", null]));
        let cache = o["cache"].as_str().unwrap();
        assert!(["hit", "load", "window", "pread", "compressed", "listing", "none"].contains(&cache), "{v}");
        assert!(["complete", "cancelled", "refused"].contains(&o["ending"].as_str().unwrap()), "{v}");
        assert!(o["coding"].is_null() || ["br", "gzip", "zstd"].contains(&o["coding"].as_str().unwrap()));
    }
    // Each line says what the client saw.
    for (target, status, bytes) in &sent {
        let l = line_for(&lines, target);
        assert_eq!(pick(l, &["status", "bytes"]), json!([status, bytes]), "{l}");
    }
    let at = |n: usize| line_for(&lines, &sent[n - 1].0).clone();
    assert_eq!(pick(&at(1), &["referer", "user_agent", "host"]), json!([REFERER, AGENT, host]));
    assert_eq!(pick(&at(1), &["cache", "range", "ending"]), json!(["load", null, "complete"]), "first GET");
    assert_eq!(at(2)["cache"], "hit", "second GET: {}", at(2));
    assert_eq!(pick(&at(3), &["method", "bytes"]), json!(["HEAD", 0]));
    assert_eq!(pick(&at(4), &["status", "bytes"]), json!([304, 0]));
    assert_eq!(at(5)["cache"], "compressed", "{}", at(5));
    assert!(["br", "gzip", "zstd"].contains(&at(5)["coding"].as_str().unwrap_or("none")), "{}", at(5));
    assert_eq!(pick(&at(6), &["status", "range", "bytes"]), json!([206, "bytes=0-99", 100]));
    assert_eq!(pick(&at(7), &["bytes", "ending", "range"]), json!([100_000, "complete", null]));
    assert_eq!(pick(&at(8), &["protocol", "bytes", "host"]), json!(["HTTP/2.0", 100_000, host]));
    assert_eq!(pick(&at(10), &["cache", "status"]), json!(["listing", 200]));
    assert_eq!(pick(&at(11), &["host", "cache"]), json!(["t", "load"]));
    let bad = at(12);
    assert_eq!(pick(&bad, &["method", "status", "bytes", "ending"]), json!(["-", 400, 0, "refused"]));
    assert!(bad["why"].is_string(), "{bad}");
}

/// The values of `keys` in `v`, as an array.
fn pick(v: &Value, keys: &[&str]) -> Value {
    Value::Array(keys.iter().map(|k| v[*k].clone()).collect())
}

#[test]
fn complete_downloads_log_the_whole_body_over_http1_and_http2() {
    let s = Scratch::new("complete-bytes");
    let src = s.write("big.bin", &pattern(3_000_000, 9));
    let out = Scratch::new("complete-bytes-out");
    let srv = Launch::new(&s.path).args(&["--access-log-format", "json"]).start();
    for (tag, extra) in [("h1", "--http1.1"), ("h2", "--http2-prior-knowledge")] {
        let dest = out.join(tag);
        let url = srv.url(&format!("/big.bin?{tag}"));
        let r = run("curl", &["-sS", extra, "-o", dest.to_str().unwrap(), &url]);
        assert!(r.status.success(), "{tag}: {}", String::from_utf8_lossy(&r.stderr));
        assert_eq!(sha256_file(&dest), sha256_file(&src), "{tag}");
    }
    let lines = json_lines(&log_at_exit(srv));
    for (tag, protocol) in [("h1", "HTTP/1.1"), ("h2", "HTTP/2.0")] {
        let l = line_for(&lines, &format!("/big.bin?{tag}"));
        let want = json!([protocol, 200, 3_000_000, "complete"]);
        assert_eq!(pick(l, &["protocol", "status", "bytes", "ending"]), want);
    }
}

/// A connection to `port` whose receive buffer is `rcvbuf` bytes (set
/// before connecting, so that the window stays small).
fn small_window(port: u16, rcvbuf: usize) -> TcpStream {
    use rustix::net::{AddressFamily, SocketType};
    let sock = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    rustix::net::sockopt::set_socket_recv_buffer_size(&sock, rcvbuf).unwrap();
    rustix::net::connect(&sock, &std::net::SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
    let c = TcpStream::from(sock);
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c
}

/// Sends a GET for `target` and reads the head and at least `want` body
/// bytes; returns the body bytes read.
fn start_download(c: &mut TcpStream, target: &str, want: usize) -> usize {
    c.write_all(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).unwrap();
    let (mut got, mut buf) = (Vec::new(), vec![0u8; 64 << 10]);
    loop {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            assert!(got.starts_with(b"HTTP/1.1 200 "), "{:?}", String::from_utf8_lossy(&got[..end]));
            if got.len() - end - 4 >= want {
                return got.len() - end - 4;
            }
        }
    }
}

const BIG: usize = 50 << 20;

#[test]
fn a_download_stalled_past_the_send_timeout_logs_exactly_the_bytes_received() {
    let s = Scratch::new("stall-bytes");
    s.write("big.bin", &vec![b'x'; BIG]);
    let srv = Launch::new(&s.path).args(&["--access-log-format", "json", "--send-timeout", "2s"]).start();
    let mut c = small_window(srv.port, 16 << 10);
    let mut body = start_download(&mut c, "/big.bin?stall", 1 << 20);
    // Stop reading: the server gives up after 2 s and logs the request.
    let logged = || json_lines(&srv.log()).into_iter().find(|l| l["target"] == "/big.bin?stall");
    assert!(eventually(Duration::from_secs(20), || logged().is_some()), "no line: {}", srv.log());
    // Everything the kernel took still arrives, then EOF.
    let rest = std::io::copy(&mut c, &mut std::io::sink());
    body += rest.unwrap_or_else(|e| panic!("draining after {body} body bytes failed: {e}")) as usize;
    let l = logged().unwrap();
    assert!(body < BIG, "the whole file arrived: {body}");
    assert_eq!(pick(&l, &["status", "ending"]), json!([200, "cancelled"]), "{l}");
    assert_eq!(l["bytes"].as_u64(), Some(body as u64), "logged vs received: {l}");
}

#[test]
fn a_client_that_hangs_up_is_logged_cancelled_with_at_most_what_could_have_left() {
    let s = Scratch::new("hangup-bytes");
    s.write("big.bin", &vec![b'x'; BIG]);
    let srv = Launch::new(&s.path).start();
    // At most: what we read, what sat in our receive buffer, and the most
    // the server's send buffer can hold.
    let wmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").unwrap();
    let wmem_max: u64 = wmem.split_whitespace().nth(2).unwrap().parse().unwrap();
    // Where the client's reset lands in the server's write loop varies (it
    // may find the splice pipe empty or not): try several times.
    for i in 0..8 {
        let target = format!("/big.bin?hangup={i}");
        let mut c = small_window(srv.port, 64 << 10);
        let received = start_download(&mut c, &target, 1 << 20) as u64;
        let rcvbuf = rustix::net::sockopt::socket_recv_buffer_size(&c).unwrap() as u64;
        drop(c);
        let find = || srv.log().lines().find(|l| l.contains(&format!("target={target} "))).map(str::to_owned);
        assert!(eventually(Duration::from_secs(20), || find().is_some()), "no line: {}", srv.log());
        let line = find().unwrap();
        assert!(line.contains(" status=200 bytes=") && line.contains(" complete=false ending=\"cancelled\""));
        let bytes: u64 = line.split(" bytes=").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        assert!(bytes >= received, "try {i}: logged {bytes}, but {received} arrived: {line}");
        assert!(bytes <= received + rcvbuf + wmem_max && bytes < BIG as u64, "logged {bytes}: {line}");
    }
}

#[test]
fn sigusr1_reopens_the_access_log_file_and_no_line_is_lost() {
    let s = tree("rotate");
    let logs = Scratch::new("rotate-logs");
    let (path, rotated) = (logs.join("access.log"), logs.join("access.log.1"));
    let srv = Launch::new(&s.path)
        .args(&["--access-log-format", "combined", "--access-log-file", path.to_str().unwrap()])
        .start();
    for i in 0..5 {
        assert_eq!(srv.get(&format!("/a.txt?before={i}")).status, 200);
    }
    assert!(eventually(Duration::from_secs(10), || file_lines(&path).len() == 5), "{:?}", file_lines(&path));
    assert!(eventually(Duration::from_secs(10), || catches_signal(srv.pid(), 10)), "no SIGUSR1 handler");
    std::fs::rename(&path, &rotated).unwrap();
    srv.signal(Signal::USR1);
    assert!(eventually(Duration::from_secs(10), || path.exists()), "SIGUSR1 made no new file: {}", srv.log());
    for i in 0..7 {
        assert_eq!(srv.get(&format!("/a.txt?after={i}")).status, 200);
    }
    let stderr = log_at_exit(srv);
    assert!(!stderr.contains("\"GET /"), "access lines on stderr: {stderr}");
    let (old, new) = (file_lines(&rotated), file_lines(&path));
    assert!(old.len() == 5 && old.iter().all(|l| l.contains("GET /a.txt?before=")), "{old:#?}");
    assert!(new.len() == 7 && new.iter().all(|l| l.contains("GET /a.txt?after=")), "{new:#?}");
}

/// Sends `n` pipelined GETs of `target` on one connection (the last one
/// asks to close); returns the whole response stream.
fn pipelined(port: u16, target: &str, n: usize) -> Vec<u8> {
    let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = c.try_clone().unwrap();
    let mut requests = String::new();
    for i in 0..n {
        let close = if i + 1 == n { "Connection: close\r\n" } else { "" };
        requests.push_str(&format!("GET {target} HTTP/1.1\r\nHost: t\r\n{close}\r\n"));
    }
    let writer = std::thread::spawn(move || w.write_all(requests.as_bytes()));
    let mut out = Vec::new();
    let _ = (&c).read_to_end(&mut out);
    // A server that stalled has failed the test already: unblock the writer.
    let _ = c.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    out
}

#[test]
fn a_log_reader_that_never_reads_does_not_slow_requests() {
    use std::os::unix::fs::OpenOptionsExt;
    let s = Scratch::new("fifo-root");
    s.write("t", b"ok");
    let logs = Scratch::new("fifo");
    let fifo = logs.join("access.fifo");
    assert!(run("mkfifo", &[fifo.to_str().unwrap()]).status.success());
    // Opened for reading first (non-blocking, so that the open returns), so
    // the server's open for writing succeeds; then never read.
    let reader = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo).unwrap();
    let srv = Launch::new(&s.path)
        .args(&["--access-log-format", "combined", "--access-log-file", fifo.to_str().unwrap()])
        .args(&["--admin-listen", "127.0.0.1:0"])
        .start();
    // More requests than the writer's queue (16,384 lines) and the pipe hold.
    let n = 20_000;
    let start = Instant::now();
    let out = pipelined(srv.port, "/t", n);
    let took = start.elapsed();
    let count = |needle: &[u8]| out.windows(needle.len()).filter(|w| w == &needle).count();
    assert_eq!((count(b"HTTP/1.1 200 "), count(b"HTTP/1.1 ")), (n, n), "not every request got its 200");
    eprintln!("{n} requests with a stuck log reader took {took:?}");
    assert!(took < Duration::from_secs(30), "{n} requests took {took:?}");
    assert_eq!(srv.get("/t").body, b"ok", "still serving");
    let dropped = || {
        let metrics = String::from_utf8(run("curl", &["-sS", &srv.admin_url("/metrics")]).stdout).unwrap();
        let value = metrics.lines().find_map(|l| l.strip_prefix("mapserve_access_log_dropped_total "));
        value.map_or(0.0, |v| v.trim().parse::<f64>().unwrap())
    };
    assert!(eventually(Duration::from_secs(10), || dropped() > 0.0), "no dropped lines counted");
    drop(srv);
    drop(reader);
}

/// Starts the binary with `args` and `env`; returns its exit status (if it
/// exits within 10 s) and the first stderr line mentioning `key`.
fn start_up(args: &[&str], env: &[(&str, &str)], key: &str) -> (Option<i32>, String) {
    let s = Scratch::new("startup");
    let mut argv = vec![s.path.to_str().unwrap(), "-l", "127.0.0.1:0"];
    argv.extend_from_slice(args);
    let mut p = RawProcess::spawn(&argv, env);
    let line = p.wait_line(Duration::from_secs(10), |l| l.contains(key)).unwrap_or_default();
    (p.exit_within(Duration::from_secs(10)).and_then(|s| s.code()), line)
}

#[test]
fn bad_log_levels_stop_start_up_naming_log_level() {
    for (value, word) in [("verbose", "verbose"), ("mapserve=loud", "loud"), ("nonsense=info", "nonsense")] {
        let (code, line) = start_up(&["--log-level", value], &[], "log-level");
        assert_eq!(code, Some(2), "--log-level {value}: {line}");
        assert!(line.contains(word), "--log-level {value}: {line}");
    }
    let (code, line) = start_up(&[], &[("MAPSERVE_LOG_LEVEL", "verbose")], "log-level");
    assert_eq!(code, Some(2), "MAPSERVE_LOG_LEVEL=verbose: {line}");
    let s = tree("log-level-ok");
    let srv = Launch::new(&s.path).args(&["--log-level", "info,hyper=warn"]).start();
    assert_eq!(srv.get("/a.txt").status, 200);
}

#[test]
fn an_unknown_access_log_format_stops_start_up() {
    let (code, line) = start_up(&["--access-log-format", "xml"], &[], "access-log-format");
    assert_eq!(code, Some(2), "{line}");
    assert!(line.contains("xml"), "{line}");
    let (code, line) = start_up(&[], &[("MAPSERVE_ACCESS_LOG_FORMAT", "xml")], "MAPSERVE_ACCESS_LOG_FORMAT");
    assert_eq!(code, Some(2), "{line}");
}
