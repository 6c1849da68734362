//! The mapping cache: relative path -> [`Entry`], and (entry, index) ->
//! [`Window`], bounded in bytes and entries.
//!
//! * **Hit**: one table probe plus a freshness check (one `FIONREAD` with
//!   inotify, or one `statx`; with `inotify-async` only an atomic load, see
//!   [`watch`]). No `open`, no `read`. A stale entry is dropped and reloaded,
//!   so every request that starts after a change on disk is complete sees
//!   the new state (with `inotify-async`: once the inotify thread has
//!   applied the change, a short while later).
//! * **Miss**: concurrent requests for the same key share one load
//!   (single-flight), run on the blocking pool; likewise for windows.
//! * **Sweep**: a background thread re-checks every entry every
//!   [`SWEEP_INTERVAL`], drops changed or deleted ones (so a deleted file's
//!   mapping does not pin its disk space once no response uses it), and
//!   counts mapped and resident bytes.
//! * **Budget**: see [`budget`]. **Index and eviction**: see [`table`].
//! * **Listings**: a rendered listing is an entry too, under its own key
//!   (see `listing`), in the same budget and with the same change detection.
//! * **Encodings**: precompressed sidecars and compressed variants (see
//!   `variant`), entries in the same budget too.

pub mod admin;
pub mod budget;
mod check;
pub mod entry;
pub mod files;
mod flight;
mod hold;
mod listing;
mod load;
mod mapping;
mod root;
mod sweep;
pub mod table;
mod validator;
mod variant;
pub mod watch;
mod window;

pub use entry::{Content, Entry, Face, Window};
pub use hold::{Held, HoldError, Reads};
pub use listing::{LISTING_READS, LISTING_TTL, ListingRules};
pub use variant::Ready;

use crate::fs::{FsError, Root};
use budget::Budget;
use flight::Flights;
use root::Roots;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use table::{Pinned, Table};

/// How often the background sweep re-checks cached entries.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

/// What the table holds.
#[derive(Debug, Clone)]
pub enum Cached {
    /// A file or directory, by path.
    File(Arc<Entry>),
    /// A window of a large file.
    Window(Arc<Window>),
}

impl Pinned for Cached {
    /// In use by a response, or by slices of its mapping that still wait to
    /// be written (each slice holds its window): evicting it would free
    /// nothing.
    fn is_pinned(&self) -> bool {
        match self {
            Cached::File(e) => {
                Arc::strong_count(e) > 1
                    || e.pinned.load(Ordering::Relaxed)
                    || matches!(&e.content, Content::Mapped(w) if w.in_use())
            }
            Cached::Window(w) => {
                w.in_use() || w.owner.as_ref().is_some_and(|o| o.pinned.load(Ordering::Relaxed))
            }
        }
    }

    /// A compressed variant served from its source's slot skips the table.
    fn take_recent_use(&self) -> bool {
        matches!(self, Cached::File(e) if e.usage.take_unlisted())
    }
}

/// Limits and policy for a [`FileCache`].
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Byte budget.
    pub max_bytes: u64,
    /// Entry cap.
    pub max_entries: usize,
    /// Copy files up to this size instead of mapping them.
    pub small_file_max: u64,
    /// Files larger than this are mapped in windows of this size.
    pub window_size: u64,
    /// How hits learn of changes: inotify (strict, one `FIONREAD` per hit),
    /// inotify applied by a background thread (no system call per hit, a
    /// short window of staleness), or one `statx` per hit.
    pub revalidate: crate::config::Revalidate,
    /// Fault cold pages in on the blocking pool before sending them.
    pub prefault: bool,
    /// Copy each chunk and re-check the file before it leaves the process.
    pub verified_sends: bool,
    /// Most files that responses in flight may hold open.
    pub max_open_files: u64,
    /// What an `ETag` is made of.
    pub etag: crate::config::EtagMode,
    /// `EtagMode::Content` hashes files up to this size.
    pub etag_hash_max: u64,
    /// Share of the budget pins may hold, in percent.
    pub pin_max_percent: u8,
}

