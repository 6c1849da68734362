//! nginx in front over a unix socket with a path prefix, and the
//! unix-socket listener itself (mode, stale files, a live path refused,
//! removal on exit, permissions, start-up that never wedges).

use super::forwarded::{is_relative, links};
use super::*;

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
