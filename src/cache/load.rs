//! Loading one file into an entry. Runs on the blocking pool: it opens,
//! stats, copies or maps, and may evict and unmap other entries to make room.
//!
//! * Directories become [`Content::Dir`].
//! * Files up to `small_file_max` are read with `pread` into a heap copy; the
//!   file is stat'ed again after the read and re-read if it changed.
//! * Larger files up to the window size are mapped whole, read-only and
//!   shared, and the descriptor is closed.
//! * Files larger than the window size keep their descriptor and are mapped
//!   window by window when a response needs them ([`super::window`]).
//! * When the budget cannot be met even after evicting every unpinned entry,
//!   or `mmap` fails, the file is served by streaming `pread` from the open
//!   descriptor instead ([`Content::Stream`]), and that entry is not cached.

use super::budget::{HeapOwner, MapOwner, Reservation};
use super::entry::{Content, Entry, Window};
use super::files::HeldFd;
use super::validator::Tag;
use super::{Cached, Shared, watch};
use crate::fs::{FsError, Kind, Opened};
use crate::mmap::Region;
use bytes::Bytes;
use rustix::fd::{AsFd, OwnedFd};
use rustix::io::Errno;
use std::sync::Arc;

/// Attempts at a consistent heap copy of a file that keeps changing.
const COPY_ATTEMPTS: usize = 3;

