//! systemd integration, under `systemd-socket-activate` (which binds the
//! sockets, waits for a first connection, then execs mapserve with them as
//! descriptors 3 and up): inherited TCP and unix sockets served instead of
//! binding `--listen`, a socket named `tls` serving HTTPS, `LISTEN_PID`
//! naming another process ignored, `READY=1` and `STOPPING=1` to
//! `NOTIFY_SOCKET`; and the shipped config/mapserve.socket and
//! config/mapserve.service run the way they say (their addresses and root
//! replaced by scratch ones), checked by `systemd-analyze`, and their system
//! call filter compared with the calls mapserve makes under strace.

use crate::common::*;
use rustix::process::Signal;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const ACTIVATE: &str = "systemd-socket-activate";

/// `systemd-socket-activate` is here (scripts/test installs it).
fn have_activate(test: &str) -> bool {
    let ok = Command::new(ACTIVATE).arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        skip(test, "systemd-socket-activate (Debian package systemd) is not installed");
    }
    ok
}

/// The `systemd-socket-activate` prefix: `-l` per socket, their names,
/// `-E` per variable.
fn activate(sockets: &[(String, &str)], env: &[(&str, &str)]) -> Vec<String> {
    let mut argv = vec![ACTIVATE.to_owned()];
    for (addr, _) in sockets {
        argv.extend(["-l".to_owned(), addr.clone()]);
    }
    let names: Vec<&str> = sockets.iter().map(|(_, name)| *name).collect();
    argv.push(format!("--fdname={}", names.join(":")));
    for (k, v) in env {
        argv.extend(["-E".to_owned(), format!("{k}={v}")]);
    }
    argv
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// systemd-socket-activate execs the program only once a first connection
/// comes: this one connects (retrying until the socket exists), asks for
/// `path` and returns the whole answer.
fn first_connection(port: u16, path: &str) -> JoinHandle<Vec<u8>> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut s = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => panic!("cannot connect to {port}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    })
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_owned()
}

fn curl_unix(sock: &Path, path: &str) -> std::process::Output {
    run(
        "curl",
        &[
            "-sSf",
            "--max-time",
            "10",
            "--unix-socket",
            sock.to_str().unwrap(),
            &format!("http://localhost{path}"),
        ],
    )
}

/// A datagram socket in the scratch directory standing in for systemd's
/// notification socket.
fn notify_socket(s: &Scratch) -> (UnixDatagram, PathBuf) {
    let path = s.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    (sock, path)
}

fn recv_state(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("no notification within 20 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn inherited_tcp_and_unix_sockets_are_served_instead_of_binding() {
    if !have_activate("inherited_tcp_and_unix_sockets_are_served_instead_of_binding") {
        return;
    }
    let s = Scratch::new("sd-inherit");
    s.write("www/a.txt", b"activated");
    let www = s.join("www");
    // A port someone else holds: binding it would stop start-up.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let mut alone = RawProcess::spawn(&[www.to_str().unwrap(), "-l", &busy_addr], &[]);
    assert!(alone.wait_line(Duration::from_secs(20), |l| l.contains("cannot listen on")).is_some());
    assert!(matches!(alone.child.wait().unwrap().code(), Some(c) if c != 0));

    let port = free_port();
    let sock = s.join("http.sock");
    let prefix =
        activate(&[(format!("127.0.0.1:{port}"), "web"), (sock.display().to_string(), "local")], &[]);
    let first = first_connection(port, "/a.txt");
    let srv = Launch::new(&www).prefix(&strs(&prefix)).args(&["-l", &busy_addr]).start();
    // The connection that started it is served.
    let r = Resp::parse(&first.join().unwrap(), false);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"activated"[..]));
    assert_eq!(srv.port, port);
    assert!(eventually(Duration::from_secs(5), || srv.listening().len() == 2), "{:?}", srv.listening());
    assert_eq!(srv.listening(), [format!("http://127.0.0.1:{port}"), format!("unix:{}", sock.display())]);
    assert!(
        eventually(Duration::from_secs(5), || srv
            .log()
            .lines()
            .any(|l| l.contains("socket activation: serving on the inherited sockets")
                && l.contains("sockets=2"))),
        "{}",
        srv.log()
    );
    // systemd-socket-activate exec'd mapserve in its own process (so
    // LISTEN_PID named it).
    assert_eq!(comm(srv.pid()), "mapserve");
    assert_eq!(srv.get("/a.txt").body, b"activated");
    let out = curl_unix(&sock, "/a.txt");
    assert_eq!(out.stdout, b"activated", "{}", String::from_utf8_lossy(&out.stderr));
    let log = log_at_exit(srv);
    // (systemd-socket-activate's own lines show the command line.)
    let used = log.lines().filter(|l| !l.starts_with("Execing ")).any(|l| l.contains(&busy_addr));
    assert!(!used, "the --listen address was used: {log}");
    // The unix socket belongs to whoever made it (systemd): left in place.
    assert!(sock.exists(), "mapserve removed the inherited socket's file");
    drop(busy);
}

