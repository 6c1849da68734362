//! PROXY headers built by hand: valid v1 and v2, LOCAL, missing,
//! malformed and too slow; and the conveyed address deciding trust.

use super::haproxy::shipped_haproxy_cfg;
use super::*;

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

/// A PROXY header, then the TLS handshake on the same connection, from
/// Python's ssl module: prints the response's status line.
const PROXY_THEN_TLS: &str = r#"
import socket, ssl, sys
port, ca, header, target = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode(), sys.argv[4]
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.sendall(header)
t = ssl.create_default_context(cafile=ca).wrap_socket(s, server_hostname="localhost")
t.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
got = b""
while True:
    d = t.recv(65536)
    if not d:
        break
    got += d
print(got.split(b"\r\n", 1)[0].decode())
"#;

#[test]
fn a_proxy_header_comes_before_the_tls_handshake_on_a_tls_listener() {
    let s = Scratch::new("proxy-tls");
    s.write("www/a.txt", b"over tls");
    let pki = Pki::new(&s.join("pki"));
    let leaf = pki.issue("leaf", "localhost", 1, KeyKind::EcPkcs8);
    let srv = Launch::new(&s.join("www")).tls(&leaf).arg("--proxy-protocol").start();
    let port = https_ports(&srv, 1)[0].to_string();
    let ca = pki.ca.to_str().unwrap();
    let out = run(
        "python3",
        &["-c", PROXY_THEN_TLS, &port, ca, "PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n", "/a.txt?tls"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "HTTP/1.1 200 OK", "{out:?}");
    let line = access_for(&srv, "/a.txt?tls");
    assert_eq!(line.get("client"), "203.0.113.7:5555");
    assert_eq!(line.get("scheme"), "https");
    // Without the header, the ClientHello itself is refused as a bad header:
    // the handshake fails and nothing is answered.
    let out = run("python3", &["-c", PROXY_THEN_TLS, &port, ca, "", "/a.txt?none"]);
    assert!(!out.status.success() && out.stdout.is_empty(), "{out:?}");
}
