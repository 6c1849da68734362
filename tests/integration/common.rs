//! Test helpers: a scratch directory, the real `mapserve` binary started on
//! 127.0.0.1 port 0, and a tiny HTTP/1.1 client over a raw socket (so tests
//! see exactly the bytes on the wire).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A scratch directory under the system temp dir, removed on drop. Mode 0755
/// so that a server running as `nobody` can enter it.
pub(crate) struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub(crate) fn new(tag: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("mapserve-it-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        set_mode(&path, 0o755);
        Scratch { path }
    }

    /// Writes a file (creating parent directories) and returns its path.
    pub(crate) fn write(&self, rel: &str, data: &[u8]) -> PathBuf {
        let p = self.path.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
            set_mode(parent, 0o755);
        }
        std::fs::write(&p, data).unwrap();
        set_mode(&p, 0o644);
        p
    }

    pub(crate) fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("chmod").args(["-R", "u+rwx"]).arg(&self.path).status();
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub(crate) fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Deterministic pseudo-random bytes.
pub(crate) fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A running `mapserve`.
pub(crate) struct Server {
    pub child: Child,
    pub port: u16,
    pub addr: String,
    pub log: Arc<Mutex<String>>,
}

pub(crate) struct Launch<'a> {
    pub root: &'a Path,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub as_nobody: bool,
    pub prefix: Vec<String>,
}

impl<'a> Launch<'a> {
    pub(crate) fn new(root: &'a Path) -> Launch<'a> {
        Launch { root, args: Vec::new(), env: Vec::new(), as_nobody: false, prefix: Vec::new() }
    }
    pub(crate) fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_owned());
        self
    }
    pub(crate) fn args(mut self, a: &[&str]) -> Self {
        self.args.extend(a.iter().map(|s| s.to_string()));
        self
    }
    pub(crate) fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }
    /// Runs the server as uid/gid 65534 when the tests run as root (root reads
    /// everything, which would hide permission behaviour).
    pub(crate) fn unprivileged(mut self) -> Self {
        self.as_nobody = true;
        self
    }
    /// Wraps the server in another command (`prlimit ...`, `sh -c ...`).
    pub(crate) fn prefix(mut self, p: &[&str]) -> Self {
        self.prefix = p.iter().map(|s| s.to_string()).collect();
        self
    }
    /// Starts with the listen address given only by MAPSERVE_LISTEN.
    /// Adds a TLS listener on a free port with this certificate and key.
    pub(crate) fn tls(self, leaf: &Leaf) -> Self {
        self.args(&["--tls-listen", "127.0.0.1:0"]).args(&[
            "--tls-cert",
            leaf.cert.to_str().unwrap(),
            "--tls-key",
            leaf.key.to_str().unwrap(),
        ])
    }

    pub(crate) fn start_with_env_listen(mut self) -> Server {
        self.args.retain(|a| a != "-l" && !a.starts_with("127.0.0.1:"));
        self.env("MAPSERVE_LISTEN", "127.0.0.1:0").start()
    }

    pub(crate) fn start(self) -> Server {
        // MAPSERVE_TEST_BIN runs the suite against another build (to show that
        // a new test fails on the code before its fix).
        let bin =
            std::env::var("MAPSERVE_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mapserve").to_owned());
        let mut argv: Vec<String> = self.prefix.clone();
        if self.as_nobody && is_root() {
            argv.extend(
                ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"].map(String::from),
            );
        }
        argv.push(bin);
        argv.push(self.root.display().to_string());
        if !self.args.iter().any(|a| a == "-l" || a == "--listen")
            && !self.env.iter().any(|(k, _)| k == "MAPSERVE_LISTEN")
        {
            argv.extend(["-l".to_owned(), "127.0.0.1:0".to_owned()]);
        }
        argv.extend(self.args.iter().cloned());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        // The tests read the key=value access line unless they choose a format.
        cmd.env("MAPSERVE_ACCESS_LOG_FORMAT", "text");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {argv:?}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Into the log first: a test may read it as soon as start() returns.
                log2.lock().unwrap().push_str(&format!("{line}\n"));
                // The first listener printed: http://ADDR, https://ADDR or unix:PATH.
                if let Some(rest) = line.strip_prefix("listening on ") {
                    let rest = rest
                        .strip_prefix("http://")
                        .or_else(|| rest.strip_prefix("https://"))
                        .unwrap_or(rest);
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(rest.to_owned());
                    }
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start: {}", log.lock().unwrap());
            }
        };
        // 0 when the first listener is a unix socket.
        let port = addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
        Server { child, port, addr, log }
    }
}

