//! A sharded CLOCK table: the cache's index and eviction policy.
//!
//! Why not quick_cache or moka: mapserve's byte budget must bound every live
//! mapping, including those still held by in-flight responses, and must be
//! enforced *before* a new mapping is made. That needs two things the crates
//! do not offer together: evicting on demand ("free N bytes now", called by
//! the loader when a reservation fails) and an exact entry cap. Pinned
//! entries (in use by a response) are skipped, because evicting them frees
//! nothing. Lookups lock one of 16 shards for a hash probe and a reference
//! bit.
//!
//! Values are cheap clones (`Arc`s); evicted values are returned to the
//! caller and dropped after the shard lock is released.

use foldhash::fast::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;

/// What the table needs to know about a value.
pub trait Pinned {
    /// Whether something besides the table holds the value now.
    fn is_pinned(&self) -> bool;

    /// Whether it was used since the last call without a lookup in the
    /// table (which would have set its reference bit).
    fn take_recent_use(&self) -> bool {
        false
    }
}

struct Slot<V> {
    key: Box<[u8]>,
    value: V,
    referenced: bool,
}

struct Shard<V> {
    index: HashMap<Box<[u8]>, usize, RandomState>,
    slots: Vec<Option<Slot<V>>>,
    free: Vec<usize>,
    hand: usize,
}

impl<V> Shard<V> {
    fn new() -> Self {
        Shard { index: HashMap::default(), slots: Vec::new(), free: Vec::new(), hand: 0 }
    }

    fn take(&mut self, at: usize) -> Option<Slot<V>> {
        let slot = self.slots.get_mut(at)?.take()?;
        self.index.remove(&slot.key);
        self.free.push(at);
        Some(slot)
    }
}

/// The table. `K` is always a byte string key (a relative path).
pub struct Table<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    // foldhash, not SipHash: two hashes per lookup (the shard, then its
    // map) were 3% of a 1 KiB hit. Seeded per process and per map (the shard's
    // map has its own seed, so keys of one shard still spread in it).
    hasher: RandomState,
    len: AtomicUsize,
    max_entries: AtomicUsize,
    next_victim_shard: AtomicUsize,
    evictions: std::sync::atomic::AtomicU64,
}

impl<V> std::fmt::Debug for Table<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("len", &self.len.load(Ordering::Relaxed))
            .field("max_entries", &self.max_entries.load(Ordering::Relaxed))
            .finish()
    }
}

impl<V: Clone + Pinned> Table<V> {
    /// An empty table holding at most `max_entries` values.
    pub fn new(max_entries: usize) -> Self {
        Table {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect(),
            hasher: Default::default(),
            len: AtomicUsize::new(0),
            max_entries: AtomicUsize::new(max_entries.max(1)),
            next_victim_shard: AtomicUsize::new(0),
            evictions: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &[u8]) -> MutexGuard<'_, Shard<V>> {
        let h = self.hasher.hash_one(key) as usize;
        lock(&self.shards[h % SHARDS])
    }

    /// A new entry cap (a reload): returns what was evicted to meet it.
    pub fn set_max_entries(&self, max_entries: usize) -> Vec<V> {
        self.max_entries.store(max_entries.max(1), Ordering::Relaxed);
        let mut out = Vec::new();
        while self.len() > max_entries.max(1) {
            match self.evict_one() {
                Some(v) => out.push(v),
                None => break,
            }
        }
        out
    }

    /// The entry cap now.
    pub fn max_entries(&self) -> usize {
        self.max_entries.load(Ordering::Relaxed)
    }

    /// Values evicted to make room so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Looks a key up and marks it recently used.
    pub fn get(&self, key: &[u8]) -> Option<V> {
        let mut shard = self.shard(key);
        let at = *shard.index.get(key)?;
        let slot = shard.slots.get_mut(at)?.as_mut()?;
        slot.referenced = true;
        Some(slot.value.clone())
    }

