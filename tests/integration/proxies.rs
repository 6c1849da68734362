//! mapserve behind proxies, over real sockets with real proxies in front:
//! HAProxy sending the PROXY protocol (v1 in TCP mode, v2 with the shipped
//! `config/haproxy.cfg`), hand-built PROXY v1/v2 headers (valid, LOCAL,
//! missing, malformed, too slow), the conveyed address deciding trust,
//! forwarded headers spoofed by untrusted clients and believed from trusted
//! ones (client, scheme, redirect prefix, relative listing links), nginx in
//! front over a unix socket stripping a path prefix, and the unix-socket
//! listener itself (mode, stale files, a live path refused, removal on exit,
//! permissions as `nobody`, and start-up that never wedges the runtime).

use crate::common::*;
use rustix::process::Signal;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// One access-log line, as `key=value` fields (quotes around values removed).
#[derive(Debug)]
struct Access {
    line: String,
    fields: Vec<(String, String)>,
}

impl Access {
    fn parse(line: &str) -> Option<Access> {
        let (_, rest) = line.split_once("mapserve::access:")?;
        let fields = rest
            .split_whitespace()
            .filter_map(|f| f.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
            .collect();
        Some(Access { line: line.to_owned(), fields })
    }

    fn field(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn get(&self, key: &str) -> &str {
        self.field(key).unwrap_or_else(|| panic!("no `{key}` in access line {}", self.line))
    }
}

/// Every access-log line so far.
fn access_lines(log: &str) -> Vec<Access> {
    log.lines().filter_map(Access::parse).collect()
}

/// The one access-log line for `target` (waits for it: the line is written
/// when the response ends, which may be just after the client has it).
fn access_for(srv: &Server, target: &str) -> Access {
    let find = || -> Vec<Access> {
        access_lines(&srv.log()).into_iter().filter(|a| a.field("target") == Some(target)).collect()
    };
    assert!(
        eventually(Duration::from_secs(10), || !find().is_empty()),
        "no access line for {target}:\n{}",
        srv.log()
    );
    let mut found = find();
    assert_eq!(found.len(), 1, "one access line for {target}:\n{}", srv.log());
    found.remove(0)
}

/// What one connection got back.
#[derive(Debug)]
struct Exchange {
    /// Every byte the server sent.
    answer: Vec<u8>,
    /// The server closed (FIN or reset); false: nothing closed it in 8 s.
    closed: bool,
    /// From connect to the close.
    took: Duration,
    /// This end's address, which the server sees as the peer.
    local: SocketAddr,
}

/// Connects to 127.0.0.1:`port`, writes `pieces` (50 ms apart) and reads
/// until the server closes.
fn exchange(port: u16, pieces: &[&[u8]]) -> Exchange {
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let local = s.local_addr().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        // The server may already have closed (that is the point of some
        // cases); what it answered is checked below.
        let _ = s.write_all(piece);
    }
    let mut answer = Vec::new();
    let closed = match s.read_to_end(&mut answer) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    Exchange { answer, closed, took: started.elapsed(), local }
}

/// Writes `bytes` one at a time, `gap_ms` apart, while another thread reads;
/// stops at the server's close. What the server sent, and when it closed
/// (panics if it did not within 8 s).
fn trickle(port: u16, bytes: &[u8], gap_ms: u64) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut reader = s.try_clone().unwrap();
    reader.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let read = std::thread::spawn(move || {
        let mut answer = Vec::new();
        let closed = match reader.read_to_end(&mut answer) {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        (answer, closed, started.elapsed())
    });
    for b in bytes {
        if read.is_finished() || s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(gap_ms));
    }
    let (answer, closed, took) = read.join().unwrap();
    assert!(closed, "no close within 8 s");
    (answer, took)
}

/// A GET with `Connection: close` and extra header lines.
fn get_with(target: &str, headers: &[(&str, &str)]) -> String {
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// `pieces` on a new connection; the one complete response, and the
/// connection's local address.
fn http(port: u16, pieces: &[&[u8]]) -> (Resp, SocketAddr) {
    let x = exchange(port, pieces);
    assert!(x.closed, "no close within 8 s; got {:?}", String::from_utf8_lossy(&x.answer));
    (Resp::parse(&x.answer, false), x.local)
}

/// Asserts the server closed the connection without sending a byte.
fn assert_unanswered(x: &Exchange, what: &str) {
    assert!(x.closed, "{what}: the connection was not closed within 8 s");
    assert!(x.answer.is_empty(), "{what}: answered {:?}", String::from_utf8_lossy(&x.answer));
}

/// The PROXY v2 signature.
const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A PROXY v2 header: version/command byte, family/transport byte, the
/// address block and TLVs.
fn v2(ver_cmd: u8, fam: u8, block: &[u8], tlvs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut rest = block.to_vec();
    for (kind, value) in tlvs {
        rest.push(*kind);
        rest.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
        rest.extend_from_slice(value);
    }
    let mut h = V2_SIG.to_vec();
    h.push(ver_cmd);
    h.push(fam);
    h.extend_from_slice(&u16::try_from(rest.len()).unwrap().to_be_bytes());
    h.extend_from_slice(&rest);
    h
}

/// A v2 PROXY (not LOCAL) header for TCP over IPv4 or IPv6.
fn v2_proxy(src: SocketAddr, dst: SocketAddr, tlvs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut block = Vec::new();
    let fam = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            block.extend_from_slice(&s.ip().octets());
            block.extend_from_slice(&d.ip().octets());
            0x11
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            block.extend_from_slice(&s.ip().octets());
            block.extend_from_slice(&d.ip().octets());
            0x21
        }
        _ => panic!("mixed families"),
    };
    block.extend_from_slice(&src.port().to_be_bytes());
    block.extend_from_slice(&dst.port().to_be_bytes());
    v2(0x21, fam, &block, tlvs)
}

