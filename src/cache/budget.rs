//! The byte budget and the owners that give memory back to it.
//!
//! [`Budget`] counts every byte the cache has mapped or copied that is still
//! alive, whether the cache still holds it or only an in-flight response does,
//! and every mapping alive (each is a VMA, bounded by `vm.max_map_count`).
//! A mapping or copy is made only after [`Budget::try_reserve`] succeeded, so
//! the count never exceeds the limit: the bound is hard. The reservation is
//! returned when the memory is really gone: for a mapping, after `munmap`.
//!
//! `munmap` can take milliseconds (docs/mmap.md), so the last owner of a mapping
//! never unmaps on a tokio worker: it hands the region to the reaper thread.
//! Code running on the blocking pool (the loader, which evicts to make room)
//! may unmap inline, so that the budget it needs is free when it returns.

use crate::mmap::Region;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, OnceLock};

/// Live bytes and mappings against their limits.
#[derive(Debug)]
pub struct Budget {
    limit: AtomicU64,
    max_maps: AtomicU64,
    used: AtomicU64,
    maps: AtomicU64,
}

impl Budget {
    /// A budget of `limit` bytes and `max_maps` mappings (each mapping is a
    /// kernel VMA, which `vm.max_map_count` bounds per process).
    pub fn new(limit: u64, max_maps: u64) -> Arc<Budget> {
        Arc::new(Budget {
            limit: AtomicU64::new(limit),
            max_maps: AtomicU64::new(max_maps),
            used: AtomicU64::new(0),
            maps: AtomicU64::new(0),
        })
    }

    /// Reserves `bytes` (and one mapping if `is_map`) if that keeps both
    /// totals within their limits.
    pub fn try_reserve(self: &Arc<Self>, bytes: u64, is_map: bool) -> Option<Reservation> {
        if is_map {
            let max = self.max_maps.load(Ordering::Relaxed);
            self.maps
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < max).then_some(n + 1))
                .ok()?;
        }
        let limit = self.limit.load(Ordering::Relaxed);
        let reserved = self.used.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |used| {
            used.checked_add(bytes).filter(|&n| n <= limit)
        });
        if reserved.is_err() {
            if is_map {
                self.maps.fetch_sub(1, Ordering::AcqRel);
            }
            return None;
        }
        Some(Reservation { budget: self.clone(), bytes, is_map })
    }

    /// Bytes alive now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Mappings alive now.
    pub fn maps(&self) -> u64 {
        self.maps.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// New limits (a reload). What is alive beyond them stays until the
    /// cache evicts it; no new reservation passes them.
    pub fn set_limits(&self, limit: u64, max_maps: u64) {
        self.limit.store(limit, Ordering::Relaxed);
        self.max_maps.store(max_maps, Ordering::Relaxed);
    }
}

