//! The cache used directly, on real files: single-flight loading and the
//! hard byte budget.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mapserve::cache::{CacheConfig, Content, FileCache};
use mapserve::config::Revalidate;
use mapserve::response::{self, FileContext, Plan, Policy};
use std::sync::Arc;

/// A cache over `dir` with the given budget and small-file limit, 64 MiB
/// windows and inotify change detection.
fn config(dir: &std::path::Path, max_bytes: u64, small_file_max: u64) -> FileCache {
    cache_over(dir, |c| {
        c.max_bytes = max_bytes;
        c.small_file_max = small_file_max;
    })
}

/// A cache over `dir`: 64 MiB budget, 100 entries, everything mapped, 64 MiB
/// windows, inotify, as `tweak` changes it.
fn cache_over(dir: &std::path::Path, tweak: impl FnOnce(&mut CacheConfig)) -> FileCache {
    let mut c = CacheConfig {
        max_bytes: 64 << 20,
        max_entries: 100,
        small_file_max: 0,
        revalidate: Default::default(),
        prefault: true,
        verified_sends: false,
        window_size: 64 << 20,
        max_open_files: 1000,
        etag: Default::default(),
        etag_hash_max: 0,
        pin_max_percent: 50,
    };
    tweak(&mut c);
    FileCache::new(dir, false, &c).unwrap()
}

/// The body of the response `plan` asks for, built as the handler builds it
/// for an entry that needs no held descriptor.
fn body_of(cache: &FileCache, entry: &Arc<mapserve::cache::Entry>, plan: Plan) -> mapserve::body::FileBody {
    let policy = Policy::default();
    let ctx = FileContext {
        policy: &policy,
        cache,
        source: Default::default(),
        window: None,
        html_errors: false,
        vary_encoding: false,
    };
    response::file(entry, mapserve::cache::Face::Own, plan, false, &ctx).into_body()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mapserve-cachelib-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn concurrent_first_requests_load_once() {
    let dir = scratch("flight");
    std::fs::write(dir.join("f.bin"), vec![3u8; 8 << 20]).unwrap();
    let rt = runtime();
    let cache = config(&dir, 64 << 20, 16 << 20);
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    rt.block_on(async {
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let cache = cache.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    cache.get(b"f.bin").await.unwrap()
                })
            })
            .collect();
        let mut first = None;
        for t in tasks {
            let e = t.await.unwrap();
            let first = first.get_or_insert_with(|| e.clone());
            assert!(Arc::ptr_eq(first, &e), "every waiter got the same entry");
        }
    });
    assert_eq!(cache.stats().loads, 1, "{:?}", cache.stats());
}

#[test]
fn the_budget_is_never_exceeded_and_pinned_entries_fall_back_to_streaming() {
    let dir = scratch("budget");
    for i in 0..6 {
        std::fs::write(dir.join(format!("f{i}")), vec![i as u8; 1 << 20]).unwrap();
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cache = config(&dir, 3 << 20, 0);
    rt.block_on(async {
        // Hold three entries (as in-flight responses would): the budget is full.
        let mut held = Vec::new();
        for i in 0..3 {
            held.push(cache.get(format!("f{i}").as_bytes()).await.unwrap());
            assert!(cache.stats().bytes <= 3 << 20);
        }
        let e = cache.get(b"f3").await.unwrap();
        assert!(matches!(e.content, Content::Stream(_)), "over budget with everything pinned: streamed");
        assert!(cache.stats().bytes <= 3 << 20);
        drop(e);
        // Release the pins: the next load evicts and maps again.
        held.clear();
        let e = cache.get(b"f4").await.unwrap();
        assert!(matches!(e.content, Content::Mapped(_)));
        assert!(cache.stats().bytes <= 3 << 20);
    });
}

/// Polls a body to its end; returns the bytes and whether it ended in an error.
async fn drain(mut body: mapserve::body::FileBody) -> (Vec<u8>, bool) {
    use http_body::Body;
    let mut out = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
        match frame {
            Ok(f) => out.extend_from_slice(f.data_ref().map(|b| &b[..]).unwrap_or_default()),
            Err(_) => return (out, true),
        }
    }
    (out, false)
}

