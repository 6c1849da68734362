//! What the admin API does to the cache:
//!
//! * **evict**: the selected entries (and their windows, compressed variants
//!   and listings) leave the table at once; a mapping still used by a
//!   response is unmapped when its last response ends, since responses hold
//!   their own references.
//! * **prewarm**: loads each selected file if it fits in the budget still
//!   free (it never evicts to make room), then faults its pages in on the
//!   blocking pool (`MADV_POPULATE_READ`), window by window for large files.
//! * **pin** / **unpin**: a pinned path's entry (and its windows) is never
//!   evicted, in this version and the versions that replace it, until
//!   unpinned or evicted by name. Pins count against the budget like any
//!   entry; pinning refuses what would take pins past `--cache-pin-max`.

use super::super::entry::Content;
use super::super::hold::Reads;
use super::super::{Cached, FileCache};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Which entries an action applies to.
#[derive(Debug, Clone)]
pub enum Select {
    /// One path (a cache key).
    Path(Vec<u8>),
    /// Every path a glob matches.
    Glob(globset::GlobMatcher),
    /// Everything (evict only).
    All,
}

impl Select {
    fn matches(&self, key: &[u8]) -> bool {
        match self {
            Select::Path(p) => p == key,
            Select::Glob(g) => std::str::from_utf8(key).is_ok_and(|k| g.is_match(k)),
            Select::All => true,
        }
    }
}

/// One file and its size.
#[derive(Debug, Clone, Serialize)]
pub struct Sized {
    /// URL path.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// One file an action could not apply to.
#[derive(Debug, Clone, Serialize)]
pub struct Refused {
    /// URL path.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// What a prewarm did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Prewarmed {
    /// Loaded (or already cached) and faulted in.
    pub loaded: Vec<Sized>,
    /// Left out: more than the budget still free.
    pub did_not_fit: Vec<Sized>,
    /// Could not be loaded.
    pub failed: Vec<Refused>,
}

/// What a pin did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pinned {
    /// Now pinned.
    pub pinned: Vec<String>,
    /// Not pinned, and why.
    pub refused: Vec<Refused>,
}

fn url(key: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(key))
}

impl FileCache {
    /// Removes the selected entries now; returns their paths.
    pub async fn evict(&self, select: Select) -> Vec<String> {
        let cache = self.clone();
        let task = tokio::task::spawn_blocking(move || {
            let shared = &cache.shared;
            let mut gone = Vec::new();
            for (key, value) in shared.table.snapshot() {
                let Cached::File(entry) = value else { continue };
                if !select.matches(&entry.key) {
                    continue;
                }
                shared.pins_lock().remove(&entry.key);
                entry.pinned.store(false, Ordering::Relaxed);
                if let Content::Windowed(w) = &entry.content {
                    w.pinned.store(false, Ordering::Relaxed);
                }
                shared.forget(&key, &entry);
                let path = url(&entry.key);
                if !gone.contains(&path) {
                    gone.push(path);
                }
            }
            gone.sort();
            gone
        });
        task.await.unwrap_or_default()
    }

    /// Loads and faults in `keys` within the free budget.
    pub async fn prewarm(&self, keys: Vec<Vec<u8>>) -> Prewarmed {
        let mut out = Prewarmed::default();
        for key in keys {
            let path = url(&key);
            let cached = self.lookup(&key);
            let entry = match cached {
                Some(e) => e,
                None => {
                    let (size, needs) = match self.size_of(&key).await {
                        Ok(sizes) => sizes,
                        Err(reason) => {
                            out.failed.push(Refused { path, reason });
                            continue;
                        }
                    };
                    if needs > self.free_bytes() {
                        out.did_not_fit.push(Sized { path, bytes: size });
                        continue;
                    }
                    match self.get(&key).await {
                        Ok(e) => e,
                        Err(e) => {
                            out.failed.push(Refused { path, reason: e.to_string() });
                            continue;
                        }
                    }
                }
            };
            let bytes = entry.len();
            match self.fault_in(&entry).await {
                Ok(true) => out.loaded.push(Sized { path, bytes }),
                Ok(false) => out.did_not_fit.push(Sized { path, bytes }),
                Err(reason) => out.failed.push(Refused { path, reason }),
            }
        }
        out
    }

    /// Pins `keys` (loading them), within `--cache-pin-max`.
    pub async fn pin(&self, keys: Vec<Vec<u8>>) -> Pinned {
        let mut out = Pinned::default();
        for key in keys {
            let path = url(&key);
            let entry = match self.get(&key).await {
                Ok(e) => e,
                Err(e) => {
                    out.refused.push(Refused { path, reason: e.to_string() });
                    continue;
                }
            };
            let bytes = match &entry.content {
                Content::Stream(_) => {
                    let reason = "it does not fit in the cache budget".to_owned();
                    out.refused.push(Refused { path, reason });
                    continue;
                }
                Content::Dir => {
                    out.refused.push(Refused { path, reason: "a directory".to_owned() });
                    continue;
                }
                _ => entry.len(),
            };
            {
                let mut pins = self.shared.pins_lock();
                let others: u64 = pins.iter().filter(|(k, _)| ***k != *key).map(|(_, b)| *b).sum();
                let max = self.pin_max();
                if others.saturating_add(bytes) > max {
                    let reason = format!(
                        "pins would hold {} bytes, over --cache-pin-max ({max} bytes)",
                        others.saturating_add(bytes)
                    );
                    out.refused.push(Refused { path, reason });
                    continue;
                }
                pins.insert(key.clone().into_boxed_slice(), bytes);
            }
            mark_pinned(&entry, true);
            out.pinned.push(path);
        }
        out
    }