    /// Inserts or replaces. Returns what was replaced or evicted to respect the
    /// entry cap (the caller drops those outside any lock), or gives `value`
    /// back when the table is full and every value in it is pinned: the cap is
    /// exact, so such a value is simply not cached.
    pub fn insert(&self, key: &[u8], value: V) -> Result<Vec<V>, V> {
        let mut out = Vec::new();
        if let Some(replaced) = self.replace(key, &value) {
            out.push(replaced);
            return Ok(out);
        }
        // Claim room for one more value first, evicting to make it.
        let max = self.max_entries.load(Ordering::Relaxed);
        while self
            .len
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < max).then_some(n + 1))
            .is_err()
        {
            match self.evict_one() {
                Some(v) => out.push(v),
                None => return Err(value),
            }
        }
        let mut shard = self.shard(key);
        if let Some(&at) = shard.index.get(key) {
            // Inserted by someone else meanwhile: replace it, give the room back.
            self.len.fetch_sub(1, Ordering::AcqRel);
            if let Some(Some(slot)) = shard.slots.get_mut(at) {
                out.push(std::mem::replace(&mut slot.value, value));
                slot.referenced = false;
            }
            return Ok(out);
        }
        let slot = Slot { key: key.into(), value, referenced: false };
        let at = match shard.free.pop() {
            Some(at) => {
                if let Some(place) = shard.slots.get_mut(at) {
                    *place = Some(slot);
                }
                at
            }
            None => {
                shard.slots.push(Some(slot));
                shard.slots.len() - 1
            }
        };
        shard.index.insert(key.into(), at);
        Ok(out)
    }

    /// Replaces the value of an existing key; `None` if the key is absent.
    fn replace(&self, key: &[u8], value: &V) -> Option<V> {
        let mut shard = self.shard(key);
        let at = *shard.index.get(key)?;
        let slot = shard.slots.get_mut(at)?.as_mut()?;
        slot.referenced = false;
        Some(std::mem::replace(&mut slot.value, value.clone()))
    }

    /// Removes `key` if `pred` holds for its value.
    pub fn remove_if(&self, key: &[u8], pred: impl FnOnce(&V) -> bool) -> Option<V> {
        let removed = {
            let mut shard = self.shard(key);
            let at = *shard.index.get(key)?;
            let matches = shard.slots.get(at).and_then(Option::as_ref).is_some_and(|s| pred(&s.value));
            if !matches {
                return None;
            }
            shard.take(at)?
        };
        self.len.fetch_sub(1, Ordering::AcqRel);
        Some(removed.value)
    }

    /// Evicts one unpinned value chosen by CLOCK, visiting shards in turn:
    /// each shard's hand sweeps its slots once, clearing reference bits, and
    /// the first unreferenced, unpinned value is the victim. If a whole round
    /// of shards finds none, a second round takes the first unpinned value.
    /// Returns `None` when every value is pinned.
    pub fn evict_one(&self) -> Option<V> {
        for _ in 0..2 * SHARDS {
            let which = self.next_victim_shard.fetch_add(1, Ordering::Relaxed) % SHARDS;
            let mut shard = lock(&self.shards[which]);
            let n = shard.slots.len();
            for _ in 0..n {
                let at = shard.hand % n.max(1);
                shard.hand = at + 1;
                let Some(Some(slot)) = shard.slots.get_mut(at) else { continue };
                if slot.value.is_pinned() {
                    continue;
                }
                if slot.referenced || slot.value.take_recent_use() {
                    slot.referenced = false;
                    continue;
                }
                if let Some(slot) = shard.take(at) {
                    drop(shard);
                    self.len.fetch_sub(1, Ordering::AcqRel);
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                    return Some(slot.value);
                }
            }
        }
        None
    }

    /// A copy of every key and value, for the background revalidation sweep.
    pub fn snapshot(&self) -> Vec<(Box<[u8]>, V)> {
        let mut all = Vec::with_capacity(self.len());
        for shard in self.shards.iter() {
            let shard = lock(shard);
            all.extend(shard.slots.iter().flatten().map(|s| (s.key.clone(), s.value.clone())));
        }
        all
    }
}

