//! Changes on disk are seen by the next request, and a file changed while it
//! is being served never takes the process down or sends wrong bytes.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn rename_replace_gives_new_bytes_and_a_new_etag() {
    for mode in ["inotify", "stat"] {
        rename_replace_gives_new_bytes_and_a_new_etag_with(mode);
    }
}

fn rename_replace_gives_new_bytes_and_a_new_etag_with(mode: &str) {
    let s = Scratch::new("rename");
    s.write("f.bin", &pattern(300_000, 1));
    let srv = Launch::new(&s.path).args(&["--revalidate", mode]).start();
    let before = srv.get("/f.bin");
    assert_eq!(before.body, pattern(300_000, 1));
    s.write("f.tmp", &pattern(200_000, 2));
    std::fs::rename(s.join("f.tmp"), s.join("f.bin")).unwrap();
    let after = srv.get("/f.bin");
    assert_eq!(after.body, pattern(200_000, 2));
    assert_ne!(before.header("etag"), after.header("etag"));
}

#[test]
fn append_gives_the_new_length() {
    for mode in ["inotify", "stat"] {
        append_gives_the_new_length_with(mode);
    }
}

fn append_gives_the_new_length_with(mode: &str) {
    let s = Scratch::new("append");
    let path = s.write("log.txt", b"line 1\n");
    let srv = Launch::new(&s.path).args(&["--revalidate", mode]).start();
    assert_eq!(srv.get("/log.txt").body, b"line 1\n");
    for i in 2..20 {
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(format!("line {i}\n").as_bytes())
            .unwrap();
        let r = srv.get("/log.txt");
        assert_eq!(r.body, std::fs::read(&path).unwrap());
        assert_eq!(r.content_length(), Some(r.body.len() as u64));
    }
    // A mapped (larger) file that grows too.
    let big = s.write("big.log", &pattern(1 << 20, 3));
    assert_eq!(srv.get("/big.log").body.len(), 1 << 20);
    std::fs::OpenOptions::new().append(true).open(&big).unwrap().write_all(&pattern(5000, 4)).unwrap();
    assert_eq!(srv.get("/big.log").body, std::fs::read(&big).unwrap());
}

#[test]
fn same_size_same_mtime_replacement_gets_a_new_etag() {
    for mode in ["inotify", "stat"] {
        same_size_same_mtime_replacement_gets_a_new_etag_with(mode);
    }
}

fn same_size_same_mtime_replacement_gets_a_new_etag_with(mode: &str) {
    let s = Scratch::new("touchr");
    let path = s.write("f.txt", b"AAAAAAAAAA");
    run("touch", &["-d", "2021-05-05 05:05:05", path.to_str().unwrap()]);
    let srv = Launch::new(&s.path).args(&["--revalidate", mode]).start();
    let before = srv.get("/f.txt");
    // Replace by rename with same size and a forged identical mtime.
    let tmp = s.write("f.tmp", b"BBBBBBBBBB");
    run("touch", &["-r", path.to_str().unwrap(), tmp.to_str().unwrap()]);
    std::fs::rename(&tmp, &path).unwrap();
    let after = srv.get("/f.txt");
    assert_eq!(after.body, b"BBBBBBBBBB");
    assert_eq!(before.header("last-modified"), after.header("last-modified"));
    assert_ne!(before.header("etag"), after.header("etag"));
    // In-place rewrite with the same size and mtime put back (ctime changes).
    std::fs::write(&path, b"CCCCCCCCCC").unwrap();
    run("touch", &["-d", "2021-05-05 05:05:05", path.to_str().unwrap()]);
    let again = srv.get("/f.txt");
    assert_eq!(again.body, b"CCCCCCCCCC");
    assert_ne!(after.header("etag"), again.header("etag"));
    // The old ETag no longer matches: If-Range gives the whole new file.
    let r = srv.req("GET", "/f.txt", &[("Range", "bytes=0-1"), ("If-Range", before.header("etag").unwrap())]);
    assert_eq!((r.status, &r.body[..]), (200, &b"CCCCCCCCCC"[..]));
}

#[test]
fn delete_gives_404_and_a_new_file_is_seen() {
    for mode in ["inotify", "stat"] {
        delete_gives_404_and_a_new_file_is_seen_with(mode);
    }
}

fn delete_gives_404_and_a_new_file_is_seen_with(mode: &str) {
    let s = Scratch::new("delete");
    let path = s.write("gone.txt", b"here");
    let srv = Launch::new(&s.path).args(&["--revalidate", mode]).start();
    assert_eq!(srv.get("/gone.txt").status, 200);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(srv.get("/gone.txt").status, 404);
    s.write("gone.txt", b"back");
    assert_eq!(srv.get("/gone.txt").body, b"back");
}

