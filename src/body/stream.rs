//! Streaming a span of a file: the part of a body that comes from a
//! whole-file mapping, from windows of a large file, or (for a file that could
//! not be mapped, or a window the budget could not pay for) from `pread`.
//!
//! Before each chunk leaves the process it is checked, so that a fault in the
//! mapping costs one aborted response and never the process or wrong bytes:
//!
//! 1. **window**: a large file's window is looked up, or mapped on the
//!    blocking pool (single-flight); when the budget is spent on mappings
//!    held by other responses, the span is read with `pread` instead;
//! 2. **poison**: a mapping whose page was repaired by the SIGBUS guard
//!    aborts the response;
//! 3. **truncation**: before each chunk, if the file may have changed,
//!    its current size bounds what is sent (a file truncated in place is cut
//!    at its new end, never padded with the zeros of its last page), and
//!    nothing past it is sent;
//! 4. **residency**: a chunk whose pages are not all in memory is faulted in
//!    on the blocking pool first (`MADV_POPULATE_READ`), so a runtime worker
//!    never waits for the disk inside `writev`. Chunks whose pages the last
//!    sweep found all in memory skip the probe; a page evicted since is
//!    noticed within one sweep interval (2 s).

use crate::cache::files::HeldFd;
use crate::cache::{Content, Entry, FileCache, Window};
use crate::fs::FsError;
use crate::mmap;
use crate::quota::{PinSlot, Quota};
use bytes::Bytes;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::task::JoinHandle;

type WindowFuture = Pin<Box<dyn Future<Output = Result<Option<Arc<Window>>, FsError>> + Send>>;

enum Pending {
    Window(WindowFuture),
    Populate(JoinHandle<io::Result<()>>, Bytes),
    Pread(JoinHandle<io::Result<Bytes>>),
}

/// A chunk for the body: mapped (zero-copy eligible) or a heap buffer.
#[derive(Debug)]
pub struct Chunk {
    /// The bytes.
    pub bytes: Bytes,
    /// Whether they are a slice of a file mapping.
    pub mapped: bool,
    /// The mapping's poison probe.
    pub probe: Option<crate::mmap::guard::Probe>,
}

/// Streams `[offset, end)` of a mapped or windowed entry.
pub struct FileStream {
    cache: FileCache,
    entry: Arc<Entry>,
    fd: Option<Arc<HeldFd>>,
    offset: u64,
    end: u64,
    window: Option<Arc<Window>>,
    pending: Option<Pending>,
    pread_until: u64,
    quota: Option<Arc<Quota>>,
    pin: Option<Arc<PinSlot>>,
    /// The window index `pin` was taken for before the window was mapped.
    pinned_ahead: Option<u64>,
}

/// How a [`FileStream`] reads.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The descriptor the response holds (windowed files; and whole-file
    /// mappings read with `pread`).
    pub fd: Option<Arc<HeldFd>>,
    /// Read everything with `pread` instead of from the mapping.
    pub pread: bool,
    /// The connection's quota: each window the stream holds is pinned in
    /// it, and a window past the connection's share is read with `pread`.
    pub quota: Option<Arc<Quota>>,
    /// The response's pin on a whole-file mapping (`Held::pin`).
    pub pin: Option<Arc<PinSlot>>,
}

impl std::fmt::Debug for FileStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStream").field("offset", &self.offset).field("end", &self.end).finish()
    }
}

impl FileStream {
    /// A stream of `len` bytes from `offset`. A windowed entry needs the
    /// descriptor the response holds (see `FileCache::hold_for`).
    pub fn new(cache: FileCache, entry: Arc<Entry>, source: Source, offset: u64, len: u64) -> FileStream {
        let Source { fd, pread, quota, pin } = source;
        let (window, fd, pread_until) = match &entry.content {
            Content::Mapped(_) if pread => (None, fd, u64::MAX),
            Content::Mapped(w) => (Some(w.clone()), fd, 0),
            // Not mapped at all (no budget, or mmap failed): the whole span
            // is read with pread from the entry's descriptor.
            Content::Stream(file) => (None, Some(file.clone()), u64::MAX),
            _ => (None, fd, 0),
        };
        FileStream {
            cache,
            entry,
            fd,
            offset,
            end: offset.saturating_add(len),
            window,
            pending: None,
            pread_until,
            quota,
            pin,
            pinned_ahead: None,
        }
    }

