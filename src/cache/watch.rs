//! Change detection with inotify: strict and cheap (`--revalidate inotify`,
//! the default), or cheaper and slightly late (`--revalidate inotify-async`).
//!
//! Every cached entry holds a [`Token`] that stays valid until something
//! changes that could alter what the entry serves. Watches are placed on every
//! directory along the entry's path (for renames, deletions and creations of
//! any component, and for writes to the file through that name) and on the
//! opened file's inode itself (for writes through any other hard link).
//!
//! Strictness: the kernel queues an inotify event before the system call
//! that caused it returns. So before trusting a token, a lookup asks how many
//! event bytes are queued (`FIONREAD`, about 0.3 µs, against about 1.2 µs for
//! the `statx` it replaces) and applies any pending events first. A change
//! that completed before a request started is therefore always seen by that
//! request, exactly as with a `statx` per request.
//!
//! Ordering: the registry lock is held while watches are added and their
//! tokens registered, and while events are read and applied; `busy` is raised
//! before events are read and lowered after they are applied, so a lookup that
//! sees an empty queue while another thread holds read-but-unapplied events
//! waits for that thread instead of trusting a token too early.
//!
//! `inotify-async` (see `applier`): a thread blocks in `poll` on the
//! inotify descriptor and applies events as they arrive, under the same lock
//! and `busy` protocol; a hit then only loads its token (no system call).
//! Weaker: between the moment the kernel queues an event and the moment that
//! thread has applied it, a hit still trusts the old token. That window is
//! the wake-up of a blocked thread plus the drain: measured by
//! `examples/staleness.rs` (README, "How changes on disk are picked up").
//! Everything else is the same in both modes, and [`Watcher::sync`] stays
//! strict in both: the checks a body makes before each chunk of a mapped
//! file (`check`), loads, and the sweep call it.
//!
//! Where inotify cannot see every change (network and FUSE file systems,
//! watch limit reached, inotify unavailable) entries fall back to one `statx`
//! per request.

use crate::config::Revalidate;
use rustix::fd::{AsFd, AsRawFd, OwnedFd};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

mod applier;

/// Valid until an event touches the entry it belongs to.
#[derive(Debug)]
pub struct Token {
    valid: AtomicBool,
}

impl Token {
    /// A valid token.
    pub fn new() -> Arc<Token> {
        Arc::new(Token { valid: AtomicBool::new(true) })
    }

    /// Whether nothing has changed since the entry was loaded.
    pub fn is_valid(&self) -> bool {
        self.valid.load(Ordering::Acquire)
    }

    /// Marks the entry stale.
    pub fn invalidate(&self) {
        self.valid.store(false, Ordering::Release);
    }
}

/// Events that can change what a directory's children serve.
const DIR_MASK: WatchFlags = WatchFlags::ATTRIB
    .union(WatchFlags::MODIFY)
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::CREATE)
    .union(WatchFlags::DELETE)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::MOVE_SELF);

/// Events that change a file's content or metadata, whatever name it is
/// reached by.
const FILE_MASK: WatchFlags = WatchFlags::ATTRIB
    .union(WatchFlags::MODIFY)
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::MOVE_SELF);

#[derive(Debug, Default)]
struct Node {
    /// Tokens to invalidate on an event naming this child.
    children: HashMap<Box<[u8]>, Vec<Weak<Token>>>,
    /// Tokens to invalidate on any event on this watch.
    any: Vec<Weak<Token>>,
}

impl Node {
    fn invalidate_all(&mut self) {
        for t in self.any.drain(..).chain(self.children.drain().flat_map(|(_, v)| v)) {
            if let Some(t) = t.upgrade() {
                t.invalidate();
            }
        }
    }

    fn prune(&mut self) -> bool {
        self.any.retain(|w| w.strong_count() > 0);
        self.children.retain(|_, v| {
            v.retain(|w| w.strong_count() > 0);
            !v.is_empty()
        });
        self.any.is_empty() && self.children.is_empty()
    }
}

/// The inotify instance and the registry of tokens per watch.
#[derive(Debug)]
pub struct Watcher {
    fd: OwnedFd,
    nodes: Mutex<HashMap<i32, Node>>,
    busy: AtomicUsize,
    /// A thread applies events as they arrive (`inotify-async`): hits need
    /// not sync. Set once that thread runs; cleared if it stops.
    background: AtomicBool,
    /// `FIONREAD`s made (tests check that async hits make none).
    #[cfg(test)]
    fionreads: AtomicUsize,
}