struct Shared {
    roots: Roots,
    /// `--etag`, and the hashes made in the background.
    validators: validator::Validators,
    /// Shared with the inotify thread of `inotify-async` (which holds it
    /// weakly between polls).
    watcher: Option<Arc<watch::Watcher>>,
    table: Table<Cached>,
    budget: Arc<Budget>,
    open_files: Arc<files::FilePool>,
    files: Flights<Result<Arc<Entry>, FsError>>,
    /// Directory reads for listings running at once (see `listing`).
    listing_reads: tokio::sync::Semaphore,
    windows: Flights<Result<Option<Arc<Window>>, FsError>>,
    /// Compressions under way, by variant key.
    compressions: Flights<Option<Arc<Entry>>>,
    /// Compressions running at once: in the background, and waited for.
    compress_jobs: (Arc<tokio::sync::Semaphore>, Arc<tokio::sync::Semaphore>),
    compressions_run: AtomicU64,
    small_file_max: u64,
    window_size: u64,
    prefault: bool,
    verified_sends: bool,
    euid: u32,
    hits: AtomicU64,
    misses: AtomicU64,
    loads: AtomicU64,
    resident: AtomicU64,
    windows_mapped: AtomicU64,
    pread_spans: AtomicU64,
    /// Paths pinned by the admin API, with their bytes.
    pins: std::sync::Mutex<std::collections::HashMap<Box<[u8]>, u64>>,
    /// `--cache-pin-max`, in percent of the budget.
    pin_max_percent: std::sync::atomic::AtomicU8,
}