    /// Unpins the selected paths; returns those that were pinned.
    pub fn unpin(&self, select: &Select) -> Vec<String> {
        let mut gone: Vec<Box<[u8]>> = Vec::new();
        self.shared.pins_lock().retain(|k, _| {
            let hit = select.matches(k);
            if hit {
                gone.push(k.clone());
            }
            !hit
        });
        for key in &gone {
            if let Some(Cached::File(entry)) = self.shared.table.get(key) {
                mark_pinned(&entry, false);
            }
        }
        let mut out: Vec<String> = gone.iter().map(|k| url(k)).collect();
        out.sort();
        out
    }

    /// The pinned paths.
    pub fn pinned_keys(&self) -> Vec<Vec<u8>> {
        self.shared.pins_lock().keys().map(|k| k.to_vec()).collect()
    }

    /// Bytes pinned now.
    pub fn pinned_bytes(&self) -> u64 {
        self.shared.pins_lock().values().sum()
    }

    /// Most bytes pins may hold.
    pub fn pin_max(&self) -> u64 {
        let percent = u64::from(self.shared.pin_max_percent.load(Ordering::Relaxed));
        u64::try_from(u128::from(self.shared.budget.limit()) * u128::from(percent) / 100).unwrap_or(u64::MAX)
    }

    /// A new `--cache-pin-max` (a reload). Pins already made stay.
    pub fn set_pin_max(&self, percent: u8) {
        self.shared.pin_max_percent.store(percent.min(100), Ordering::Relaxed);
    }

    /// Budget bytes not in use.
    pub fn free_bytes(&self) -> u64 {
        self.shared.budget.limit().saturating_sub(self.shared.budget.used())
    }

    /// Paths under ROOT that `glob` selects, walking ROOT (on the blocking
    /// pool). `true` when the walk stopped early.
    pub async fn find(&self, glob: globset::GlobMatcher, hidden: bool) -> (Vec<Vec<u8>>, bool) {
        let root = self.shared.roots.path().to_path_buf();
        tokio::task::spawn_blocking(move || super::walk::find(&root, &glob, hidden)).await.unwrap_or_default()
    }

    /// The file's size, and the budget a load of it takes (whole pages
    /// when it is mapped).
    async fn size_of(&self, key: &[u8]) -> Result<(u64, u64), String> {
        let (shared, key) = (self.shared.clone(), key.to_vec());
        let task = tokio::task::spawn_blocking(move || shared.roots.current().0.stat(&key));
        match task.await {
            Ok(Ok(id)) if id.kind == crate::fs::Kind::File => {
                let page = crate::limits::page_size();
                let needs = if id.size <= self.shared.small_file_max {
                    id.size
                } else {
                    id.size.div_ceil(page) * page
                };
                Ok((id.size, needs))
            }
            Ok(Ok(_)) => Err("not a regular file".to_owned()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Faults the entry's pages in. `Ok(false)`: a large file whose windows
    /// did not all fit.
    async fn fault_in(&self, entry: &Arc<super::super::Entry>) -> Result<bool, String> {
        match &entry.content {
            Content::Mapped(w) => {
                let w = w.clone();
                populate(w).await;
                Ok(true)
            }
            Content::Windowed(_) => {
                let held = self.hold_for(entry, Reads::Several, None).await.map_err(|e| e.to_string())?;
                let fd = held.fd.ok_or_else(|| "no descriptor".to_owned())?;
                let windows = entry.len().div_ceil(self.window_size());
                for index in 0..windows {
                    let size = (entry.len() - index * self.window_size()).min(self.window_size());
                    if self.cached_window(entry, index).is_none() && size > self.free_bytes() {
                        return Ok(false);
                    }
                    match self.window(entry.clone(), fd.clone(), index).await {
                        Ok(Some(w)) => populate(w).await,
                        Ok(None) => return Ok(false),
                        Err(e) => return Err(e.to_string()),
                    }
                }
                Ok(true)
            }
            Content::Stream(_) => Ok(false),
            Content::Heap(_) | Content::Dir => Ok(true),
        }
    }
}

/// Faults a mapping in and records its residency, on the blocking pool.
async fn populate(w: Arc<super::super::Window>) {
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = crate::mmap::populate(&w.bytes) {
            tracing::debug!(error = %e, "prefault failed");
        }
        w.refresh_residency();
    })
    .await;
}

fn mark_pinned(entry: &super::super::Entry, on: bool) {
    entry.pinned.store(on, Ordering::Relaxed);
    if let Content::Windowed(w) = &entry.content {
        w.pinned.store(on, Ordering::Relaxed);
    }
}
