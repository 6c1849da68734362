//! Measures how stale a cache hit can be with `--revalidate inotify-async`,
//! against the strict `inotify` mode (README, "How changes on disk are picked
//! up"), with the server's own cache in process.
//!
//! Each round loads a 1 KiB file into the cache, sleeps 1 ms (so that the
//! inotify thread is asleep in `poll` again, as it is when changes are rare),
//! then changes the file: even rounds `rename` a new version over it (a new
//! inode, as a deploy does), odd rounds `pwrite` it in place. The instant that
//! system call returned is taken, and the file is looked up in a tight loop
//! until a lookup no longer answers with the old entry. Reported per mode,
//! load and kind of change:
//!
//! * **delay**: from the return of the system call to the start of the first
//!   lookup that saw the change (min, median, p99, max). In `inotify` mode
//!   that is the first lookup, so the delay is only the gap between the two
//!   calls; in `inotify-async` it is the wake-up of the inotify thread plus
//!   its drain (the staleness window), to within one lookup (about 0.1 µs).
//! * **stale**: rounds whose first lookup still answered with the old version
//!   (must be 0 in `inotify` mode: the program fails otherwise).
//! * **hit**: the cost of a lookup of an unchanged entry, in ns (what the
//!   window buys: `inotify` makes one `FIONREAD` per hit, `inotify-async`
//!   none).
//!
//! With `--busy N`, N threads spin all the while: with N = 1 on a two-core
//! machine both cores are busy (the looking-up thread is the other), so the
//! inotify thread must preempt one of them to run.
//!
//! `cargo run --release --example staleness -- [--rounds 2000] [--busy 0,1] [--dir DIR]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mapserve::cache::{CacheConfig, FileCache};
use mapserve::config::Revalidate;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const KEY: &[u8] = b"f.txt";

struct Args {
    rounds: usize,
    busy: Vec<usize>,
    dir: PathBuf,
}

fn args() -> Args {
    let mut a = Args { rounds: 2000, busy: vec![0, 1], dir: std::env::temp_dir() };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--rounds" => a.rounds = value.parse().expect("--rounds N"),
            "--busy" => a.busy = value.split(',').map(|n| n.parse().expect("--busy N,M")).collect(),
            "--dir" => a.dir = value.into(),
            other => panic!("unknown option {other}"),
        }
    }
    a
}

/// Version `round` of the file: 1 KiB, different from its neighbours.
fn version(round: usize) -> Vec<u8> {
    format!("{round:08}\n").into_bytes().repeat(1024 / 9 + 1)[..1024].to_vec()
}

fn cache(dir: &Path, revalidate: Revalidate) -> FileCache {
    let config = CacheConfig {
        max_bytes: 64 << 20,
        max_entries: 100,
        small_file_max: 64 << 10,
        window_size: 64 << 20,
        revalidate,
        prefault: true,
        verified_sends: false,
        max_open_files: 100,
        etag: Default::default(),
        etag_hash_max: 0,
        pin_max_percent: 50,
    };
    let cache = FileCache::new(dir, false, &config).unwrap();
    assert_eq!(cache.revalidation(), revalidate, "the mode asked for is in effect");
    cache
}

/// Delays (ns) and stale first lookups, rename rounds (0) and write rounds
/// (1) apart.
#[derive(Default)]
struct Samples {
    delays: [Vec<u64>; 2],
    stale: [usize; 2],
}

fn measure(dir: &Path, cache: &FileCache, rounds: usize) -> Samples {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let path = dir.join("f.txt");
    std::fs::write(&path, version(0)).unwrap();
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let mut s = Samples::default();
    for round in 1..=rounds {
        let old = rt.block_on(cache.get(KEY)).unwrap();
        let kind = round % 2;
        if kind == 0 {
            std::fs::write(dir.join("f.tmp"), version(round)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(1));
        let written = if kind == 0 {
            std::fs::rename(dir.join("f.tmp"), &path).unwrap();
            Instant::now()
        } else {
            file.write_all_at(&version(round), 0).unwrap();
            Instant::now()
        };
        let mut first = true;
        let seen = loop {
            let at = Instant::now();
            match cache.lookup(KEY) {
                Some(e) if Arc::ptr_eq(&e, &old) => {
                    s.stale[kind] += usize::from(first);
                    first = false;
                    assert!(written.elapsed() < Duration::from_secs(5), "round {round}: never seen");
                }
                _ => break at,
            }
        };
        s.delays[kind].push(seen.duration_since(written).as_nanos() as u64);
        if kind == 0 {
            file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        }
    }
    s
}

/// ns per lookup of an unchanged, cached entry.
fn hit_cost(cache: &FileCache) -> f64 {
    const N: u32 = 1_000_000;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(cache.get(KEY)).unwrap();
    let start = Instant::now();
    for _ in 0..N {
        std::hint::black_box(cache.lookup(KEY).unwrap());
    }
    start.elapsed().as_nanos() as f64 / f64::from(N)
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

fn row(mode: &str, busy: usize, kind: &str, delays: &mut [u64], stale: usize, hit: f64) {
    delays.sort_unstable();
    let n = delays.len();
    let at = |q: f64| delays[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    println!(
        "| {mode} | {busy} | {kind} | {n} | {stale} | {} | {} | {} | {} | {} | {hit:.0} |",
        us(delays[0]),
        us(at(0.5)),
        us(at(0.9)),
        us(at(0.99)),
        us(delays[n - 1]),
    );
}

fn main() {
    let a = args();
    let dir = a.dir.join(format!("mapserve-staleness-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("{} rounds per mode and load, {cores} cores, Linux {}", a.rounds, kernel.trim());
    println!();
    println!(
        "| mode | busy threads | change | rounds | stale first lookups | min µs | median µs | p90 µs | p99 µs | max µs | hit ns |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut strict_stale = 0;
    for &busy in &a.busy {
        let stop = Arc::new(AtomicBool::new(false));
        let spinners: Vec<_> = (0..busy)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        for mode in [Revalidate::Inotify, Revalidate::InotifyAsync] {
            let cache = cache(&dir, mode);
            let mut s = measure(&dir, &cache, a.rounds);
            let hit = hit_cost(&cache);
            if mode == Revalidate::Inotify {
                strict_stale += s.stale[0] + s.stale[1];
            }
            let mut all: Vec<u64> = s.delays.concat();
            row(mode.as_str(), busy, "rename", &mut s.delays[0], s.stale[0], hit);
            row(mode.as_str(), busy, "pwrite", &mut s.delays[1], s.stale[1], hit);
            row(mode.as_str(), busy, "both", &mut all, s.stale[0] + s.stale[1], hit);
        }
        stop.store(true, Ordering::Relaxed);
        spinners.into_iter().for_each(|t| t.join().unwrap());
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(strict_stale, 0, "inotify mode answered a lookup with a version older than a finished change");
}
