//! Who reaches the admin routes and when: readiness through a graceful stop,
//! nothing of them on the file listeners, a token required off loopback and
//! checked on every route but the health checks, a unix socket only its
//! owner can open.

use super::*;
use rustix::process::Signal;
use std::time::{Duration, Instant};

#[test]
fn readyz_is_503_while_draining_and_healthz_stays_200() {
    let s = Scratch::new("adm-ready");
    s.write("big.bin", &pattern(16_000_000, 7));
    let mut srv =
        Launch::new(&s.path).args(&["--admin-listen", "127.0.0.1:0", "--grace-period", "10s"]).start();
    let admin = srv.admin();
    let probe = |path: &str| {
        let r = call(&admin, "GET", path, &[]);
        (r.status, String::from_utf8_lossy(&r.body).into_owned())
    };
    assert!(eventually(Duration::from_secs(5), || probe("/readyz") == (200, "ready\n".into())));
    assert_eq!(probe("/healthz"), (200, "ok\n".into()));
    let mut curl = SlowCurl::start(&srv.url("/big.bin"));
    await_in_flight(&srv, "/big.bin");

    let term = Instant::now();
    srv.signal(Signal::TERM);
    assert!(
        eventually(Duration::from_secs(5), || probe("/readyz") == (503, "draining\n".into())),
        "/readyz after SIGTERM: {:?}",
        probe("/readyz")
    );
    // For as long as the download holds the process open: draining, alive.
    let changed = eventually(Duration::from_secs(1), || {
        probe("/readyz").0 != 503 || probe("/healthz") != (200, "ok\n".into())
    });
    assert!(!changed, "while draining: /readyz {:?}, /healthz {:?}", probe("/readyz"), probe("/healthz"));
    assert!(srv.alive() && curl.running(), "the download must still hold the process: {}", srv.log());

    curl.kill();
    let killed = Instant::now();
    assert_eq!(srv.wait_exit(Duration::from_secs(9)), Some(0), "{}", srv.log());
    assert!(
        killed.elapsed() < Duration::from_secs(5) && term.elapsed() < Duration::from_secs(10),
        "the exit waited for the grace period, not for the download ({:?} after SIGTERM)",
        term.elapsed()
    );
}

#[test]
fn admin_routes_are_not_on_the_file_listener() {
    let s = Scratch::new("adm-files");
    s.write("a.txt", b"a");
    let srv = Launch::new(&s.path).args(&["--admin-listen", "127.0.0.1:0"]).start();
    assert_eq!(admin_get(&srv, "/metrics").status, 200, "control: the admin listener has them");
    for path in ["/metrics", "/cache", "/healthz", "/readyz", "/cache?sort=bytes"] {
        assert_eq!(srv.get(path).status, 404, "GET {path} on the file listener");
    }
    let r = srv.req("POST", "/cache/evict?all=1", &[("Content-Length", "0")]);
    assert_ne!(r.status, 200, "POST /cache/evict on the file listener");
    // Files of those names are files like any other.
    s.write("metrics", b"# not the server's metrics\n");
    s.write("healthz", b"a file named healthz\n");
    assert_eq!(srv.get("/metrics").body, b"# not the server's metrics\n");
    assert_eq!(srv.get("/healthz").body, b"a file named healthz\n");
    let admin = admin_get(&srv, "/metrics");
    assert!(String::from_utf8_lossy(&admin.body).contains("mapserve_http_requests_total"));
}

/// Starts the binary with `args`; its exit code (if it exits within 10 s)
/// and the first stderr line that mentions `key`.
fn start_up(root: &Path, args: &[&str], key: &str) -> (Option<i32>, String) {
    let mut argv = vec![root.to_str().unwrap(), "-l", "127.0.0.1:0"];
    argv.extend_from_slice(args);
    let mut p = RawProcess::spawn(&argv, &[]);
    let line = p.wait_line(Duration::from_secs(10), |l| l.contains(key)).unwrap_or_default();
    (p.exit_within(Duration::from_secs(10)).and_then(|s| s.code()), line)
}