#[test]
fn a_file_truncated_between_mapping_and_reading_is_cut_at_its_new_end() {
    let dir = scratch("trunc-late");
    let data: Vec<u8> = (0..(4u32 << 20)).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let rt = runtime();
    for (cut, tag) in [((1u64 << 20) + 100, "behind"), (100, "first-chunk")] {
        let path = dir.join(format!("f-{tag}"));
        std::fs::write(&path, &data).unwrap();
        let cache = config(&dir, 64 << 20, 0);
        rt.block_on(async {
            let key = format!("f-{tag}");
            let entry = cache.get(key.as_bytes()).await.unwrap();
            assert!(matches!(entry.content, Content::Mapped(_)));
            // Mapped and validated; now someone truncates it in place.
            std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(cut).unwrap();
            let (got, failed) = drain(body_of(&cache, &entry, Plan::Full)).await;
            assert!(failed, "{tag}: the response must end in an error");
            assert!(got.len() as u64 <= cut, "{tag}: {} bytes sent past the new end {cut}", got.len());
            assert_eq!(&got[..], &data[..got.len()], "{tag}: a prefix of the old bytes, never zeros");
        });
    }
}

#[test]
fn an_unmappable_file_streams_with_pread_and_fails_if_it_shrinks() {
    use mapserve::http::range::ByteRange;
    let dir = scratch("pread-stream");
    let data: Vec<u8> = (0..700_000u32).map(|i| (i % 253) as u8).collect();
    let path = dir.join("f");
    std::fs::write(&path, &data).unwrap();
    let rt = runtime();
    // A budget smaller than the file: it cannot be mapped, so it is streamed.
    let cache = config(&dir, 512 << 10, 0);
    rt.block_on(async {
        let entry = cache.get(b"f").await.unwrap();
        assert!(matches!(entry.content, Content::Stream(_)));
        let plan = Plan::Single(ByteRange { first: 10, last: 600_009 });
        let (got, failed) = drain(body_of(&cache, &entry, plan)).await;
        assert!(!failed);
        assert_eq!(got, &data[10..600_010]);
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(1000).unwrap();
        let (got, failed) = drain(body_of(&cache, &entry, Plan::Full)).await;
        assert!(failed, "a shrunk file is never padded");
        assert!(got.len() <= 1000 && got[..] == data[..got.len()]);
    });
}

#[test]
fn a_mapped_body_goes_out_in_one_large_chunk_then_stream_chunks() {
    use http_body::Body;
    use mapserve::body::{MAX_CHUNK, STREAM_CHUNK};
    let dir = scratch("chunks");
    let data: Vec<u8> = (0..(3u32 << 20) + 7).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("f"), &data).unwrap();
    let rt = runtime();
    let cache = config(&dir, 64 << 20, 0);
    rt.block_on(async {
        let entry = cache.get(b"f").await.unwrap();
        assert!(matches!(entry.content, Content::Mapped(_)));
        let mut body = body_of(&cache, &entry, Plan::Full);
        let (mut sizes, mut out) = (Vec::new(), Vec::new());
        while let Some(frame) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
        {
            let bytes = frame.unwrap().into_data().unwrap();
            sizes.push(bytes.len());
            out.extend_from_slice(&bytes);
        }
        assert_eq!(out, data, "every byte, in order");
        assert_eq!(sizes[0], MAX_CHUNK, "a first chunk of up to 1 MiB");
        assert!(sizes[1..].iter().all(|&n| n <= STREAM_CHUNK), "then stream chunks: {sizes:?}");
        assert_eq!(sizes.len(), 1 + (2 << 20) / STREAM_CHUNK + 1);
    });
}

