//! The cache used directly, on real files: single-flight loading and the
//! hard byte budget.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mapserve::cache::{CacheConfig, Content, FileCache};
use mapserve::fs::Root;
use mapserve::response::{self, FileContext, Plan, Policy};
use std::sync::Arc;

/// A cache over `dir` with the given budget and small-file limit, 64 MiB
/// windows and inotify change detection.
fn config(dir: &std::path::Path, max_bytes: u64, small_file_max: u64) -> FileCache {
    FileCache::new(
        Root::new(dir, false).unwrap(),
        &CacheConfig {
            max_bytes,
            max_entries: 100,
            small_file_max,
            inotify: true,
            prefault: true,
            window_size: 64 << 20,
        },
    )
}

/// The body of the response `plan` asks for, built as the handler builds it
/// for an entry that needs no held descriptor.
fn body_of(cache: &FileCache, entry: &Arc<mapserve::cache::Entry>, plan: Plan) -> mapserve::body::FileBody {
    let policy = Policy::default();
    let ctx = FileContext { policy: &policy, cache, fd: None, window: None };
    response::file(entry, plan, false, &ctx).into_body()
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
    let cache = FileCache::new(
        Root::new(&dir, false).unwrap(),
        &CacheConfig {
            max_bytes: 64 << 20,
            max_entries: 100,
            small_file_max: 0,
            inotify: true,
            prefault: true,
            window_size: page,
        },
    );
    runtime().block_on(async {
        let entry = cache.get(b"huge").await.unwrap();
        assert!(matches!(entry.content, Content::Windowed(_)));
        let fd = cache.hold(&entry).await.unwrap().unwrap();
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
