//! Path safety over the wire: traversal encodings, symlinks, dotfiles,
//! permissions (as an unprivileged user) and the symlink-swap race.

use crate::common::*;
use std::os::unix::fs::symlink;

fn tree() -> (Scratch, Scratch) {
    let outside = Scratch::new("outside");
    outside.write("secret.txt", b"TOP-SECRET");
    let s = Scratch::new("paths");
    s.write("a.txt", b"public a");
    s.write("sub/b.txt", b"public b");
    s.write(".env", b"HIDDEN");
    s.write(".git/config", b"HIDDEN-GIT");
    s.write("sub/.htpasswd", b"HIDDEN-PW");
    symlink("a.txt", s.join("inside_link")).unwrap();
    symlink("sub", s.join("dir_link")).unwrap();
    symlink(outside.join("secret.txt"), s.join("outside_abs")).unwrap();
    symlink(
        format!("../{}/secret.txt", outside.path.file_name().unwrap().to_str().unwrap()),
        s.join("outside_rel"),
    )
    .unwrap();
    symlink(&outside.path, s.join("outside_dir")).unwrap();
    (s, outside)
}

fn traversal_corpus() -> Vec<String> {
    let dots = [
        "..",
        "%2e%2e",
        "%2E%2E",
        ".%2e",
        "%2e.",
        "%252e%252e",
        "%c0%ae%c0%ae",
        "%uff0e%uff0e",
        "..%00",
        "%2e%2e%00",
    ];
    let seps = ["/", "%2f", "%2F", "\\", "%5c", "%255c", "//", "/./"];
    let targets = ["etc/passwd", "secret.txt", "outside/secret.txt"];
    let mut corpus = Vec::new();
    for d in dots {
        for sep in seps {
            for depth in 1..=4 {
                for t in targets {
                    corpus.push(format!("/{}{t}", format!("{d}{sep}").repeat(depth)));
                    corpus.push(format!("/sub/{}{t}", format!("{d}{sep}").repeat(depth)));
                }
            }
        }
    }
    corpus.extend(
        [
            "/%00",
            "/a.txt%00.html",
            "/C:/Windows/win.ini",
            "/c:",
            "/\\\\server\\share",
            "/%5c%5cserver",
            "/.",
            "/./a.txt",
        ]
        .map(String::from),
    );
    corpus
}

#[test]
fn no_traversal_payload_leaves_the_root_or_causes_a_5xx() {
    let (s, _outside) = tree();
    let srv = Server::start(&s.path);
    let corpus = traversal_corpus();
    assert!(corpus.len() > 900);
    for path in corpus {
        let raw = srv.raw(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes());
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains("TOP-SECRET") && !text.contains("root:x:0"), "{path} leaked");
        let status: u16 = text.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
        assert!((400..500).contains(&status) || status == 200, "{path} -> {status}");
        assert!(!text.contains(s.path.to_str().unwrap()), "{path}: the body names a path");
    }
}

#[test]
fn symlinks_inside_work_and_outside_get_404() {
    let (s, _outside) = tree();
    let srv = Server::start(&s.path);
    assert_eq!(srv.get("/inside_link").body, b"public a");
    assert_eq!(srv.get("/dir_link/b.txt").body, b"public b");
    for path in ["/outside_abs", "/outside_rel", "/outside_dir/secret.txt"] {
        let r = srv.get(path);
        assert_eq!(r.status, 404, "{path}");
        assert!(!String::from_utf8_lossy(&r.body).contains("SECRET"));
    }
    let srv = Launch::new(&s.path).arg("--follow-symlinks-outside-root").start();
    assert_eq!(srv.get("/outside_abs").body, b"TOP-SECRET");
    assert_eq!(srv.get("/outside_dir/secret.txt").body, b"TOP-SECRET");
}

#[test]
fn dotfiles_are_404_unless_hidden_is_on() {
    let (s, _outside) = tree();
    let srv = Server::start(&s.path);
    for path in ["/.env", "/.git/config", "/sub/.htpasswd", "/%2eenv", "/.git/"] {
        assert_eq!(srv.get(path).status, 404, "{path}");
    }
    let srv = Launch::new(&s.path).arg("--hidden").start();
    assert_eq!(srv.get("/.env").body, b"HIDDEN");
    assert_eq!(srv.get("/sub/.htpasswd").body, b"HIDDEN-PW");
}

