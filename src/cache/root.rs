//! ROOT as a path, not as the directory it led to at start.
//!
//! The common atomic deploy swaps a symlink (`ln -sfn r2 current.tmp && mv -T
//! current.tmp current`) or renames a whole directory into place. Requests
//! that start after such a swap must be served from the new tree; responses
//! in flight finish on the old one (their entries, mappings and descriptors
//! keep it alive), and the old tree may then be deleted.
//!
//! * With inotify, the directories along the ROOT path are watched for
//!   changes to the names on it; a hit checks one token (an atomic load,
//!   after the `FIONREAD` it makes anyway; with `inotify-async` the inotify
//!   thread invalidates it, and a load still syncs first). When it is
//!   invalid, the path is opened again and, if it now leads to another
//!   directory, that becomes the root: the generation is bumped, every
//!   entry of the old tree is dropped from the cache, and entries carry the
//!   generation they were loaded under, so none of the old tree is served to
//!   a new request.
//! * With `--revalidate stat`, a hit stats the file through the ROOT path
//!   itself (one `statx`, as before), so a swap shows as a changed file, and
//!   the reload that follows opens the ROOT path again first.

use super::watch::{Token, Watcher};
use crate::fs::{FsError, Identity, Root};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// The ROOT path and the directory it leads to now.
#[derive(Debug)]
pub(super) struct Roots {
    path: PathBuf,
    follow_outside: bool,
    current: RwLock<(Arc<Root>, u64)>,
    generation: AtomicU64,
    token: Arc<Token>,
    refreshing: Mutex<()>,
}

impl Roots {
    /// `root` is `path` opened at start.
    pub(super) fn new(root: Root, path: &Path, follow_outside: bool) -> Roots {
        Roots {
            path: path.to_owned(),
            follow_outside,
            current: RwLock::new((Arc::new(root), 1)),
            generation: AtomicU64::new(1),
            token: Token::new(),
            refreshing: Mutex::new(()),
        }
    }

    /// The root directory now, and its generation.
    /// The ROOT path as configured.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn current(&self) -> (Arc<Root>, u64) {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        (current.0.clone(), current.1)
    }

    /// The generation of the root now: entries of another one are stale.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Starts watching the names along the ROOT path. False when inotify
    /// cannot watch them (the path is then re-checked by each load).
    pub(super) fn watch(&self, watcher: &Watcher) -> bool {
        watcher.watch_absolute(self.path.as_os_str().as_encoded_bytes(), &self.token)
    }

    /// With inotify: whether nothing along the ROOT path has changed since
    /// it was last checked (one atomic load).
    pub(super) fn unchanged(&self) -> bool {
        self.token.is_valid()
    }

    /// Opens the ROOT path again; if it leads to another directory now, that
    /// becomes the root. Returns whether it did. Re-arms the watch first, so
    /// that no swap can fall between the check and the watch.
    pub(super) fn refresh(&self, watcher: Option<&Watcher>) -> bool {
        let _one = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = watcher {
            if self.unchanged() {
                return false;
            }
            if !self.watch(w) {
                tracing::warn!("cannot watch the ROOT path; swaps are seen on the next load");
            }
        }
        let fresh = match Root::new(&self.path, self.follow_outside) {
            Ok(root) => root,
            Err(e) => {
                tracing::warn!(root = %self.path.display(), error = %e, "cannot open ROOT again; still serving the previous one");
                return false;
            }
        };
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if fresh.dir_identity().is_some() && fresh.dir_identity() == current.0.dir_identity() {
            return false;
        }
        let generation = current.1 + 1;
        *current = (Arc::new(fresh), generation);
        self.generation.store(generation, Ordering::Release);
        tracing::info!(root = %self.path.display(), generation, "ROOT now leads to another directory; serving it");
        true
    }

    /// The identity of `key` reached through the ROOT path itself (one
    /// `statx`, following a swapped symlink). Only compared with a cached
    /// entry's identity, which was opened beneath ROOT.
    pub(super) fn stat_through_path(&self, key: &[u8]) -> Result<Identity, FsError> {
        let mut path = self.path.as_os_str().as_encoded_bytes().to_vec();
        if !key.is_empty() {
            path.push(b'/');
            path.extend_from_slice(key);
        }
        rustix::fs::statx(
            rustix::fs::CWD,
            path.as_slice(),
            rustix::fs::AtFlags::empty(),
            rustix::fs::StatxFlags::BASIC_STATS,
        )
        .map(|st| Identity::from_statx(&st))
        .map_err(FsError::from_errno)
    }
}
