//! Certificates and keys: start-up refusing a pair that does not match,
//! every key form, SIGHUP installing a new pair (or keeping the old one when
//! the new is broken) while open connections keep working, plain and TLS
//! listeners side by side, and the timeouts and connection cap on TLS.

use super::*;

/// Runs the binary to its exit (10 s at most): its status and stderr.
fn start_fails(args: &[&str]) -> (Option<i32>, String) {
    let bin =
        std::env::var("MAPSERVE_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mapserve").to_owned());
    let mut child =
        Command::new(bin).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().unwrap())
}

#[test]
fn start_up_refuses_a_key_that_does_not_match_naming_both_files() {
    let s = Scratch::new("tls-mismatch");
    let pki = Pki::new(&s.join("pki"));
    let a = pki.issue("a", "localhost", 0x1001, KeyKind::EcPkcs8);
    let b = pki.issue("b", "localhost", 0x1002, KeyKind::EcPkcs8);
    let garbage = s
        .write("garbage.key", b"-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n");
    let root = s.path.to_str().unwrap();
    let (cert, key_a, key_b) = (a.cert.to_str().unwrap(), a.key.to_str().unwrap(), b.key.to_str().unwrap());
    let base = [root, "-l", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"];
    let (status, err) = start_fails(&[&base[..], &["--tls-cert", cert, "--tls-key", key_b]].concat());
    assert!(matches!(status, Some(c) if c != 0), "exit {status:?}: {err}");
    assert!(err.contains(cert) && err.contains(key_b), "both files named: {err}");
    assert!(err.contains("does not match"), "{err}");
    assert!(!err.contains("listening on"), "{err}");
    // A key file with no key, and a certificate that is not there.
    let (status, err) =
        start_fails(&[&base[..], &["--tls-cert", cert, "--tls-key", garbage.to_str().unwrap()]].concat());
    assert!(
        matches!(status, Some(c) if c != 0) && err.contains(garbage.to_str().unwrap()),
        "{status:?}: {err}"
    );
    let missing = s.join("missing.pem");
    let (status, err) =
        start_fails(&[&base[..], &["--tls-cert", missing.to_str().unwrap(), "--tls-key", key_a]].concat());
    assert!(
        matches!(status, Some(c) if c != 0) && err.contains(missing.to_str().unwrap()),
        "{status:?}: {err}"
    );
    // A TLS listener without a certificate.
    let (status, err) = start_fails(&base);
    assert_eq!(status, Some(2), "{err}");
    assert!(err.contains("tls-listen") && err.contains("--tls-cert"), "{err}");
    // And the matching pair starts (the refusals above are about the pair).
    let good = Launch::new(&s.path)
        .args(&["--tls-listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key_a])
        .start();
    assert_eq!(https_ports(&good, 1).len(), 1);
}

#[test]
fn every_key_form_serves_ecdsa_and_rsa() {
    let s = Scratch::new("tls-keys");
    let pki = Pki::new(&s.join("pki"));
    s.write("a.txt", b"key forms");
    for (kind, bits) in [(KeyKind::EcSec1, "256"), (KeyKind::RsaPkcs1, "2048"), (KeyKind::RsaPkcs8, "2048")] {
        let leaf = pki.issue(&format!("{kind:?}"), "localhost", 0x1003, kind);
        let head = std::fs::read_to_string(&leaf.key).unwrap();
        let expected = match kind {
            KeyKind::EcSec1 => "-----BEGIN EC PRIVATE KEY-----",
            KeyKind::RsaPkcs1 => "-----BEGIN RSA PRIVATE KEY-----",
            _ => "-----BEGIN PRIVATE KEY-----",
        };
        assert!(head.starts_with(expected), "{kind:?}: {head}");
        let (srv, port) = tls_server(&s, &leaf, &[]);
        let out = curl_https(&pki, port, "/a.txt", &["-f"]);
        assert_eq!(stdout(&out), "key forms", "{kind:?}: {}", String::from_utf8_lossy(&out.stderr));
        for flag in ["-tls1_2", "-tls1_3"] {
            let out = s_client(&pki, port, &[flag], b"");
            assert!(out.contains(&format!("Server public key is {bits} bit")), "{kind:?} {flag}: {out}");
            assert!(out.contains("Verify return code: 0 (ok)"), "{kind:?} {flag}: {out}");
        }
        drop(srv);
    }
}

#[test]
fn sighup_installs_a_new_certificate_and_open_connections_keep_working() {
    let s = Scratch::new("tls-reload");
    let pki = Pki::new(&s.join("pki"));
    let old = pki.issue("old", "localhost", 0x1001, KeyKind::EcPkcs8);
    // The renewal also changes the key type.
    let new = pki.issue("new", "renewed.localhost", 0x2002, KeyKind::RsaPkcs1);
    let live = Leaf { cert: s.join("live.pem"), key: s.join("live.key"), serial: old.serial.clone() };
    std::fs::copy(&old.cert, &live.cert).unwrap();
    std::fs::copy(&old.key, &live.key).unwrap();
    s.write("www/a.txt", b"still here");
    let srv = Launch::new(&s.join("www")).tls(&live).start();
    let port = https_ports(&srv, 1)[0];
    assert_eq!(served_cert(&pki, port), ("1001".to_owned(), "CN = localhost".to_owned()));
    let mut before = PyTls::connect(&pki, port, "http/1.1");
    assert_eq!(before.info["serial"], "1001");
    assert_eq!(before.get("/a.txt")["body"], "still here");

    std::fs::copy(&new.cert, &live.cert).unwrap();
    std::fs::copy(&new.key, &live.key).unwrap();
    await_sighup_handler(&srv);
    srv.signal(Signal::HUP);
    assert!(
        eventually(Duration::from_secs(10), || srv.log().contains("tls certificate (re-read)")),
        "{}",
        srv.log()
    );
    assert_eq!(served_cert(&pki, port), ("2002".to_owned(), "CN = renewed.localhost".to_owned()));
    let mut after = PyTls::connect(&pki, port, "http/1.1");
    assert_eq!(after.info["serial"], "2002");
    assert_eq!(after.get("/a.txt")["status"], 200);
    // The connection opened before the reload: the next keep-alive request
    // on it is served.
    let r = before.get("/a.txt");
    assert_eq!((r["status"].as_u64(), r["body"].as_str()), (Some(200), Some("still here")), "{r}");
    // curl, over h2, gets the new chain too.
    let out = curl_https(&pki, port, "/a.txt", &["-f", "--http2"]);
    assert_eq!(stdout(&out), "still here", "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_broken_new_pair_keeps_the_old_certificate_and_says_why() {
    let s = Scratch::new("tls-reload-bad");
    let pki = Pki::new(&s.join("pki"));
    let old = pki.issue("old", "localhost", 0x1001, KeyKind::EcPkcs8);
    let other = pki.issue("other", "localhost", 0x3003, KeyKind::EcPkcs8);
    let new = pki.issue("new", "localhost", 0x2002, KeyKind::EcSec1);
    let (cert, key) = (s.join("live.pem"), s.join("live.key"));
    std::fs::copy(&old.cert, &cert).unwrap();
    std::fs::copy(&old.key, &key).unwrap();
    s.write("www/a.txt", b"a");
    let srv = Launch::new(&s.join("www"))
        .args(&["--tls-listen", "127.0.0.1:0"])
        .args(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()])
        .start();
    let port = https_ports(&srv, 1)[0];
    let mut open = PyTls::connect(&pki, port, "http/1.1");
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let garbage_key = || std::fs::write(&key, b"this is not a key\n").unwrap();
    let other_key = || {
        std::fs::copy(&new.cert, &cert).unwrap();
        std::fs::copy(&other.key, &key).unwrap();
    };
    let no_cert = || {
        std::fs::copy(&new.key, &key).unwrap();
        std::fs::remove_file(&cert).unwrap();
    };
    let cases: [(&str, &dyn Fn(), String); 3] = [
        ("a garbage key", &garbage_key, format!("cannot read a private key from {key_s}")),
        (
            "the key of another certificate",
            &other_key,
            format!("the TLS key {key_s} does not match the certificate {cert_s}"),
        ),
        ("a missing certificate", &no_cert, format!("cannot read the TLS certificate {cert_s}")),
    ];
    for (i, (what, break_it, reason)) in cases.iter().enumerate() {
        break_it();
        await_sighup_handler(&srv);
        srv.signal(Signal::HUP);
        assert!(
            eventually(Duration::from_secs(10), || log_count(&srv, "reload refused, nothing changed") > i),
            "{what}: {}",
            srv.log()
        );
        let log = srv.log();
        let line = log.lines().filter(|l| l.contains("reload refused")).nth(i).unwrap().to_owned();
        assert!(line.contains(reason.as_str()), "{what}: {line}");
        assert_eq!(served_cert(&pki, port).0, "1001", "{what}: the old certificate stays");
        assert_eq!(open.get("/a.txt")["status"], 200, "{what}");
        let out = curl_https(&pki, port, "/a.txt", &["-f"]);
        assert_eq!(stdout(&out), "a", "{what}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(!srv.log().contains("configuration reloaded"), "{}", srv.log());
    // The same steps with a good pair do change it.
    std::fs::copy(&new.cert, &cert).unwrap();
    std::fs::copy(&new.key, &key).unwrap();
    await_sighup_handler(&srv);
    srv.signal(Signal::HUP);
    assert!(
        eventually(Duration::from_secs(10), || srv.log().contains("configuration reloaded")),
        "{}",
        srv.log()
    );
    assert_eq!(served_cert(&pki, port).0, "2002");
    assert_eq!(open.get("/a.txt")["status"], 200);
}

#[test]
fn plain_and_tls_listeners_serve_side_by_side() {
    let s = Scratch::new("tls-side");
    let pki = Pki::new(&s.join("pki"));
    let leaf = pki.issue("leaf", "localhost", 0x1001, KeyKind::EcPkcs8);
    s.write("www/a.txt", b"side by side");
    let srv = Launch::new(&s.join("www"))
        .args(&["--tls-listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"])
        .args(&["--tls-cert", leaf.cert.to_str().unwrap(), "--tls-key", leaf.key.to_str().unwrap()])
        .start();
    let tls = https_ports(&srv, 2);
    let listening = srv.listening();
    assert_eq!(listening.iter().filter(|l| l.starts_with("http://")).count(), 1, "{listening:?}");
    assert_eq!(listening.iter().filter(|l| l.starts_with("https://")).count(), 2, "{listening:?}");
    assert_ne!(tls[0], tls[1]);
    assert_eq!(srv.get("/a.txt").body, b"side by side");
    let plain = run("curl", &["-sSf", &srv.url("/a.txt")]);
    assert_eq!(stdout(&plain), "side by side");
    for port in &tls {
        let out = curl_https(&pki, *port, "/a.txt", &["-f"]);
        assert_eq!(stdout(&out), "side by side", "{}", String::from_utf8_lossy(&out.stderr));
        // Plain HTTP to a TLS port is not a ClientHello: closed, no response.
        let out = run("curl", &["-sS", "--max-time", "10", &format!("http://127.0.0.1:{port}/a.txt")]);
        assert!(!out.status.success() && out.stdout.is_empty(), "plain HTTP on the TLS port: {out:?}");
    }
    // And TLS to the plain port fails the handshake.
    let out = curl_https(&pki, srv.port, "/a.txt", &[]);
    assert_eq!(out.status.code(), Some(35), "{out:?}");
    assert_eq!(srv.get("/a.txt").status, 200, "still serving");
}

#[test]
fn tls_connections_get_the_header_and_idle_timeouts() {
    let s = Scratch::new("tls-timeouts");
    let pki = Pki::new(&s.join("pki"));
    let leaf = pki.issue("leaf", "localhost", 0x1001, KeyKind::EcPkcs8);
    s.write("a.txt", b"a");
    let srv =
        Launch::new(&s.path).tls(&leaf).args(&["--header-timeout", "1s", "--idle-timeout", "2s"]).start();
    let port = https_ports(&srv, 1)[0];
    // All three at once: a TCP connection that never sends a ClientHello, a
    // TLS client silent after its handshake, and a keep-alive connection
    // idle after one request.
    let no_hello = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let no_hello = std::thread::spawn(move || closed_within(no_hello, Duration::from_secs(6)));
    let mut silent = PyTls::connect(&pki, port, "http/1.1");
    silent.send("WAIT");
    let mut idle = PyTls::connect(&pki, port, "http/1.1");
    assert_eq!(idle.get("/a.txt")["status"], 200);
    idle.send("WAIT");
    let t = no_hello.join().unwrap().expect("a connection without a ClientHello stayed open");
    assert!(
        t >= Duration::from_millis(800) && t < Duration::from_secs(4),
        "no ClientHello: closed after {t:?}"
    );
    let r = silent.next();
    let t = r["closed_after"].as_f64().unwrap_or_else(|| panic!("{r}"));
    assert!((0.8..4.0).contains(&t), "silent after the handshake: closed after {t} s ({r})");
    assert_eq!(r["data"], "", "{r}");
    let r = idle.next();
    let t = r["closed_after"].as_f64().unwrap_or_else(|| panic!("{r}"));
    assert!(
        (1.6..5.0).contains(&t),
        "idle keep-alive: closed after {t} s, not at the 2 s idle timeout ({r})"
    );
    // Meanwhile, and after, honest clients are served.
    let out = curl_https(&pki, port, "/a.txt", &["-f"]);
    assert_eq!(stdout(&out), "a", "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_connection_cap_counts_tls_connections() {
    let s = Scratch::new("tls-cap");
    let pki = Pki::new(&s.join("pki"));
    let leaf = pki.issue("leaf", "localhost", 0x1001, KeyKind::EcPkcs8);
    s.write("a.txt", b"a");
    let srv = Launch::new(&s.path)
        .tls(&leaf)
        .args(&["--max-connections", "1", "--header-timeout", "1s", "--idle-timeout", "30s"])
        .start();
    let port = https_ports(&srv, 1)[0];
    // One idle TLS keep-alive connection holds the only slot: a plain
    // client gets in by having it closed.
    let mut tls = PyTls::connect(&pki, port, "http/1.1");
    assert_eq!(tls.get("/a.txt")["status"], 200);
    assert_eq!(srv.get("/a.txt").status, 200);
    let r = tls.get("/a.txt");
    assert_eq!(r["closed"], true, "the idle TLS connection was not closed to make room: {r}");
    // A TLS connection still in its handshake is not idle: it holds the
    // slot, and a plain client waits until the header timeout ends it.
    // Accepted (a descriptor more in the server) before the plain one comes.
    let base = settled(Duration::from_secs(3), || fd_count(srv.pid()));
    let pending = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(eventually(Duration::from_secs(5), || fd_count(srv.pid()) > base), "not accepted");
    let start = Instant::now();
    assert_eq!(srv.get("/a.txt").status, 200);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(600),
        "served after {waited:?}: the pending TLS connection took no slot"
    );
    drop(pending);
    let out = curl_https(&pki, port, "/a.txt", &["-f"]);
    assert_eq!(stdout(&out), "a", "{}", String::from_utf8_lossy(&out.stderr));
}
