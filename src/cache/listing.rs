//! Rendered listings as cache entries.
//!
//! A listing of directory `dir` in variant `v` is an [`Entry`] under the
//! table key `/ tag(v) dir`: a file's key never starts with `/` (request
//! paths are relative, empty segments dropped) and a window's starts with NUL,
//! holding the rendered bytes as a heap copy in the same byte budget as
//! every file, so hits, ETags, preconditions, HEAD and 304 all go through
//! the file path.
//!
//! Freshness, so that a request sees every entry created, deleted or
//! renamed before it started:
//! * inotify: the entry's token watches every name on the way to `dir`
//!   (renames of it or its parents) and `dir` itself, whose watch reports
//!   any entry created, deleted, moved, written or changed in it. The
//!   watches are placed before the directory is read.
//! * stat: the directory's own identity (its mtime and ctime change on
//!   every create, delete and rename in it), as for files.
//! * Either way a listing also expires [`LISTING_TTL`] after it was read:
//!   the times of subdirectories, the targets of symlinks and (in stat mode)
//!   the sizes of files written in place are facts no watch above covers.
//!
//! A directory that holds a name `index.html` is rendered but not cached.
//!
//! Memory: entries are kept in a bounded selection while the directory is
//! read (`listing::sort::Top`: at most twice `--listing-max-entries` items),
//! so a first request takes memory in proportion to the cap, not to the
//! directory; at most [`LISTING_READS`] directories are read at once.
//! Joining another request's read checks the result is current (see
//! `FileCache::current_load`).

use super::budget::HeapOwner;
use super::entry::Entry;
use super::{Cached, FileCache, Shared, watch};
use crate::fs::{FsError, Kind};
use crate::listing::sort::Top;
use crate::listing::{Variant, read, render};
use bytes::Bytes;
use http::HeaderValue;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a rendered listing is reused without being read again.
pub const LISTING_TTL: Duration = Duration::from_secs(2);

/// Most directory reads for listings at once; more wait their turn, so a
/// client asking for every variant of a huge directory at once occupies at
/// most this many blocking threads.
pub const LISTING_READS: usize = 2;

/// What a listing shows besides the directory: the hidden-file rule and
/// the entry cap.
#[derive(Debug, Clone, Copy)]
pub struct ListingRules {
    /// List dotfiles.
    pub hidden: bool,
    /// Most entries shown.
    pub max_entries: usize,
}

fn key(dir: &[u8], variant: Variant) -> Vec<u8> {
    let mut key = Vec::with_capacity(dir.len() + 2);
    key.push(b'/');
    key.push(b'a' + variant.tag());
    key.extend_from_slice(dir);
    key
}

impl FileCache {
    /// The cached listing of `dir` in `variant`, if it is still current.
    pub fn lookup_listing(&self, dir: &[u8], variant: Variant) -> Option<Arc<Entry>> {
        self.lookup(&key(dir, variant))
    }

    /// Reads and renders the listing of `dir` on the blocking pool (sharing
    /// the work with concurrent callers), and caches it. `NotFound` when
    /// `dir` is not a directory.
    pub async fn load_listing(
        &self,
        dir: &[u8],
        variant: Variant,
        rules: ListingRules,
    ) -> Result<Arc<Entry>, FsError> {
        let key = key(dir, variant);
        self.shared.misses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.current_load(&key, || async {
            // Directory reads are long and bounded in number: others wait.
            let Ok(_permit) = self.shared.listing_reads.acquire().await else {
                return Err(FsError::Unavailable(rustix::io::Errno::AGAIN));
            };
            let shared = self.shared.clone();
            let dir: Box<[u8]> = dir.into();
            let task = tokio::task::spawn_blocking(move || {
                super::budget::with_inline_unmap(|| shared.load_listing(&dir, variant, rules))
            });
            task.await.unwrap_or(Err(FsError::Io(rustix::io::Errno::IO)))
        })
        .await
    }
}

impl Shared {
    fn load_listing(&self, dir: &[u8], variant: Variant, rules: ListingRules) -> Result<Arc<Entry>, FsError> {
        self.sync_roots();
        let (root, generation) = self.roots.current();
        let token = self.watcher.as_ref().and_then(|w| w.watch_path(&*root, dir));
        let opened = root.open(dir)?;
        if opened.identity.kind != Kind::Dir {
            return Err(FsError::NotFound);
        }
        let token = match (token, &self.watcher) {
            (Some(token), Some(watcher))
                if watch::is_watchable(&opened.fd) && watcher.watch_dir(&token, &opened.fd) =>
            {
                Some(token)
            }
            _ => None,
        };
        let mut top = Top::new(rules.max_entries, variant.sort, variant.order);
        let read = read::read(&root, dir, &opened.fd, &opened.identity, rules.hidden, &mut top)?;
        let (items, more) = top.finish();
        let totals = render::Totals { dirs: read.dirs, files: read.files, bytes: read.bytes };
        let body = render::render(dir, &items, more, &totals, variant);
        drop(items);
        let content_type = HeaderValue::from_static(if variant.json {
            "application/json"
        } else {
            "text/html; charset=utf-8"
        });
        let reservation = if read.has_index { None } else { self.reserve(body.len() as u64, false) };
        let cached = reservation.is_some();
        let bytes = match reservation {
            Some(r) => Bytes::from_owner(HeapOwner::new(body, r)),
            None => Bytes::from(body),
        };
        let mut entry =
            Entry::rendered(dir, opened.identity, bytes, content_type, variant.tag(), read.newest_change);
        entry.token = token;
        entry.root_generation = generation;
        entry.expires = Some(Instant::now() + LISTING_TTL);
        let entry = Arc::new(entry);
        if cached {
            if let Ok(displaced) = self.table.insert(&key(dir, variant), Cached::File(entry.clone())) {
                self.dispose(displaced);
            }
        }
        Ok(entry)
    }
}