impl Watcher {
    /// An inotify instance with nothing watched yet.
    pub fn new() -> Result<Watcher, Errno> {
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
        Ok(Watcher {
            fd,
            nodes: Mutex::new(HashMap::new()),
            busy: AtomicUsize::new(0),
            background: AtomicBool::new(false),
            #[cfg(test)]
            fionreads: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<i32, Node>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies every event queued so far. Cheap when there is none: one
    /// `FIONREAD`. Strict in both modes: every change whose system call
    /// returned before this call is applied when it returns.
    pub fn sync(&self) {
        #[cfg(test)]
        self.fionreads.fetch_add(1, Ordering::Relaxed);
        let queued = rustix::io::ioctl_fionread(&self.fd).unwrap_or(1);
        if queued == 0 && self.busy.load(Ordering::SeqCst) == 0 {
            return;
        }
        self.apply_queued();
    }

    /// What a cache hit does before it trusts a token: [`Watcher::sync`],
    /// or nothing at all while a background thread applies events as they
    /// arrive (`inotify-async`; the token may then lag a change by that
    /// thread's wake-up).
    pub fn sync_hit(&self) {
        if !self.background.load(Ordering::Relaxed) {
            self.sync();
        }
    }

    /// Whether events are applied by a background thread (`inotify-async`).
    pub fn applies_in_background(&self) -> bool {
        self.background.load(Ordering::Relaxed)
    }

    /// Reads and applies what is queued, with `busy` raised, so that a
    /// strict [`Watcher::sync`] that finds the queue empty meanwhile waits
    /// for these events to be applied instead of trusting a token too early.
    fn apply_queued(&self) {
        let mut nodes = self.lock();
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.drain(&mut nodes);
        self.busy.fetch_sub(1, Ordering::SeqCst);
    }

    fn drain(&self, nodes: &mut HashMap<i32, Node>) {
        let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
        let mut reader = inotify::Reader::new(&self.fd, &mut buf);
        loop {
            let event = match reader.next() {
                Ok(event) => event,
                Err(Errno::INTR) => continue,
                Err(_) => return,
            };
            let flags = event.events();
            if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                OVERFLOWS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!("inotify queue overflowed; every cached entry will be revalidated");
                for node in nodes.values_mut() {
                    node.invalidate_all();
                }
                continue;
            }
            let wd = event.wd();
            let Some(node) = nodes.get_mut(&wd) else { continue };
            match event.file_name() {
                Some(name) if !flags.contains(ReadFlags::IGNORED) => {
                    if let Some(tokens) = node.children.remove(name.to_bytes()) {
                        tokens.iter().filter_map(Weak::upgrade).for_each(|t| t.invalidate());
                    }
                    node.any.iter().filter_map(Weak::upgrade).for_each(|t| t.invalidate());
                }
                _ => {
                    node.invalidate_all();
                    if flags.contains(ReadFlags::IGNORED) {
                        nodes.remove(&wd);
                    }
                }
            }
        }
    }

    /// Watches every directory on the way to `key` (a path relative to the
    /// directory `root`) and returns a token that any change along that path
    /// invalidates. Called before the file is opened, so that no change can
    /// fall between what was opened and what is watched. `None` when a watch
    /// cannot be added (limit reached): the entry must then be revalidated
    /// with `statx`.
    pub fn watch_path(&self, root: &impl AsFd, key: &[u8]) -> Option<Arc<Token>> {
        let token = Token::new();
        let dir = format!("/proc/self/fd/{}", root.as_fd().as_raw_fd()).into_bytes();
        self.watch_components(dir, key, &token).then_some(token)
    }

    /// Like [`Watcher::watch_path`] for several paths under one token, which
    /// any change along any of them invalidates (a file's sidecars: the
    /// token says none of them appeared, vanished or changed).
    pub fn watch_paths(&self, root: &impl AsFd, keys: &[&[u8]]) -> Option<Arc<Token>> {
        let token = Token::new();
        let dir = format!("/proc/self/fd/{}", root.as_fd().as_raw_fd()).into_bytes();
        keys.iter().all(|key| self.watch_components(dir.clone(), key, &token)).then_some(token)
    }

    /// Watches every directory on the way to the absolute path `path` for
    /// changes to the names along it (not inside its last component), with
    /// `token`, which is made valid again first. False when a watch cannot be
    /// added.
    pub fn watch_absolute(&self, path: &[u8], token: &Arc<Token>) -> bool {
        token.valid.store(true, Ordering::Release);
        self.watch_components(b"/".to_vec(), path, token)
    }

    fn watch_components(&self, mut dir: Vec<u8>, key: &[u8], token: &Arc<Token>) -> bool {
        let mut nodes = self.lock();
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.drain(&mut nodes);
        let mut ok = true;
        for component in key.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            match inotify::add_watch(&self.fd, dir.as_slice(), DIR_MASK | WatchFlags::MASK_ADD) {
                Ok(wd) => {
                    let node = nodes.entry(wd).or_default();
                    node.children.entry(component.into()).or_default().push(Arc::downgrade(token));
                }
                Err(_) => {
                    ok = false;
                    break;
                }
            }
            if dir.last() != Some(&b'/') {
                dir.push(b'/');
            }
            dir.extend_from_slice(component);
        }
        self.busy.fetch_sub(1, Ordering::SeqCst);
        ok
    }

    /// Adds a watch on the opened file's own inode (changes through any other
    /// hard link). Returns false when that is impossible.
    pub fn watch_file(&self, token: &Arc<Token>, file: &OwnedFd) -> bool {
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        let mut nodes = self.lock();
        match inotify::add_watch(&self.fd, path.as_str(), FILE_MASK | WatchFlags::MASK_ADD) {
            Ok(wd) => {
                nodes.entry(wd).or_default().any.push(Arc::downgrade(token));
                true
            }
            Err(_) => false,
        }
    }

    /// Adds a watch on the opened directory `dir` itself, so that `token`
    /// (a rendered listing's) is invalidated by any entry created, deleted,
    /// renamed, written or changed in it. False when that is impossible.
    pub fn watch_dir(&self, token: &Arc<Token>, dir: &OwnedFd) -> bool {
        let path = format!("/proc/self/fd/{}", dir.as_raw_fd());
        let mut nodes = self.lock();
        match inotify::add_watch(&self.fd, path.as_str(), DIR_MASK | WatchFlags::MASK_ADD) {
            Ok(wd) => {
                nodes.entry(wd).or_default().any.push(Arc::downgrade(token));
                true
            }
            Err(_) => false,
        }
    }

    /// Forgets tokens of entries that are gone and removes watches nobody
    /// needs any more. Returns the number of watches left.
    pub fn prune(&self) -> usize {
        let mut nodes = self.lock();
        let empty: Vec<i32> = nodes.iter_mut().filter_map(|(wd, n)| n.prune().then_some(*wd)).collect();
        for wd in empty {
            nodes.remove(&wd);
            let _ = inotify::remove_watch(&self.fd, wd);
        }
        nodes.len()
    }
}

/// The watcher of a cache as `revalidate` asks, once `watch_root` has
/// watched the ROOT path with it: `None` for `stat`, and (with a warning)
/// when inotify is unavailable or cannot watch ROOT, so that hits fall back
/// to `statx`. With `inotify-async`, its applier thread is started.
pub fn start(revalidate: Revalidate, watch_root: impl FnOnce(&Watcher) -> bool) -> Option<Arc<Watcher>> {
    if !revalidate.uses_inotify() {
        return None;
    }
    let watcher = match Watcher::new() {
        Ok(w) if watch_root(&w) => Arc::new(w),
        Ok(_) => {
            tracing::warn!("cannot watch the ROOT path; revalidating with statx per request");
            return None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "inotify unavailable; revalidating with statx per request");
            return None;
        }
    };
    if revalidate == Revalidate::InotifyAsync {
        // Detached: the thread ends once the watcher is gone.
        drop(watcher.apply_in_background());
    }
    Some(watcher)
}