impl Server {
    pub(crate) fn start(root: &Path) -> Server {
        Launch::new(root).start()
    }

    /// The admin listener's address (`127.0.0.1:PORT` or `unix:PATH`), from
    /// its "admin listening on" line.
    pub(crate) fn admin(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            let found = log
                .lines()
                .find_map(|l| l.strip_prefix("admin listening on "))
                .map(|rest| rest.strip_prefix("http://").unwrap_or(rest).to_owned());
            if let Some(addr) = found {
                return addr;
            }
            assert!(Instant::now() < deadline, "no admin listener: {log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://ADMIN{path}` (a TCP admin listener).
    pub(crate) fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin())
    }

    /// Every "listening on X" line so far: `http://ADDR`, `https://ADDR`, `unix:PATH`.
    pub(crate) fn listening(&self) -> Vec<String> {
        self.log().lines().filter_map(|l| l.strip_prefix("listening on ")).map(str::to_owned).collect()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub(crate) fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, sig);
    }

    /// Waits for exit; returns the exit code.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// GET (or any method) with extra header lines; Connection: close.
    pub(crate) fn req(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        let bytes = self.raw(raw.as_bytes());
        Resp::parse(&bytes, method == "HEAD")
    }

    pub(crate) fn get(&self, path: &str) -> Resp {
        self.req("GET", path, &[])
    }

    /// Sends raw bytes, reads until the server closes. A read error fails
    /// the test (a reset after the whole response is fine: hyper resets
    /// when it closes with request bytes unread), and so does no close
    /// within 10 s.
    pub(crate) fn raw(&self, request: &[u8]) -> Vec<u8> {
        self.try_raw(request)
            .unwrap_or_else(|(e, got)| panic!("reading the response failed after {got} bytes: {e}"))
    }

    /// [`Server::raw`] for tests that expect a stall: the error and the bytes
    /// received when no close came within 10 s.
    pub(crate) fn try_raw(&self, request: &[u8]) -> Result<Vec<u8>, (std::io::Error, usize)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        let mut out = Vec::new();
        match s.read_to_end(&mut out) {
            Ok(_) => Ok(out),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !out.is_empty() => Ok(out),
            Err(e) => Err((e, out.len())),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.signal(rustix::process::Signal::KILL);
        let _ = self.child.wait();
    }
}