#[test]
fn ready_and_stopping_reach_the_notify_socket() {
    if !have_activate("ready_and_stopping_reach_the_notify_socket") {
        return;
    }
    let s = Scratch::new("sd-notify");
    s.write("www/a.txt", b"a");
    let (notify, path) = notify_socket(&s);
    let port = free_port();
    let prefix =
        activate(&[(format!("127.0.0.1:{port}"), "http")], &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    let first = first_connection(port, "/a.txt");
    let mut srv = Launch::new(&s.join("www")).prefix(&strs(&prefix)).start();
    assert_eq!(recv_state(&notify), "READY=1");
    assert_eq!(Resp::parse(&first.join().unwrap(), false).status, 200);
    assert_eq!(srv.get("/a.txt").status, 200);
    // A reload says nothing (mapserve does not use Type=notify-reload).
    await_sighup_handler(&srv);
    srv.signal(Signal::HUP);
    assert!(eventually(Duration::from_secs(10), || srv.log().contains("configuration reloaded")));
    srv.signal(Signal::TERM);
    assert_eq!(recv_state(&notify), "STOPPING=1");
    assert_eq!(srv.wait_exit(Duration::from_secs(15)), Some(0), "{}", srv.log());
    notify.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    assert!(notify.recv(&mut buf).is_err(), "more notifications: {:?}", String::from_utf8_lossy(&buf));

    // An abstract socket (`@name`), as systemd uses in containers; and
    // without socket activation.
    use std::os::linux::net::SocketAddrExt;
    let name = format!("mapserve-test-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let abstract_sock = UnixDatagram::bind_addr(&addr).unwrap();
    abstract_sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let srv = Launch::new(&s.join("www")).env("NOTIFY_SOCKET", &format!("@{name}")).start();
    assert_eq!(recv_state(&abstract_sock), "READY=1");
    assert_eq!(srv.get("/a.txt").status, 200);
    let log = log_at_exit(srv);
    assert_eq!(recv_state(&abstract_sock), "STOPPING=1");
    assert!(!log.contains("cannot notify"), "{log}");
}

/// Fails: READY=1 is sent before the signal handlers exist (`run()` in
/// src/server/mod.rs notifies, then `signals()` installs them), so a
/// `systemctl reload` (ExecReload=/bin/kill -HUP $MAINPID) soon after
/// `systemctl start` returns can kill the service with its SIGHUP: here,
/// about one time in five.
#[test]
fn a_reload_right_after_ready_does_not_stop_the_process() {
    let s = Scratch::new("sd-ready-hup");
    let root = s.path.to_str().unwrap();
    for attempt in 0..25 {
        let _ = std::fs::remove_file(s.join("notify.sock"));
        let (notify, path) = notify_socket(&s);
        let mut p =
            RawProcess::spawn(&[root, "-l", "127.0.0.1:0"], &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
        assert_eq!(recv_state(&notify), "READY=1");
        p.signal(Signal::HUP);
        let (handled, status) = p.sighup_outcome();
        assert!(
            handled && status.is_none(),
            "attempt {attempt}: SIGHUP right after READY=1 stopped the process: {status:?}"
        );
    }
}

#[test]
fn listen_pid_naming_another_process_is_ignored() {
    if !have_activate("listen_pid_naming_another_process_is_ignored") {
        return;
    }
    let s = Scratch::new("sd-pid");
    s.write("www/a.txt", b"bound");
    let port = free_port();
    // Descriptor 3 is a real listening socket, but LISTEN_PID names this
    // test's process (as after a fork): mapserve must bind --listen.
    let mut prefix = activate(&[(format!("127.0.0.1:{port}"), "http")], &[]);
    let me = format!("LISTEN_PID={}", std::process::id());
    prefix.extend(["env".to_owned(), me]);
    let _first = first_connection(port, "/a.txt");
    let srv = Launch::new(&s.join("www")).prefix(&strs(&prefix)).start();
    assert_ne!(srv.port, port, "served the inherited socket: {:?}", srv.listening());
    assert_eq!(comm(srv.pid()), "mapserve");
    assert_eq!(srv.get("/a.txt").body, b"bound");
    let log = srv.log();
    assert!(!log.contains("socket activation"), "{log}");
    assert_eq!(srv.listening(), [format!("http://127.0.0.1:{}", srv.port)]);
}

#[test]
fn sockets_named_tls_serve_https() {
    if !have_activate("sockets_named_tls_serve_https") {
        return;
    }
    let s = Scratch::new("sd-tls");
    let pki = Pki::new(&s.join("pki"));
    let leaf = pki.issue("leaf", "localhost", 0x1001, KeyKind::EcPkcs8);
    s.write("www/a.txt", b"tls by name");
    let www = s.join("www");
    let (plain, tls, tls_other) = (free_port(), free_port(), free_port());
    let prefix = activate(
        &[
            (format!("127.0.0.1:{plain}"), "http"),
            (format!("127.0.0.1:{tls}"), "tls"),
            (format!("127.0.0.1:{tls_other}"), "tls-second"),
        ],
        &[],
    );
    let first = first_connection(plain, "/a.txt");
    let srv = Launch::new(&www)
        .prefix(&strs(&prefix))
        .args(&["--tls-cert", leaf.cert.to_str().unwrap(), "--tls-key", leaf.key.to_str().unwrap()])
        .start();
    assert_eq!(Resp::parse(&first.join().unwrap(), false).body, b"tls by name");
    assert_eq!(https_ports(&srv, 2), [tls, tls_other]);
    assert_eq!(srv.listening()[0], format!("http://127.0.0.1:{plain}"));
    for port in [tls, tls_other] {
        let url = format!("https://127.0.0.1:{port}/a.txt");
        let out = run("curl", &["-sSf", "--max-time", "10", "--cacert", pki.ca.to_str().unwrap(), &url]);
        assert_eq!(out.stdout, b"tls by name", "{}", String::from_utf8_lossy(&out.stderr));
        let plain_url = format!("http://127.0.0.1:{port}/a.txt");
        assert!(!run("curl", &["-sSf", "--max-time", "10", &plain_url]).status.success());
    }
    assert_eq!(srv.get("/a.txt").body, b"tls by name");
    drop(srv);

    // Without a certificate, or on a unix socket: start-up stops, saying why.
    let sock = s.join("tls.sock");
    for (sockets, needle) in [
        (vec![(format!("127.0.0.1:{}", free_port()), "tls")], "TLS needs --tls-cert and --tls-key"),
        (
            vec![(format!("127.0.0.1:{}", free_port()), "http"), (sock.display().to_string(), "tls")],
            "TLS is served on TCP sockets only",
        ),
    ] {
        let port: u16 = sockets[0].0.rsplit(':').next().unwrap().parse().unwrap();
        let mut argv = activate(&sockets, &[]);
        argv.insert(0, "20".to_owned());
        let bin =
            std::env::var("MAPSERVE_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mapserve").to_owned());
        argv.extend([bin, www.display().to_string()]);
        if needle.contains("unix") {
            argv.extend(["--tls-cert".to_owned(), leaf.cert.display().to_string()]);
            argv.extend(["--tls-key".to_owned(), leaf.key.display().to_string()]);
        }
        let first = first_connection(port, "/a.txt");
        let out = Command::new("timeout").args(&argv).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(matches!(out.status.code(), Some(c) if c != 0 && c != 124), "{:?}: {err}", out.status);
        assert!(err.contains(needle), "{err}");
        assert!(!err.contains("listening on"), "{err}");
        assert!(first.join().unwrap().is_empty());
        let _ = std::fs::remove_file(&sock);
    }
}

mod units;