/// The change detection in effect with `watcher`: `Stat` without one,
/// `Inotify` when the thread of `inotify-async` could not start or stopped.
pub fn in_effect(watcher: Option<&Watcher>) -> Revalidate {
    match watcher {
        None => Revalidate::Stat,
        Some(w) if w.applies_in_background() => Revalidate::InotifyAsync,
        Some(_) => Revalidate::Inotify,
    }
}

/// inotify queue overflows seen since start (each one revalidates every
/// cached entry).
static OVERFLOWS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// inotify queue overflows since start.
pub fn overflows() -> u64 {
    OVERFLOWS.load(Ordering::Relaxed)
}

/// Whether inotify sees every change on the file system holding `fd`: not on
/// network or FUSE file systems, where other machines or user-space daemons
/// change files behind the kernel's back.
pub fn is_watchable(fd: &OwnedFd) -> bool {
    const REMOTE: &[i64] = &[
        0x6969,      // NFS
        0x517B,      // SMB
        0xFF53_4D42, // CIFS
        0xFE53_4D42, // SMB2
        0x6573_5546, // FUSE
        0x0102_1997, // 9P
        0x00C3_6400, // Ceph
        0x5346_414F, // AFS
        0x6B41_4653, // kAFS
        0x0BD0_0BD0, // Lustre
        0x1373,      // devfs (never sensible)
        0x4750_4653, // GPFS
        0x6165_676C, // PSTORE (not a content fs)
    ];
    match rustix::fs::fstatfs(fd) {
        // f_type's integer type differs between architectures.
        #[allow(clippy::useless_conversion)]
        Ok(st) => !REMOTE.contains(&i64::from(st.f_type)),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests;
