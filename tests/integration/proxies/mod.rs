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

mod forwarded;
mod haproxy;
mod protocol;
mod unix;