#[test]
fn deleted_mappings_are_released_once_idle() {
    let s = Scratch::new("unpin");
    let path = s.write("big.bin", &pattern(4 << 20, 9));
    let srv = Server::start(&s.path);
    assert_eq!(srv.get("/big.bin").body.len(), 4 << 20);
    let maps = format!("/proc/{}/maps", srv.pid());
    let mapped = || std::fs::read_to_string(&maps).unwrap().contains("big.bin");
    assert!(mapped(), "a file over small-file-max is mapped");
    std::fs::remove_file(&path).unwrap();
    // Nobody asks for it again; the sweep drops it.
    assert!(eventually(Duration::from_secs(8), || !mapped()), "deleted file still mapped");
}

/// A slow reader: reads `limit` bytes per 10 ms and returns everything it got.
fn slow_download(port: u16, path: &str, per_tick: usize, stop_after: Duration) -> (Resp, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let start = std::time::Instant::now();
    let mut all = Vec::new();
    let mut buf = vec![0u8; per_tick];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
        if start.elapsed() > stop_after {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = Resp::parse(&all[..end], true);
    (head, all[end..].to_vec())
}

#[test]
fn truncation_during_a_slow_download_leaves_the_process_alive_and_a_strict_prefix() {
    let s = Scratch::new("truncate");
    let data = pattern(64 << 20, 5);
    let path = s.write("victim.bin", &data);
    s.write("bystander.bin", &pattern(8 << 20, 6));
    let mut srv = Server::start(&s.path);
    let port = srv.port;
    let victim =
        std::thread::spawn(move || slow_download(port, "/victim.bin", 256 << 10, Duration::from_secs(30)));
    std::thread::sleep(Duration::from_millis(700));
    // Truncate in place (as `cp` or `>` would) to a page-aligned 1 MiB.
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(1 << 20).unwrap();
    let (head, body) = victim.join().unwrap();
    assert_eq!(head.content_length(), Some(64 << 20));
    assert!(body.len() < data.len(), "the transfer must be cut short, got {}", body.len());
    assert_eq!(&body[..], &data[..body.len()], "what arrived is a prefix of the old bytes");
    assert!(srv.alive(), "the server survived");
    let bystander = srv.get("/bystander.bin");
    assert_eq!(bystander.body, pattern(8 << 20, 6));
    let next = srv.get("/victim.bin");
    assert_eq!((next.status, next.body.len()), (200, 1 << 20));
    assert_eq!(&next.body[..], &data[..1 << 20]);
}

#[test]
fn a_hundred_concurrent_downloads_of_one_file_are_all_intact() {
    let s = Scratch::new("hundred");
    let data = std::sync::Arc::new(pattern(3 << 20, 7));
    s.write("one.bin", &data);
    let srv = Server::start(&s.path);
    let port = srv.port;
    let threads: Vec<_> = (0..100)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                s.write_all(b"GET /one.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
                let mut out = Vec::new();
                s.read_to_end(&mut out).unwrap();
                Resp::parse(&out, false)
            })
        })
        .collect();
    for t in threads {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body == *data, "a download was corrupted");
    }
}

#[test]
fn cache_hits_do_no_open_and_no_read() {
    use rustix::fs::inotify;
    let s = Scratch::new("nohit");
    let small = s.write("small.txt", &pattern(1000, 1));
    let mapped = s.write("mapped.bin", &pattern(1 << 20, 2));
    let srv = Server::start(&s.path);
    assert_eq!(srv.get("/small.txt").status, 200);
    assert_eq!(srv.get("/mapped.bin").status, 200);
    let ino = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).unwrap();
    for f in [&small, &mapped] {
        inotify::add_watch(&ino, f.as_path(), inotify::WatchFlags::OPEN | inotify::WatchFlags::ACCESS)
            .unwrap();
    }
    for _ in 0..50 {
        assert_eq!(srv.get("/small.txt").body.len(), 1000);
        assert_eq!(srv.get("/mapped.bin").body.len(), 1 << 20);
    }
    let mut buf = [std::mem::MaybeUninit::uninit(); 4096];
    let mut reader = inotify::Reader::new(&ino, &mut buf);
    match reader.next() {
        Err(rustix::io::Errno::AGAIN) => {}
        Ok(ev) => panic!("a cache hit touched the file: {:?}", ev.events()),
        Err(e) => panic!("{e}"),
    }
    // Control: a change makes the next request reload, which opens the file.
    std::fs::OpenOptions::new().append(true).open(&small).unwrap().write_all(b"!").unwrap();
    while reader.next().is_ok() {} // our own open and write
    assert_eq!(srv.get("/small.txt").body.len(), 1001);
    let mut saw_open = false;
    while let Ok(ev) = reader.next() {
        saw_open |= ev.events().contains(inotify::ReadFlags::OPEN);
    }
    assert!(saw_open, "the watch works: a reload is seen");
}