#[test]
fn a_stale_windowed_file_drops_the_windows_it_mapped_and_only_looks_at_those() {
    let dir = scratch("stale-windows");
    let path = dir.join("huge");
    // 1 TiB, sparse, in one-page windows: 268 million windows it could have.
    std::fs::File::create(&path).unwrap().set_len(1 << 40).unwrap();
    let page = 4096;
    let cache = cache_over(&dir, |c| {
        c.window_size = page;
    });
    runtime().block_on(async {
        let entry = cache.get(b"huge").await.unwrap();
        assert!(matches!(entry.content, Content::Windowed(_)));
        let held = cache.hold_for(&entry, mapserve::cache::Reads::Several, None).await.unwrap();
        let fd = held.fd.unwrap();
        for index in [0, 5, (1 << 28) - 1] {
            assert!(cache.window(entry.clone(), fd.clone(), index).await.unwrap().is_some());
        }
        assert!(cache.cached_window(&entry, 5).is_some());
        assert_eq!(cache.stats().entries, 4, "the file and three windows");
        drop(fd);
        // Replaced: the next lookup finds the entry stale and forgets it,
        // with its windows, on the calling thread.
        std::fs::write(dir.join("new"), b"new").unwrap();
        std::fs::rename(dir.join("new"), &path).unwrap();
        let t = std::time::Instant::now();
        assert!(cache.lookup(b"huge").is_none());
        // Walking every window the file could have would take minutes.
        assert!(t.elapsed() < std::time::Duration::from_secs(1), "took {:?}", t.elapsed());
        assert_eq!(cache.stats().entries, 0, "no window of the old version is left cached");
        assert!(cache.cached_window(&entry, 5).is_none());
    });
}

#[test]
fn chunks_waiting_in_hyper_keep_their_mapping_pinned_so_eviction_skips_it() {
    use http_body::Body;
    let dir = scratch("chunk-pins");
    for i in 0..6 {
        std::fs::write(dir.join(format!("a{i}")), vec![i as u8; 1 << 20]).unwrap();
    }
    std::fs::write(dir.join("c"), vec![9u8; 1 << 20]).unwrap();
    std::fs::write(dir.join("b"), vec![7u8; 2 << 20]).unwrap();
    let rt = runtime();
    // Room for the six held files and one more: loading `b` must evict.
    let cache = config(&dir, 8 << 20, 0);
    rt.block_on(async {
        // Six responses each handed hyper a chunk and ended: their bodies are
        // gone, the chunks wait in hyper's write queue.
        let mut queued = Vec::new();
        for i in 0..6 {
            let entry = cache.get(format!("a{i}").as_bytes()).await.unwrap();
            assert!(matches!(entry.content, Content::Mapped(_)));
            let mut body = body_of(&cache, &entry, Plan::Full);
            let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
            queued.push(frame.unwrap().unwrap().into_data().unwrap());
        }
        drop(cache.get(b"c").await.unwrap());
        let loads = cache.stats().loads;
        // 2 MiB for `b`: evicting a held file frees nothing; only `c` helps.
        let b = cache.get(b"b").await.unwrap();
        assert!(cache.stats().bytes <= 8 << 20);
        for i in 0..6 {
            assert!(cache.lookup(format!("a{i}").as_bytes()).is_some(), "a{i} was evicted while in use");
        }
        assert!(cache.lookup(b"c").is_none(), "the unused entry made room");
        assert_eq!(cache.stats().loads, loads + 1);
        drop(b);
        assert_eq!(queued.iter().map(|q| q.len()).sum::<usize>(), 6 << 20);
    });
}

#[test]
fn the_entry_cap_holds_even_when_every_entry_is_in_use() {
    let dir = scratch("cap");
    for i in 0..8 {
        std::fs::write(dir.join(format!("f{i}")), vec![i as u8; 100_000]).unwrap();
    }
    let cache = cache_over(&dir, |c| {
        c.max_entries = 4;
    });
    runtime().block_on(async {
        // Every entry held by a response: nothing can be evicted.
        let mut held = Vec::new();
        for i in 0..8 {
            let e = cache.get(format!("f{i}").as_bytes()).await.unwrap();
            assert!(cache.stats().entries <= 4, "{} entries over a cap of 4", cache.stats().entries);
            assert!(cache.stats().maps <= 4, "{} mappings over a cap of 4", cache.stats().maps);
            held.push(e);
        }
        // Entries past the cap are still served, from a descriptor.
        assert!(held.iter().skip(4).all(|e| matches!(e.content, Content::Stream(_))));
        held.clear();
        let e = cache.get(b"f7").await.unwrap();
        assert!(matches!(e.content, Content::Mapped(_)), "room is made once the pins are gone");
        assert!(cache.stats().entries <= 4);
    });
}

