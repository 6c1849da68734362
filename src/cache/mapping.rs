//! Mappings of a file: one [`Window`] (a page-aligned span, or the whole
//! file), with its residency bitmap, the zero-copy slices responses send,
//! and [`Windowed`], the shared state of a file mapped window by window.

use super::files::HeldFd;
use crate::mmap::Residency;
use crate::mmap::guard::Probe;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The descriptor of a windowed file, shared by the responses using it, which
/// of its windows have been mapped, and whether the entry has been retired
/// (dropped from the cache as stale): windows that responses still in flight
/// map for a retired entry are used by them and never cached.
#[derive(Debug, Default)]
pub struct Windowed {
    fd: std::sync::Mutex<std::sync::Weak<HeldFd>>,
    mapped: std::sync::Mutex<std::collections::BTreeSet<u64>>,
    retired: std::sync::atomic::AtomicBool,
    /// Pinned by the admin API: its cached windows are never evicted.
    pub pinned: std::sync::atomic::AtomicBool,
}

impl Windowed {
    /// Marks the entry as no longer cached.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    /// Whether the entry is no longer cached.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }

    /// The descriptor, if a response still holds it open.
    pub fn live(&self) -> Option<Arc<HeldFd>> {
        self.fd.lock().unwrap_or_else(|e| e.into_inner()).upgrade()
    }

    /// Remembers a (re)opened descriptor.
    pub fn remember(&self, fd: &Arc<HeldFd>) {
        *self.fd.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(fd);
    }

    /// Records that window `index` was mapped (and so may be cached).
    pub fn note_mapped(&self, index: u64) {
        self.mapped.lock().unwrap_or_else(|e| e.into_inner()).insert(index);
    }