#[test]
fn every_change_is_seen_by_the_very_next_request() {
    for mode in ["inotify", "stat"] {
        let s = Scratch::new("strict");
        let outside = Scratch::new("strict-out");
        s.write("site/v/f.txt", b"v0");
        std::fs::hard_link(s.join("site/v/f.txt"), outside.join("link")).unwrap();
        let srv = Launch::new(&s.path).args(&["--revalidate", mode]).start();
        for i in 1..200 {
            let want = format!("v{i}");
            match i % 4 {
                // Atomic rename of the file.
                0 => {
                    s.write("site/v/tmp", want.as_bytes());
                    std::fs::rename(s.join("site/v/tmp"), s.join("site/v/f.txt")).unwrap();
                }
                // Atomic rename of a whole directory tree (blue/green deploy).
                1 => {
                    s.write("next/v/f.txt", want.as_bytes());
                    std::fs::rename(s.join("site"), s.join("old")).unwrap();
                    std::fs::rename(s.join("next"), s.join("site")).unwrap();
                    std::fs::remove_dir_all(s.join("old")).unwrap();
                }
                // In-place write, same length.
                2 => std::fs::write(s.join("site/v/f.txt"), want.as_bytes()).unwrap(),
                // Write through a hard link in another directory.
                _ => {
                    let _ = std::fs::remove_file(outside.join("link"));
                    std::fs::hard_link(s.join("site/v/f.txt"), outside.join("link")).unwrap();
                    std::fs::write(outside.join("link"), want.as_bytes()).unwrap();
                }
            }
            let r = srv.get("/site/v/f.txt");
            assert_eq!(String::from_utf8_lossy(&r.body), want, "{mode}: change {i} ({}) not seen", i % 4);
        }
    }
}

#[test]
fn a_swapped_root_symlink_is_followed_by_new_requests() {
    for mode in ["inotify", "stat"] {
        let s = Scratch::new(&format!("deploy-{mode}"));
        let r1_big = pattern(24 << 20, 80);
        s.write("releases/r1/index.html", b"release 1");
        s.write("releases/r1/big.bin", &r1_big);
        s.write("releases/r2/index.html", b"release 2");
        std::os::unix::fs::symlink("releases/r1", s.join("current")).unwrap();
        let srv = Launch::new(&s.join("current")).args(&["--revalidate", mode]).start();
        assert_eq!(srv.get("/").body, b"release 1");
        // A download from r1 is in flight across the deploy.
        let port = srv.port;
        let download =
            std::thread::spawn(move || slow_download(port, "/big.bin", 256 << 10, Duration::from_secs(30)));
        assert!(eventually(Duration::from_secs(5), || srv.log().contains("target=/big.bin")
            || std::fs::read_to_string(format!("/proc/{}/maps", srv.pid())).unwrap().contains("big.bin")));
        // The atomic deploy: a new link renamed over the old one.
        std::os::unix::fs::symlink("releases/r2", s.join("current.tmp")).unwrap();
        std::fs::rename(s.join("current.tmp"), s.join("current")).unwrap();
        assert_eq!(srv.get("/").body, b"release 2", "{mode}: the next request sees the new release");
        assert_eq!(srv.get("/big.bin").status, 404, "{mode}: r1's files are gone from the new tree");
        // The old release is deleted; the new one keeps serving.
        std::fs::remove_dir_all(s.join("releases/r1")).unwrap();
        assert_eq!(srv.get("/").body, b"release 2");
        s.write("releases/r2/new.txt", b"added after");
        assert_eq!(srv.get("/new.txt").body, b"added after");
        let (head, body) = download.join().unwrap();
        assert_eq!(head.status, 200);
        assert!(body == r1_big, "{mode}: the download in flight finished on the old tree");
        // And back again.
        s.write("releases/r3/index.html", b"release 3");
        std::os::unix::fs::symlink("releases/r3", s.join("current.tmp")).unwrap();
        std::fs::rename(s.join("current.tmp"), s.join("current")).unwrap();
        assert_eq!(srv.get("/").body, b"release 3", "{mode}: {}", srv.log());
    }
}

