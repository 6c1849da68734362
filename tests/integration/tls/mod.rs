//! HTTPS (`--tls-listen`, `--tls-cert`, `--tls-key`) driven by curl, openssl
//! s_client and Python's ssl module against certificates openssl made (a
//! root CA, an intermediate, ECDSA and RSA leaves): files byte-exact over
//! HTTP/1.1 and HTTP/2, TLS 1.2 and 1.3, ALPN choosing the protocol (an h2
//! preface on an `http/1.1` connection is not HTTP/2), session resumption,
//! start-up refusing a key that does not match, SIGHUP swapping the
//! certificate (or keeping it when the new pair is broken) while open
//! connections keep working, plain and TLS listeners side by side, the
//! timeouts and the connection cap on TLS connections, and `scheme=https`
//! in the access log.

use crate::common::*;
use rustix::process::Signal;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server with a plain listener (`srv.port`) and one TLS listener.
fn tls_server(s: &Scratch, leaf: &Leaf, extra: &[&str]) -> (Server, u16) {
    let srv = Launch::new(&s.path).tls(leaf).args(extra).start();
    let port = https_ports(&srv, 1)[0];
    (srv, port)
}

/// Runs a command with `input` on its standard input, killed after 15 s.
fn run_with_input(cmd: &str, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = Command::new("timeout")
        .arg("15")
        .arg(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// `openssl s_client` to the TLS port, verifying against the test root:
/// stdout and stderr together.
fn s_client(pki: &Pki, port: u16, extra: &[&str], input: &[u8]) -> String {
    let connect = format!("127.0.0.1:{port}");
    let ca = pki.ca.to_str().unwrap();
    let mut args = vec![
        "s_client",
        "-connect",
        &connect,
        "-servername",
        "localhost",
        "-CAfile",
        ca,
        "-verify_return_error",
    ];
    args.extend(extra);
    let out = run_with_input("openssl", &args, input);
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The serial (hex) and subject of the certificate a new handshake gets.
fn served_cert(pki: &Pki, port: u16) -> (String, String) {
    let out = s_client(pki, port, &[], b"");
    let begin = out.find("-----BEGIN CERTIFICATE-----").unwrap_or_else(|| panic!("no certificate: {out}"));
    let end = out[begin..].find("-----END CERTIFICATE-----").unwrap() + begin + 25;
    let x509 =
        run_with_input("openssl", &["x509", "-noout", "-serial", "-subject"], &out.as_bytes()[begin..end]);
    let text = String::from_utf8_lossy(&x509.stdout).into_owned();
    let field = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_else(|| panic!("{text}")).trim().to_owned()
    };
    (field("serial="), field("subject="))
}

/// `curl -sS --cacert ROOT` with `args`; the URL path goes to the TLS port.
fn curl_https(pki: &Pki, port: u16, path: &str, args: &[&str]) -> std::process::Output {
    let url = format!("https://127.0.0.1:{port}{path}");
    let mut all = vec!["-sS", "--max-time", "15", "--cacert", pki.ca.to_str().unwrap()];
    all.extend(args);
    all.push(&url);
    run("curl", &all)
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A keep-alive HTTPS connection held by Python's ssl module: one line in
/// (`GET /path`, or `WAIT` to wait for the server to close), one JSON line
/// out.
const PY_CLIENT: &str = r#"
import json, socket, ssl, sys, time
port, ca, alpn = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
if alpn:
    ctx.set_alpn_protocols([alpn])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
s.settimeout(10)
f = s.makefile("rb")
cert = s.getpeercert()
print(json.dumps({"serial": cert["serialNumber"], "alpn": s.selected_alpn_protocol(), "version": s.version()}), flush=True)
for line in sys.stdin:
    cmd = line.split()
    try:
        if cmd[0] == "WAIT":
            start = time.monotonic()
            data = s.recv(1)
            print(json.dumps({"closed_after": time.monotonic() - start, "data": data.hex()}), flush=True)
            continue
        s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % cmd[1]).encode())
        status = f.readline()
        if not status:
            print(json.dumps({"closed": True}), flush=True)
            continue
        headers = {}
        while True:
            h = f.readline()
            if h in (b"\r\n", b""):
                break
            k, v = h.decode().split(":", 1)
            headers[k.strip().lower()] = v.strip()
        body = f.read(int(headers.get("content-length", "0")))
        print(json.dumps({"status": int(status.split()[1]), "headers": headers, "body": body.decode("latin-1")}), flush=True)
    except socket.timeout:
        print(json.dumps({"timeout": True}), flush=True)
    except (OSError, ssl.SSLError) as e:
        print(json.dumps({"closed": True, "error": repr(e)}), flush=True)
"#;

struct PyTls {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    /// The handshake: serial, alpn, version.
    info: serde_json::Value,
}

impl PyTls {
    fn connect(pki: &Pki, port: u16, alpn: &str) -> PyTls {
        let mut child = Command::new("python3")
            .args(["-c", PY_CLIENT, &port.to_string(), pki.ca.to_str().unwrap(), alpn])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 is needed");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut c = PyTls { child, lines, info: serde_json::Value::Null };
        c.info = c.next();
        c
    }

    fn next(&mut self) -> serde_json::Value {
        let line = self.lines.next().unwrap_or_else(|| panic!("the Python TLS client ended")).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn get(&mut self, path: &str) -> serde_json::Value {
        self.send(&format!("GET {path}"));
        self.next()
    }
}

impl Drop for PyTls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn curl_gets_files_byte_exact_over_https_with_http2_and_http11() {
    let s = Scratch::new("tls-curl");
    let pki = Pki::new(&s.join("pki"));
    let leaf = pki.issue("leaf", "localhost", 0x1001, KeyKind::EcPkcs8);
    let data = pattern(300_000, 7);
    let path = s.write("www/big.bin", &data);
    s.write("www/a.txt", b"hello over tls\n");
    let root = s.join("www");
    let srv = Launch::new(&root).tls(&leaf).start();
    let port = https_ports(&srv, 1)[0];
    assert!(srv.listening().contains(&format!("https://127.0.0.1:{port}")), "{:?}", srv.listening());

    // Byte-exact, over HTTP/2 (curl's default with ALPN) and HTTP/1.1.
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out_file = s.join(&format!("got-{version}.bin"));
        let out = curl_https(
            &pki,
            port,
            "/big.bin",
            &[flag, "-f", "-o", out_file.to_str().unwrap(), "-w", "%{http_version} %{ssl_verify_result}"],
        );
        assert!(out.status.success(), "{flag}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(stdout(&out), format!("{version} 0"), "{flag}");
        assert_eq!(sha256_file(&out_file), sha256_file(&path), "{flag}");
    }
    // The DNS name in the certificate, through curl's own resolution.
    let resolve = format!("localhost:{port}:127.0.0.1");
    let url = format!("https://localhost:{port}/a.txt");
    let out = run("curl", &["-sSf", "--cacert", pki.ca.to_str().unwrap(), "--resolve", &resolve, &url]);
    assert_eq!(stdout(&out), "hello over tls\n", "{}", String::from_utf8_lossy(&out.stderr));
    // HEAD: the length, no body.
    let out = curl_https(&pki, port, "/big.bin", &["-I", "--http1.1"]);
    let head = stdout(&out).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-length: 300000\r\n"), "{head}");
    let out = curl_https(&pki, port, "/big.bin", &["-I", "--http2"]);
    assert!(stdout(&out).starts_with("HTTP/2 200"), "{}", stdout(&out));
    // A range, over both protocols.
    for flag in ["--http1.1", "--http2"] {
        let out =
            curl_https(&pki, port, "/big.bin", &[flag, "-f", "-r", "100000-100999", "-w", "%{http_code}"]);
        assert_eq!(out.stdout.len(), 1003, "{flag}");
        assert_eq!(&out.stdout[..1000], &data[100_000..101_000], "{flag}");
        assert_eq!(&out.stdout[1000..], b"206", "{flag}");
    }
    // Not trusting the root: the handshake fails (the server is not vouched
    // for by some other CA curl knows).
    let out = run("curl", &["-sS", "--max-time", "10", &format!("https://127.0.0.1:{port}/a.txt")]);
    assert_eq!(out.status.code(), Some(60), "{}", String::from_utf8_lossy(&out.stderr));
    // The plain listener beside it.
    assert_eq!(srv.get("/a.txt").body, b"hello over tls\n");

    let log = log_at_exit(srv);
    let access: Vec<&str> = log.lines().filter(|l| l.contains("mapserve::access")).collect();
    let https = access.iter().filter(|l| l.contains("scheme=https ")).count();
    let http = access.iter().filter(|l| l.contains("scheme=http ")).count();
    assert_eq!((https, http), (7, 1), "{}", access.join("\n"));
    assert!(
        access.iter().any(|l| l.contains("scheme=https ") && l.contains("version=HTTP/2.0")),
        "{}",
        access.join("\n")
    );
    assert!(access.iter().all(|l| !l.contains("target=/a.txt") || l.contains("status=200")));
}

#[test]
fn openssl_negotiates_tls12_tls13_and_alpn() {
    let s = Scratch::new("tls-versions");
    let pki = Pki::new(&s.join("pki"));
    let leaf = pki.issue("leaf", "localhost", 0x1001, KeyKind::EcPkcs8);
    s.write("a.txt", b"a");
    let (_srv, port) = tls_server(&s, &leaf, &[]);
    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let out = s_client(&pki, port, &[flag], b"");
        assert!(out.contains(&format!("New, {version}, Cipher is")), "{flag}: {out}");
        assert!(out.contains("Verify return code: 0 (ok)"), "{flag}: {out}");
        for alpn in ["h2", "http/1.1"] {
            let out = s_client(&pki, port, &[flag, "-alpn", alpn], b"");
            assert!(out.contains(&format!("ALPN protocol: {alpn}")), "{flag} {alpn}: {out}");
        }
        // Both offered: the server's preference, h2.
        let out = s_client(&pki, port, &[flag, "-alpn", "http/1.1,h2"], b"");
        assert!(out.contains("ALPN protocol: h2"), "{flag}: {out}");
        let out = s_client(&pki, port, &[flag], b"");
        assert!(out.contains("No ALPN negotiated"), "{flag}: {out}");
    }
    // The chain goes out whole: the intermediate is there to verify against.
    let out = s_client(&pki, port, &["-showcerts"], b"");
    assert_eq!(out.matches("-----BEGIN CERTIFICATE-----").count(), 2, "{out}");
    assert!(out.contains("CN = mapserve test intermediate CA"), "{out}");
}

#[test]
fn sessions_resume_by_ticket_and_by_session_id() {
    let s = Scratch::new("tls-resume");
    let pki = Pki::new(&s.join("pki"));
    let leaf = pki.issue("leaf", "localhost", 0x1001, KeyKind::EcPkcs8);
    s.write("a.txt", b"resumed");
    let srv = Launch::new(&s.path).tls(&leaf).start();
    let port = https_ports(&srv, 1)[0];
    let request = b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    // TLS 1.3 tickets arrive after the handshake: the request is sent and the
    // response read (-ign_eof) so that s_client has the ticket when it saves.
    for (name, flags) in [
        ("TLS 1.3 ticket", &["-tls1_3"][..]),
        ("TLS 1.2 ticket", &["-tls1_2"][..]),
        ("TLS 1.2 session ID", &["-tls1_2", "-no_ticket"][..]),
    ] {
        let sess = s.join(&format!("{}.sess", name.replace(' ', "-")));
        let sess = sess.to_str().unwrap();
        let first = s_client(&pki, port, &[flags, &["-ign_eof", "-sess_out", sess]].concat(), request);
        assert!(first.contains("New, TLSv1."), "{name}: {first}");
        assert!(first.contains("HTTP/1.1 200 OK") && first.contains("resumed"), "{name}: {first}");
        let second = s_client(&pki, port, &[flags, &["-ign_eof", "-sess_in", sess]].concat(), request);
        assert!(second.contains("Reused, TLSv1."), "{name}: not resumed: {second}");
        assert!(second.contains("HTTP/1.1 200 OK") && second.contains("resumed"), "{name}: {second}");
    }
}

/// An h2 preface and SETTINGS frame over TLS with each ALPN offer; what came
/// back (hex) and whether the server closed.
const PREFACE_PROBE: &str = r#"
import json, socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
out = {}
for alpn in ["h2", "http/1.1", ""]:
    ctx = ssl.create_default_context(cafile=ca)
    if alpn:
        ctx.set_alpn_protocols([alpn])
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    s.settimeout(5)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    got, closed = b"", False
    try:
        while len(got) < 65536:
            d = s.recv(65536)
            if not d:
                closed = True
                break
            got += d
            if alpn == "h2" and len(got) >= 9:
                break
    except socket.timeout:
        pass
    except (ConnectionResetError, ssl.SSLError):
        closed = True
    out[alpn or "none"] = {"alpn": s.selected_alpn_protocol(), "got": got.hex(), "closed": closed}
print(json.dumps(out))
"#;

#[test]
fn an_h2_preface_is_http2_only_where_alpn_chose_h2() {
    let s = Scratch::new("tls-preface");
    let pki = Pki::new(&s.join("pki"));
    let leaf = pki.issue("leaf", "localhost", 0x1001, KeyKind::EcPkcs8);
    s.write("a.txt", b"a");
    let srv = Launch::new(&s.path).tls(&leaf).start();
    let port = https_ports(&srv, 1)[0];
    let out = Command::new("python3")
        .args(["-c", PREFACE_PROBE, &port.to_string(), pki.ca.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bytes = |k: &str| -> Vec<u8> {
        let hex = v[k]["got"].as_str().unwrap();
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
    };
    // ALPN h2: the server's SETTINGS frame (type 4 on stream 0) comes first.
    assert_eq!(v["h2"]["alpn"], "h2", "{v}");
    let h2 = bytes("h2");
    assert!(h2.len() >= 9 && h2[3] == 0x04 && h2[5..9] == [0, 0, 0, 0], "no SETTINGS under ALPN h2: {v}");
    // ALPN http/1.1 or none: HTTP/1 only. The preface is a malformed HTTP/1
    // request: an HTTP/1 error status or a close, never an HTTP/2 frame.
    for k in ["http/1.1", "none"] {
        let expected_alpn = if k == "none" { serde_json::Value::Null } else { k.into() };
        assert_eq!(v[k]["alpn"], expected_alpn, "{v}");
        let got = bytes(k);
        let text = String::from_utf8_lossy(&got);
        assert!(
            got.is_empty() || text.starts_with("HTTP/1.1 4") || text.starts_with("HTTP/1.1 5"),
            "ALPN {k}: the preface was answered with {text:?} ({v})"
        );
        assert!(!(got.len() >= 9 && got[3] == 0x04), "ALPN {k}: served as HTTP/2: {v}");
        assert_eq!(v[k]["closed"], true, "ALPN {k}: the connection stayed open: {v}");
    }
    // Still serving.
    let mut c = PyTls::connect(&pki, port, "http/1.1");
    assert_eq!(c.get("/a.txt")["status"], 200);
}

mod pairs;