    /// The windows mapped so far, forgetting them.
    pub fn take_mapped(&self) -> std::collections::BTreeSet<u64> {
        std::mem::take(&mut *self.mapped.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// One mapping of `[start, start + bytes.len())` of a file, `start` a
/// multiple of the page size.
#[derive(Debug)]
pub struct Window {
    /// The mapped bytes (a `Bytes` over the mapping; slices are zero-copy).
    pub bytes: Bytes,
    /// File offset of the first byte.
    pub start: u64,
    /// Poison probe of the mapping (SIGBUS guard).
    pub probe: Probe,
    /// How to learn whether its pages are in memory.
    pub residency: Residency,
    /// The windowed entry this window belongs to (`None` for the single
    /// mapping of a whole file).
    pub owner: Option<Arc<Windowed>>,
    /// One bit per page of the window, set by the sweep (and at map time)
    /// when that page was found in memory: chunks whose pages are all known
    /// resident skip the per-chunk probe (a page evicted since is noticed
    /// within one sweep interval). Per page, not per larger granule, because
    /// the kernel reclaims the cold pages around a hot range one by one: a
    /// hot 1 KiB range inside a 2 MiB granule with one evicted page would
    /// otherwise pay a `mincore` on every request.
    pub known_resident: Box<[AtomicU64]>,
}

/// The empty residency map for a window of `len` bytes (2 KiB for 64 MiB).
pub fn residency_map(len: u64) -> Box<[AtomicU64]> {
    (0..len.div_ceil(crate::limits::page_size()).div_ceil(64)).map(|_| AtomicU64::new(0)).collect()
}

/// A slice of a window that keeps the window counted as in use (and its
/// mapping alive) for as long as the slice exists, wherever it waits: in
/// hyper's write queue, in h2's buffers, in a connection's lists.
#[derive(Debug)]
struct WindowSlice {
    window: Arc<Window>,
    from: usize,
    to: usize,
    _pin: Option<Arc<crate::quota::PinSlot>>,
    _mark: Option<crate::quota::ChunkMark>,
}

impl AsRef<[u8]> for WindowSlice {
    fn as_ref(&self) -> &[u8] {
        self.window.bytes.get(self.from..self.to).unwrap_or_default()
    }
}

impl Window {
    /// `len` bytes of the window from `from` (an offset into the window), as
    /// a zero-copy slice that pins the window while it lives, and keeps the
    /// connection's pin on it (`pin`) as long. Clamped to the window.
    pub fn chunk(
        self: &Arc<Self>,
        from: usize,
        len: usize,
        pin: Option<&Arc<crate::quota::PinSlot>>,
        mark: Option<crate::quota::ChunkMark>,
    ) -> Bytes {
        let from = from.min(self.bytes.len());
        let to = from.saturating_add(len).min(self.bytes.len());
        Bytes::from_owner(WindowSlice { window: self.clone(), from, to, _pin: pin.cloned(), _mark: mark })
    }

    /// Whether anything besides its one owner (the cache's table, or the
    /// entry of a whole-file mapping) holds the window: a response streaming
    /// it, or a slice of it waiting to be written.
    pub fn in_use(self: &Arc<Self>) -> bool {
        Arc::strong_count(self) > 1
    }

    /// File offset one past the last byte.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.bytes.len() as u64)
    }

    /// Re-checks residency for the sweep; returns the resident bytes.
    pub fn refresh_residency(&self) -> u64 {
        let pages = crate::mmap::resident_pages(&self.bytes, self.residency);
        let page = crate::limits::page_size();
        for (word, chunk) in self.known_resident.iter().zip(pages.chunks(64)) {
            let bits = chunk.iter().enumerate().fold(0u64, |bits, (i, &p)| bits | (u64::from(p) << i));
            word.store(bits, Ordering::Release);
        }
        pages.iter().filter(|&&p| p).count() as u64 * page
    }

    /// Whether the last sweep found every page of the window's bytes
    /// `[from, from + len)` in memory.
    pub fn is_known_resident(&self, from: u64, len: u64) -> bool {
        let page = crate::limits::page_size();
        let first = from / page;
        let last = from.saturating_add(len.max(1) - 1) / page;
        // Word by word: a 1 MiB chunk of 4 KiB pages is four loads.
        (first / 64..=last / 64).all(|w| {
            let lo = if w == first / 64 { first % 64 } else { 0 };
            let hi = if w == last / 64 { last % 64 } else { 63 };
            let mask = (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
            self.known_resident
                .get(w as usize)
                .is_some_and(|word| word.load(Ordering::Acquire) & mask == mask)
        })
    }

    /// Whether the window belongs to an entry that is no longer cached.
    pub fn is_orphan(&self) -> bool {
        self.owner.as_ref().is_some_and(|o| o.is_retired())
    }

    /// Whether `offset` lies inside the window.
    pub fn covers(&self, offset: u64) -> bool {
        offset >= self.start && offset < self.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residency_is_remembered_per_page() {
        let page = crate::limits::page_size();
        let pages = 4096 + 37; // the last word of bits is partial
        let len = pages * page;
        let dir = std::env::temp_dir().join(format!("mapserve-granule-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, vec![1u8; len as usize]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let region = crate::mmap::Region::map(&file, 0, len as usize).unwrap();
        let w = Window {
            probe: region.probe(),
            bytes: Bytes::from_owner(region),
            start: 0,
            residency: crate::mmap::Residency::Pagemap,
            owner: None,
            known_resident: residency_map(len),
        };
        assert!(!w.is_known_resident(0, 10), "nothing known before a sweep");
        // Map a run across a word boundary and the last page (the kernel
        // maps neighbours too: fault-around, large folios), then refresh.
        let at = |p: u64| (p * page) as usize;
        crate::mmap::populate(&w.bytes[at(1000)..at(1071)]).unwrap();
        crate::mmap::populate(&w.bytes[at(pages - 1)..]).unwrap();
        let truth = crate::mmap::resident_pages(&w.bytes, w.residency);
        assert_eq!(w.refresh_residency(), truth.iter().filter(|&&p| p).count() as u64 * page);
        assert!(truth.contains(&false), "some pages are cold, or the test proves nothing");
        assert!(w.is_known_resident(1000 * page, 71 * page), "the mapped run");
        assert!(w.is_known_resident(len - 5, 5), "the last page");
        // Every span agrees with the page-by-page truth: single pages, spans
        // across word boundaries, spans from a byte inside a page.
        let model = |from: u64, n: u64| {
            truth[(from / page) as usize..=((from + n - 1) / page) as usize].iter().all(|&p| p)
        };
        for first in 0..pages {
            for (off, n) in [(0, 1), (5, page), (0, 64 * page), (page - 1, 2), (0, 130 * page)] {
                let from = first * page + off;
                if from + n <= len {
                    assert_eq!(w.is_known_resident(from, n), model(from, n), "span {from}+{n}");
                }
            }
        }
        assert!(!w.is_known_resident(0, len + 1), "past the end");
    }
}