/// A parsed response.
#[derive(Debug, Clone)]
pub(crate) struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// Parses one complete response from `bytes` (more bytes after it are
    /// left in `body` only when there is no Content-Length). A body shorter
    /// than its Content-Length fails the test: use [`Resp::parse_partial`]
    /// where a short transfer is what the test expects.
    pub(crate) fn parse(bytes: &[u8], head: bool) -> Resp {
        let (resp, short) = Resp::parse_any(bytes, head);
        assert!(short.is_none(), "short body: {} of {} bytes", resp.body.len(), short.unwrap_or(0));
        resp
    }

    /// Parses one response that may have been cut short; the body is what
    /// arrived.
    pub(crate) fn parse_partial(bytes: &[u8], head: bool) -> Resp {
        Resp::parse_any(bytes, head).0
    }

    /// Parses one response; `Some(content_length)` when the body is short.
    fn parse_any(bytes: &[u8], head: bool) -> (Resp, Option<usize>) {
        let (resp, _, short) = Resp::parse_with_rest(bytes, head);
        (resp, short)
    }

    /// Parses one complete response and returns the rest of the input.
    pub(crate) fn parse_one(bytes: &[u8], head: bool) -> (Resp, &[u8]) {
        let (resp, rest, short) = Resp::parse_with_rest(bytes, head);
        assert!(short.is_none(), "short body: {} of {} bytes", resp.body.len(), short.unwrap_or(0));
        (resp, rest)
    }

    fn parse_with_rest(bytes: &[u8], head: bool) -> (Resp, &[u8], Option<usize>) {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(bytes)));
        let head_text = std::str::from_utf8(&bytes[..end]).unwrap();
        let mut lines = head_text.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        let rest = &bytes[end + 4..];
        let len =
            headers.iter().find(|(k, _)| k == "content-length").map(|(_, v)| v.parse::<usize>().unwrap());
        let bodyless = head || status == 304 || status == 204;
        let mut short = None;
        let (body, rest) = match (bodyless, len) {
            (true, _) => (Vec::new(), rest),
            (false, Some(n)) => {
                if rest.len() < n {
                    short = Some(n);
                }
                let n = n.min(rest.len());
                (rest[..n].to_vec(), &rest[n..])
            }
            (false, None) => (rest.to_vec(), &rest[rest.len()..]),
        };
        (Resp { status, headers, body }, rest, short)
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub(crate) fn count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(k, _)| k == name).count()
    }

    pub(crate) fn content_length(&self) -> Option<u64> {
        self.header("content-length").map(|v| v.parse().unwrap())
    }
}

/// Runs a command, panicking with its output if it cannot start.
pub(crate) fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("`{cmd}` is needed by this test ({e}); the README's test command installs it")
    })
}

/// sha256 of a file, by coreutils' sha256sum.
pub(crate) fn sha256_file(path: &Path) -> String {
    let out = run("sha256sum", &[path.to_str().unwrap()]);
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_owned()
}

/// Polls `f` until the value it returns has stopped changing (the same
/// three times in a row, 100 ms apart), or `within` passes; returns it.
pub(crate) fn settled<T: PartialEq>(within: Duration, mut f: impl FnMut() -> T) -> T {
    let deadline = Instant::now() + within;
    let mut last = f();
    let mut same = 0;
    while same < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = f();
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}

/// Stops the server with SIGTERM and returns its whole log: every line a
/// request caused is written by then.
pub(crate) fn log_at_exit(mut srv: Server) -> String {
    srv.signal(rustix::process::Signal::TERM);
    assert_eq!(srv.wait_exit(Duration::from_secs(15)), Some(0), "{}", srv.log());
    srv.log()
}

/// Polls `f` until it returns true or `within` passes.
pub(crate) fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A `/proc/PID/status` field, in kB.
pub(crate) fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Lines of this process's mappings of deleted files.
pub(crate) fn deleted_mappings(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("(deleted)"))
        .count()
}