#[test]
fn holding_a_replaced_file_is_stale_but_running_out_of_descriptors_is_not() {
    if std::env::var_os("MAPSERVE_HOLD_CHILD").is_some() {
        return hold_child();
    }
    // In a child process: it lowers its own descriptor limit.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "holding_a_replaced_file_is_stale_but_running_out_of_descriptors_is_not",
            "--nocapture",
        ])
        .env("MAPSERVE_HOLD_CHILD", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("child checks passed"), "{text}");
}

fn hold_child() {
    use mapserve::cache::{HoldError, Reads};
    use mapserve::fs::FsError;
    let dir = scratch("hold");
    std::fs::write(dir.join("w"), vec![5u8; 3 << 20]).unwrap();
    std::fs::write(dir.join("r"), vec![6u8; 3 << 20]).unwrap();
    let cache = cache_over(&dir, |c| {
        c.window_size = 1 << 20;
    });
    runtime().block_on(async {
        // Replaced between the lookup and the open: stale, and a reload
        // gives the new version.
        let r = cache.get(b"r").await.unwrap();
        std::fs::write(dir.join("r.new"), vec![7u8; 2 << 20]).unwrap();
        std::fs::rename(dir.join("r.new"), dir.join("r")).unwrap();
        assert_eq!(cache.hold_for(&r, Reads::Several, None).await.unwrap_err(), HoldError::Stale);
        let fresh = cache.reload(b"r", &r).await.unwrap();
        assert_eq!(fresh.len(), 2 << 20);
        assert!(cache.hold_for(&fresh, Reads::Several, None).await.unwrap().fd.is_some());

        // Out of descriptors: an error of its own, and the entry stays cached.
        let w = cache.get(b"w").await.unwrap();
        let loads = cache.stats().loads;
        let mut hog = Vec::new();
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let count = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
        rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit { current: Some(count + 8), maximum: limit.maximum },
        )
        .unwrap();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            hog.push(f);
        }
        let err = cache.hold_for(&w, Reads::Several, None).await.unwrap_err();
        assert!(matches!(err, HoldError::Fs(FsError::Unavailable(_))), "{err:?}");
        hog.clear();
        assert!(cache.lookup(b"w").is_some_and(|e| Arc::ptr_eq(&e, &w)), "the cached entry was kept");
        assert_eq!(cache.stats().loads, loads, "no reload");
    });
    println!("child checks passed");
}

#[test]
fn an_evicted_windowed_entry_takes_its_cached_windows_with_it() {
    let dir = scratch("evict-windows");
    std::fs::File::create(dir.join("big")).unwrap().set_len(16 << 20).unwrap();
    for i in 0..3 {
        std::fs::write(dir.join(format!("s{i}")), vec![i as u8; 100]).unwrap();
    }
    // Room for 6 entries; 1 MiB windows.
    let cache = cache_over(&dir, |c| {
        c.max_entries = 6;
        c.window_size = 1 << 20;
    });
    runtime().block_on(async {
        let big = cache.get(b"big").await.unwrap();
        let fd = cache.hold_for(&big, mapserve::cache::Reads::Several, None).await.unwrap().fd.unwrap();
        for index in 0..3 {
            assert!(cache.window(big.clone(), fd.clone(), index).await.unwrap().is_some());
            // Used again: the windows are hot, the file entry is not.
            assert!(cache.cached_window(&big, index).is_some());
        }
        drop((fd, big));
        for i in 0..2 {
            drop(cache.get(format!("s{i}").as_bytes()).await.unwrap());
            assert!(cache.lookup(format!("s{i}").as_bytes()).is_some());
        }
        assert_eq!(cache.stats().entries, 6, "the file, three windows, two small files");
        // One more entry: the cold file entry is evicted, and its windows
        // with it (nothing could ever find them again): the small files are
        // all that is left.
        drop(cache.get(b"s2").await.unwrap());
        assert_eq!(cache.stats().entries, 3, "windows of the evicted file stayed cached");
        assert!(cache.lookup(b"big").is_none());
    });
}

