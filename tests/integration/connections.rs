//! Connection handling: timeouts, the connection cap, descriptor exhaustion
//! at accept, graceful shutdown on SIGTERM, and clients that half-close.

use crate::common::*;
use rustix::process::Signal;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn slow_request_heads_are_cut_at_the_header_timeout() {
    let s = Scratch::new("slowloris");
    s.write("a.txt", b"a");
    let srv = Launch::new(&s.path).args(&["--header-timeout", "1s", "--idle-timeout", "30s"]).start();
    // One byte every 300 ms: the deadline covers the whole head.
    let mut c = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    let start = Instant::now();
    let mut closed = false;
    for b in b"GET /a.txt HTTP/1.1\r\nHost: t\r\n" {
        if c.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        if start.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let elapsed = start.elapsed();
    assert!(closed || closed_within(c, Duration::from_secs(3)).is_some(), "still open after {elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "closed only after {elapsed:?}");
    // A connection that sends nothing is closed too.
    let silent = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    let t = closed_within(silent, Duration::from_secs(4)).expect("silent connection kept open");
    assert!(t >= Duration::from_millis(800), "{t:?}");
    // Meanwhile, honest requests are served.
    assert_eq!(srv.get("/a.txt").status, 200);
}

#[test]
fn idle_keep_alive_connections_are_closed_at_the_idle_timeout() {
    let s = Scratch::new("idle");
    s.write("a.txt", b"a");
    let srv = Launch::new(&s.path).args(&["--idle-timeout", "1s", "--header-timeout", "10s"]).start();
    let mut c = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    c.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut buf = [0u8; 1024];
    let n = c.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let t = closed_within(c, Duration::from_secs(5)).expect("idle connection kept open");
    assert!(t >= Duration::from_millis(800) && t < Duration::from_secs(3), "{t:?}");
}

#[test]
fn a_client_that_stops_reading_is_dropped_at_the_send_timeout() {
    let s = Scratch::new("stalled");
    s.write("big.bin", &pattern(32 << 20, 1));
    let srv = Launch::new(&s.path).args(&["--send-timeout", "1s"]).start();
    let mut c = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut buf = [0u8; 1];
    c.read_exact(&mut buf).unwrap();
    // Stop reading; the server's writes block, then it gives up (its access
    // line says so) while we still read nothing.
    assert!(
        eventually(Duration::from_secs(8), || srv.log().contains("status=200")
            && srv.log().contains("complete=false")),
        "{}",
        srv.log()
    );
    let mut got = 1usize;
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut big = vec![0u8; 1 << 20];
    loop {
        match c.read(&mut big) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(_) => break,
        }
    }
    assert!(got < 32 << 20, "the stalled client was not dropped ({got} bytes)");
}

#[test]
fn the_connection_cap_queues_clients_instead_of_failing() {
    let s = Scratch::new("cap");
    s.write("a.txt", b"a");
    let srv = Launch::new(&s.path).args(&["--max-connections", "2"]).start();
    let base = fd_count(srv.pid());
    let hold: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(("127.0.0.1", srv.port)).unwrap()).collect();
    assert!(eventually(Duration::from_secs(5), || fd_count(srv.pid()) >= base + 2), "both accepted");
    // A third client waits in the backlog...
    let port = srv.port;
    let third = std::thread::spawn(move || {
        let start = Instant::now();
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).unwrap();
        (start.elapsed(), Resp::parse(&out, false).status)
    });
    std::thread::sleep(Duration::from_millis(700));
    drop(hold);
    // ...and is served once a slot frees.
    let (elapsed, status) = third.join().unwrap();
    assert_eq!(status, 200);
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
}

#[test]
fn descriptor_exhaustion_at_accept_is_survived() {
    let s = Scratch::new("emfile");
    s.write("a.txt", b"a");
    let mut srv = Launch::new(&s.path)
        .prefix(&["prlimit", "--nofile=48:48", "--"])
        .args(&["--max-connections", "1000"])
        .start();
    let conns: Vec<TcpStream> =
        (0..80).filter_map(|_| TcpStream::connect(("127.0.0.1", srv.port)).ok()).collect();
    assert!(eventually(Duration::from_secs(5), || srv.log().contains("accept failed")), "{}", srv.log());
    assert!(srv.alive(), "EMFILE must not end the server");
    drop(conns);
    assert!(eventually(Duration::from_secs(3), || srv.get("/a.txt").status == 200));
}