/// Open descriptors of a process.
pub(crate) fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// `tests/integration/h2client.py` running one command against the server;
/// it prints one JSON object per line.
pub(crate) struct H2Client {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl H2Client {
    pub(crate) fn spawn(port: u16, args: &[&str]) -> H2Client {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/integration/h2client.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(args[0])
            .arg(port.to_string())
            .args(&args[1..])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 with the h2 module is needed (the README's test command installs it)");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        H2Client { child, lines }
    }

    /// Runs a command to its end and returns its (last) JSON line.
    pub(crate) fn run(port: u16, args: &[&str]) -> serde_json::Value {
        let mut c = H2Client::spawn(port, args);
        let mut last = None;
        while let Some(v) = c.next_line() {
            last = Some(v);
        }
        let status = c.child.wait().unwrap();
        assert!(status.success(), "h2client {args:?} failed: {status}");
        last.unwrap_or_else(|| panic!("h2client {args:?} printed nothing"))
    }

    /// The next JSON line, or `None` at the end of output.
    pub(crate) fn next_line(&mut self) -> Option<serde_json::Value> {
        let line = self.lines.next()?.unwrap();
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad JSON from h2client `{line}`: {e}")))
    }

    pub(crate) fn wait(mut self) -> Option<serde_json::Value> {
        let mut last = None;
        while let Some(v) = self.next_line() {
            last = Some(v);
        }
        assert!(self.child.wait().unwrap().success());
        last
    }
}

impl Drop for H2Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bytes of a process's mappings of files whose path contains `name`.
pub(crate) fn mapped_bytes(pid: u32, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .filter(|l| l.contains(name))
        .map(|l| {
            let (a, b) = l.split_whitespace().next().unwrap().split_once('-').unwrap();
            u64::from_str_radix(b, 16).unwrap() - u64::from_str_radix(a, 16).unwrap()
        })
        .sum()
}

/// Says loudly that a test could not run here, past the test harness's
/// output capture (`scripts/test` lists these lines at the end, and fails on
/// them when `MAPSERVE_REQUIRE_ALL` is set, as CI does).
pub(crate) fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "MAPSERVE-TEST-SKIPPED {test}: {why}");
}

/// Whether a command can be run here (it exits 0).
pub(crate) fn works(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `python3 -c script` with `input` on its standard input.
pub(crate) fn python(script: &str, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// A free TCP port on 127.0.0.1 (bound and released: another process could
/// take it in between, which the callers' start-up checks would show).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Sends `request` to 127.0.0.1:`port` and parses the one response
/// (`Connection: close` in the request makes the server end it).
pub(crate) fn request_to(port: u16, request: &str) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    Resp::parse(&out, request.starts_with("HEAD "))
}

/// nginx in the foreground with a config file in a scratch directory (its
/// pid file, error log and temp paths there too), stopped on drop.
pub(crate) struct Nginx {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Nginx {
    /// Writes `conf` to `dir/nginx.conf` and starts nginx on it; `port` is
    /// where it listens (the config says so), polled until it accepts.
    pub(crate) fn start(dir: &Path, conf: &str, port: u16) -> Nginx {
        std::fs::create_dir_all(dir).unwrap();
        let file = dir.join("nginx.conf");
        std::fs::write(&file, conf).unwrap();
        let global = format!("pid {0}/nginx.pid; daemon off;", dir.display());
        let child = Command::new("nginx")
            .args(["-p", dir.to_str().unwrap(), "-e", dir.join("error.log").to_str().unwrap()])
            .args(["-c", file.to_str().unwrap(), "-g", &global])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("nginx is needed by this test ({e}); the README's test command installs it")
            });
        let mut nginx = Nginx { child, port, dir: dir.to_owned() };
        let up = eventually(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok() || !matches!(nginx.child.try_wait(), Ok(None))
        });
        let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        assert!(up && matches!(nginx.child.try_wait(), Ok(None)), "nginx did not start: {log}");
        nginx
    }
}

impl Drop for Nginx {
    /// SIGTERM to the master, which stops its workers (SIGKILL would leave
    /// them running); SIGKILL only if it is still there after 5 s.
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if !eventually(Duration::from_secs(5), || !matches!(self.child.try_wait(), Ok(None))) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

// TLS, reload and socket-activation helpers (tls.rs, reload.rs, systemd.rs).

/// The key type and PEM form of a leaf's private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// ECDSA P-256, PKCS#8 (`BEGIN PRIVATE KEY`).
    EcPkcs8,
    /// ECDSA P-256, SEC1 (`BEGIN EC PRIVATE KEY`).
    EcSec1,
    /// RSA 2048, PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    RsaPkcs1,
    /// RSA 2048, PKCS#8.
    RsaPkcs8,
}