#[test]
fn a_windowed_entry_evicted_to_make_budget_takes_its_windows_with_it() {
    let dir = scratch("evict-budget");
    std::fs::File::create(dir.join("big")).unwrap().set_len(16 << 20).unwrap();
    std::fs::write(dir.join("m"), vec![7u8; 3 << 18]).unwrap();
    // 3.5 MiB: three 1 MiB windows fit; a 768 KiB file then needs room.
    let cache = cache_over(&dir, |c| {
        c.max_bytes = 7 << 19;
        c.window_size = 1 << 20;
    });
    runtime().block_on(async {
        let big = cache.get(b"big").await.unwrap();
        let fd = cache.hold_for(&big, mapserve::cache::Reads::Several, None).await.unwrap().fd.unwrap();
        for index in 0..3 {
            assert!(cache.window(big.clone(), fd.clone(), index).await.unwrap().is_some());
            assert!(cache.cached_window(&big, index).is_some(), "hot windows");
        }
        drop((fd, big));
        let m = cache.get(b"m").await.unwrap();
        assert!(matches!(m.content, Content::Mapped(_)));
        // The cold file entry went first; its windows must not stay behind,
        // unreachable, holding budget and disk blocks.
        assert_eq!(cache.stats().entries, 1, "only `m`: no window of the evicted file is left");
    });
}

#[test]
fn a_listing_is_a_cache_entry_in_the_budget_and_never_stale() {
    use mapserve::cache::ListingRules;
    use mapserve::http::query::{Order, SortKey};
    use mapserve::listing::Variant;
    let dir = scratch("listing");
    std::fs::create_dir(dir.join("d")).unwrap();
    for i in 0..20_000 {
        std::fs::write(dir.join(format!("d/f{i:05}")), b"x").unwrap();
    }
    let rt = runtime();
    let cache = config(&dir, 64 << 20, 0);
    let rules = ListingRules { hidden: false, max_entries: 100 };
    let v = Variant { json: true, sort: SortKey::Name, order: Order::Desc };
    assert!(cache.lookup_listing(b"d", v).is_none());
    let before = cache.stats();
    let started = std::time::Instant::now();
    let first = rt.block_on(cache.load_listing(b"d", v, rules)).unwrap();
    let read_time = started.elapsed();
    let after = cache.stats();
    assert_eq!(after.bytes - before.bytes, first.len(), "the page is counted in the byte budget");
    assert_eq!(after.entries, before.entries + 1);
    let hit = cache.lookup_listing(b"d", v).expect("cached");
    assert!(Arc::ptr_eq(&hit, &first), "a repeated listing reads nothing");
    assert_eq!(cache.stats().hits, after.hits + 1);
    let other = Variant { order: Order::Asc, ..v };
    assert!(cache.lookup_listing(b"d", other).is_none(), "each variant is its own entry");

    // Joining a read that began before a change must not hide the change:
    // a read of 20,000 entries is under way when a file is created, and a
    // request made after that joins it.
    std::fs::remove_file(dir.join("d/f00000")).unwrap();
    let mut missed = 0;
    for round in 0..5 {
        let name = format!("zz-new-{round}");
        let (early, late) = rt.block_on(async {
            let c1 = cache.clone();
            let early = tokio::spawn(async move { c1.load_listing(b"d", v, rules).await });
            // Let the first read get well into the directory.
            while cache.stats().flights == 0 {
                tokio::task::yield_now().await;
            }
            tokio::time::sleep(read_time * 6 / 10).await;
            std::fs::write(dir.join(format!("d/{name}")), b"n").unwrap();
            let late = cache.load_listing(b"d", v, rules).await;
            (early.await.unwrap().unwrap(), late.unwrap())
        });
        let text = |e: &mapserve::cache::Entry| match &e.content {
            Content::Heap(b) => String::from_utf8_lossy(b).into_owned(),
            _ => panic!("a listing is a heap copy"),
        };
        assert!(text(&late).contains(&name), "round {round}: the request made after the change sees it");
        missed += usize::from(!text(&early).contains(&name));
    }
    // The race was real: some reads under way when the file appeared had
    // already passed its place in the directory.
    eprintln!("reads that missed the new file: {missed} of 5 (read time {read_time:?})");
}

