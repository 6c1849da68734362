//! The watcher's tests: every kind of change invalidates, unrelated ones
//! do not, overflows, pruning, and the background applier of
//! `--revalidate inotify-async`.

use super::*;
use rustix::fs::{Mode, OFlags};

fn setup(tag: &str) -> (std::path::PathBuf, OwnedFd, Watcher) {
    let dir = std::env::temp_dir().join(format!("mapserve-watch-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("a/b")).unwrap();
    std::fs::write(dir.join("a/b/f.txt"), b"x").unwrap();
    std::fs::write(dir.join("other.txt"), b"o").unwrap();
    let root =
        rustix::fs::open(&dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap();
    let w = Watcher::new().unwrap();
    (dir, root, w)
}

fn token_for(w: &Watcher, dir: &std::path::Path, key: &str) -> Arc<Token> {
    let root =
        rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap();
    let t = w.watch_path(&root, key.as_bytes()).unwrap();
    let f: OwnedFd = std::fs::File::open(dir.join(key)).unwrap().into();
    assert!(w.watch_file(&t, &f));
    t
}

#[test]
fn every_kind_of_change_invalidates() {
    type Change = Box<dyn Fn(&std::path::Path)>;
    let changes: Vec<(&str, Change)> = vec![
        ("write", Box::new(|d| std::fs::write(d.join("a/b/f.txt"), b"y").unwrap())),
        (
            "chmod",
            Box::new(|d| {
                std::fs::set_permissions(
                    d.join("a/b/f.txt"),
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )
                .unwrap()
            }),
        ),
        ("delete", Box::new(|d| std::fs::remove_file(d.join("a/b/f.txt")).unwrap())),
        (
            "rename over",
            Box::new(|d| {
                std::fs::write(d.join("a/b/n"), b"n").unwrap();
                std::fs::rename(d.join("a/b/n"), d.join("a/b/f.txt")).unwrap()
            }),
        ),
        ("rename parent", Box::new(|d| std::fs::rename(d.join("a"), d.join("z")).unwrap())),
        (
            "hard link write",
            Box::new(|d| {
                std::fs::hard_link(d.join("a/b/f.txt"), d.join("hl")).unwrap();
                std::fs::write(d.join("hl"), b"via link").unwrap()
            }),
        ),
        (
            "truncate",
            Box::new(|d| {
                std::fs::OpenOptions::new().write(true).open(d.join("a/b/f.txt")).unwrap().set_len(0).unwrap()
            }),
        ),
    ];
    for (name, change) in changes {
        let (dir, _root, w) = setup(&name.replace(' ', "_"));
        let t = token_for(&w, &dir, "a/b/f.txt");
        w.sync();
        assert!(t.is_valid(), "{name}: valid before");
        change(&dir);
        w.sync();
        assert!(!t.is_valid(), "{name}: a change must invalidate");
    }
}

#[test]
fn a_queue_overflow_invalidates_every_token() {
    use std::io::Write;
    const LIMIT: &str = "/proc/sys/fs/inotify/max_queued_events";
    if !rustix::process::geteuid().is_root() {
        let _ = writeln!(
            std::io::stderr(),
            "MAPSERVE-TEST-SKIPPED a_queue_overflow_invalidates_every_token: needs root"
        );
        return;
    }
    let (dir, _root, _) = setup("overflow");
    // An instance whose queue holds 16 events: the limit is read when
    // the instance is made, so it is lowered only around that call.
    let old = std::fs::read_to_string(LIMIT).unwrap();
    std::fs::write(LIMIT, "16").unwrap();
    let w = Watcher::new();
    std::fs::write(LIMIT, old.trim()).unwrap();
    let w = w.unwrap();
    let t = token_for(&w, &dir, "a/b/f.txt");
    let other = token_for(&w, &dir, "other.txt");
    // Many events that concern neither entry, then one sync.
    for i in 0..100 {
        std::fs::write(dir.join(format!("a/b/x{i}")), b"x").unwrap();
    }
    w.sync();
    assert!(!t.is_valid() && !other.is_valid(), "after an overflow nothing cached can be trusted");
}

#[test]
fn unrelated_changes_and_reads_keep_tokens_valid() {
    let (dir, _root, w) = setup("unrelated");
    let t = token_for(&w, &dir, "a/b/f.txt");
    std::fs::write(dir.join("other.txt"), b"changed").unwrap();
    std::fs::write(dir.join("a/b/sibling.txt"), b"new").unwrap();
    let _ = std::fs::read(dir.join("a/b/f.txt")).unwrap();
    w.sync();
    assert!(t.is_valid());
}

#[test]
fn prune_removes_watches_of_dropped_tokens() {
    let (dir, _root, w) = setup("prune");
    let t = token_for(&w, &dir, "a/b/f.txt");
    assert_eq!(w.prune(), 4, "root, a, a/b and the file");
    drop(t);
    assert_eq!(w.prune(), 0);
}

#[test]
fn local_file_systems_are_watchable() {
    let (dir, _root, _w) = setup("fs");
    let f: OwnedFd = std::fs::File::open(dir.join("other.txt")).unwrap().into();
    assert!(is_watchable(&f));
}

/// Waits up to `limit` for `done`, checking every 100 µs; whether it came.
fn within(limit: std::time::Duration, done: impl Fn() -> bool) -> bool {
    let start = std::time::Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
    true
}

#[test]
fn async_hits_make_no_fionread_and_the_thread_applies_changes() {
    let (dir, _root, w) = setup("async");
    let w = Arc::new(w);
    let thread = w.apply_in_background().unwrap();
    assert!(w.applies_in_background());
    let t = token_for(&w, &dir, "a/b/f.txt");
    let before = w.fionreads.load(Ordering::Relaxed);
    for _ in 0..100 {
        w.sync_hit();
    }
    assert!(t.is_valid());
    std::fs::write(dir.join("a/b/f.txt"), b"changed").unwrap();
    // Nobody syncs: only the thread can apply the event.
    assert!(within(std::time::Duration::from_secs(1), || !t.is_valid()), "applied within 1 s");
    assert_eq!(w.fionreads.load(Ordering::Relaxed), before, "hits made no FIONREAD");
    drop(w);
    assert!(
        within(std::time::Duration::from_secs(2), || thread.is_finished()),
        "the thread ends with its watcher"
    );

    // Strict: one per hit.
    let (_dir, _root, w) = setup("strict");
    w.sync_hit();
    w.sync_hit();
    assert_eq!(w.fionreads.load(Ordering::Relaxed), 2);
    assert!(!w.applies_in_background());
}

/// The thread reads events with `busy` raised: a strict `sync` that finds
/// the queue already emptied by it waits until they are applied, so a body's
/// per-chunk check is as strict in `inotify-async` as in `inotify`.
#[test]
fn sync_stays_strict_while_the_thread_drains() {
    let (dir, _root, w) = setup("async-strict");
    let w = Arc::new(w);
    let _thread = w.apply_in_background().unwrap();
    for i in 0..2000u32 {
        let t = token_for(&w, &dir, "a/b/f.txt");
        std::fs::write(dir.join("a/b/n"), format!("v{i}")).unwrap();
        std::fs::rename(dir.join("a/b/n"), dir.join("a/b/f.txt")).unwrap();
        // Now and then the thread wakes, reads and is still applying when
        // `sync` looks at the queue: spread the look over its wake-up.
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_nanos(u64::from(i % 100) * 1000) {
            std::hint::spin_loop();
        }
        w.sync();
        assert!(!t.is_valid(), "round {i}: a change made before sync() is applied when it returns");
    }
}
