//! The cache as the admin listener shows and steers it: a view of every
//! entry with its residency read from the kernel at the moment of asking
//! ([`FileCache::entries`]), counts by kind for `/metrics`
//! ([`FileCache::kinds`]), and the actions in [`actions`]: evict, prewarm,
//! pin and unpin, by path, glob ([`walk`]) or all.

pub mod actions;
pub mod walk;

use super::entry::{Content, Entry, Window};
use super::{Cached, FileCache};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Most cells in a residency strip.
pub const STRIP_CELLS: usize = 64;

/// One cached value as `/cache` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EntryView {
    /// URL path (`/` + the relative path).
    pub path: String,
    /// copy, mapping, windowed, window, compressed, listing or directory.
    pub kind: &'static str,
    /// Bytes it serves (a window: its length).
    pub bytes: u64,
    /// Bytes mapped for it (whole pages), 0 for heap copies.
    pub mapped: u64,
    /// Pages mapped.
    pub pages: u64,
    /// Of those, pages in memory now.
    pub resident_pages: u64,
    /// Their bytes.
    pub resident_bytes: u64,
    /// One character per group of pages: `#` all resident, `+` some, `.`
    /// none. Empty when nothing is mapped.
    pub strip: String,
    /// Lookups answered with it.
    pub hits: u64,
    /// Seconds since its last use.
    pub idle_seconds: f64,
    /// Pinned by the admin API.
    pub pinned: bool,
    /// Responses (or slices of them) still using it.
    pub in_flight: u64,
    /// The content coding of a compressed variant.
    pub coding: Option<&'static str>,
    /// A window's first byte in the file.
    pub window: Option<u64>,
}

/// The budget as `/cache` shows it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BudgetView {
    /// Byte limit.
    pub limit: u64,
    /// Bytes mapped or copied and alive.
    pub used: u64,
    /// Bytes of pinned entries.
    pub pinned: u64,
    /// Most bytes pins may hold.
    pub pin_max: u64,
    /// Entries and windows cached.
    pub entries: usize,
    /// Entry cap.
    pub max_entries: usize,
}

impl FileCache {
    /// Every cached value, with residency refreshed from the kernel now (on
    /// the blocking pool: `mincore` over every mapping).
    pub async fn entries(&self) -> Vec<EntryView> {
        let cache = self.clone();
        tokio::task::spawn_blocking(move || cache.entries_now()).await.unwrap_or_default()
    }

    fn entries_now(&self) -> Vec<EntryView> {
        let snapshot = self.shared.table.snapshot();
        // Windows are keyed by their entry's id: find the paths.
        let paths: std::collections::HashMap<u64, &[u8]> = snapshot
            .iter()
            .filter_map(|(_, v)| match v {
                Cached::File(e) if matches!(e.content, Content::Windowed(_)) => Some((e.id, &*e.key)),
                _ => None,
            })
            .collect();
        let mut out = Vec::with_capacity(snapshot.len());
        for (key, value) in &snapshot {
            match value {
                Cached::File(entry) => out.push(file_view(key, entry)),
                Cached::Window(w) => {
                    let id = key.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
                    let path = id.and_then(|id| paths.get(&id).copied()).unwrap_or_default();
                    let mut view = mapped_view(path, "window", w);
                    view.window = Some(w.start);
                    view.in_flight = (Arc::strong_count(w) as u64).saturating_sub(2);
                    view.pinned = w.owner.as_ref().is_some_and(|o| o.pinned.load(Ordering::Relaxed));
                    out.push(view);
                }
            }
        }
        out
    }