#[test]
fn past_the_inotify_watch_limit_entries_fall_back_to_statx() {
    // A user namespace of its own, whose inotify watch limit (per user and
    // namespace) is 3: the ROOT path's three directories take them all, so
    // every file's watches fail and it must be revalidated with statx.
    if !works(
        "unshare",
        &["--user", "--map-root-user", "sh", "-c", "echo 3 > /proc/sys/user/max_inotify_watches"],
    ) {
        return skip("past_the_inotify_watch_limit_entries_fall_back_to_statx", "no user namespaces here");
    }
    let s = Scratch::new("watchlimit");
    s.write("a/b/f.txt", b"v0");
    let limit = "echo 3 > /proc/sys/user/max_inotify_watches && exec \"$@\"";
    let srv = Launch::new(&s.path)
        .prefix(&["unshare", "--user", "--map-root-user", "sh", "-c", limit, "sh"])
        .start();
    assert_eq!(srv.get("/a/b/f.txt").body, b"v0");
    assert_eq!(inotify_watches(srv.pid()), 3, "the limit applies: only the ROOT path is watched");
    for i in 1..20 {
        let want = format!("v{i}");
        match i % 2 {
            0 => std::fs::write(s.join("a/b/f.txt"), want.as_bytes()).unwrap(),
            _ => {
                s.write("a/b/tmp", want.as_bytes());
                std::fs::rename(s.join("a/b/tmp"), s.join("a/b/f.txt")).unwrap();
            }
        }
        assert_eq!(srv.get("/a/b/f.txt").body, want.as_bytes(), "change {i} not seen");
    }
}

/// `--revalidate inotify-async` (here from the environment) in the binary:
/// the mode is in effect (the start-up line names it, the inotify thread
/// runs), the same watches are placed, and every kind of change reaches
/// requests shortly after it is made (not necessarily the first request:
/// that is the strict default's guarantee).
#[test]
fn inotify_async_serves_every_change_shortly_after() {
    let s = Scratch::new("inotify-async");
    s.write("a/f.txt", b"v0");
    let srv = Launch::new(&s.path).env("MAPSERVE_REVALIDATE", "inotify-async").start();
    let named = || srv.log().contains("revalidate=\"inotify-async\"");
    assert!(eventually(Duration::from_secs(5), named), "{}", srv.log());
    let threads = || {
        std::fs::read_dir(format!("/proc/{}/task", srv.pid()))
            .unwrap()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .filter(|name| name.starts_with("mapserve-inotif"))
            .count()
    };
    assert!(eventually(Duration::from_secs(5), || threads() == 1), "one inotify thread: {}", threads());
    assert_eq!(srv.get("/a/f.txt").body, b"v0");
    assert_eq!(inotify_watches(srv.pid()), inotify_watches_for_one_file(&s.path), "same watches as inotify");
    for i in 1..20 {
        let want = format!("v{i}");
        match i % 3 {
            0 => std::fs::write(s.join("a/f.txt"), want.as_bytes()).unwrap(),
            1 => {
                s.write("a/tmp", want.as_bytes());
                std::fs::rename(s.join("a/tmp"), s.join("a/f.txt")).unwrap();
            }
            _ => {
                s.write("b/f.txt", want.as_bytes());
                std::fs::rename(s.join("a"), s.join("old")).unwrap();
                std::fs::rename(s.join("b"), s.join("a")).unwrap();
                std::fs::remove_dir_all(s.join("old")).unwrap();
            }
        }
        let seen = eventually(Duration::from_secs(1), || srv.get("/a/f.txt").body == want.as_bytes());
        assert!(seen, "change {i} not seen within 1 s");
    }
}

/// The watches the default mode places for ROOT and one file in `a/`.
fn inotify_watches_for_one_file(root: &std::path::Path) -> usize {
    let srv = Launch::new(root).args(&["--revalidate", "inotify"]).start();
    assert_eq!(srv.get("/a/f.txt").body, b"v0");
    inotify_watches(srv.pid())
}

/// Watches of a process's inotify instance, from `/proc/PID/fdinfo`.
fn inotify_watches(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("inotify")))
        .map(|e| {
            let info =
                std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", e.file_name().to_string_lossy()));
            info.map(|i| i.lines().filter(|l| l.starts_with("inotify wd:")).count()).unwrap_or(0)
        })
        .sum()
}