/// A certificate chain file (leaf first, then the intermediate) and its key.
#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The serial as `openssl x509 -serial` prints it (hex, upper case).
    pub serial: String,
}

/// A test PKI made by the openssl command: a root CA (the only thing clients
/// trust: `ca`), an intermediate CA under it, and leaves the intermediate
/// signs for `localhost` and `127.0.0.1`, so that a handshake succeeds only
/// when the server sends its whole chain.
pub(crate) struct Pki {
    pub dir: PathBuf,
    /// The root CA certificate, for `curl --cacert` and `-CAfile`.
    pub ca: PathBuf,
    inter: PathBuf,
    inter_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap_or_else(|e| {
        panic!("`openssl` is needed by this test ({e}); the README's test command installs it")
    });
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Pki {
    pub(crate) fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
        let root = format!(
            "req -x509 {ec} -keyout root.key -out root.pem -days 2 -addext basicConstraints=critical,CA:TRUE \
             -addext keyUsage=critical,keyCertSign,cRLSign"
        );
        let mut args: Vec<&str> = root.split_whitespace().collect();
        args.extend(["-subj", "/CN=mapserve test root CA"]);
        openssl(dir, &args);
        let inter = format!("req -new {ec} -keyout inter.key -out inter.csr");
        let mut args: Vec<&str> = inter.split_whitespace().collect();
        args.extend(["-subj", "/CN=mapserve test intermediate CA"]);
        openssl(dir, &args);
        std::fs::write(
            dir.join("inter.ext"),
            "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n",
        )
        .unwrap();
        let sign = "x509 -req -in inter.csr -CA root.pem -CAkey root.key -set_serial 0x0777 -days 2 \
                    -extfile inter.ext -out inter.pem";
        openssl(dir, &sign.split_whitespace().collect::<Vec<_>>());
        Pki {
            dir: dir.to_owned(),
            ca: dir.join("root.pem"),
            inter: dir.join("inter.pem"),
            inter_key: dir.join("inter.key"),
        }
    }

    /// Issues a leaf for `localhost` and `127.0.0.1` with subject `CN=cn`
    /// and this serial; writes `{stem}.pem` (leaf then intermediate) and
    /// `{stem}.key`.
    pub(crate) fn issue(&self, stem: &str, cn: &str, serial: u32, kind: KeyKind) -> Leaf {
        let key = format!("{stem}.key");
        match kind {
            KeyKind::EcPkcs8 => openssl(
                &self.dir,
                &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &key],
            ),
            KeyKind::EcSec1 => {
                openssl(&self.dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &key])
            }
            KeyKind::RsaPkcs1 => openssl(&self.dir, &["genrsa", "-traditional", "-out", &key, "2048"]),
            KeyKind::RsaPkcs8 => openssl(
                &self.dir,
                &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", &key],
            ),
        }
        let csr = format!("{stem}.csr");
        openssl(&self.dir, &["req", "-new", "-key", &key, "-subj", &format!("/CN={cn}"), "-out", &csr]);
        let usage = match kind {
            KeyKind::EcPkcs8 | KeyKind::EcSec1 => "digitalSignature",
            KeyKind::RsaPkcs1 | KeyKind::RsaPkcs8 => "digitalSignature,keyEncipherment",
        };
        let ext = format!("{stem}.ext");
        std::fs::write(
            self.dir.join(&ext),
            format!(
                "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,{usage}\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .unwrap();
        let leaf = format!("{stem}.leaf.pem");
        let (ca, ca_key) = (self.inter.to_str().unwrap(), self.inter_key.to_str().unwrap());
        let sign = format!(
            "x509 -req -in {csr} -CA {ca} -CAkey {ca_key} -set_serial 0x{serial:04X} -days 2 -extfile {ext} -out {leaf}"
        );
        openssl(&self.dir, &sign.split_whitespace().collect::<Vec<_>>());
        let mut chain = std::fs::read(self.dir.join(&leaf)).unwrap();
        chain.extend(std::fs::read(&self.inter).unwrap());
        let cert = self.dir.join(format!("{stem}.pem"));
        std::fs::write(&cert, chain).unwrap();
        set_mode(&self.dir.join(&key), 0o644);
        Leaf { cert, key: self.dir.join(key), serial: format!("{serial:04X}") }
    }
}