    /// Starts from an already cached window (one that holds the span).
    pub fn start_in(&mut self, window: Arc<Window>) {
        self.use_window(window);
    }

    /// Streams from `window` next, pinning it in the connection's share; a
    /// window past the share is read with `pread` instead (the descriptor is
    /// held), and stays in the cache for others.
    fn use_window(&mut self, window: Arc<Window>) {
        let index = window.start / self.cache.window_size();
        if self.pinned_ahead.take() == Some(index) {
            // Pinned before it was mapped.
            self.window = Some(window);
            return;
        }
        self.pin = None;
        if let Some(quota) = &self.quota {
            self.pin = quota.pin(window.bytes.len() as u64, self.cache.pin_share()).map(Arc::new);
            if self.pin.is_none() && self.fd.is_some() {
                self.pread_until = window.end();
                self.window = None;
                return;
            }
        }
        self.window = Some(window);
    }

    /// Bytes not yet yielded.
    pub fn remaining(&self) -> u64 {
        self.end.saturating_sub(self.offset)
    }

    /// The next chunk, at most `max` bytes.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<Option<io::Result<Chunk>>> {
        loop {
            if let Some(pending) = self.pending.as_mut() {
                match pending {
                    Pending::Window(fut) => {
                        let result = ready!(fut.as_mut().poll(cx));
                        self.pending = None;
                        match result {
                            Ok(Some(w)) => self.use_window(w),
                            Ok(None) => self.pread_until = self.window_end(self.offset),
                            Err(e) => return Poll::Ready(Some(Err(fs_error(e)))),
                        }
                    }
                    Pending::Populate(handle, _) => {
                        let done = ready!(Pin::new(handle).poll(cx));
                        let Some(Pending::Populate(_, chunk)) = self.pending.take() else { continue };
                        return Poll::Ready(Some(match done {
                            Ok(Ok(())) => self.checked(chunk),
                            Ok(Err(e)) => Err(e),
                            Err(join) => Err(io::Error::other(join)),
                        }));
                    }
                    Pending::Pread(handle) => {
                        let read = ready!(Pin::new(handle).poll(cx));
                        self.pending = None;
                        let bytes = match super::joined(read) {
                            Ok(bytes) => bytes,
                            Err(e) => return Poll::Ready(Some(Err(e))),
                        };
                        self.offset = self.offset.saturating_add(bytes.len() as u64);
                        if self.cache.verifies_sends()
                            && !self.cache.unchanged(&self.entry, self.fd.as_deref(), self.offset)
                        {
                            return Poll::Ready(Some(Err(changed_in_place())));
                        }
                        return Poll::Ready(Some(Ok(Chunk { bytes, mapped: false, probe: None })));
                    }
                }
                continue;
            }
            if self.offset >= self.end {
                return Poll::Ready(None);
            }
            if self.offset < self.pread_until {
                self.start_pread(max);
                continue;
            }
            let window = match &self.window {
                Some(w) if w.covers(self.offset) => w.clone(),
                _ => {
                    let index = self.offset / self.cache.window_size();
                    match self.cache.cached_window(&self.entry, index) {
                        Some(w) => {
                            self.use_window(w);
                            continue;
                        }
                        None => {
                            // Pinned before it is mapped: past the
                            // connection's share it is not even mapped, but
                            // read with pread.
                            self.window = None;
                            self.pin = None;
                            if let Some(quota) = &self.quota {
                                match quota.pin(self.cache.window_size(), self.cache.pin_share()) {
                                    Some(pin) => {
                                        self.pin = Some(Arc::new(pin));
                                        self.pinned_ahead = Some(index);
                                    }
                                    None => {
                                        self.pread_until = self.window_end(self.offset);
                                        continue;
                                    }
                                }
                            }
                            let (cache, entry) = (self.cache.clone(), self.entry.clone());
                            let Some(fd) = self.fd.clone() else {
                                return Poll::Ready(Some(Err(io::Error::other(
                                    "windowed file without a descriptor",
                                ))));
                            };
                            let fut = async move { cache.window(entry, fd, index).await };
                            self.pending = Some(Pending::Window(Box::pin(fut)));
                            continue;
                        }
                    }
                }
            };
            let mut n = (window.end().min(self.end) - self.offset).min(max as u64);
            // 2. poison.
            if window.probe.is_poisoned() {
                return Poll::Ready(Some(Err(poisoned())));
            }
            // 3. truncation: also before the first chunk, since the file may
            // have shrunk since the lookup (and `mincore` reports the lost
            // pages of a truncated file as resident).
            if let Some(size) = self.cache.changed_size(&self.entry, self.fd.as_deref()) {
                n = n.min(size.saturating_sub(self.offset));
                if n == 0 {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file truncated while being served",
                    ))));
                }
            }
            let from = (self.offset - window.start) as usize;
            // Chunks keep the connection's pin for as long as they wait to
            // be written (h2 buffers them while flow control holds them).
            // HTTP/2 keeps chunks after their body ends: the connection
            // counts them (`Quota::mark_chunk`) to know its mappings matter.
            let mark = self.quota.as_ref().map(|q| q.mark_chunk());
            let chunk = window.chunk(from, n as usize, self.pin.as_ref(), mark);
            self.offset += n;

            // 4. residency.
            if self.cache.prefaults()
                && !window.is_known_resident(from as u64, n)
                && !mmap::is_resident(&chunk, window.residency)
            {
                let target = chunk.clone();
                let handle = tokio::task::spawn_blocking(move || mmap::populate(&target));
                self.pending = Some(Pending::Populate(handle, chunk));
                continue;
            }
            return Poll::Ready(Some(self.checked(chunk)));
        }
    }

    /// A populated chunk still has to be unpoisoned (populating may itself
    /// have hit a truncated page).
    ///
    /// With `--verified-sends` the chunk is copied out of the mapping first
    /// and the file checked afterwards: only bytes read while the file was
    /// unchanged leave the process, and they are ours, so a later truncation
    /// cannot zero them in a pipe or socket buffer.
    fn checked(&self, chunk: Bytes) -> io::Result<Chunk> {
        let probe = self.window.as_ref().map(|w| w.probe);
        if !self.cache.verifies_sends() {
            return match probe {
                Some(p) if p.is_poisoned() => Err(poisoned()),
                _ => Ok(Chunk { bytes: chunk, mapped: true, probe }),
            };
        }
        // A user-space read of the mapping: a page lost to truncation is
        // repaired by the SIGBUS guard and poisons the mapping (checked next).
        let copy = Bytes::copy_from_slice(&chunk);
        drop(chunk);
        if probe.is_some_and(|p| p.is_poisoned()) {
            return Err(poisoned());
        }
        if !self.cache.unchanged(&self.entry, self.fd.as_deref(), self.offset) {
            return Err(changed_in_place());
        }
        Ok(Chunk { bytes: copy, mapped: false, probe: None })
    }

    fn window_end(&self, offset: u64) -> u64 {
        let w = self.cache.window_size();
        (offset / w).saturating_add(1).saturating_mul(w)
    }

    fn start_pread(&mut self, max: usize) {
        let Some(fd) = self.fd.clone() else {
            self.pread_until = 0;
            return;
        };
        let at = self.offset;
        let want = (self.pread_until.min(self.end) - at).min(max.min(super::PREAD_CHUNK) as u64) as usize;
        self.pending =
            Some(Pending::Pread(tokio::task::spawn_blocking(move || super::read_at(&fd, at, want))));
    }
}

impl Drop for FileStream {
    fn drop(&mut self) {
        match self.pending.take() {
            Some(Pending::Populate(handle, _)) => handle.abort(),
            Some(Pending::Pread(handle)) => handle.abort(),
            _ => {}
        }
    }
}

fn poisoned() -> io::Error {
    io::Error::other("file changed under its mapping (SIGBUS)")
}

fn changed_in_place() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "file changed in place while being served (--verified-sends)",
    )
}

fn fs_error(e: FsError) -> io::Error {
    io::Error::other(e)
}