/// A v2 LOCAL header (what HAProxy's health checks send).
fn v2_local() -> Vec<u8> {
    v2(0x20, 0x00, &[], &[])
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// HAProxy in the foreground on a config written to `dir`, killed on drop.
struct Haproxy {
    child: Child,
    log: PathBuf,
}

impl Haproxy {
    /// Checks the config (`haproxy -c`), starts `haproxy -f CFG -db` and
    /// waits until `port` (the config's frontend) accepts.
    fn start(dir: &Path, cfg: &str, port: u16) -> Haproxy {
        std::fs::create_dir_all(dir).unwrap();
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, cfg).unwrap();
        let check = run("haproxy", &["-c", "-f", file.to_str().unwrap()]);
        assert!(
            check.status.success(),
            "haproxy -c rejects the config: {}{}\n{cfg}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let log = dir.join("haproxy.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("haproxy")
            .args(["-f", file.to_str().unwrap(), "-db"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("haproxy is needed by this test; scripts/test installs it");
        let mut h = Haproxy { child, log };
        let up = eventually(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok() || !matches!(h.child.try_wait(), Ok(None))
        });
        assert!(up && matches!(h.child.try_wait(), Ok(None)), "haproxy did not start: {}", h.log_text());
        h
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    /// `-db` without `-W` is one process: killing it leaves nothing behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a curl run got.
struct Curl {
    status: u16,
    /// curl's own source port.
    local_port: u16,
    /// The (last) response head, lower-cased.
    head: String,
    /// The body (with `-I`, the response head).
    body: Vec<u8>,
}

/// Runs curl with `args`, the body going to a file under `dir`.
fn curl(dir: &Path, args: &[&str]) -> Curl {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (out_file, head_file) = (dir.join(format!("curl-{n}.out")), dir.join(format!("curl-{n}.head")));
    let mut argv = vec!["-sS", "--max-time", "20", "-o", out_file.to_str().unwrap()];
    argv.extend_from_slice(&["-D", head_file.to_str().unwrap(), "-w", "%{http_code} %{local_port}"]);
    argv.extend_from_slice(args);
    let out = run("curl", &argv);
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, port) = text.trim().split_once(' ').unwrap_or_else(|| panic!("curl -w printed {text:?}"));
    let body = std::fs::read(&out_file).unwrap_or_default();
    let head = std::fs::read_to_string(&head_file).unwrap_or_default().to_ascii_lowercase();
    let _ = std::fs::remove_file(&out_file);
    let _ = std::fs::remove_file(&head_file);
    Curl { status: status.parse().unwrap(), local_port: port.parse().unwrap(), head, body }
}

/// Sends `request` over the unix socket at `path`; the whole answer, or why
/// none came within `within`.
fn unix_exchange(path: &Path, request: &[u8], within: Duration) -> Result<Vec<u8>, String> {
    let mut s = UnixStream::connect(path).map_err(|e| format!("connect {}: {e}", path.display()))?;
    s.set_read_timeout(Some(within)).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => Ok(out),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(out),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            Err(format!("no answer within {within:?} ({} bytes)", out.len()))
        }
        Err(e) => Err(format!("{e} after {} bytes", out.len())),
    }
}

fn unix_get_with(path: &Path, target: &str, headers: &[(&str, &str)]) -> Resp {
    let answer = unix_exchange(path, get_with(target, headers).as_bytes(), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{target} over {}: {e}", path.display()));
    Resp::parse(&answer, false)
}

fn unix_get(path: &Path, target: &str) -> Resp {
    unix_get_with(path, target, &[])
}

/// The permission bits of `path`, which must be a socket.
fn socket_mode(path: &Path) -> u32 {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(meta.file_type().is_socket(), "{} is not a socket", path.display());
    meta.permissions().mode() & 0o7777
}

/// CPU time (user + system, in clock ticks) the process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// A tree: a 300 KB file, a text file, a directory with files and a
/// subdirectory.
fn tree(s: &Scratch) -> (PathBuf, Vec<u8>) {
    let big = pattern(300_000, 7);
    s.write("root/big.bin", &big);
    s.write("root/a.txt", b"hello\n");
    s.write("root/sub/b.txt", b"bee\n");
    s.write("root/sub/a b&c.txt", b"odd name\n");
    s.write("root/sub/deeper/c.txt", b"sea\n");
    (s.join("root"), big)
}

// ---------------------------------------------------------------------------
// 1. HAProxy in front, PROXY v1 and v2
// ---------------------------------------------------------------------------

/// Through HAProxy at `front`: a whole file, a range, a HEAD and a request
/// from 127.0.0.2, each logged by mapserve with the address and source port
/// curl used (not HAProxy's own connection to mapserve).
fn check_through(s: &Scratch, srv: &Server, front: u16, big: &[u8], tag: &str) -> Vec<u16> {
    let url = |q: &str| format!("http://127.0.0.1:{front}/big.bin?{tag}-{q}");
    let whole = curl(&s.path, &[&url("whole")]);
    assert_eq!(whole.status, 200);
    assert!(whole.body == big, "{tag}: the body through haproxy differs ({} bytes)", whole.body.len());
    let a = access_for(srv, &format!("/big.bin?{tag}-whole"));
    assert_eq!(a.get("client"), format!("127.0.0.1:{}", whole.local_port), "{tag}: {}", a.line);
    assert_eq!((a.get("status"), a.get("bytes")), ("200", "300000"));

    let range = curl(&s.path, &["-r", "1000-1999", &url("range")]);
    assert_eq!(range.status, 206);
    assert!(range.body == big[1000..2000], "{tag}: the range through haproxy differs");
    let a = access_for(srv, &format!("/big.bin?{tag}-range"));
    assert_eq!(a.get("client"), format!("127.0.0.1:{}", range.local_port), "{tag}: {}", a.line);
    assert_eq!(a.get("status"), "206");

    let head = curl(&s.path, &["-I", &url("head")]);
    assert_eq!(head.status, 200);
    assert!(head.head.contains("content-length: 300000\r\n"), "{tag}: {}", head.head);
    let a = access_for(srv, &format!("/big.bin?{tag}-head"));
    assert_eq!((a.get("method"), a.get("bytes")), ("HEAD", "0"));
    assert_eq!(a.get("client"), format!("127.0.0.1:{}", head.local_port), "{tag}: {}", a.line);

    // Another client address: the address is conveyed too, not only the port.
    let other = curl(&s.path, &["--interface", "127.0.0.2", &url("other")]);
    assert_eq!(other.status, 200);
    let a = access_for(srv, &format!("/big.bin?{tag}-other"));
    assert_eq!(a.get("client"), format!("127.0.0.2:{}", other.local_port), "{tag}: {}", a.line);
    vec![whole.local_port, range.local_port, head.local_port, other.local_port]
}

#[test]
fn haproxy_send_proxy_v1_in_tcp_mode_conveys_each_clients_address_and_port() {
    let s = Scratch::new("haproxy-v1");
    let (root, big) = tree(&s);
    let srv = Launch::new(&root).arg("--proxy-protocol").start();
    let front = free_port();
    let cfg = format!(
        "global\n    maxconn 256\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
         frontend f\n    bind 127.0.0.1:{front}\n    default_backend b\n\
         backend b\n    server m 127.0.0.1:{} send-proxy\n",
        srv.port
    );
    let _haproxy = Haproxy::start(&s.join("haproxy"), &cfg, front);
    check_through(&s, &srv, front, &big, "v1");
    // The server itself still refuses a client that skips the proxy.
    assert_unanswered(&exchange(srv.port, &[get_with("/a.txt", &[]).as_bytes()]), "direct request");
}

/// `config/haproxy.cfg` as shipped, with only its frontend and server
/// addresses replaced.
fn shipped_haproxy_cfg(front: u16, backend: &str) -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/haproxy.cfg")).unwrap();
    let mut out = text.clone();
    for (from, to) in [
        ("    bind :80\n", format!("    bind 127.0.0.1:{front}\n")),
        ("server mapserve 127.0.0.1:8080 ", format!("server mapserve {backend} ")),
    ] {
        assert!(out.contains(from), "config/haproxy.cfg no longer has `{from}`");
        out = out.replace(from, &to);
    }
    assert!(out.contains("send-proxy-v2"), "config/haproxy.cfg is the PROXY v2 example");
    out
}

#[test]
fn the_shipped_haproxy_cfg_sends_proxy_v2_conveys_clients_and_its_health_checks_pass() {
    let s = Scratch::new("haproxy-v2");
    let (root, big) = tree(&s);
    let srv = Launch::new(&root).arg("--proxy-protocol").start();
    let front = free_port();
    let haproxy = Haproxy::start(
        &s.join("haproxy"),
        &shipped_haproxy_cfg(front, &format!("127.0.0.1:{}", srv.port)),
        front,
    );
    let ports = check_through(&s, &srv, front, &big, "v2");
    // Keep-alive through HAProxy: two requests on one client connection both
    // arrive, both logged with that connection's port.
    let (a, b) =
        (format!("http://127.0.0.1:{front}/a.txt?ka-1"), format!("http://127.0.0.1:{front}/a.txt?ka-2"));
    let out = run("curl", &["-sS", "--max-time", "20", "-v", &a, &b]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"hello\nhello\n");
    let verbose = String::from_utf8_lossy(&out.stderr);
    assert!(
        verbose.contains("Re-using existing connection"),
        "curl did not keep the connection alive: {verbose}"
    );
    let (one, two) = (access_for(&srv, "/a.txt?ka-1"), access_for(&srv, "/a.txt?ka-2"));
    assert_eq!(one.get("client"), two.get("client"), "one client connection, one client");
    assert!(one.get("client").starts_with("127.0.0.1:"));
    // The health check (HEAD / every 2 s) comes with a v2 LOCAL header:
    // mapserve answers it 200 and logs HAProxy's own address and port.
    let checks = || -> Vec<Access> {
        access_lines(&srv.log())
            .into_iter()
            .filter(|a| a.field("method") == Some("HEAD") && a.field("target") == Some("/"))
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(8), || !checks().is_empty()),
        "no health check reached mapserve: {}\nhaproxy: {}",
        srv.log(),
        haproxy.log_text()
    );
    for check in checks() {
        assert_eq!(check.get("status"), "200", "{}", check.line);
        let client = check.get("client");
        let port: u16 =
            client.strip_prefix("127.0.0.1:").unwrap_or_else(|| panic!("{client}")).parse().unwrap();
        assert!(!ports.contains(&port), "a check logged with a client's port: {}", check.line);
    }
    assert!(!haproxy.log_text().contains("is DOWN"), "haproxy: {}", haproxy.log_text());
}

