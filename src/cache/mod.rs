//! The mapping cache: relative path -> [`Entry`], bounded in bytes and entries.
//!
//! * **Hit**: one table probe plus one `statx` of the path, compared with the
//!   entry's identity (device, inode, size, mtime, ctime). No `open`, no
//!   `read`. A mismatch or a failed stat drops the entry and reloads, so every
//!   request that starts after a change on disk is complete sees the new state.
//! * **Miss**: concurrent requests for the same key share one load
//!   (single-flight), run on the blocking pool.
//! * **Sweep**: a background thread re-stats every entry every
//!   [`SWEEP_INTERVAL`] and drops changed or deleted ones, so a deleted file's
//!   mapping does not pin its disk space once no response uses it.
//! * **Budget**: see [`budget`]. **Index and eviction**: see [`table`].

pub mod budget;
pub mod entry;
mod load;
pub mod table;
pub mod watch;

pub use entry::{Content, Entry};

use crate::fs::{FsError, Root};
use budget::Budget;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use table::{Pinned, Table};
use tokio::sync::OnceCell;

/// How often the background sweep re-stats cached entries.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

impl Pinned for Arc<Entry> {
    fn is_pinned(&self) -> bool {
        Arc::strong_count(self) > 1
    }
}

type Flight = Arc<OnceCell<Result<Arc<Entry>, FsError>>>;

/// Limits and policy for a [`FileCache`].
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Byte budget.
    pub max_bytes: u64,
    /// Entry cap.
    pub max_entries: usize,
    /// Copy files up to this size instead of mapping them.
    pub small_file_max: u64,
    /// Detect changes with inotify (strict, one `FIONREAD` per hit) rather
    /// than one `statx` per hit.
    pub inotify: bool,
}

struct Shared {
    root: Root,
    watcher: Option<watch::Watcher>,
    table: Table<Arc<Entry>>,
    budget: Arc<Budget>,
    flights: Mutex<HashMap<Box<[u8]>, Flight>>,
    small_file_max: u64,
    hits: AtomicU64,
    misses: AtomicU64,
    loads: AtomicU64,
}

/// A snapshot of the cache's counters, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Entries in the table.
    pub entries: usize,
    /// Bytes mapped or copied and still alive.
    pub bytes: u64,
    /// Mappings alive.
    pub maps: u64,
    /// Lookups answered from the table.
    pub hits: u64,
    /// Lookups not answered from the table.
    pub misses: u64,
    /// Loads run (several concurrent misses share one).
    pub loads: u64,
}

/// The cache. Cheap to clone.
#[derive(Clone)]
pub struct FileCache {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCache").field("stats", &self.stats()).finish()
    }
}

impl FileCache {
    /// A cache over `root`. Starts the sweep thread.
    pub fn new(root: Root, config: &CacheConfig) -> FileCache {
        let watcher = if config.inotify {
            match watch::Watcher::new(&root) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "inotify unavailable; revalidating with statx per request");
                    None
                }
            }
        } else {
            None
        };
        let shared = Arc::new(Shared {
            watcher,
            root,
            table: Table::new(config.max_entries),
            budget: Budget::new(config.max_bytes),
            flights: Mutex::new(HashMap::new()),
            small_file_max: config.small_file_max,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            loads: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&shared);
        let started =
            std::thread::Builder::new().name("mapserve-sweep".into()).spawn(move || sweep_loop(weak));
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the sweep thread; entries are still revalidated per request");
        }
        FileCache { shared }
    }

    /// The entry for `key` (a validated relative path) in its current state.
    pub async fn get(&self, key: &[u8]) -> Result<Arc<Entry>, FsError> {
        match self.lookup(key) {
            Some(entry) => Ok(entry),
            None => self.load(key).await,
        }
    }

    /// The cached entry for `key` if it is still the file's current state;
    /// `None` means [`FileCache::load`] must be awaited. Synchronous, so that
    /// a hit builds no future state at all.
    pub fn lookup(&self, key: &[u8]) -> Option<Arc<Entry>> {
        let shared = &self.shared;
        let entry = shared.table.get(key)?;
        if shared.is_fresh(key, &entry) {
            shared.hits.fetch_add(1, Ordering::Relaxed);
            Some(entry)
        } else {
            shared.table.remove_if(key, |v| Arc::ptr_eq(v, &entry));
            None
        }
    }

    /// Whether change detection uses inotify (false: statx per request).
    pub fn uses_inotify(&self) -> bool {
        self.shared.watcher.is_some()
    }

    /// Loads `key` (sharing the load with concurrent callers) and caches it.
    pub async fn load(&self, key: &[u8]) -> Result<Arc<Entry>, FsError> {
        self.shared.misses.fetch_add(1, Ordering::Relaxed);
        let flight: Flight = {
            let mut flights = self.shared.flights.lock().unwrap_or_else(|e| e.into_inner());
            flights.entry(key.into()).or_default().clone()
        };
        let result = flight
            .get_or_init(|| async {
                let shared = self.shared.clone();
                let owned: Box<[u8]> = key.into();
                shared.loads.fetch_add(1, Ordering::Relaxed);
                let task =
                    tokio::task::spawn_blocking(move || budget::with_inline_unmap(|| shared.load(&owned)));
                match task.await {
                    Ok(result) => result,
                    Err(_) => Err(FsError::Io(rustix::io::Errno::IO)),
                }
            })
            .await
            .clone();
        let mut flights = self.shared.flights.lock().unwrap_or_else(|e| e.into_inner());
        if flights.get(key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            flights.remove(key);
        }
        result
    }

    /// Counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.shared.table.len(),
            bytes: self.shared.budget.used(),
            maps: self.shared.budget.maps(),
            hits: self.shared.hits.load(Ordering::Relaxed),
            misses: self.shared.misses.load(Ordering::Relaxed),
            loads: self.shared.loads.load(Ordering::Relaxed),
        }
    }

    /// Drops every entry whose file changed or vanished. Runs on the sweep
    /// thread; public for tests.
    pub fn sweep(&self) {
        sweep_once(&self.shared);
    }
}

fn sweep_loop(shared: Weak<Shared>) {
    loop {
        std::thread::sleep(SWEEP_INTERVAL);
        let Some(shared) = shared.upgrade() else { return };
        sweep_once(&shared);
    }
}

impl Shared {
    /// Whether `entry` still is the current state of `key`.
    fn is_fresh(&self, key: &[u8], entry: &Entry) -> bool {
        match (&entry.token, &self.watcher) {
            (Some(token), Some(watcher)) => {
                watcher.sync();
                token.is_valid()
            }
            _ => matches!(self.root.stat(key), Ok(now) if now == entry.identity),
        }
    }
}

fn sweep_once(shared: &Shared) {
    budget::with_inline_unmap(|| {
        for (key, entry) in shared.table.snapshot() {
            if !shared.is_fresh(&key, &entry) {
                let removed = shared.table.remove_if(&key, |v| Arc::ptr_eq(v, &entry));
                drop(entry);
                drop(removed);
            }
        }
        if let Some(watcher) = &shared.watcher {
            watcher.prune();
        }
    });
}