#[test]
fn compressed_variants_live_in_the_budget_and_go_with_their_file_version() {
    use mapserve::http::encoding::Coding;
    let dir = scratch("variants");
    let text: Vec<u8> = (0..4000).flat_map(|i| format!("line {i} of some text\n").into_bytes()).collect();
    std::fs::write(dir.join("a.txt"), &text).unwrap();
    let rt = runtime();
    for mode in [Revalidate::Inotify, Revalidate::Stat] {
        let cache = cache_over(&dir, |c| c.revalidate = mode);
        rt.block_on(async {
            let entry = cache.get(b"a.txt").await.unwrap();
            let before = cache.stats();
            let br = cache.compressed(&entry, Coding::Br, true).await.expect("compressed");
            let gz = cache.compressed(&entry, Coding::Gzip, true).await.expect("compressed");
            let after = cache.stats();
            assert_eq!(after.entries, before.entries + 2, "each variant is an entry");
            assert_eq!(after.bytes, before.bytes + br.len() + gz.len(), "in the byte budget");
            assert_eq!(after.compressions, 2);
            let again = cache.compressed(&entry, Coding::Br, true).await.unwrap();
            assert!(Arc::ptr_eq(&br, &again), "compressed once per version");
            assert_eq!(cache.stats().compressions, 2);
            drop((br, gz, again, entry));
            // The file changes: its variants go with it at the next sweep.
            std::thread::sleep(std::time::Duration::from_millis(10));
            std::fs::write(dir.join("a.txt"), [&text[..], b"more\n"].concat()).unwrap();
            cache.sweep();
            let swept = cache.stats();
            assert_eq!(swept.entries, 0, "{mode:?}: file and variants dropped: {swept:?}");
            assert_eq!(swept.bytes, 0);
            let entry = cache.get(b"a.txt").await.unwrap();
            let br = cache.compressed(&entry, Coding::Br, true).await.unwrap();
            assert_eq!(cache.stats().compressions, 3, "the new version is compressed anew");
            let mut decoded = Vec::new();
            let mut body = match &br.content {
                Content::Heap(b) => &b[..],
                _ => panic!("a heap copy"),
            };
            std::io::Read::read_to_end(&mut brotli::Decompressor::new(&mut body, 4096), &mut decoded)
                .unwrap();
            assert_eq!(decoded, [&text[..], b"more\n"].concat());
        });
    }
}

/// The 1 KiB version `round` of the file the staleness tests change.
fn version(round: usize) -> Vec<u8> {
    format!("{round:08}\n").into_bytes().repeat(1024 / 9 + 1)[..1024].to_vec()
}

/// Makes version `round` of `dir/f.txt` the current one: renamed over it
/// (a new inode, as a deploy does) on even rounds, written in place with one
/// `pwrite` through `file` on odd ones.
fn change_to(dir: &std::path::Path, file: &std::fs::File, round: usize) {
    if round % 2 == 0 {
        std::fs::write(dir.join("f.tmp"), version(round)).unwrap();
        std::fs::rename(dir.join("f.tmp"), dir.join("f.txt")).unwrap();
    } else {
        std::os::unix::fs::FileExt::write_all_at(file, &version(round), 0).unwrap();
    }
}

fn heap_bytes(entry: &mapserve::cache::Entry) -> &[u8] {
    match &entry.content {
        Content::Heap(b) => b,
        _ => panic!("a heap copy"),
    }
}