impl Shared {
    /// Loads `key` and, unless it is streamed, inserts it into the table.
    pub(super) fn load(&self, key: &[u8]) -> Result<Arc<Entry>, FsError> {
        self.sync_roots();
        let (root, generation) = self.roots.current();
        // Watch the path before opening it, so that no change can fall
        // between what is opened and what is watched.
        let token = self.watcher.as_ref().and_then(|w| w.watch_path(&*root, key));
        let opened = root.open(key)?;
        let token = match (token, &self.watcher) {
            (Some(token), Some(watcher))
                if watch::is_watchable(&opened.fd) && watcher.watch_file(&token, &opened.fd) =>
            {
                // A change through another hard link between the open and
                // the inode watch shows up here.
                if fstat(&opened.fd)? != opened.identity {
                    token.invalidate();
                }
                Some(token)
            }
            _ => None,
        };
        let tag = match opened.identity.kind {
            Kind::File => Some((self.validators.tag(&opened.fd, &opened.identity), opened.identity)),
            Kind::Dir | Kind::Other => None,
        };
        let mut entry = match opened.identity.kind {
            Kind::Dir => Entry::new(key, opened.identity, Content::Dir),
            Kind::File | Kind::Other => self.load_file(key, opened)?,
        };
        // The tag is for the version it was made from; a file that changed
        // during the load keeps the strict form.
        match tag {
            Some((Tag::Ready(etag), id)) if id == entry.identity => entry.headers.etag = etag,
            Some((Tag::Later(etag), id)) if id == entry.identity => {
                entry.headers.etag = etag;
                entry.hash_later = true;
            }
            _ => {}
        }
        entry.token = token;
        entry.root_generation = generation;
        if let Some(bytes) = self.pins_lock().get_mut(key) {
            // A new version of a pinned path stays pinned.
            *bytes = entry.len();
            entry.pinned.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Content::Windowed(w) = &entry.content {
                w.pinned.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let entry = Arc::new(entry);
        if !matches!(entry.content, Content::Stream(_)) {
            match self.table.insert(key, Cached::File(entry.clone())) {
                Ok(displaced) => self.dispose(displaced),
                // The table is full of entries in use: serve this one
                // uncached (a windowed one must not cache windows either).
                Err(_) => self.retire(&entry),
            }
        }
        Ok(entry)
    }

    /// A swapped ROOT must be noticed by a miss as by a hit: with inotify
    /// the pending events say so; without, the path is opened again (a
    /// changed file led to this load).
    pub(super) fn sync_roots(&self) {
        if let Some(watcher) = self.watcher.as_deref() {
            // Strict in every mode: a load costs far more than a `FIONREAD`.
            watcher.sync();
            if !self.roots.unchanged() && self.roots.refresh(Some(watcher)) {
                self.forget_all();
            }
        } else if self.roots.refresh(None) {
            self.forget_all();
        }
    }

    fn load_file(&self, key: &[u8], opened: Opened) -> Result<Entry, FsError> {
        let Opened { fd, mut identity } = opened;
        let size = identity.size;
        if size == 0 {
            return Ok(Entry::new(key, identity, Content::Heap(Bytes::new())));
        }
        if size <= self.small_file_max {
            let Some(reservation) = self.reserve(size, false) else {
                return Ok(Entry::new(key, identity, Content::Stream(Arc::new(self.hold_file(fd)?))));
            };
            for _ in 0..COPY_ATTEMPTS {
                if identity.size != size {
                    break;
                }
                match copy(&fd, size) {
                    Ok(data) => {
                        let after = fstat(&fd)?;
                        if after == identity {
                            let bytes = Bytes::from_owner(HeapOwner::new(data, reservation));
                            return Ok(Entry::new(key, identity, Content::Heap(bytes)));
                        }
                        identity = after;
                    }
                    Err(Errno::INTR) => identity = fstat(&fd)?,
                    Err(e) => return Err(FsError::from_errno(e)),
                }
            }
            // The file keeps changing: serve this request from the descriptor.
            drop(reservation);
            return Ok(Entry::new(key, identity, Content::Stream(Arc::new(self.hold_file(fd)?))));
        }
        if size > self.window_size {
            return Ok(Entry::new(key, identity, Content::Windowed(Arc::default())));
        }
        let Ok(len) = usize::try_from(size) else {
            return Ok(Entry::new(key, identity, Content::Stream(Arc::new(self.hold_file(fd)?))));
        };
        let page = crate::limits::page_size();
        let mapped_bytes = size.div_ceil(page).saturating_mul(page);
        let Some(reservation) = self.reserve(mapped_bytes, true) else {
            tracing::debug!(size, "no budget to map; streaming");
            return Ok(Entry::new(key, identity, Content::Stream(Arc::new(self.hold_file(fd)?))));
        };
        match Region::map(&fd, 0, len) {
            Ok(region) => {
                region.will_need();
                drop(fd);
                let window = Window {
                    probe: region.probe(),
                    bytes: Bytes::from_owner(MapOwner::new(region, reservation)),
                    start: 0,
                    residency: self.residency_for(&identity),
                    owner: None,
                    known_resident: super::entry::residency_map(size),
                };
                window.refresh_residency();
                Ok(Entry::new(key, identity, Content::Mapped(Arc::new(window))))
            }
            Err(e) => {
                tracing::warn!(error = %e, size, "mmap failed; streaming with pread");
                drop(reservation);
                Ok(Entry::new(key, identity, Content::Stream(Arc::new(self.hold_file(fd)?))))
            }
        }
    }

    /// Drops values taken out of the table (evicted or displaced): a file
    /// entry is retired first, so that responses still running over a
    /// windowed one never cache its windows again.
    pub(super) fn dispose(&self, gone: Vec<Cached>) {
        for value in gone {
            if let Cached::File(entry) = &value {
                self.retire(entry);
            }
            drop(value);
        }
    }

    /// Counts a descriptor a response will hold against the open-file pool:
    /// 503 when the pool is full.
    pub(super) fn hold_file(&self, fd: OwnedFd) -> Result<HeldFd, FsError> {
        self.open_files.hold(fd).map_err(|_| FsError::Unavailable(Errno::MFILE))
    }

    /// Reserves budget, evicting unpinned entries until it fits. `None` when
    /// everything left is pinned by in-flight responses.
    pub(super) fn reserve(&self, bytes: u64, is_map: bool) -> Option<Reservation> {
        if bytes > self.budget.limit() {
            return None;
        }
        let mut attempts = self.table.len() + 1;
        loop {
            if let Some(r) = self.budget.try_reserve(bytes, is_map) {
                return Some(r);
            }
            if attempts == 0 {
                return None;
            }
            attempts -= 1;
            // Dropped here, on the blocking pool: an unpinned mapping is
            // unmapped inline and its bytes are back before the next try.
            self.dispose(vec![self.table.evict_one()?]);
        }
    }
}

fn fstat(fd: &OwnedFd) -> Result<crate::fs::Identity, FsError> {
    rustix::fs::statx(fd.as_fd(), "", rustix::fs::AtFlags::EMPTY_PATH, rustix::fs::StatxFlags::BASIC_STATS)
        .map(|st| crate::fs::Identity::from_statx(&st))
        .map_err(FsError::from_errno)
}

/// Reads exactly `size` bytes from offset 0; a short file is reported as
/// EINTR so that the caller re-stats and retries.
fn copy(fd: &OwnedFd, size: u64) -> Result<Vec<u8>, Errno> {
    let len = usize::try_from(size).map_err(|_| Errno::FBIG)?;
    let mut data = vec![0u8; len];
    let mut done = 0usize;
    while done < len {
        let buf = data.get_mut(done..).unwrap_or_default();
        match rustix::io::pread(fd, buf, done as u64) {
            Ok(0) => return Err(Errno::INTR),
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(data)
}