#[test]
fn a_public_admin_address_needs_a_token_file() {
    let s = Scratch::new("adm-public");
    let (code, line) = start_up(&s.path, &["--admin-listen", "0.0.0.0:0"], "admin-listen");
    assert_eq!(code, Some(2), "{line}");
    assert!(line.contains("admin-token-file"), "the message says what is missing: {line}");
    let short = s.write("short.token", b"too-short\n");
    let (code, line) = start_up(
        &s.path,
        &["--admin-listen", "127.0.0.1:0", "--admin-token-file", short.to_str().unwrap()],
        "admin-token-file",
    );
    assert_eq!(code, Some(2), "a 9-character token: {line}");
    // Control: with a token the same address starts.
    let token = s.write("ok.token", b"0123456789abcdef-public\n");
    let srv = Launch::new(&s.path)
        .args(&["--admin-listen", "0.0.0.0:0", "--admin-token-file", token.to_str().unwrap()])
        .start();
    let port = srv.admin().rsplit(':').next().unwrap().to_owned();
    assert_eq!(call(&format!("127.0.0.1:{port}"), "GET", "/healthz", &[]).status, 200);
}

#[test]
fn a_token_guards_everything_but_the_health_checks() {
    let s = Scratch::new("adm-token");
    s.write("a.bin", &pattern(100_000, 1));
    let keys = Scratch::new("adm-token-file");
    let secret = "s3cret-token-0123456789";
    let file = keys.write("token", format!("{secret}\nsecond line ignored\n").as_bytes());
    let srv = Launch::new(&s.path)
        .args(&["--admin-listen", "127.0.0.1:0", "--admin-token-file", file.to_str().unwrap()])
        .start();
    assert_eq!(srv.get("/a.bin").status, 200);
    let admin = srv.admin();
    let bearer = format!("Bearer {secret}");
    let wrong = [
        vec![],
        vec![("Authorization", "Bearer s3cret-token-0123456788")],
        vec![("Authorization", "Bearer s3cret-token-01234567890")],
        vec![("Authorization", "Bearer ")],
        vec![("Authorization", secret)],
    ];
    for (method, path) in [("GET", "/metrics"), ("GET", "/cache"), ("POST", "/cache/evict?all=1")] {
        for headers in &wrong {
            let r = call(&admin, method, path, headers);
            assert_eq!(
                (r.status, r.header("www-authenticate")),
                (401, Some("Bearer")),
                "{method} {path} {headers:?}"
            );
        }
    }
    assert_eq!(call(&admin, "GET", "/cache", &[("Authorization", &bearer)]).status, 200);
    let listing: serde_json::Value =
        serde_json::from_slice(&call(&admin, "GET", "/cache", &[("Authorization", &bearer)]).body).unwrap();
    assert_eq!(listing["budget"]["entries"], 1, "no unauthorized evict went through");
    let r = call(&admin, "GET", "/metrics", &[("Authorization", &bearer)]);
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("mapserve_http_requests_total"));
    for (path, body) in [("/healthz", "ok\n"), ("/readyz", "ready\n")] {
        let r = call(&admin, "GET", path, &[]);
        assert_eq!(
            (r.status, String::from_utf8_lossy(&r.body).as_ref()),
            (200, body),
            "{path} without a token"
        );
    }
    assert_eq!(call(&admin, "GET", "/", &[]).status, 200, "the dashboard page needs no token");
}

#[test]
fn a_unix_admin_socket_is_private_to_its_owner() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let s = Scratch::new("adm-unix");
    s.write("a.txt", b"a");
    let dir = Scratch::new("adm-unix-sock");
    let sock = dir.join("admin.sock");
    let mut srv = Launch::new(&s.path).args(&["--admin-listen", &format!("unix:{}", sock.display())]).start();
    assert_eq!(srv.admin(), format!("unix:{}", sock.display()));
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600, "admin socket mode");
    let out = run("curl", &["-sS", "--unix-socket", sock.to_str().unwrap(), "http://admin/healthz"]);
    assert_eq!((out.status.success(), String::from_utf8_lossy(&out.stdout).as_ref()), (true, "ok\n"));
    assert_eq!(srv.get("/a.txt").status, 200);
    let r = call(&srv.admin(), "GET", "/metrics", &[]);
    assert_eq!(r.status, 200, "loopback-only by nature: no token needed");
    srv.signal(Signal::TERM);
    assert_eq!(srv.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(!sock.exists(), "the admin socket file is removed at exit");
}