/// The ports of the server's `https://` listeners, once all `n` are logged.
pub(crate) fn https_ports(srv: &Server, n: usize) -> Vec<u16> {
    let ports = || -> Vec<u16> {
        srv.listening()
            .iter()
            .filter_map(|l| l.strip_prefix("https://"))
            .map(|a| a.rsplit(':').next().unwrap().parse().unwrap())
            .collect()
    };
    assert!(eventually(Duration::from_secs(10), || ports().len() >= n), "{}", srv.log());
    ports()
}

/// How many times `needle` occurs in the server's log.
pub(crate) fn log_count(srv: &Server, needle: &str) -> usize {
    srv.log().matches(needle).count()
}

/// Whether process `pid` has a handler installed for signal number `signo`
/// (its bit in `SigCgt` of /proc/PID/status).
pub(crate) fn catches_signal(pid: u32, signo: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signo - 1)) != 0)
}

/// Waits until the server handles SIGHUP (it installs its handlers after
/// printing its listeners), so that a test's SIGHUP is a reload.
pub(crate) fn await_sighup_handler(srv: &Server) {
    assert!(
        eventually(Duration::from_secs(10), || catches_signal(srv.pid(), 1)),
        "no SIGHUP handler: {}",
        srv.log()
    );
}

/// The binary under test started directly (no harness waiting in between):
/// its stderr lines arrive on a channel as they are written. Killed on drop.
pub(crate) struct RawProcess {
    pub child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl RawProcess {
    pub(crate) fn spawn(args: &[&str], env: &[(&str, &str)]) -> RawProcess {
        let bin =
            std::env::var("MAPSERVE_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mapserve").to_owned());
        let mut cmd = Command::new(bin);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        cmd.env("MAPSERVE_ACCESS_LOG_FORMAT", "text");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        RawProcess { child, lines }
    }

    /// The next line for which `f` holds; `None` at the end of the output
    /// (the process exited) or after `within`.
    pub(crate) fn wait_line(&self, within: Duration, f: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(line) if f(&line) => return Some(line),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    pub(crate) fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, sig);
    }
}

impl Drop for RawProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A [`Launch::prefix`] that drops the `-l 127.0.0.1:0` the harness adds
/// when no `-l` is given, and execs the binary (same process), for tests
/// where the addresses come from elsewhere (a config file's `listen`, or
/// inherited sockets) and the command line must be exactly theirs.
pub(crate) const WITHOUT_DEFAULT_LISTEN: [&str; 4] =
    ["sh", "-c", "[ \"$3\" = -l ] || exit 99; bin=$1 root=$2; shift 4; exec \"$bin\" \"$root\" \"$@\"", "sh"];

impl RawProcess {
    /// The exit status, if the process ends within `within`.
    /// After a SIGHUP sent to it: whether it logged handling it, and its
    /// exit status if it ended (or still ended within 5 s without a line:
    /// its stderr can close a moment before it can be reaped).
    pub(crate) fn sighup_outcome(&mut self) -> (bool, Option<std::process::ExitStatus>) {
        let handled = self.wait_line(Duration::from_secs(10), |l| l.contains("SIGHUP: reloading")).is_some();
        let status =
            if handled { self.child.try_wait().unwrap() } else { self.exit_within(Duration::from_secs(5)) };
        (handled, status)
    }

    pub(crate) fn exit_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// How long until the server closes `s` (EOF or reset); `None` if not
/// within `within`.
pub(crate) fn closed_within(mut s: TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(start.elapsed()),
            Err(_) => return None,
        }
    }
}
