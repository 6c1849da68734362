//! The application over a directory, as the in-process tests build it:
//! `tests/alloc_budget.rs`, `tests/service_lib.rs` and the fuzz target
//! `fuzz/fuzz_targets/service.rs` include this file (`#[path]`), so that a
//! new field of `App` or `CacheConfig` is filled in one place.

use mapserve::cache::{CacheConfig, FileCache};
use mapserve::handler::{App, Browse};
use mapserve::response::Policy;
use std::sync::Arc;

/// The application serving `root` with small test limits and the access log
/// off; `browse` decides listings and fallbacks. The cache's background work
/// runs on `rt`.
pub(crate) fn app(rt: &tokio::runtime::Runtime, root: &std::path::Path, browse: Browse) -> Arc<App> {
    let cache = {
        let _guard = rt.enter();
        FileCache::new(
            root,
            false,
            &CacheConfig {
                max_bytes: 64 << 20,
                max_entries: 100,
                small_file_max: 64 << 10,
                window_size: 1 << 20,
                revalidate: Default::default(),
                prefault: true,
                verified_sends: false,
                max_open_files: 64,
                etag: Default::default(),
                etag_hash_max: 0,
                pin_max_percent: 50,
            },
        )
        .expect("the test root opens")
    };
    Arc::new(App {
        cache,
        hidden: false,
        max_ranges: 8,
        policy: Policy::default(),
        access_log: false,
        access_log_format: mapserve::access_log::format::Format::Combined,
        rules: Default::default(),
        browse,
        cors: None,
        trusted: Default::default(),
    })
}