/// The strict guarantee of `--revalidate inotify`: the first lookup after a
/// change (its system call returned) never answers with the old version, even
/// while another thread's hits drain the same inotify queue.
#[test]
fn with_inotify_the_first_lookup_after_a_change_always_sees_it() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = scratch("strict-first-lookup");
    std::fs::write(dir.join("f.txt"), version(0)).unwrap();
    std::fs::write(dir.join("other.txt"), b"other").unwrap();
    let cache = cache_over(&dir, |c| c.small_file_max = 64 << 10);
    assert_eq!(cache.revalidation(), Revalidate::Inotify);
    let rt = runtime();
    rt.block_on(cache.get(b"other.txt")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let hitter = {
        let (cache, stop) = (cache.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                assert!(cache.lookup(b"other.txt").is_some());
            }
        })
    };
    let mut file = std::fs::OpenOptions::new().write(true).open(dir.join("f.txt")).unwrap();
    for round in 1..=1000 {
        let old = rt.block_on(cache.get(b"f.txt")).unwrap();
        assert_eq!(heap_bytes(&old), version(round - 1));
        if round % 2 == 0 {
            change_to(&dir, &file, round);
            // Later in-place writes go to the inode now at the name.
            file = std::fs::OpenOptions::new().write(true).open(dir.join("f.txt")).unwrap();
        } else {
            change_to(&dir, &file, round);
        }
        let first = cache.lookup(b"f.txt");
        assert!(
            first.is_none_or(|e| !Arc::ptr_eq(&e, &old)),
            "round {round}: the first lookup after the change answered with the old version"
        );
    }
    stop.store(true, Ordering::Relaxed);
    hitter.join().unwrap();
}

/// Threads named `mapserve-inotify` in this process (the kernel keeps 15
/// bytes of a thread's name).
fn inotify_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("mapserve-inotif"))
        .count()
}

/// `--revalidate inotify-async`: hits make no system call, so a change is
/// seen only once the inotify thread applied it; it must be seen within a
/// second, and the thread must end once its cache is dropped. (The only test
/// in this binary that starts such a thread, so that counting them works.)
#[test]
fn with_inotify_async_a_change_is_seen_within_a_second_and_the_thread_ends_with_the_cache() {
    let dir = scratch("async-eventually");
    std::fs::write(dir.join("f.txt"), version(0)).unwrap();
    let cache = cache_over(&dir, |c| {
        c.small_file_max = 64 << 10;
        c.revalidate = Revalidate::InotifyAsync;
    });
    assert_eq!(cache.revalidation(), Revalidate::InotifyAsync);
    // A thread names itself once it runs.
    let start = std::time::Instant::now();
    while inotify_threads() != 1 {
        assert!(start.elapsed() < std::time::Duration::from_secs(1), "one inotify thread per cache");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let rt = runtime();
    let mut file = std::fs::OpenOptions::new().write(true).open(dir.join("f.txt")).unwrap();
    let (mut stale_first, mut slowest) = (0, std::time::Duration::ZERO);
    for round in 1..=200 {
        let old = rt.block_on(cache.get(b"f.txt")).unwrap();
        assert_eq!(heap_bytes(&old), version(round - 1));
        change_to(&dir, &file, round);
        if round % 2 == 0 {
            file = std::fs::OpenOptions::new().write(true).open(dir.join("f.txt")).unwrap();
        }
        let written = std::time::Instant::now();
        let mut lookups = 0;
        while cache.lookup(b"f.txt").is_some_and(|e| Arc::ptr_eq(&e, &old)) {
            lookups += 1;
            assert!(written.elapsed() < std::time::Duration::from_secs(1), "round {round}: not seen in 1 s");
        }
        stale_first += usize::from(lookups > 0);
        slowest = slowest.max(written.elapsed());
    }
    eprintln!("inotify-async: first lookup stale in {stale_first} of 200 rounds; slowest {slowest:?}");
    drop(cache);
    let start = std::time::Instant::now();
    while inotify_threads() > 0 {
        assert!(start.elapsed() < std::time::Duration::from_secs(2), "the inotify thread outlived its cache");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
