//! `--prewarm GLOB`: after the listeners accept, the files the globs match
//! are mapped and faulted in within the budget, on the blocking pool, while
//! requests are already served. Progress (files, bytes, share of the
//! budget) is logged every second, and a summary at the end.

use crate::cache::FileCache;
use crate::cache::admin::walk;
use crate::config::units::format_size;
use std::time::{Duration, Instant};

/// Warms the cache with the files `globs` match.
pub(super) async fn at_start(cache: FileCache, globs: Vec<String>, hidden: bool) {
    let started = Instant::now();
    let mut keys = Vec::new();
    for glob in &globs {
        let Ok(pattern) = walk::pattern(glob) else { continue };
        let (found, truncated) = cache.find(pattern, hidden).await;
        if truncated {
            tracing::warn!(glob, limit = walk::WALK_MAX, "prewarm: the walk stopped early");
        }
        keys.extend(found);
    }
    keys.sort();
    keys.dedup();
    tracing::info!(files = keys.len(), globs = ?globs, "prewarm: starting");
    let (mut loaded, mut bytes, mut skipped, mut failed) = (0usize, 0u64, 0usize, 0usize);
    let mut last = Instant::now();
    let total = keys.len();
    for (done, key) in keys.into_iter().enumerate() {
        let report = cache.prewarm(vec![key]).await;
        loaded += report.loaded.len();
        bytes += report.loaded.iter().map(|s| s.bytes).sum::<u64>();
        skipped += report.did_not_fit.len();
        failed += report.failed.len();
        for f in &report.failed {
            tracing::debug!(path = %f.path, reason = %f.reason, "prewarm: not loaded");
        }
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            tracing::info!(
                done = done + 1,
                of = total,
                loaded,
                bytes = %format_size(bytes),
                budget_share = %share(cache.budget_view().used, cache.max_bytes()),
                "prewarm: progress"
            );
        }
    }
    tracing::info!(
        loaded,
        did_not_fit = skipped,
        failed,
        bytes = %format_size(bytes),
        budget_share = %share(cache.budget_view().used, cache.max_bytes()),
        ms = started.elapsed().as_millis() as u64,
        "prewarm: done"
    );
}

fn share(used: u64, limit: u64) -> String {
    format!("{:.1}%", used as f64 * 100.0 / limit.max(1) as f64)
}
