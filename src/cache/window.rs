//! Windows: files larger than the window size are mapped in page-aligned
//! spans of that size, on demand. Each window is a cache entry of its own,
//! paid for from the same budget, and found by a key made of the owning
//! entry's id and the window's index (a NUL first byte keeps these keys apart
//! from paths, which never contain NUL).

use super::budget::MapOwner;
use super::entry::{Entry, Window};
use super::files::HeldFd;
use super::{Cached, Shared};
use crate::fs::FsError;
use crate::mmap::{self, Region};
use bytes::Bytes;
use std::sync::Arc;

/// The cache key of window `index` of entry `id`.
pub(super) fn key(id: u64, index: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    for (dst, src) in k.iter_mut().skip(1).zip(id.to_le_bytes().into_iter().chain(index.to_le_bytes())) {
        *dst = src;
    }
    k
}

impl Shared {
    /// Maps window `index` of `entry` from `fd` and caches it. Runs on the
    /// blocking pool. `Ok(None)`: no budget left (everything mapped is in use)
    /// or the mapping failed: the caller streams that span with `pread`.
    pub(super) fn map_window(
        &self,
        entry: &Entry,
        fd: &HeldFd,
        index: u64,
    ) -> Result<Option<Arc<Window>>, FsError> {
        let start = index.saturating_mul(self.window_size);
        if start >= entry.len() {
            return Err(FsError::NotFound);
        }
        let len = (entry.len() - start).min(self.window_size);
        let Ok(len_usize) = usize::try_from(len) else { return Ok(None) };
        let page = crate::limits::page_size();
        let Some(reservation) = self.reserve(len.div_ceil(page) * page, true) else {
            self.pread_spans.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(
                start,
                len,
                "no budget for a window (all mapped bytes in use); streaming it with pread"
            );
            return Ok(None);
        };
        let region = match Region::map(fd, start, len_usize) {
            Ok(region) => region,
            Err(e) => {
                tracing::warn!(error = %e, start, len, "mapping a window failed; streaming it with pread");
                return Ok(None);
            }
        };
        mmap::advise_sequential(region.as_slice());
        self.windows_mapped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let owner = match &entry.content {
            super::Content::Windowed(windowed) => Some(windowed.clone()),
            _ => None,
        };
        let window = Arc::new(Window {
            probe: region.probe(),
            bytes: Bytes::from_owner(MapOwner::new(region, reservation)),
            start,
            residency: self.residency_for(&entry.identity),
            owner: owner.clone(),
            known_resident: super::entry::residency_map(len),
        });
        // Learn residency now, on the blocking pool, not in the first requests.
        window.refresh_residency();
        let Some(windowed) = owner else { return Ok(Some(window)) };
        // A retired entry's windows serve the responses that asked for them
        // and are never cached. `retire` sets the flag before it drops the
        // windows noted so far, so checking after the insert closes the race.
        if windowed.is_retired() {
            return Ok(Some(window));
        }
        windowed.note_mapped(index);
        let key = key(entry.id, index);
        // A full table of windows in use: this one is simply not cached.
        if let Ok(evicted) = self.table.insert(&key, Cached::Window(window.clone())) {
            self.dispose(evicted);
        }
        if windowed.is_retired() {
            drop(self.table.remove_if(&key, |v| matches!(v, Cached::Window(w) if Arc::ptr_eq(w, &window))));
        }
        Ok(Some(window))
    }

    /// Whether `mincore` tells us the truth about this file's pages.
    pub(super) fn residency_for(&self, identity: &crate::fs::Identity) -> mmap::Residency {
        if self.euid == 0 || identity.uid == self.euid {
            mmap::Residency::Mincore
        } else {
            mmap::Residency::Pagemap
        }
    }

    /// Retires `entry` (it is no longer cached) and drops its cached
    /// windows, so that a replaced or deleted file's mappings do not wait for
    /// eviction. Only the windows it ever mapped are looked at, not every
    /// window the file could have: this may run on a runtime worker, and a
    /// huge file with small windows has millions of those.
    pub(super) fn retire(&self, entry: &Entry) {
        let super::Content::Windowed(windowed) = &entry.content else { return };
        windowed.retire();
        for index in windowed.take_mapped() {
            drop(self.table.remove_if(&key(entry.id, index), |_| true));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_keys_never_look_like_paths_and_are_distinct() {
        let a = key(1, 2);
        let b = key(2, 1);
        assert_ne!(a, b);
        assert_eq!(a[0], 0);
        assert!(crate::path::parse("/\0x", true).is_err(), "paths cannot contain NUL");
    }
}
