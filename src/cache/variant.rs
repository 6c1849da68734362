//! Encoded representations of a file, both kinds served through the cache:
//!
//! * **Precompressed sidecars**: `file.br`, `file.zst`, `file.gz` next to
//!   `file` are ordinary cache entries (copied, mapped or windowed by size),
//!   served with the headers of their face as a coding of `file`
//!   (`Entry::face`). Which of them exist is probed once per file version
//!   and kept on the file's entry (a [`SidecarProbe`]) while it holds: with
//!   inotify, a token on the three names (any create, delete, rename or write
//!   of one of them invalidates it); with `statx`, the identity of the
//!   directory (its mtime changes whenever a name in it comes or goes). So
//!   a file without sidecars costs no lookup per request. A sidecar older
//!   than its file is stale: ignored, and logged once per probe.
//! * **Compressed variants**: a file version compressed once per coding, on
//!   the blocking pool, shared by concurrent requests (single flight), and
//!   kept as an entry in the same byte budget under a key made of the
//!   coding, the source's ETag and path. Its change detection is the
//!   source's, so the sweep and every lookup drop it when the file changes;
//!   a compression that found the source changed under it is thrown away.
//!   A compression that does not gain enough leaves a marker, so it is not
//!   tried again for that version. Sources up to `compress::WAIT_MAX` are
//!   compressed while the request waits; larger ones in the background, and
//!   requests meanwhile get what is ready.
//!
//! Key spaces: a file's key is a request path (never holding NUL), a
//! listing's starts with `/`, a window's with NUL, a variant's with 0x01
//! and holds a NUL.

use super::entry::{Content, Entry, suffix};
use super::{Cached, FileCache, Shared, watch};
use crate::compress;
use crate::fs::{Identity, Kind};
use crate::http::encoding::Coding;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// Most background compressions (of files over `compress::WAIT_MAX`)
/// running at once: half the cores, so that they never take them all.
/// Compressions a request waits for (milliseconds each) have a pool of their
/// own, one per core, and never queue behind a long one.
pub(super) fn compress_jobs() -> (usize, usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores.div_ceil(2), cores)
}

/// How long a compression that found no room in the budget is not tried
/// again for the same file version.
const NO_ROOM_RETRY: Duration = Duration::from_secs(5);

/// Which sidecars exist next to a file, and how to tell the answer still
/// holds.
#[derive(Debug)]
pub struct SidecarProbe {
    /// One bit per coding (`1 << coding as u8`) with a regular file.
    found: u8,
    check: Check,
    /// Codings whose stale sidecar has been logged.
    warned: AtomicU8,
}

#[derive(Debug)]
enum Check {
    /// inotify: valid until one of the names changes.
    Token(Arc<watch::Token>),
    /// statx: the directory's identity when the names were probed.
    Dir(Option<Identity>),
}

const SIDECARS: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];

fn bit(coding: Coding) -> u8 {
    1 << coding as u8
}

fn sidecar_key(key: &[u8], coding: Coding) -> Vec<u8> {
    [key, suffix(coding)].concat()
}

fn parent(key: &[u8]) -> &[u8] {
    key.iter().rposition(|&b| b == b'/').and_then(|at| key.get(..at)).unwrap_or_default()
}

/// The table key of `source` compressed in `coding`.
fn variant_key(source: &Entry, coding: Coding) -> Vec<u8> {
    let etag = source.headers.etag.as_bytes();
    let mut key = Vec::with_capacity(3 + etag.len() + source.key.len());
    key.extend_from_slice(&[0x01, coding as u8]);
    key.extend_from_slice(etag);
    key.push(0);
    key.extend_from_slice(&source.key);
    key
}

impl FileCache {
    /// The codings with a sidecar next to `entry`'s file, as bits
    /// (`1 << coding as u8`). Probes (a few `statx`, and inotify watches)
    /// only when the entry has no probe yet or its probe no longer holds.
    pub fn sidecars(&self, entry: &Entry) -> u8 {
        if entry.headers.listing || entry.headers.content_encoding.is_some() {
            return 0;
        }
        let (first, later) = &entry.sidecars;
        match first.get() {
            None => {
                let probe = first.get_or_init(|| self.shared.probe_sidecars(&entry.key));
                return probe.found;
            }
            Some(probe) if self.shared.holds(probe, &entry.key) => return probe.found,
            Some(_) => {}
        }
        let mut slot = later.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(probe) = slot.as_ref().filter(|p| self.shared.holds(p, &entry.key)) {
            return probe.found;
        }
        let probe = self.shared.probe_sidecars(&entry.key);
        let found = probe.found;
        *slot = Some(probe);
        found
    }

