//! What a response body asks before a chunk of a mapped file leaves the
//! process: has the file changed since its entry was loaded? Cheap when it
//! has not (one `FIONREAD` with inotify); otherwise one `statx` of the
//! descriptor the response holds, or of the path when it still leads to the
//! same inode (a path that now leads to another file means this one was
//! replaced, not changed in place, and its bytes are still the old ones).
//!
//! These checks stay strict with `--revalidate inotify-async` too: they make
//! the `FIONREAD` that hits skip in that mode (see `token_holds`).

use super::FileCache;
use super::entry::Entry;
use super::files::HeldFd;
use crate::fs::{FsError, Identity};
use rustix::fd::AsFd;

impl FileCache {
    /// Whether bodies copy and re-check every chunk (`--verified-sends`).
    pub fn verifies_sends(&self) -> bool {
        self.shared.verified_sends
    }

    /// Whether the inotify token of `entry` says nothing changed (false
    /// without one: then only a `statx` can tell).
    ///
    /// Strict `sync`, not `sync_hit`, in every mode, `inotify-async`
    /// included. These checks guard against something worse than a stale
    /// version: zeros (the kernel zero-fills the rest of a truncated file's
    /// last page) leaving as content, or a copy that may hold them passing
    /// `--verified-sends`. A truncation whose event the inotify thread has
    /// not applied yet would let exactly that chunk through, and the window
    /// of `inotify-async` is meant for "a new request may still get the old
    /// version", never for "a response may carry bytes that were never in
    /// the file". The cost stays where it is cheap: these checks run only
    /// for mapped files (above `--small-file-max`; copies are consistent and
    /// never checked), before each chunk of up to 1 MiB, so one `FIONREAD`
    /// (about 0.3 µs) is noise beside sending the chunk; the hits of small
    /// files, where it is not noise, are what `inotify-async` speeds up.
    fn token_holds(&self, entry: &Entry) -> bool {
        match (&entry.token, &self.shared.watcher) {
            (Some(token), Some(watcher)) => {
                watcher.sync();
                token.is_valid()
            }
            _ => false,
        }
    }

    /// The identity of the inode `entry` was loaded from, now: through the
    /// descriptor, or through the path if it still leads to that inode
    /// (`Ok(None)`: the path leads elsewhere now, or nowhere).
    fn inode_now(&self, entry: &Entry, fd: Option<&HeldFd>) -> Result<Option<Identity>, FsError> {
        match fd {
            Some(fd) => rustix::fs::statx(
                fd.as_fd(),
                "",
                rustix::fs::AtFlags::EMPTY_PATH,
                rustix::fs::StatxFlags::BASIC_STATS,
            )
            .map(|st| Some(Identity::from_statx(&st)))
            .map_err(FsError::from_errno),
            None => Ok(self
                .shared
                .roots
                .current()
                .0
                .stat(&entry.key)
                .ok()
                .filter(|id| id.ino == entry.identity.ino && id.dev == entry.identity.dev)),
        }
    }

    /// The file's current size if it may have changed since `entry` was
    /// loaded (`None`: unchanged as far as can be told). Bodies call this
    /// before each chunk of a mapped file, so that a file truncated in place
    /// is cut short at its new end instead of sending the zeros that fill the
    /// rest of its last page.
    pub fn changed_size(&self, entry: &Entry, fd: Option<&HeldFd>) -> Option<u64> {
        if entry.token.is_some() && self.token_holds(entry) {
            return None;
        }
        self.inode_now(entry, fd).ok().flatten().map(|id| id.size).filter(|&size| size != entry.len())
    }

    /// Whether the file of `entry` is exactly as it was loaded, as far as
    /// bytes up to `end` go (`--verified-sends`, after copying a chunk): the
    /// inotify token holds, and the inode has the same size and times. A
    /// truncation sets the new size before the kernel zeroes anything, so a
    /// copy made before this check that could hold zeros is always caught.
    pub fn unchanged(&self, entry: &Entry, fd: Option<&HeldFd>, end: u64) -> bool {
        if entry.token.is_some() && !self.token_holds(entry) {
            return false;
        }
        match self.inode_now(entry, fd) {
            Ok(Some(id)) => id == entry.identity && id.size >= end,
            // The path leads to another file: this one was replaced whole.
            Ok(None) => fd.is_none(),
            Err(_) => false,
        }
    }
}