/// A snapshot of the cache's counters, for logs, tests and a later metrics
/// endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Entries and windows in the table.
    pub entries: usize,
    /// Bytes mapped or copied and still alive (in-flight responses included).
    pub bytes: u64,
    /// Mappings alive.
    pub maps: u64,
    /// Bytes of cached mappings found resident at the last sweep.
    pub resident: u64,
    /// Lookups answered from the table.
    pub hits: u64,
    /// Lookups not answered from the table.
    pub misses: u64,
    /// Loads run (several concurrent misses share one).
    pub loads: u64,
    /// Windows mapped since start.
    pub windows_mapped: u64,
    /// Window spans streamed with `pread` because the budget was all in use.
    pub pread_spans: u64,
    /// Loads (of files and windows) under way now.
    pub flights: usize,
    /// Files held open by responses in flight.
    pub open_files: u64,
    /// Compressions run (each once per file version and coding).
    pub compressions: u64,
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
    /// A cache over the directory `root` (a path, followed again when it is
    /// swapped: see the `root` module). Starts the sweep thread.
    ///
    /// # Errors
    /// When `root` cannot be opened as a directory.
    pub fn new(
        root: &std::path::Path,
        follow_outside: bool,
        config: &CacheConfig,
    ) -> std::io::Result<FileCache> {
        let roots = Roots::new(Root::new(root, follow_outside)?, root, follow_outside);
        let watcher = watch::start(config.revalidate, |w| roots.watch(w));
        let shared = Arc::new(Shared {
            watcher,
            roots,
            validators: validator::Validators::new(config.etag, config.etag_hash_max),
            table: Table::new(config.max_entries),
            budget: Budget::new(config.max_bytes, config.max_entries as u64),
            open_files: files::FilePool::new(config.max_open_files),
            files: Flights::default(),
            listing_reads: tokio::sync::Semaphore::new(listing::LISTING_READS),
            windows: Flights::default(),
            compressions: Flights::default(),
            compress_jobs: {
                let (background, waited) = variant::compress_jobs();
                (
                    Arc::new(tokio::sync::Semaphore::new(background)),
                    Arc::new(tokio::sync::Semaphore::new(waited)),
                )
            },
            compressions_run: AtomicU64::new(0),
            small_file_max: config.small_file_max,
            window_size: config.window_size.max(crate::limits::page_size()),
            prefault: config.prefault,
            verified_sends: config.verified_sends,
            euid: rustix::process::geteuid().as_raw(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            resident: AtomicU64::new(0),
            windows_mapped: AtomicU64::new(0),
            pread_spans: AtomicU64::new(0),
            pins: Default::default(),
            pin_max_percent: std::sync::atomic::AtomicU8::new(config.pin_max_percent),
        });
        let weak = Arc::downgrade(&shared);
        let started =
            std::thread::Builder::new().name("mapserve-sweep".into()).spawn(move || sweep::sweep_loop(weak));
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the sweep thread; entries are still revalidated per request");
        }
        Ok(FileCache { shared })
    }

    /// Whether files are opened with `openat2(RESOLVE_BENEATH)`.
    pub fn uses_openat2(&self) -> bool {
        self.shared.roots.current().0.uses_openat2()
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
        let Some(Cached::File(entry)) = shared.table.get(key) else { return None };
        if shared.is_fresh(&entry) {
            shared.hits.fetch_add(1, Ordering::Relaxed);
            entry.usage.touch();
            Some(entry)
        } else {
            shared.forget(key, &entry);
            None
        }
    }

    /// Loads `key` (sharing the load with concurrent callers) and caches it.
    pub async fn load(&self, key: &[u8]) -> Result<Arc<Entry>, FsError> {
        self.shared.misses.fetch_add(1, Ordering::Relaxed);
        self.current_load(key, || async {
            let shared = self.shared.clone();
            let owned: Box<[u8]> = key.into();
            shared.loads.fetch_add(1, Ordering::Relaxed);
            let task = tokio::task::spawn_blocking(move || {
                let loaded = budget::with_inline_unmap(|| shared.load(&owned));
                if let Ok(entry) = &loaded {
                    if entry.hash_later {
                        let (shared, id) = (shared.clone(), entry.identity);
                        tokio::task::spawn_blocking(move || shared.hash_in_background(&owned, id));
                    }
                }
                loaded
            });
            task.await.unwrap_or(Err(FsError::Io(rustix::io::Errno::IO)))
        })
        .await
    }

    /// Single-flight `load` of `key` whose result reflects every change made
    /// before this call: a joined load may have begun earlier, so its result
    /// is used only if it is still current; otherwise (or for a failure,
    /// which cannot be revalidated) the load is run again. That second load
    /// began after the first ended, so after this call began: it is final.
    async fn current_load<F, Fut>(&self, key: &[u8], load: F) -> Result<Arc<Entry>, FsError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Arc<Entry>, FsError>>,
    {
        let (result, led) = self.shared.files.run(key, &load).await;
        match &result {
            _ if led => result,
            Ok(entry) if self.shared.is_fresh(entry) => result,
            _ => self.shared.files.run(key, &load).await.0,
        }
    }

    /// Window `index` of a windowed entry, if it is cached (no I/O).
    pub fn cached_window(&self, entry: &Entry, index: u64) -> Option<Arc<Window>> {
        match self.shared.table.get(&window::key(entry.id, index)) {
            Some(Cached::Window(w)) => Some(w),
            _ => None,
        }
    }

    /// Window `index` of a windowed entry, mapped on the blocking pool from
    /// `fd` when not cached (single-flight). `Ok(None)`: stream that span with
    /// `pread`.
    pub async fn window(
        &self,
        entry: Arc<Entry>,
        fd: Arc<files::HeldFd>,
        index: u64,
    ) -> Result<Option<Arc<Window>>, FsError> {
        if let Some(w) = self.cached_window(&entry, index) {
            return Ok(Some(w));
        }
        self.shared
            .windows
            .run(&window::key(entry.id, index), || async {
                let shared = self.shared.clone();
                let task = tokio::task::spawn_blocking(move || {
                    budget::with_inline_unmap(|| shared.map_window(&entry, &fd, index))
                });
                task.await.unwrap_or(Err(FsError::Io(rustix::io::Errno::IO)))
            })
            .await
            // A window is of one version of the file: any load of it will do.
            .0
    }

    /// Whether bodies fault cold pages in before sending them.
    pub fn prefaults(&self) -> bool {
        self.shared.prefault
    }

    /// The cached window holding all of `[first, first + len)`, if any.
    pub fn cached_span(&self, entry: &Entry, first: u64, len: u64) -> Option<Arc<Window>> {
        let window = self.cached_window(entry, first / self.shared.window_size)?;
        (window.covers(first) && first.saturating_add(len) <= window.end()).then_some(window)
    }

    /// Window size in bytes.
    pub fn window_size(&self) -> u64 {
        self.shared.window_size
    }

    /// New byte and entry limits (a reload). Entries beyond them are evicted
    /// now, least recently used first, on the blocking pool; those pinned by
    /// responses in flight go when their responses end.
    pub async fn set_limits(&self, max_bytes: u64, max_entries: usize) {
        let shared = self.shared.clone();
        let task = tokio::task::spawn_blocking(move || {
            shared.budget.set_limits(max_bytes, max_entries as u64);
            let evicted = shared.table.set_max_entries(max_entries);
            shared.dispose(evicted);
            while shared.budget.used() > max_bytes {
                match shared.table.evict_one() {
                    Some(v) => shared.dispose(vec![v]),
                    None => break,
                }
            }
        });
        let _ = task.await;
    }

    /// Drops every entry (a reload that changes what responses are built
    /// from: their prebuilt headers and rendered listings). Responses in
    /// flight keep theirs; the next request loads afresh. On the blocking
    /// pool, where unmapping is inline.
    pub async fn forget_all(&self) {
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || shared.forget_all()).await;
    }

    /// The byte limit now.
    pub fn max_bytes(&self) -> u64 {
        self.shared.budget.limit()
    }

    /// The change detection in effect: `Stat` when inotify was asked for but
    /// is unavailable, `Inotify` when the thread of `InotifyAsync` could not
    /// start or has stopped.
    pub fn revalidation(&self) -> crate::config::Revalidate {
        watch::in_effect(self.shared.watcher.as_deref())
    }

    /// Counters.
    pub fn stats(&self) -> CacheStats {
        let s = &self.shared;
        CacheStats {
            entries: s.table.len(),
            bytes: s.budget.used(),
            maps: s.budget.maps(),
            resident: s.resident.load(Ordering::Relaxed),
            hits: s.hits.load(Ordering::Relaxed),
            misses: s.misses.load(Ordering::Relaxed),
            loads: s.loads.load(Ordering::Relaxed),
            windows_mapped: s.windows_mapped.load(Ordering::Relaxed),
            pread_spans: s.pread_spans.load(Ordering::Relaxed),
            flights: s.files.len() + s.windows.len() + s.compressions.len(),
            open_files: s.open_files.held(),
            compressions: s.compressions_run.load(Ordering::Relaxed),
        }
    }

    /// Drops every entry whose file changed or vanished and refreshes the
    /// resident-bytes count. Runs on the sweep thread; public for tests.
    pub fn sweep(&self) {
        sweep::sweep_once(&self.shared);
    }
}