    /// The sidecar of `entry` in `coding`, if it exists, is a file and is not
    /// older than `entry`'s file.
    pub async fn sidecar(&self, entry: &Entry, coding: Coding) -> Option<Arc<Entry>> {
        let key = sidecar_key(&entry.key, coding);
        let sidecar = self.get(&key).await.ok()?;
        usable(entry, sidecar, coding, &key)
    }

    /// [`FileCache::sidecar`] without waiting: `None` when the sidecar is
    /// not cached (it must be loaded).
    pub fn sidecar_now(&self, entry: &Entry, coding: Coding) -> Option<Option<Arc<Entry>>> {
        let key = sidecar_key(&entry.key, coding);
        let sidecar = self.lookup(&key)?;
        Some(usable(entry, sidecar, coding, &key))
    }

    /// `source` compressed in `coding`, if that is ready or (for a source up
    /// to `compress::WAIT_MAX`) done now; `None` when it does not gain, when
    /// the source changed while it was read, or while a background
    /// compression of a larger source runs (this call starts it if a
    /// background slot is free).
    pub async fn compressed(&self, source: &Arc<Entry>, coding: Coding, start: bool) -> Option<Arc<Entry>> {
        match self.compressed_now(source, coding, start) {
            Ready::Now(variant) => variant,
            Ready::Pending => None,
            Ready::Wait(key) => {
                // In a task of its own: a caller that goes away does not
                // cancel the work (the next caller joins it instead of
                // starting it again).
                let cache = self.clone();
                let source = source.clone();
                tokio::spawn(async move { cache.compress(key, source, coding, false).await })
                    .await
                    .ok()
                    .flatten()
            }
        }
    }

    /// [`FileCache::compressed`] without waiting. With `start`, a background
    /// compression is started when the source is too large to wait for.
    pub fn compressed_now(&self, source: &Arc<Entry>, coding: Coding, start: bool) -> Ready {
        if !matches!(source.content, Content::Heap(_) | Content::Mapped(_)) {
            return Ready::Now(None);
        }
        let Some(slot) = source.variants.get(coding as usize) else { return Ready::Now(None) };
        // Made from this version: current exactly while the source is, which
        // the caller has just checked (a "no room" marker also expires).
        let known = slot.lock().unwrap_or_else(|e| e.into_inner()).upgrade();
        if let Some(variant) = known.filter(|v| v.expires.is_none_or(|at| Instant::now() < at)) {
            self.shared.hits.fetch_add(1, Ordering::Relaxed);
            variant.usage.touch_unlisted();
            return Ready::Now(variant.headers.content_encoding.is_some().then_some(variant));
        }
        let key = variant_key(source, coding);
        if let Some(Cached::File(variant)) = self.shared.table.get(&key) {
            if self.shared.is_fresh(&variant) {
                self.shared.hits.fetch_add(1, Ordering::Relaxed);
                variant.usage.touch();
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(&variant);
                return Ready::Now(variant.headers.content_encoding.is_some().then_some(variant));
            }
            self.shared.forget(&key, &variant);
        }
        if source.len() <= compress::WAIT_MAX {
            return Ready::Wait(key);
        }
        if start && !self.shared.compressions.contains(&key) {
            // Bounded: with every background slot busy, nothing is queued
            // (and no source is pinned waiting); a later request retries.
            if let Ok(permit) = self.shared.compress_jobs.0.clone().try_acquire_owned() {
                let cache = self.clone();
                let source = source.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    cache.compress(key, source, coding, true).await
                });
            }
        }
        Ready::Pending
    }

    async fn compress(
        &self,
        key: Vec<u8>,
        source: Arc<Entry>,
        coding: Coding,
        background: bool,
    ) -> Option<Arc<Entry>> {
        let input = source.clone();
        let run = || async {
            // A background job already holds its slot; a waited-for one
            // takes one of the other pool's, and keeps it until the
            // compression itself ends.
            let permit = if background {
                None
            } else {
                Some(self.shared.compress_jobs.1.clone().acquire_owned().await.ok()?)
            };
            let shared = self.shared.clone();
            let key = key.clone();
            let source = input;
            let task = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                // Changed while it waited for a slot: not worth compressing.
                if !shared.is_fresh(&source) {
                    return None;
                }
                super::budget::with_inline_unmap(|| shared.compress(&key, &source, coding))
            });
            task.await.ok().flatten()
        };
        // Every load of this key is of the one version the key names.
        let (variant, _) = self.shared.compressions.run(&key, run).await;
        if let (Some(v), Some(slot)) = (&variant, source.variants.get(coding as usize)) {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(v);
        }
        variant.filter(|v| v.headers.content_encoding.is_some())
    }
}