/// Bytes held against the budget; returned on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    bytes: u64,
    is_map: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
        if self.is_map {
            self.budget.maps.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Owner of a heap copy, for `Bytes::from_owner`.
#[derive(Debug)]
pub struct HeapOwner {
    data: Vec<u8>,
    _reservation: Reservation,
}

impl HeapOwner {
    /// Wraps a copy and the reservation that paid for it.
    pub fn new(data: Vec<u8>, reservation: Reservation) -> Self {
        HeapOwner { data, _reservation: reservation }
    }
}

impl AsRef<[u8]> for HeapOwner {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

/// A mapping and its reservation; field order makes the unmap happen before
/// the reservation is returned.
#[derive(Debug)]
struct Retired {
    region: Region,
    _reservation: Reservation,
}

/// Owner of a mapping, for `Bytes::from_owner`. Dropped when the last `Bytes`
/// slice of the mapping is dropped.
#[derive(Debug)]
pub struct MapOwner {
    inner: Option<Retired>,
}

impl MapOwner {
    /// Wraps a mapping and the reservation that paid for it.
    pub fn new(region: Region, reservation: Reservation) -> Self {
        MapOwner { inner: Some(Retired { region, _reservation: reservation }) }
    }
}

impl AsRef<[u8]> for MapOwner {
    fn as_ref(&self) -> &[u8] {
        self.inner.as_ref().map_or(&[], |r| r.region.as_slice())
    }
}

impl Drop for MapOwner {
    fn drop(&mut self) {
        if let Some(retired) = self.inner.take() {
            if UNMAP_INLINE.get() {
                drop(retired);
                UNMAPS.inline.fetch_add(1, Ordering::Relaxed);
            } else {
                reaper_send(retired);
            }
        }
    }
}

thread_local! {
    static UNMAP_INLINE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with inline unmapping allowed on this thread. Only for code on
/// the blocking pool or another thread that may block.
pub fn with_inline_unmap<T>(f: impl FnOnce() -> T) -> T {
    let before = UNMAP_INLINE.replace(true);
    let out = f();
    UNMAP_INLINE.set(before);
    out
}

/// Counters of where unmaps happened (for tests and the stats log).
#[derive(Debug, Default)]
pub struct UnmapCounters {
    /// Unmapped by the reaper thread.
    pub reaper: AtomicU64,
    /// Unmapped inline on a blocking-pool thread.
    pub inline: AtomicU64,
}

/// Process-wide unmap counters.
pub static UNMAPS: UnmapCounters = UnmapCounters { reaper: AtomicU64::new(0), inline: AtomicU64::new(0) };

fn reaper_send(retired: Retired) {
    static REAPER: OnceLock<Sender<Retired>> = OnceLock::new();
    let sender = REAPER.get_or_init(|| {
        let (tx, rx) = channel::<Retired>();
        let spawned = std::thread::Builder::new().name("mapserve-reaper".into()).spawn(move || {
            for retired in rx {
                drop(retired);
                UNMAPS.reaper.fetch_add(1, Ordering::Relaxed);
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the unmap thread; unmapping inline");
        }
        tx
    });
    if let Err(failed) = sender.send(retired) {
        // The reaper is gone: unmapping here is slower but still correct.
        drop(failed.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_never_exceed_the_limit_and_come_back() {
        let b = Budget::new(100, 2);
        let r1 = b.try_reserve(60, true).unwrap();
        assert!(b.try_reserve(41, false).is_none());
        let r2 = b.try_reserve(40, false).unwrap();
        assert_eq!(b.used(), 100);
        assert_eq!(b.maps(), 1);
        drop(r1);
        assert_eq!(b.used(), 40);
        assert_eq!(b.maps(), 0);
        drop(r2);
        assert_eq!(b.used(), 0);
        assert!(b.try_reserve(u64::MAX, false).is_none());
        let m1 = b.try_reserve(1, true).unwrap();
        let m2 = b.try_reserve(1, true).unwrap();
        assert!(b.try_reserve(1, true).is_none(), "the mapping cap");
        assert!(b.try_reserve(1, false).is_some(), "copies need no mapping");
        drop((m1, m2));
        assert_eq!(b.maps(), 0);
    }

    #[test]
    fn mappings_dropped_on_a_runtime_worker_are_unmapped_by_the_reaper() {
        let dir = std::env::temp_dir().join(format!("mapserve-budget-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, vec![7u8; 8192]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let budget = Budget::new(1 << 20, 10);
        let make = || {
            let region = Region::map(&file, 0, 8192).unwrap();
            bytes::Bytes::from_owner(MapOwner::new(region, budget.try_reserve(8192, true).unwrap()))
        };
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        let before = UNMAPS.reaper.load(Ordering::Relaxed);
        let bytes = make();
        let slice = bytes.slice(100..200);
        drop(bytes);
        assert_eq!(budget.used(), 8192, "a slice keeps the mapping alive");
        rt.block_on(async move { tokio::spawn(async move { drop(slice) }).await.unwrap() });
        for _ in 0..200 {
            if budget.used() == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(budget.used(), 0);
        assert!(UNMAPS.reaper.load(Ordering::Relaxed) > before);

        let inline_before = UNMAPS.inline.load(Ordering::Relaxed);
        let bytes = make();
        with_inline_unmap(|| drop(bytes));
        assert_eq!(budget.used(), 0, "inline unmap returns the budget at once");
        assert!(UNMAPS.inline.load(Ordering::Relaxed) > inline_before);
    }
}