impl Shared {
    fn pins_lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Box<[u8]>, u64>> {
        self.pins.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `entry` still is the current state of what it was loaded from.
    fn is_fresh(&self, entry: &Entry) -> bool {
        if let Content::Mapped(w) = &entry.content {
            if w.probe.is_poisoned() {
                return false;
            }
        }
        if let Some(watcher) = self.watcher.as_deref() {
            watcher.sync_hit();
            if !self.roots.unchanged() && self.roots.refresh(Some(watcher)) {
                self.forget_all();
            }
        }
        if entry.root_generation != self.roots.generation() {
            return false;
        }
        if entry.expires.is_some_and(|at| std::time::Instant::now() >= at) {
            return false;
        }
        // The entry's own path: a listing's table key is not a path.
        let path = &entry.key;
        match (&entry.token, &self.watcher) {
            (Some(token), Some(_)) => token.is_valid(),
            (None, Some(_)) => matches!(self.roots.current().0.stat(path), Ok(now) if now == entry.identity),
            // Through the ROOT path itself, so that a swapped ROOT shows.
            (_, None) => matches!(self.roots.stat_through_path(path), Ok(now) if now == entry.identity),
        }
    }

    /// Drops every entry and window: ROOT now leads to another tree.
    fn forget_all(&self) {
        for (key, value) in self.table.snapshot() {
            match value {
                Cached::File(entry) => self.forget(&key, &entry),
                Cached::Window(w) => {
                    drop(
                        self.table.remove_if(&key, |v| matches!(v, Cached::Window(x) if Arc::ptr_eq(x, &w))),
                    );
                }
            }
        }
    }

    /// Hashes version `id` of `key` for its content `ETag`, then drops the
    /// cached entry of that version (which carries the metadata form) so
    /// that the next request loads it with the hash.
    fn hash_in_background(&self, key: &[u8], id: crate::fs::Identity) {
        if !self.validators.claim(&id) {
            return;
        }
        let (root, _) = self.roots.current();
        let opened = match root.open(key) {
            Ok(opened) if opened.identity == id => opened,
            _ => {
                self.validators.release(&id);
                return;
            }
        };
        if self.validators.hash_claimed(&opened.fd, &id) {
            if let Some(Cached::File(entry)) = self.table.get(key) {
                if entry.identity == id {
                    self.forget(key, &entry);
                }
            }
            tracing::debug!(path = %String::from_utf8_lossy(key), size = id.size, "content ETag ready");
        }
    }

    /// Removes a stale entry and its windows.
    /// On a runtime worker, the mappings are unmapped by the reaper thread.
    fn forget(&self, key: &[u8], entry: &Arc<Entry>) {
        drop(self.table.remove_if(key, |v| matches!(v, Cached::File(e) if Arc::ptr_eq(e, entry))));
        self.retire(entry);
    }
}
