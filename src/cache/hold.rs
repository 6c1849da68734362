//! What a response over a windowed file holds while it runs: the file's
//! descriptor (so that it can map windows of *this* version even after the
//! path is replaced), or, for a single range inside one cached window, just
//! that window (no descriptor at all).
//!
//! Opening the path again can find a different file there (replaced since
//! the lookup): that is [`HoldError::Stale`], and the caller reloads. Any
//! other failure (no descriptors left, permission) is an error of its own and
//! must not be mistaken for a replacement: reloading on EMFILE would only
//! replace a good cached entry and drop its cached windows.

use super::entry::{Content, Entry, Window};
use super::{FileCache, Shared};
use crate::fs::FsError;
use rustix::fd::OwnedFd;
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
    /// The descriptor of a windowed file.
    pub fd: Option<Arc<OwnedFd>>,
    /// The cached window that holds the whole single span.
    pub window: Option<Arc<Window>>,
}

/// Why [`FileCache::hold_for`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoldError {
    /// The path no longer is this version of the file: reload it.
    #[error("the file was replaced")]
    Stale,
    /// Anything else: answer with it.
    #[error(transparent)]
    Fs(#[from] FsError),
}

impl FileCache {
    /// Whether a response over `entry` needs [`FileCache::hold_for`].
    pub fn needs_hold(entry: &Entry) -> bool {
        matches!(entry.content, Content::Windowed(_))
    }

    /// What a response that reads `reads` of `entry` must hold. Opens the
    /// path on the blocking pool when no running response holds the
    /// descriptor already.
    pub async fn hold_for(&self, entry: &Arc<Entry>, reads: Reads) -> Result<Held, HoldError> {
        let Content::Windowed(windowed) = &entry.content else { return Ok(Held::default()) };
        if let Reads::One { first, len } = reads {
            if let Some(window) = self.cached_span(entry, first, len) {
                return Ok(Held { fd: None, window: Some(window) });
            }
        }
        if reads == Reads::Nothing {
            return Ok(Held::default());
        }
        if let Some(fd) = windowed.live() {
            return Ok(Held { fd: Some(fd), window: None });
        }
        let (shared, entry) = (self.shared.clone(), entry.clone());
        let task = tokio::task::spawn_blocking(move || shared.windowed_fd(&entry));
        let fd = task.await.unwrap_or(Err(HoldError::Fs(FsError::Io(rustix::io::Errno::IO))))?;
        Ok(Held { fd: Some(fd), window: None })
    }

    /// Drops `stale` from the cache and loads `key` again.
    pub async fn reload(&self, key: &[u8], stale: &Arc<Entry>) -> Result<Arc<Entry>, FsError> {
        self.shared.forget(key, stale);
        self.load(key).await
    }
}

impl Shared {
    /// The descriptor of a windowed entry: the one a running response holds,
    /// or the path opened again, if it still is the same version of the file.
    /// Blocking (an open).
    fn windowed_fd(&self, entry: &Entry) -> Result<Arc<OwnedFd>, HoldError> {
        let Content::Windowed(windowed) = &entry.content else { return Err(HoldError::Stale) };
        if let Some(fd) = windowed.live() {
            return Ok(fd);
        }
        let opened = match self.root.open(&entry.key) {
            Ok(opened) => opened,
            Err(FsError::NotFound) => return Err(HoldError::Stale),
            Err(e) => return Err(HoldError::Fs(e)),
        };
        if opened.identity != entry.identity {
            return Err(HoldError::Stale);
        }
        let fd = Arc::new(opened.fd);
        windowed.remember(&fd);
        Ok(fd)
    }
}