/// Locks a shard. A poisoned lock (a panic elsewhere while holding it) still
/// guards a consistent shard, since no method panics between its updates.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Debug)]
    struct V(Arc<u32>);
    impl Pinned for V {
        fn is_pinned(&self) -> bool {
            Arc::strong_count(&self.0) > 1
        }
    }

    #[test]
    fn insert_get_replace_remove() {
        let t = Table::new(10);
        assert!(t.insert(b"a", V(Arc::new(1))).unwrap().is_empty());
        assert_eq!(*t.get(b"a").unwrap().0, 1);
        let replaced = t.insert(b"a", V(Arc::new(2))).unwrap();
        assert_eq!(*replaced[0].0, 1);
        assert_eq!(t.len(), 1);
        assert!(t.remove_if(b"a", |v| *v.0 == 3).is_none());
        assert_eq!(*t.remove_if(b"a", |v| *v.0 == 2).unwrap().0, 2);
        assert!(t.is_empty());
        assert!(t.get(b"a").is_none());
    }

    #[test]
    fn entry_cap_is_exact_and_evicts_unreferenced_first() {
        let t = Table::new(4);
        for i in 0..4u32 {
            t.insert(format!("k{i}").as_bytes(), V(Arc::new(i))).unwrap();
        }
        for _ in 0..3 {
            // keep k0 hot
            t.get(b"k0");
        }
        for i in 4..40u32 {
            let out = t.insert(format!("k{i}").as_bytes(), V(Arc::new(i))).unwrap();
            assert!(t.len() <= 4);
            assert!(!out.is_empty());
            t.get(b"k0");
        }
        assert!(t.get(b"k0").is_some(), "a hot key survives a scan");
    }

    #[test]
    fn pinned_values_are_never_evicted() {
        let t = Table::new(2);
        let held = V(Arc::new(7));
        t.insert(b"pinned", held.clone()).unwrap();
        t.insert(b"x", V(Arc::new(1))).unwrap();
        for i in 0..10u32 {
            t.insert(format!("y{i}").as_bytes(), V(Arc::new(i))).unwrap();
        }
        assert!(t.get(b"pinned").is_some());
        // Only pinned values left: eviction finds nothing, and a full table
        // refuses a new key rather than exceed its cap.
        let t2 = Table::new(1);
        let a = V(Arc::new(1));
        assert!(t2.insert(b"a", a.clone()).is_ok());
        assert!(t2.evict_one().is_none());
        assert!(t2.insert(b"b", V(Arc::new(2))).is_err());
        assert_eq!(t2.len(), 1);
        assert!(t2.insert(b"a", V(Arc::new(3))).is_ok(), "replacing needs no room");
        drop(a);
        assert!(t2.evict_one().is_some());
    }

    #[test]
    fn concurrent_use_keeps_the_count_exact() {
        let t = Arc::new(Table::new(50));
        let threads: Vec<_> = (0..4)
            .map(|n| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for i in 0..2000u32 {
                        let key = format!("{}", (i * 7 + n) % 200);
                        if t.get(key.as_bytes()).is_none() {
                            let _ = t.insert(key.as_bytes(), V(Arc::new(i)));
                        }
                        if i % 13 == 0 {
                            t.remove_if(key.as_bytes(), |_| true);
                        }
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        assert!(t.len() <= 50);
        assert_eq!(t.snapshot().len(), t.len());
        // Under contention the cap is exact at every moment, not just at the end.
        let t = Arc::new(Table::new(8));
        let held: Vec<V> = (0..8).map(|i| V(Arc::new(i))).collect();
        std::thread::scope(|s| {
            for n in 0..4u32 {
                let (t, held) = (t.clone(), held.clone());
                s.spawn(move || {
                    for i in 0..500u32 {
                        let v = held[((i + n) % 8) as usize].clone();
                        let _ = t.insert(format!("{n}-{i}").as_bytes(), v);
                        assert!(t.len() <= 8);
                    }
                });
            }
        });
    }
}
