//! HAProxy in front: PROXY v1 in TCP mode, and the shipped
//! `config/haproxy.cfg` with PROXY v2 and its health checks.

use super::*;

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
pub(super) fn shipped_haproxy_cfg(front: u16, backend: &str) -> String {
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
