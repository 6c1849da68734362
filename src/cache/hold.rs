//! What a response holds while it runs, decided before it starts:
//!
//! * a windowed file: its descriptor (so that it can map windows of *this*
//!   version even after the path is replaced), or, for a single range inside
//!   one cached window, just that window;
//! * a whole-file mapping: a pin on it, within the connection's share of the
//!   budget ([`crate::quota`]); past the share, the file opened again and
//!   read with `pread`, so that one connection cannot pin the whole budget;
//! * a file streamed with `pread`: its descriptor (already in the entry);
//! * every file opened for a response counts against its connection's file
//!   slots (a windowed file's descriptor is shared by every response over
//!   that version: only the response that opened it pays).
//!
//! Opening the path again can find a different file there (replaced since
//! the lookup): that is [`HoldError::Stale`], and the caller reloads. Any
//! other failure (no descriptors left, permission) is an error of its own and
//! must not be mistaken for a replacement: reloading on EMFILE would only
//! replace a good cached entry and drop its cached windows.

use super::entry::{Content, Entry, Window};
use super::files::HeldFd;
use super::{FileCache, Shared};
use crate::fs::FsError;
use crate::quota::{FileSlot, PinSlot, Quota};
use rustix::io::Errno;
use std::sync::Arc;

/// What a response reads of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// Nothing (HEAD, 304, 412, 416).
    Nothing,
    /// One span.
    One {
        /// First byte.
        first: u64,
        /// Length.
        len: u64,
    },
    /// Several spans (multipart).
    Several,
}

/// What a response holds while it runs.
#[derive(Debug, Default)]
pub struct Held {
    /// A descriptor to map windows from or to `pread` from.
    pub fd: Option<Arc<HeldFd>>,
    /// The cached window that holds the whole single span.
    pub window: Option<Arc<Window>>,
    /// Read the file with `pread` rather than from its mapping.
    pub pread: bool,
    /// The connection's file slot for `fd` (or the entry's descriptor).
    pub file_slot: Option<FileSlot>,
    /// The connection's pin on a whole-file mapping.
    pub pin: Option<PinSlot>,
}

/// Why holding failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoldError {
    /// The path no longer is this version of the file: reload it.
    #[error("the file was replaced")]
    Stale,
    /// Anything else: answer with it.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// The connection has no file slot left: 503, try again.
fn no_slot() -> HoldError {
    HoldError::Fs(FsError::Unavailable(Errno::MFILE))
}

impl FileCache {
    /// Mapped bytes one connection's responses may pin at once.
    pub fn pin_share(&self) -> u64 {
        (self.shared.budget.limit() / 8).max(self.shared.window_size)
    }

    /// What a response that reads `reads` of `entry` holds, when that can be
    /// decided without I/O; `None`: await [`FileCache::hold_for`].
    pub fn hold_now(
        &self,
        entry: &Arc<Entry>,
        reads: Reads,
        quota: Option<&Arc<Quota>>,
    ) -> Option<Result<Held, HoldError>> {
        let mut held = Held::default();
        if reads == Reads::Nothing {
            return Some(Ok(held));
        }
        match &entry.content {
            Content::Heap(_) | Content::Dir => {}
            Content::Stream(_) => {
                if let Some(q) = quota {
                    held.file_slot = match q.take_file() {
                        Some(slot) => Some(slot),
                        None => return Some(Err(no_slot())),
                    };
                }
            }
            Content::Mapped(window) => {
                if let Some(q) = quota {
                    held.pin = Some(q.pin(window.bytes.len() as u64, self.pin_share())?);
                }
            }
            Content::Windowed(windowed) => {
                if let Reads::One { first, len } = reads {
                    if let Some(window) = self.cached_span(entry, first, len) {
                        held.window = Some(window);
                        return Some(Ok(held));
                    }
                }
                // Shared with the responses already running: one descriptor,
                // so no slot of this connection's.
                held.fd = Some(windowed.live()?);
            }
        }
        Some(Ok(held))
    }

    /// What a response that reads `reads` of `entry` holds, opening the
    /// path again on the blocking pool when a descriptor is needed.
    pub async fn hold_for(
        &self,
        entry: &Arc<Entry>,
        reads: Reads,
        quota: Option<&Arc<Quota>>,
    ) -> Result<Held, HoldError> {
        if let Some(done) = self.hold_now(entry, reads, quota) {
            return done;
        }
        // A windowed file without a live descriptor, or a whole-file mapping
        // past the connection's share: open the file (this version) again.
        let file_slot = match quota {
            Some(q) => Some(q.take_file().ok_or_else(no_slot)?),
            None => None,
        };
        let (shared, e) = (self.shared.clone(), entry.clone());
        let task = tokio::task::spawn_blocking(move || shared.open_version(&e));
        let fd = task.await.unwrap_or(Err(HoldError::Fs(FsError::Io(Errno::IO))))?;
        let pread = matches!(entry.content, Content::Mapped(_));
        Ok(Held { fd: Some(fd), window: None, pread, file_slot, pin: None })
    }

    /// Drops `stale` from the cache and loads `key` again.
    pub async fn reload(&self, key: &[u8], stale: &Arc<Entry>) -> Result<Arc<Entry>, FsError> {
        self.shared.forget(key, stale);
        self.load(key).await
    }
}

impl Shared {
    /// The descriptor of this version of the file: the one a running
    /// response holds, or the path opened again, if it still is the same
    /// version. Blocking (an open).
    fn open_version(&self, entry: &Entry) -> Result<Arc<HeldFd>, HoldError> {
        let windowed = match &entry.content {
            Content::Windowed(w) => Some(w),
            _ => None,
        };
        if let Some(fd) = windowed.and_then(|w| w.live()) {
            return Ok(fd);
        }
        let (root, generation) = self.roots.current();
        if generation != entry.root_generation {
            return Err(HoldError::Stale);
        }
        let opened = match root.open(&entry.key) {
            Ok(opened) => opened,
            Err(FsError::NotFound) => return Err(HoldError::Stale),
            Err(e) => return Err(HoldError::Fs(e)),
        };
        if opened.identity != entry.identity {
            return Err(HoldError::Stale);
        }
        let fd = Arc::new(self.hold_file(opened.fd).map_err(HoldError::Fs)?);
        if let Some(w) = windowed {
            w.remember(&fd);
        }
        Ok(fd)
    }
}