#[test]
fn error_mapping_never_gives_500() {
    let (s, _outside) = tree();
    symlink("loop2", s.join("loop1")).unwrap();
    symlink("loop1", s.join("loop2")).unwrap();
    let srv = Server::start(&s.path);
    let long = format!("/{}", "n".repeat(300));
    let very_long = format!("/{}", "d/".repeat(2500));
    for (path, status) in [
        ("/missing", 404),
        ("/a.txt/x", 404),
        ("/loop1", 404),
        (long.as_str(), 404),
        (very_long.as_str(), 404),
        ("/%zz", 400),
        ("/a%00b", 400),
    ] {
        let r = srv.get(path);
        assert_eq!(r.status, status, "{}", &path[..path.len().min(40)]);
        assert!(!String::from_utf8_lossy(&r.body).contains('/'), "body names no path");
    }
}

#[test]
fn permissions_as_an_unprivileged_user() {
    let (s, _outside) = tree();
    s.write("locked.txt", b"LOCKED");
    set_mode(&s.join("locked.txt"), 0o000);
    s.write("closed/inner.txt", b"INNER");
    set_mode(&s.join("closed"), 0o000);
    let srv = Launch::new(&s.path).unprivileged().start();
    assert_eq!(srv.get("/a.txt").body, b"public a");
    let r = srv.get("/locked.txt");
    assert_eq!(r.status, 403);
    assert!(!String::from_utf8_lossy(&r.body).contains("LOCKED"));
    assert_eq!(srv.get("/closed/inner.txt").status, 403);
    // A file made unreadable after it was cached: the next request is 403.
    assert_eq!(srv.get("/sub/b.txt").status, 200);
    set_mode(&s.join("sub/b.txt"), 0o000);
    assert_eq!(srv.get("/sub/b.txt").status, 403);
    set_mode(&s.join("sub/b.txt"), 0o644);
    assert_eq!(srv.get("/sub/b.txt").status, 200);
}

#[test]
fn swapping_a_symlink_during_requests_never_leaks() {
    let (s, outside) = tree();
    s.write("good.txt", b"GOOD");
    symlink("good.txt", s.join("x")).unwrap();
    let srv = Server::start(&s.path);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let link = s.join("x");
        let tmp = s.join("x.tmp");
        let secret = outside.join("secret.txt");
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::remove_file(&tmp);
                let target = if i % 2 == 0 { secret.clone() } else { std::path::PathBuf::from("good.txt") };
                symlink(&target, &tmp).unwrap();
                std::fs::rename(&tmp, &link).unwrap();
                i += 1;
            }
        })
    };
    let mut good = 0;
    for _ in 0..2000 {
        let r = srv.get("/x");
        assert!(!String::from_utf8_lossy(&r.body).contains("SECRET"), "leaked through the race");
        assert!(r.status == 200 || r.status == 404, "{}", r.status);
        if r.status == 200 {
            assert_eq!(r.body, b"GOOD");
            good += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
    assert!(good > 0, "the good target was served sometimes");
}

/// A request for a FIFO (or a device) gets 404 without the node ever being
/// opened: opening a device can act (a watchdog arms, a tape rewinds). An
/// inotify watch on the node reports any open.
#[test]
fn special_files_are_refused_without_being_opened() {
    use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
    let s = Scratch::new("special");
    s.write("a.txt", b"a");
    let fifo = s.join("fifo");
    assert!(run("mkfifo", &[fifo.to_str().unwrap()]).status.success());
    symlink("fifo", s.join("to_fifo")).unwrap();
    let srv = Launch::new(&s.path).arg("--follow-symlinks-outside-root").start();
    let watch = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).unwrap();
    inotify::add_watch(&watch, &fifo, WatchFlags::OPEN).unwrap();
    for path in ["/fifo", "/to_fifo", "/"] {
        let r = srv.get(path);
        assert_eq!(r.status, if path == "/" { 200 } else { 404 }, "{path}");
    }
    assert_eq!(srv.get("/a.txt").body, b"a");
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1024];
    let mut events = inotify::Reader::new(&watch, &mut buf);
    assert!(events.next().is_err(), "the FIFO was opened");
}