/// Whether a compressed variant is at hand.
#[derive(Debug)]
pub enum Ready {
    /// Decided now: the variant, or `None` (it does not gain, or cannot be
    /// made).
    Now(Option<Arc<Entry>>),
    /// Being made in the background (or to be retried later).
    Pending,
    /// To be made while the request waits (the variant's key).
    Wait(Vec<u8>),
}

/// `sidecar` as a representation of `entry`: a file not older than it. A
/// stale one is logged once per probe.
fn usable(entry: &Entry, sidecar: Arc<Entry>, coding: Coding, key: &[u8]) -> Option<Arc<Entry>> {
    if matches!(sidecar.content, Content::Dir) {
        return None;
    }
    if sidecar.identity.mtime_ns < entry.identity.mtime_ns {
        // The probe in force: the later one if the first stopped holding.
        let later = entry.sidecars.1.lock().unwrap_or_else(|e| e.into_inner());
        let probe = later.as_ref().or(entry.sidecars.0.get());
        let first =
            probe.is_some_and(|p| p.warned.fetch_or(bit(coding), Ordering::Relaxed) & bit(coding) == 0);
        if first {
            tracing::warn!(
                sidecar = %String::from_utf8_lossy(key),
                "precompressed file is older than its source; ignored until it is rebuilt"
            );
        }
        return None;
    }
    Some(sidecar)
}

impl Shared {
    /// Whether `probe` still describes the sidecars of `key`.
    fn holds(&self, probe: &SidecarProbe, key: &[u8]) -> bool {
        match &probe.check {
            Check::Token(token) => token.is_valid(),
            Check::Dir(identity) => {
                identity.is_some() && self.roots.current().0.stat(parent(key)).ok() == *identity
            }
        }
    }

    /// Looks for the sidecars of `key`: the watch (or the directory's
    /// identity) is taken first, so that a change during the look shows.
    fn probe_sidecars(&self, key: &[u8]) -> SidecarProbe {
        let (root, _) = self.roots.current();
        let names: Vec<Vec<u8>> = SIDECARS.iter().map(|&c| sidecar_key(key, c)).collect();
        let slices: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
        let token = self.watcher.as_ref().and_then(|w| w.watch_paths(&*root, &slices));
        let check = match token {
            Some(token) => Check::Token(token),
            None => Check::Dir(root.stat(parent(key)).ok()),
        };
        let found = SIDECARS
            .iter()
            .zip(&names)
            .filter(|(_, name)| root.stat(name).is_ok_and(|id| id.kind == Kind::File))
            .fold(0, |bits, (&c, _)| bits | bit(c));
        SidecarProbe { found, check, warned: AtomicU8::new(0) }
    }

    /// Compresses `source` and caches the result under `key`. Runs on the
    /// blocking pool.
    fn compress(&self, key: &[u8], source: &Arc<Entry>, coding: Coding) -> Option<Arc<Entry>> {
        let input: &[u8] = match &source.content {
            Content::Heap(bytes) => bytes,
            // Read in user space: a page lost to truncation reads as zeros
            // (the SIGBUS guard), which the checks below catch.
            Content::Mapped(window) => &window.bytes,
            _ => return None,
        };
        let started = std::time::Instant::now();
        let out = match compress::encode(coding, input) {
            Ok(out) => out,
            Err(e) => {
                tracing::warn!(error = %e, coding = coding.token(), "compression failed");
                return None;
            }
        };
        if let Content::Mapped(window) = &source.content {
            if window.probe.is_poisoned() || !self.is_fresh(source) {
                return None;
            }
        }
        self.compressions_run.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            path = %String::from_utf8_lossy(&source.key),
            coding = coding.token(),
            from = input.len(),
            to = out.len(),
            ms = started.elapsed().as_millis() as u64,
            "compressed"
        );
        let marker = |expires| {
            let mut marker = Entry::encoded(source, coding, Bytes::new());
            marker.headers.content_encoding = None;
            marker.expires = expires;
            marker
        };
        let reserved =
            compress::worth_it(input.len(), out.len()).then(|| self.reserve(out.len() as u64, false));
        let variant = match reserved {
            Some(Some(r)) => {
                Entry::encoded(source, coding, Bytes::from_owner(super::budget::HeapOwner::new(out, r)))
            }
            // No room in the budget (everything else in use): identity for
            // now, and a marker so that requests do not compress it again
            // and again; it expires, and then a request tries again.
            Some(None) => marker(Some(Instant::now() + NO_ROOM_RETRY)),
            // This version does not gain from this coding.
            None => marker(source.expires),
        };
        let variant = Arc::new(variant);
        if let Ok(displaced) = self.table.insert(key, Cached::File(variant.clone())) {
            self.dispose(displaced);
        }
        Some(variant)
    }
}