// ---------------------------------------------------------------------------
// 2. PROXY headers by hand
// ---------------------------------------------------------------------------

#[test]
fn a_proxy_v1_header_names_the_client_whether_sent_with_the_request_or_in_pieces() {
    let s = Scratch::new("pp-v1");
    let (root, _) = tree(&s);
    let srv = Launch::new(&root).arg("--proxy-protocol").start();
    // Header and request in one write.
    let req = get_with("/a.txt?v1-one", &[]);
    let (r, _) = http(srv.port, &[&cat(&[b"PROXY TCP4 192.0.2.10 127.0.0.1 40001 80\r\n", req.as_bytes()])]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello\n"[..]));
    assert_eq!(access_for(&srv, "/a.txt?v1-one").get("client"), "192.0.2.10:40001");
    // IPv6.
    let req = get_with("/a.txt?v1-six", &[]);
    let (r, _) = http(srv.port, &[&cat(&[b"PROXY TCP6 2001:db8::7 ::1 40002 443\r\n", req.as_bytes()])]);
    assert_eq!(r.status, 200);
    assert_eq!(access_for(&srv, "/a.txt?v1-six").get("client"), "[2001:db8::7]:40002");
    // In pieces, the last one carrying the end of the header and the request.
    let req = get_with("/a.txt?v1-pieces", &[]);
    let last = cat(&[b"40003 80\r\n", req.as_bytes()]);
    let (r, _) = http(srv.port, &[b"PROX", b"Y TCP4 198.51.", b"100.1 127.0.0.1 ", &last]);
    assert_eq!(r.status, 200);
    assert_eq!(access_for(&srv, "/a.txt?v1-pieces").get("client"), "198.51.100.1:40003");
    // UNKNOWN: no address conveyed; the socket's peer stays the client.
    let req = get_with("/a.txt?v1-unknown", &[]);
    let (r, local) = http(srv.port, &[&cat(&[b"PROXY UNKNOWN\r\n", req.as_bytes()])]);
    assert_eq!(r.status, 200);
    assert_eq!(access_for(&srv, "/a.txt?v1-unknown").get("client"), local.to_string());
}

#[test]
fn a_proxy_v2_header_names_the_client_and_local_keeps_the_real_peer() {
    let s = Scratch::new("pp-v2");
    let (root, _) = tree(&s);
    let srv = Launch::new(&root).arg("--proxy-protocol").start();
    // IPv4 with TLVs (an authority and a unique id, as HAProxy may send).
    let header = v2_proxy(
        "203.0.113.50:50001".parse().unwrap(),
        "127.0.0.1:80".parse().unwrap(),
        &[(0x02, b"files.example"), (0x05, b"req-42")],
    );
    let req = get_with("/a.txt?v2-four", &[]);
    let (r, _) = http(srv.port, &[&cat(&[&header, req.as_bytes()])]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello\n"[..]));
    assert_eq!(access_for(&srv, "/a.txt?v2-four").get("client"), "203.0.113.50:50001");
    // IPv6, the header in its own write before the request.
    let header = v2_proxy("[2001:db8::99]:50002".parse().unwrap(), "[::1]:443".parse().unwrap(), &[]);
    let req = get_with("/a.txt?v2-six", &[]);
    let (r, _) = http(srv.port, &[&header, req.as_bytes()]);
    assert_eq!(r.status, 200);
    assert_eq!(access_for(&srv, "/a.txt?v2-six").get("client"), "[2001:db8::99]:50002");
    // LOCAL (a health check from the proxy itself): the real peer.
    let req = get_with("/a.txt?v2-local", &[]);
    let (r, local) = http(srv.port, &[&cat(&[&v2_local(), req.as_bytes()])]);
    assert_eq!(r.status, 200);
    assert_eq!(access_for(&srv, "/a.txt?v2-local").get("client"), local.to_string());
    // Two requests on one connection after one header: both are the client's.
    let two = format!("GET /a.txt?v2-ka-1 HTTP/1.1\r\nHost: t\r\n\r\n{}", get_with("/a.txt?v2-ka-2", &[]));
    let header = v2_proxy("192.0.2.77:50003".parse().unwrap(), "127.0.0.1:80".parse().unwrap(), &[]);
    let x = exchange(srv.port, &[&cat(&[&header, two.as_bytes()])]);
    let (first, rest) = Resp::parse_one(&x.answer, false);
    let second = Resp::parse(rest, false);
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(access_for(&srv, "/a.txt?v2-ka-1").get("client"), "192.0.2.77:50003");
    assert_eq!(access_for(&srv, "/a.txt?v2-ka-2").get("client"), "192.0.2.77:50003");
}

#[test]
fn without_a_valid_proxy_header_the_connection_is_closed_unanswered_and_serving_goes_on() {
    let s = Scratch::new("pp-bad");
    let (root, _) = tree(&s);
    // The default header timeout (10 s): every refusal below is immediate,
    // not the timeout.
    let srv = Launch::new(&root).arg("--proxy-protocol").start();
    let req = get_with("/a.txt?bad", &[]);
    let bad_version = {
        let mut h = v2_proxy("192.0.2.1:1".parse().unwrap(), "192.0.2.2:2".parse().unwrap(), &[]);
        h[12] = 0x31;
        h
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no header, a plain request", req.clone().into_bytes()),
        ("a port out of range", cat(&[b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n", req.as_bytes()])),
        ("an IPv6 address under TCP4", cat(&[b"PROXY TCP4 ::1 ::1 1000 80\r\n", req.as_bytes()])),
        ("LF without CR", cat(&[b"PROXY TCP4 1.2.3.4 5.6.7.8 1000 80\n", req.as_bytes()])),
        ("lower case", cat(&[b"proxy TCP4 1.2.3.4 5.6.7.8 1000 80\r\n", req.as_bytes()])),
        ("v2 version 3", cat(&[&bad_version, req.as_bytes()])),
        ("a TLS ClientHello", vec![0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03]),
    ];
    for (what, bytes) in &cases {
        let x = exchange(srv.port, &[bytes]);
        assert_unanswered(&x, what);
        assert!(x.took < Duration::from_secs(5), "{what}: closed only after {:?}", x.took);
    }
    // None of them reached the handler, and the server still serves.
    assert!(
        access_lines(&srv.log()).iter().all(|a| a.field("target") != Some("/a.txt?bad")),
        "{}",
        srv.log()
    );
    let good = get_with("/a.txt?after", &[]);
    let (r, _) = http(srv.port, &[&cat(&[b"PROXY TCP4 192.0.2.5 127.0.0.1 1234 80\r\n", good.as_bytes()])]);
    assert_eq!(r.status, 200);
    assert_eq!(access_for(&srv, "/a.txt?after").get("client"), "192.0.2.5:1234");
}

#[test]
fn a_proxy_header_must_arrive_within_the_header_timeout() {
    let s = Scratch::new("pp-slow");
    let (root, _) = tree(&s);
    let srv = Launch::new(&root).args(&["--proxy-protocol", "--header-timeout", "1s"]).start();
    for (what, partial) in [
        ("half a v1 header", &b"PROXY TCP4 1.2.3.4 "[..]),
        ("half a v2 signature", &V2_SIG[..6]),
        ("nothing", &b""[..]),
    ] {
        let x = exchange(srv.port, &[partial]);
        assert_unanswered(&x, what);
        assert!(
            x.took >= Duration::from_millis(900) && x.took < Duration::from_secs(4),
            "{what}: closed after {:?}, expected about 1 s",
            x.took
        );
    }
    // A header trickled a byte every 100 ms (each byte well within the
    // timeout, the whole far beyond it): the timeout is for the whole header.
    let (answer, took) = trickle(srv.port, b"PROXY TCP4 192.0.2.200 127.0.0.1 40000 80\r\n", 100);
    assert!(answer.is_empty(), "answered {:?}", String::from_utf8_lossy(&answer));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "a trickled header: closed after {took:?}, expected about 1 s"
    );
    let good = get_with("/a.txt?after-slow", &[]);
    let (r, _) = http(srv.port, &[&cat(&[b"PROXY TCP4 192.0.2.6 127.0.0.1 4321 80\r\n", good.as_bytes()])]);
    assert_eq!(r.status, 200);
    assert_eq!(access_for(&srv, "/a.txt?after-slow").get("client"), "192.0.2.6:4321");
}

#[test]
fn the_proxy_protocol_applies_to_unix_listeners_too_and_haproxy_can_send_it_there() {
    let s = Scratch::new("pp-unix");
    let (root, big) = tree(&s);
    let sock = s.join("m.sock");
    let srv = Launch::new(&root)
        .args(&["--proxy-protocol", "-l", "127.0.0.1:0", "-l", &format!("unix:{}", sock.display())])
        .start();
    let req = get_with("/a.txt?unix-v1", &[]);
    let answer = unix_exchange(
        &sock,
        &cat(&[b"PROXY TCP4 192.0.2.33 127.0.0.1 1234 80\r\n", req.as_bytes()]),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(Resp::parse(&answer, false).status, 200);
    assert_eq!(access_for(&srv, "/a.txt?unix-v1").get("client"), "192.0.2.33:1234");
    let req = get_with("/a.txt?unix-local", &[]);
    let answer = unix_exchange(&sock, &cat(&[&v2_local(), req.as_bytes()]), Duration::from_secs(10)).unwrap();
    assert_eq!(Resp::parse(&answer, false).status, 200);
    assert_eq!(access_for(&srv, "/a.txt?unix-local").get("client"), "unix");
    let answer = unix_exchange(&sock, get_with("/a.txt?unix-none", &[]).as_bytes(), Duration::from_secs(8));
    assert_eq!(answer.as_deref(), Ok(&b""[..]), "a unix client without a header is closed unanswered");
    // HAProxy to the unix socket (the alternative config/haproxy.cfg names).
    let front = free_port();
    let cfg = shipped_haproxy_cfg(front, &format!("unix@{}", sock.display()));
    let _haproxy = Haproxy::start(&s.join("haproxy"), &cfg, front);
    let c = curl(&s.path, &[&format!("http://127.0.0.1:{front}/big.bin?via-unix")]);
    assert!(c.status == 200 && c.body == big, "status {}", c.status);
    assert_eq!(access_for(&srv, "/big.bin?via-unix").get("client"), format!("127.0.0.1:{}", c.local_port));
}

// ---------------------------------------------------------------------------
// 3. PROXY and trusted proxies
// ---------------------------------------------------------------------------

#[test]
fn the_address_a_proxy_header_conveys_decides_whether_forwarded_headers_are_believed() {
    let s = Scratch::new("pp-trust");
    let (root, _) = tree(&s);
    let srv = Launch::new(&root).args(&["--proxy-protocol", "--trusted-proxy", "10.0.0.0/8"]).start();
    let headers =
        [("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Prefix", "/p")];
    // Conveyed 10.1.2.3: trusted, so its headers name the client and scheme.
    let req = get_with("/a.txt?pp-trusted", &headers);
    let (r, _) = http(srv.port, &[&cat(&[b"PROXY TCP4 10.1.2.3 127.0.0.1 5555 80\r\n", req.as_bytes()])]);
    assert_eq!(r.status, 200);
    let a = access_for(&srv, "/a.txt?pp-trusted");
    assert_eq!((a.get("client"), a.get("scheme")), ("203.0.113.9", "https"), "{}", a.line);
    let req = get_with("/sub?pp-trusted", &headers);
    let (r, _) = http(srv.port, &[&cat(&[b"PROXY TCP4 10.1.2.3 127.0.0.1 5556 80\r\n", req.as_bytes()])]);
    assert_eq!((r.status, r.header("location")), (301, Some("/p/sub/?pp-trusted")));
    // Conveyed 192.0.2.1: not trusted, whatever the socket's peer; the same
    // headers change nothing.
    let req = get_with("/a.txt?pp-untrusted", &headers);
    let (r, _) = http(srv.port, &[&cat(&[b"PROXY TCP4 192.0.2.1 127.0.0.1 6666 80\r\n", req.as_bytes()])]);
    assert_eq!(r.status, 200);
    let a = access_for(&srv, "/a.txt?pp-untrusted");
    assert_eq!((a.get("client"), a.get("scheme")), ("192.0.2.1:6666", "http"), "{}", a.line);
    let req = get_with("/sub?pp-untrusted", &headers);
    let (r, _) = http(srv.port, &[&cat(&[b"PROXY TCP4 192.0.2.1 127.0.0.1 6667 80\r\n", req.as_bytes()])]);
    assert_eq!((r.status, r.header("location")), (301, Some("/sub/?pp-untrusted")));
    // v2 LOCAL: the real peer (127.0.0.1, not trusted) decides.
    let req = get_with("/a.txt?pp-local", &headers);
    let (r, local) = http(srv.port, &[&cat(&[&v2_local(), req.as_bytes()])]);
    assert_eq!(r.status, 200);
    let a = access_for(&srv, "/a.txt?pp-local");
    assert_eq!((a.get("client"), a.get("scheme")), (local.to_string().as_str(), "http"));
    // v2 conveying a trusted IPv6 proxy is no different from v1.
    let srv6 = Launch::new(&root).args(&["--proxy-protocol", "--trusted-proxy", "fd00::/8"]).start();
    let header = v2_proxy("[fd00::5]:7000".parse().unwrap(), "[::1]:80".parse().unwrap(), &[]);
    let req = get_with("/a.txt?pp-v6", &[("Forwarded", "for=198.51.100.4;proto=https")]);
    let (r, _) = http(srv6.port, &[&cat(&[&header, req.as_bytes()])]);
    assert_eq!(r.status, 200);
    let a = access_for(&srv6, "/a.txt?pp-v6");
    assert_eq!((a.get("client"), a.get("scheme")), ("198.51.100.4", "https"), "{}", a.line);
}

// ---------------------------------------------------------------------------
// 4. Spoofing
// ---------------------------------------------------------------------------

const SPOOF: [(&str, &str); 4] = [
    ("Forwarded", "for=198.51.100.66;proto=https"),
    ("X-Forwarded-For", "203.0.113.66"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Prefix", "/evil"),
];

/// A direct client sending every forwarding header: logged as itself over
/// plain HTTP, redirected without the prefix.
fn spoof_changes_nothing(srv: &Server, tag: &str) {
    let (r, local) = http(srv.port, &[get_with(&format!("/a.txt?{tag}"), &SPOOF).as_bytes()]);
    assert_eq!(r.status, 200);
    let a = access_for(srv, &format!("/a.txt?{tag}"));
    assert_eq!(a.get("client"), local.to_string(), "{tag}: {}", a.line);
    assert_eq!(a.get("scheme"), "http", "{tag}: {}", a.line);
    let (r, _) = http(srv.port, &[get_with(&format!("/sub?{tag}"), &SPOOF).as_bytes()]);
    assert_eq!((r.status, r.header("location")), (301, Some(format!("/sub/?{tag}").as_str())), "{tag}");
    // Each header alone, too (no fallback from one to another).
    for (i, header) in SPOOF.iter().enumerate() {
        let target = format!("/a.txt?{tag}-{i}");
        let (r, local) = http(srv.port, &[get_with(&target, &[*header]).as_bytes()]);
        assert_eq!(r.status, 200);
        let a = access_for(srv, &target);
        assert_eq!((a.get("client"), a.get("scheme")), (local.to_string().as_str(), "http"), "{header:?}");
    }
}

#[test]
fn forwarded_headers_from_a_peer_that_is_not_trusted_change_nothing() {
    let s = Scratch::new("spoof");
    let (root, _) = tree(&s);
    let none = Launch::new(&root).start();
    spoof_changes_nothing(&none, "no-trusted-proxy");
    let other =
        Launch::new(&root).args(&["--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "unix"]).start();
    spoof_changes_nothing(&other, "other-networks-trusted");
    // 127.0.0.1 trusted but not `unix`: a unix-socket client is not trusted.
    let sock = s.join("spoof.sock");
    let both = Launch::new(&root)
        .args(&[
            "-l",
            "127.0.0.1:0",
            "-l",
            &format!("unix:{}", sock.display()),
            "--trusted-proxy",
            "127.0.0.1",
        ])
        .start();
    let r = unix_get_with(&sock, "/sub?unix-spoof", &SPOOF);
    assert_eq!((r.status, r.header("location")), (301, Some("/sub/?unix-spoof")));
    let r = unix_get_with(&sock, "/a.txt?unix-spoof", &SPOOF);
    assert_eq!(r.status, 200);
    let a = access_for(&both, "/a.txt?unix-spoof");
    assert_eq!((a.get("client"), a.get("scheme")), ("unix", "http"), "{}", a.line);
    // 127.0.0.1 trusted: the same headers are believed (the control).
    let trusted = Launch::new(&root).args(&["--trusted-proxy", "127.0.0.1"]).start();
    let (r, _) = http(trusted.port, &[get_with("/sub?control", &SPOOF).as_bytes()]);
    assert_eq!(r.header("location"), Some("/evil/sub/?control"));
    http(trusted.port, &[get_with("/a.txt?control", &SPOOF).as_bytes()]);
    let a = access_for(&trusted, "/a.txt?control");
    assert_eq!(
        (a.get("client"), a.get("scheme")),
        ("198.51.100.66", "https"),
        "Forwarded wins over X-Forwarded-For"
    );
}

// ---------------------------------------------------------------------------
// 5. A trusted peer
// ---------------------------------------------------------------------------

/// The values of every `href`, `src` and `action` attribute in `html`.
fn links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\"", "action=\""] {
        for (i, _) in html.match_indices(attr) {
            // Only whole attribute names (not e.g. `data-href="`).
            if html[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '-') {
                continue;
            }
            let rest = &html[i + attr.len()..];
            out.push(rest[..rest.find('"').unwrap()].replace("&amp;", "&"));
        }
    }
    out
}

/// A link that leaves the current directory's URL space only by `../`: no
/// scheme, no host, no absolute path.
fn is_relative(link: &str) -> bool {
    !link.starts_with('/')
        && !link.starts_with('\\')
        && !link.split(['/', '?', '#']).next().unwrap_or("").contains(':')
}

#[test]
fn a_trusted_peer_names_the_client_scheme_and_prefix() {
    let s = Scratch::new("trusted");
    let (root, _) = tree(&s);
    let srv =
        Launch::new(&root).args(&["--trusted-proxy", "127.0.0.1", "--trusted-proxy", "10.0.0.0/8"]).start();
    let client = |target: &str, headers: &[(&str, &str)]| -> Access {
        let (r, _) = http(srv.port, &[get_with(target, headers).as_bytes()]);
        assert_eq!(r.status, 200, "{target}");
        access_for(&srv, target)
    };
    // X-Forwarded-For: the rightmost address that is not itself trusted.
    let a = client("/a.txt?xff-chain", &[("X-Forwarded-For", "203.0.113.9, 10.0.0.2")]);
    assert_eq!((a.get("client"), a.get("scheme")), ("203.0.113.9", "http"));
    let a = client("/a.txt?xff-long", &[("X-Forwarded-For", "198.51.100.7, 203.0.113.9, 10.0.0.2")]);
    assert_eq!(a.get("client"), "203.0.113.9", "not the leftmost (the client could write it)");
    let a = client(
        "/a.txt?xff-two-lines",
        &[("X-Forwarded-For", "203.0.113.10"), ("X-Forwarded-For", "10.0.0.3")],
    );
    assert_eq!(a.get("client"), "203.0.113.10", "two header lines are one list");
    let a = client("/a.txt?xfp", &[("X-Forwarded-For", "203.0.113.11"), ("X-Forwarded-Proto", "https")]);
    assert_eq!((a.get("client"), a.get("scheme")), ("203.0.113.11", "https"));
    // Forwarded (RFC 7239), quoted IPv6 with a port, and proto.
    let a = client("/a.txt?fwd-v6", &[("Forwarded", "for=\"[2001:db8::1]:4711\";proto=https")]);
    assert_eq!((a.get("client"), a.get("scheme")), ("2001:db8::1", "https"), "{}", a.line);
    // Forwarded wins over X-Forwarded-For.
    let a = client("/a.txt?fwd-wins", &[("Forwarded", "for=192.0.2.60"), ("X-Forwarded-For", "203.0.113.9")]);
    assert_eq!(a.get("client"), "192.0.2.60");
    // An unusable hop keeps the peer.
    let a = client("/a.txt?xff-garbage", &[("X-Forwarded-For", "203.0.113.9, not-an-address")]);
    assert!(a.get("client").starts_with("127.0.0.1:"), "{}", a.line);

    // The prefix goes in front of a directory redirect; a bad one is ignored.
    let location = |target: &str, prefix: &str| -> Option<String> {
        let (r, _) = http(srv.port, &[get_with(target, &[("X-Forwarded-Prefix", prefix)]).as_bytes()]);
        assert_eq!(r.status, 301, "{target} with {prefix}");
        r.header("location").map(str::to_owned)
    };
    assert_eq!(location("/sub", "/files").as_deref(), Some("/files/sub/"));
    assert_eq!(location("/sub/deeper?x=1", "/files/").as_deref(), Some("/files/sub/deeper/?x=1"));
    assert_eq!(location("/sub", "//evil.example").as_deref(), Some("/sub/"), "a protocol-relative prefix");
    assert_eq!(location("/sub", "/files/../..").as_deref(), Some("/sub/"), "dot segments");
    assert_eq!(location("/sub", "https://evil.example").as_deref(), Some("/sub/"), "a URL");
    assert_eq!(location("/sub", "/a\"b").as_deref(), Some("/sub/"), "a quote");

    // The listing under a prefix links only relatively, so it needs none.
    let (r, _) = http(
        srv.port,
        &[get_with("/sub/", &[("X-Forwarded-Prefix", "/files"), ("Accept", "text/html")]).as_bytes()],
    );
    assert_eq!(r.status, 200);
    let html = String::from_utf8(r.body).unwrap();
    let found = links(&html);
    for needed in ["b.txt", "a%20b%26c.txt", "deeper/", "../"] {
        assert!(found.iter().any(|l| l == needed), "no link {needed} in {found:?}");
    }
    let absolute: Vec<&String> = found.iter().filter(|l| !is_relative(l)).collect();
    assert!(absolute.is_empty(), "absolute links in a listing: {absolute:?}");
    assert!(!html.contains("/files"), "the prefix does not leak into the page");
}

// ---------------------------------------------------------------------------
// 6. nginx in front over a unix socket
// ---------------------------------------------------------------------------

#[test]
fn nginx_over_a_unix_socket_with_a_prefix_serves_exact_bytes_redirects_and_listings() {
    let s = Scratch::new("nginx-unix");
    let (root, _) = tree(&s);
    let mib = pattern(1 << 20, 11);
    let mib_path = s.write("root/sub/mib.bin", &mib);
    let trusted_sock = s.join("m.sock");
    let plain_sock = s.join("plain.sock");
    let trusted = Launch::new(&root)
        .args(&["-l", &format!("unix:{}", trusted_sock.display()), "--trusted-proxy", "unix"])
        .start();
    let plain = Launch::new(&root).args(&["-l", &format!("unix:{}", plain_sock.display())]).start();
    let port = free_port();
    let dir = s.join("nginx");
    let d = dir.display();
    // The workers must be able to connect to the 0660 root-owned sockets.
    let user = if is_root() { "user root;\n" } else { "" };
    let location = |path: &str, sock: &Path| {
        format!(
            "location {path} {{ proxy_pass http://unix:{}:/; proxy_set_header X-Forwarded-For $remote_addr; \
             proxy_set_header X-Forwarded-Prefix /files; proxy_set_header Host $host; }}\n",
            sock.display()
        )
    };
    let conf = format!(
        "{user}events {{}}\nhttp {{\n access_log {d}/access.log;\n client_body_temp_path {d}/body;\n \
         proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n \
         scgi_temp_path {d}/scgi;\n server {{\n  listen 127.0.0.1:{port};\n  {}  {}\n }}\n}}\n",
        location("/files/", &trusted_sock),
        location("/plain/", &plain_sock),
    );
    let nginx = Nginx::start(&dir, &conf, port);
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", nginx.port);
    let from_2 = |args: &[&str]| {
        let mut argv = vec!["--interface", "127.0.0.2"];
        argv.extend_from_slice(args);
        curl(&s.path, &argv)
    };

    // 1 MiB, byte for byte.
    let out = s.join("mib.out");
    let r = run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "20",
            "--interface",
            "127.0.0.2",
            "-o",
            out.to_str().unwrap(),
            &url("/files/sub/mib.bin"),
        ],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(sha256_file(&out), sha256_file(&mib_path));
    let a = access_for(&trusted, "/sub/mib.bin");
    assert_eq!(
        (a.get("client"), a.get("status")),
        ("127.0.0.2", "200"),
        "the client from nginx's X-Forwarded-For"
    );
    // A range.
    let c = from_2(&["-r", "500000-599999", &url("/files/sub/mib.bin?range")]);
    assert_eq!(c.status, 206);
    assert!(c.body == mib[500_000..600_000], "the range through nginx differs");
    // The directory redirect carries the prefix, and following it lists.
    let c = from_2(&[&url("/files/sub")]);
    assert_eq!(c.status, 301);
    assert!(c.head.contains("location: /files/sub/\r\n"), "{}", c.head);
    let r = run(
        "curl",
        &["-sS", "--max-time", "20", "-o", "/dev/null", "-w", "%{redirect_url}", &url("/files/sub")],
    );
    assert_eq!(String::from_utf8_lossy(&r.stdout), url("/files/sub/"));
    let c = from_2(&["-L", "-H", "Accept: text/html", &url("/files/sub")]);
    assert_eq!(c.status, 200);
    let html = String::from_utf8(c.body).unwrap();
    let found = links(&html);
    assert!(found.iter().all(|l| is_relative(l)), "{found:?}");
    // Every link of the listing, resolved against /files/sub/, works through
    // the prefix-stripping proxy.
    for link in found.iter().filter(|l| !l.starts_with('#')) {
        let target = format!("/files/sub/{link}").replace("/files/sub/../", "/files/");
        let c = from_2(&["-H", "Accept: text/html", &url(&target)]);
        assert_eq!(c.status, 200, "{link} -> {target}");
    }
    // nginx passes the path on decoded and re-encoded (`%26` becomes `&`):
    // either way the file is found and the client is logged.
    let c = from_2(&[&url("/files/sub/a%20b%26c.txt?odd")]);
    assert_eq!(c.body, b"odd name\n");
    let a = access_for(&trusted, "/sub/a%20b&c.txt?odd");
    assert_eq!(a.get("client"), "127.0.0.2");

    // Not trusted: the unix peer it is.
    let c = from_2(&[&url("/plain/a.txt?plain")]);
    assert_eq!((c.status, c.body.as_slice()), (200, &b"hello\n"[..]));
    let a = access_for(&plain, "/a.txt?plain");
    assert_eq!(a.get("client"), "unix");
    let c = from_2(&[&url("/plain/sub")]);
    assert_eq!(c.status, 301);
    assert!(
        c.head.contains("location: /sub/\r\n"),
        "X-Forwarded-Prefix from an untrusted peer is ignored: {}",
        c.head
    );
}

// ---------------------------------------------------------------------------
// 7. The unix-socket listener
// ---------------------------------------------------------------------------

#[test]
fn a_unix_socket_gets_its_mode_serves_curl_and_is_removed_on_sigterm() {
    let s = Scratch::new("unix-mode");
    let (root, _) = tree(&s);
    let tight = s.join("tight.sock");
    let default = s.join("default.sock");
    let srv =
        Launch::new(&root).args(&["-l", &format!("unix:{}", tight.display()), "--unix-mode", "0600"]).start();
    assert!(
        eventually(Duration::from_secs(5), || srv.listening() == [format!("unix:{}", tight.display())]),
        "{}",
        srv.log()
    );
    assert_eq!(socket_mode(&tight), 0o600);
    let out = run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "20",
            "--unix-socket",
            tight.to_str().unwrap(),
            "-w",
            " %{http_code}",
            "http://localhost/a.txt?curl",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello\n 200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = access_for(&srv, "/a.txt?curl");
    assert_eq!(a.get("client"), "unix");
    let log = log_at_exit(srv);
    assert!(!tight.exists(), "the socket file is removed on exit: {log}");

    let srv = Launch::new(&root).args(&["-l", &format!("unix:{}", default.display())]).start();
    assert_eq!(socket_mode(&default), 0o660, "the default mode");
    assert_eq!(unix_get(&default, "/a.txt").body, b"hello\n");
    log_at_exit(srv);
    assert!(!default.exists());
}

#[test]
fn a_stale_unix_socket_is_replaced_and_a_live_one_stops_start_up_naming_it() {
    let s = Scratch::new("unix-stale");
    let (root, _) = tree(&s);
    let sock = s.join("s.sock");
    // Bound, never listening, closed: a socket file nobody answers on.
    let py = python(
        "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.stdin.read())\ns.close()",
        sock.to_str().unwrap().as_bytes(),
    );
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    assert!(std::fs::symlink_metadata(&sock).unwrap().file_type().is_socket());
    let listen = format!("unix:{}", sock.display());
    let mut srv = Launch::new(&root).args(&["-l", &listen]).start();
    assert_eq!(unix_get(&sock, "/a.txt").status, 200);

    // A second server on the path while the first runs: refused, named.
    let mut second = RawProcess::spawn(&[root.to_str().unwrap(), "-l", &listen], &[]);
    let status = second.exit_within(Duration::from_secs(15)).expect("the second server did not stop");
    assert!(!status.success(), "a second server started on a live socket");
    let said = second.wait_line(Duration::from_secs(5), |l| l.contains(sock.to_str().unwrap()));
    assert!(said.is_some(), "the error names the path");
    // ... and the first one still has its socket and serves.
    assert_eq!(unix_get(&sock, "/a.txt").status, 200);

    // Killed (no clean-up): the file stays, and the next start replaces it.
    srv.signal(Signal::KILL);
    assert!(eventually(Duration::from_secs(10), || !srv.alive()));
    assert!(sock.exists(), "a killed server leaves its socket file");
    let again = Launch::new(&root).args(&["-l", &listen]).start();
    assert_eq!(unix_get(&sock, "/a.txt").status, 200);
    assert!(again.log().contains("stale"), "{}", again.log());
    log_at_exit(again);
    assert!(!sock.exists());

    // Anything that is not a socket is left alone.
    std::fs::write(&sock, b"not a socket").unwrap();
    let mut third = RawProcess::spawn(&[root.to_str().unwrap(), "-l", &listen], &[]);
    let status = third.exit_within(Duration::from_secs(15)).expect("the server did not stop");
    assert!(!status.success());
    assert_eq!(std::fs::read(&sock).unwrap(), b"not a socket");
}

#[test]
fn tcp_and_unix_listeners_serve_side_by_side() {
    let s = Scratch::new("unix-tcp");
    let (root, big) = tree(&s);
    let one = s.join("one.sock");
    let two = s.join("two.sock");
    let srv = Launch::new(&root)
        .args(&[
            "-l",
            "127.0.0.1:0",
            "-l",
            &format!("unix:{}", one.display()),
            "-l",
            &format!("unix:{}", two.display()),
        ])
        .start();
    assert!(eventually(Duration::from_secs(5), || srv.listening().len() == 3), "{}", srv.log());
    let listening = srv.listening();
    assert!(listening[0].starts_with("http://127.0.0.1:"));
    assert_eq!(&listening[1..], [format!("unix:{}", one.display()), format!("unix:{}", two.display())]);
    let r = srv.get("/big.bin");
    assert!(r.status == 200 && r.body == big);
    for sock in [&one, &two] {
        let r = unix_get(sock, "/big.bin");
        assert!(r.status == 200 && r.body == big, "{}", sock.display());
        let r = unix_get(sock, "/sub");
        assert_eq!((r.status, r.header("location")), (301, Some("/sub/")));
    }
    let out = run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "20",
            "--unix-socket",
            two.to_str().unwrap(),
            "-r",
            "10-19",
            "http://x/big.bin",
        ],
    );
    assert_eq!(out.stdout, big[10..20]);
    log_at_exit(srv);
    assert!(!one.exists() && !two.exists());
}

#[test]
fn unix_socket_permissions_keep_out_other_users() {
    const TEST: &str = "proxies::unix_socket_permissions_keep_out_other_users";
    if !is_root() {
        skip(TEST, "needs root to run curl as another user (nobody)");
        return;
    }
    let s = Scratch::new("unix-perm");
    let (root, _) = tree(&s);
    let as_user = |uid: &str, gid: &str, sock: &Path| -> (bool, String) {
        let out = run(
            "setpriv",
            &[
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--clear-groups",
                "curl",
                "-sS",
                "--max-time",
                "10",
                "--unix-socket",
                sock.to_str().unwrap(),
                "http://x/a.txt",
            ],
        );
        (out.status.success() && out.stdout == b"hello\n", String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let mut servers = Vec::new();
    for (name, mode, nobody, nobody_in_root_group) in
        [("0600", "0600", false, false), ("0660", "0660", false, true), ("0666", "0666", true, true)]
    {
        let sock = s.join(&format!("{name}.sock"));
        let srv = Launch::new(&root)
            .args(&["-l", &format!("unix:{}", sock.display()), "--unix-mode", mode])
            .start();
        let (ok, err) = as_user("65534", "65534", &sock);
        assert_eq!(ok, nobody, "mode {mode}, nobody: {err}");
        if !ok {
            assert!(err.contains("ermission denied") || err.contains("Couldn't connect"), "{err}");
        }
        let (ok, err) = as_user("65534", "0", &sock);
        assert_eq!(ok, nobody_in_root_group, "mode {mode}, nobody in group root: {err}");
        assert_eq!(unix_get(&sock, "/a.txt").status, 200, "root always can");
        servers.push(srv);
    }
}

/// Start-up must leave every unix listener accepting and the server idle.
/// Found by this test: the listener registered its socket with the runtime
/// before `listen()`, and the kernel reports a not-yet-listening unix
/// socket as hung up; when the reactor saw that event in between, the
/// accept loop spun on EAGAIN without ever yielding: one core at 100%,
/// connections on that socket hanging, SIGTERM ignored. Racy, so many
/// starts.
#[test]
fn unix_listeners_accept_idle_quietly_and_stop_on_sigterm_on_every_start() {
    let s = Scratch::new("unix-race");
    let (root, _) = tree(&s);
    let socks: Vec<PathBuf> = (0..3).map(|i| s.join(&format!("r{i}.sock"))).collect();
    let mut args: Vec<String> = vec!["-l".into(), "127.0.0.1:0".into()];
    for sock in &socks {
        args.extend(["-l".into(), format!("unix:{}", sock.display())]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for start in 0..12 {
        let mut srv = Launch::new(&root).args(&args).start();
        for sock in &socks {
            let answer = unix_exchange(sock, get_with("/a.txt", &[]).as_bytes(), Duration::from_secs(3));
            let ok = answer.as_ref().is_ok_and(|a| a.starts_with(b"HTTP/1.1 200"));
            assert!(ok, "start {start}: {} did not answer: {answer:?}", sock.display());
        }
        // Idle now: it should use (almost) no CPU.
        let before = cpu_ticks(srv.pid());
        std::thread::sleep(Duration::from_millis(300));
        let burnt = cpu_ticks(srv.pid()) - before;
        assert!(burnt < 10, "start {start}: an idle server used {burnt} ticks of CPU in 300 ms");
        srv.signal(Signal::TERM);
        assert_eq!(
            srv.wait_exit(Duration::from_secs(5)),
            Some(0),
            "start {start}: no exit on SIGTERM: {}",
            srv.log()
        );
        assert!(socks.iter().all(|p| !p.exists()), "start {start}: sockets left behind");
    }
}