    /// Entries and bytes by kind, without touching residency (for
    /// `/metrics`).
    pub fn kinds(&self) -> Vec<(&'static str, u64, u64)> {
        let mut kinds: Vec<(&'static str, u64, u64)> =
            ["copy", "mapping", "windowed", "window", "compressed", "listing", "directory"]
                .iter()
                .map(|&k| (k, 0, 0))
                .collect();
        for (key, value) in self.shared.table.snapshot() {
            let (kind, bytes) = match &value {
                Cached::File(e) => (kind_of(&key, e), e.len()),
                Cached::Window(w) => ("window", w.bytes.len() as u64),
            };
            let bytes = if kind == "windowed" { 0 } else { bytes };
            if let Some(k) = kinds.iter_mut().find(|k| k.0 == kind) {
                k.1 += 1;
                k.2 += bytes;
            }
        }
        kinds
    }

    /// The budget now.
    pub fn budget_view(&self) -> BudgetView {
        let limit = self.shared.budget.limit();
        BudgetView {
            limit,
            used: self.shared.budget.used(),
            pinned: self.pinned_bytes(),
            pin_max: self.pin_max(),
            entries: self.shared.table.len(),
            max_entries: self.shared.table.max_entries(),
        }
    }

    /// Values evicted to make room since start.
    pub fn evictions(&self) -> u64 {
        self.shared.table.evictions()
    }
}

fn kind_of(key: &[u8], entry: &Entry) -> &'static str {
    if key.first() == Some(&0x01) {
        return "compressed";
    }
    if entry.headers.listing {
        return "listing";
    }
    match &entry.content {
        Content::Dir => "directory",
        Content::Heap(_) | Content::Stream(_) => "copy",
        Content::Mapped(_) => "mapping",
        Content::Windowed(_) => "windowed",
    }
}

fn file_view(key: &[u8], entry: &Arc<Entry>) -> EntryView {
    let kind = kind_of(key, entry);
    let mut view = match &entry.content {
        Content::Mapped(w) => mapped_view(&entry.key, kind, w),
        _ => EntryView {
            path: url_path(&entry.key),
            kind,
            bytes: if kind == "windowed" || kind == "directory" { entry.identity.size } else { entry.len() },
            ..EntryView::default()
        },
    };
    view.hits = entry.usage.hits();
    view.idle_seconds = entry.usage.idle_secs();
    view.pinned = entry.pinned.load(Ordering::Relaxed);
    // The table and this snapshot hold one each.
    view.in_flight = (Arc::strong_count(entry) as u64).saturating_sub(2);
    view.coding = entry.headers.content_encoding.map(|c| c.token());
    view
}

/// The view of a mapping, its residency refreshed now.
fn mapped_view(key: &[u8], kind: &'static str, w: &Window) -> EntryView {
    w.refresh_residency();
    let page = crate::limits::page_size();
    let pages = (w.bytes.len() as u64).div_ceil(page);
    let bit = |i: u64| {
        let word = w.known_resident.get((i / 64) as usize).map_or(0, |a| a.load(Ordering::Acquire));
        word >> (i % 64) & 1 == 1
    };
    let resident_pages = (0..pages).filter(|&i| bit(i)).count() as u64;
    EntryView {
        path: url_path(key),
        kind,
        bytes: w.bytes.len() as u64,
        mapped: pages * page,
        pages,
        resident_pages,
        resident_bytes: resident_pages * page,
        strip: strip(pages, bit),
        ..EntryView::default()
    }
}

/// The residency strip of `pages` pages: at most [`STRIP_CELLS`] cells, each
/// a group of consecutive pages.
pub fn strip(pages: u64, resident: impl Fn(u64) -> bool) -> String {
    let cells = pages.min(STRIP_CELLS as u64);
    (0..cells)
        .map(|c| {
            let (from, to) = (c * pages / cells, (c + 1) * pages / cells);
            let n = (from..to).filter(|&i| resident(i)).count() as u64;
            if n == to - from {
                '#'
            } else if n == 0 {
                '.'
            } else {
                '+'
            }
        })
        .collect()
}

/// `/` + the relative path, lossily as UTF-8.
fn url_path(key: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_group_pages_into_cells() {
        assert_eq!(strip(0, |_| true), "");
        assert_eq!(strip(3, |i| i != 1), "#.#");
        let s = strip(640, |i| i < 320 || i == 400);
        assert_eq!(s.len(), STRIP_CELLS);
        assert_eq!(&s[..32], "#".repeat(32));
        assert_eq!(s.chars().filter(|&c| c == '+').count(), 1);
        assert_eq!(s.chars().filter(|&c| c == '.').count(), 31);
    }
}