#[test]
fn sigterm_lets_in_flight_responses_finish_then_exits_zero() {
    let s = Scratch::new("graceful");
    let data = pattern(16 << 20, 3);
    s.write("big.bin", &data);
    let mut srv = Server::start(&s.path);
    let port = srv.port;
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = progress.clone();
    let download = std::thread::spawn(move || {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            seen.store(out.len(), std::sync::atomic::Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(5));
        }
        out
    });
    let started = || progress.load(std::sync::atomic::Ordering::Relaxed) > 0;
    assert!(eventually(Duration::from_secs(5), started), "the download started");
    srv.signal(Signal::TERM);
    assert!(
        eventually(Duration::from_secs(3), || TcpStream::connect(("127.0.0.1", srv.port)).is_err()),
        "still accepting after SIGTERM"
    );
    let out = download.join().unwrap();
    let r = Resp::parse(&out, false);
    assert_eq!(r.body, data, "the in-flight download finished whole");
    assert_eq!(srv.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn sigterm_closes_idle_keep_alive_connections_at_once_with_goaway_on_http2() {
    let s = Scratch::new("drain-idle");
    s.write("a.txt", b"a");
    let mut srv = Launch::new(&s.path).args(&["--grace-period", "30s", "--idle-timeout", "60s"]).start();
    // An HTTP/1.1 connection, idle after one response.
    let mut h1 = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    h1.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut buf = [0u8; 1024];
    let n = h1.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    // An HTTP/2 connection (prior knowledge), idle after its SETTINGS
    // exchange: everything the server sends is kept, to find its GOAWAY.
    let mut h2 = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").unwrap();
    h2.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut from_server = Vec::new();
    while from_server.len() < 9 {
        let n = h2.read(&mut buf).unwrap();
        assert!(n > 0, "the server closed before its SETTINGS");
        from_server.extend_from_slice(&buf[..n]);
    }
    std::thread::sleep(Duration::from_millis(200));
    // Both idle connections are closed at once, and the process exits
    // without waiting for the grace period or the idle timeout.
    let start = Instant::now();
    srv.signal(Signal::TERM);
    assert!(closed_within(h1, Duration::from_secs(5)).is_some(), "the idle HTTP/1.1 connection stayed open");
    // The HTTP/2 connection: a GOAWAY, then the close. hyper's shutdown
    // sends a PING between its two GOAWAYs and waits for the answer, as
    // every client gives it.
    let (mut frames, mut at) = (Vec::new(), 0);
    loop {
        while from_server.len() >= at + 9 {
            let head = &from_server[at..at + 9];
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            if from_server.len() < at + 9 + len {
                break;
            }
            let (kind, flags) = (head[3], head[4]);
            if kind == 0x6 && flags & 0x1 == 0 && len == 8 {
                let mut ack = vec![0, 0, 8, 0x6, 0x1, 0, 0, 0, 0];
                ack.extend_from_slice(&from_server[at + 9..at + 17]);
                let _ = h2.write_all(&ack);
            }
            frames.push(kind);
            at += 9 + len;
        }
        match h2.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => from_server.extend_from_slice(&buf[..n]),
        }
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the HTTP/2 connection closed after {:?}",
        start.elapsed()
    );
    assert!(frames.contains(&0x7), "no GOAWAY frame among the server's frames (types {frames:?})");
    assert_eq!(srv.wait_exit(Duration::from_secs(5)), Some(0), "{}", srv.log());
    assert!(start.elapsed() < Duration::from_secs(5), "exit took {:?}", start.elapsed());
}

#[test]
fn sigint_with_a_stuck_client_exits_after_the_grace_period() {
    let s = Scratch::new("grace");
    s.write("big.bin", &pattern(32 << 20, 4));
    let mut srv = Launch::new(&s.path).args(&["--grace-period", "1s"]).start();
    let mut c = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut b = [0u8; 1];
    c.read_exact(&mut b).unwrap();
    let start = Instant::now();
    srv.signal(Signal::INT);
    assert_eq!(srv.wait_exit(Duration::from_secs(8)), Some(0));
    let t = start.elapsed();
    assert!(t >= Duration::from_millis(900) && t < Duration::from_secs(5), "{t:?}");
}

#[test]
fn at_the_cap_the_longest_idle_keep_alive_connection_makes_room() {
    let s = Scratch::new("reclaim");
    s.write("a.txt", b"a");
    let srv = Launch::new(&s.path).args(&["--max-connections", "3", "--idle-timeout", "60s"]).start();
    // Three keep-alive clients, each served once, then idle (oldest first).
    let mut idle: Vec<TcpStream> = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        c.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut buf = [0u8; 1024];
        let n = c.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        idle.push(c);
        std::thread::sleep(Duration::from_millis(50));
    }
    // A fourth client is served at once, not after the idle timeout.
    let t = Instant::now();
    let r = srv.get("/a.txt");
    assert_eq!(r.status, 200);
    assert!(t.elapsed() < Duration::from_secs(2), "waited {:?}", t.elapsed());
    // The one closed was the longest idle.
    let oldest = idle.remove(0);
    assert!(closed_within(oldest, Duration::from_secs(2)).is_some(), "the oldest idle connection was closed");
    for c in idle {
        c.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let open = matches!((&c).read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        assert!(open, "a more recently used connection was closed");
    }
}

#[test]
fn a_client_that_shuts_its_sending_side_still_gets_the_whole_response() {
    let s = Scratch::new("halfclose");
    let big = pattern(4 << 20, 7);
    s.write("big.bin", &big);
    s.write("a.txt", b"hello");
    let srv = Launch::new(&s.path).start();
    // A miss (loaded on the blocking pool), then a hit; each time the client
    // sends its request, shuts its sending side at once (as `nc -N` does),
    // and only then reads. 4 MiB is more than the socket buffers hold, so
    // most of it is written after the server has seen the end of the input.
    for _ in 0..2 {
        for (path, body) in [("/big.bin", big.as_slice()), ("/a.txt", b"hello".as_slice())] {
            let mut c = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).unwrap();
            c.shutdown(std::net::Shutdown::Write).unwrap();
            let mut out = Vec::new();
            // The server closes once the response is sent: read_to_end ends.
            c.read_to_end(&mut out).unwrap();
            let split = out.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
            let head = String::from_utf8_lossy(&out[..split]);
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
            assert!(out[split..] == *body, "{path}: {} bytes of {}", out.len() - split, body.len());
        }
    }
}
