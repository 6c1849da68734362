//! What one connection's responses may hold at once, so that no client can
//! take everything with one connection (HTTP/2 lets one connection run 128
//! responses):
//!
//! * **files**: at most [`FILES_PER_CONNECTION`] open files (a windowed
//!   file's descriptor, or one streamed with `pread`); past that, a request
//!   that needs one gets 503 with `Retry-After`;
//! * **mapped bytes**: at most a share of the cache budget pinned in
//!   mappings; past that, a response reads its file with `pread` instead of
//!   pinning more of the budget.
//!
//! Slots are RAII: dropping the response gives them back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Open files one connection's responses may hold at once.
pub(crate) const FILES_PER_CONNECTION: u32 = 16;

/// One connection's counters.
#[derive(Debug, Default)]
pub struct Quota {
    files: AtomicU32,
    pinned: AtomicU64,
    chunks: AtomicU64,
}

impl Quota {
    /// A file slot, if the connection has one left.
    pub fn take_file(self: &Arc<Self>) -> Option<FileSlot> {
        self.files
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < FILES_PER_CONNECTION).then_some(n + 1)
            })
            .ok()?;
        Some(FileSlot(self.clone()))
    }

    /// Pins `bytes` of mappings if the connection stays within `share`.
    pub fn pin(self: &Arc<Self>, bytes: u64, share: u64) -> Option<PinSlot> {
        self.pinned
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                n.checked_add(bytes).filter(|&total| total <= share)
            })
            .ok()?;
        Some(PinSlot { quota: self.clone(), bytes })
    }

    /// Marks a chunk of a mapping handed on to the connection (HTTP/2
    /// buffers chunks, and copies from them, after their response body has
    /// ended); the mark goes when the chunk is dropped.
    pub fn mark_chunk(self: &Arc<Self>) -> ChunkMark {
        self.chunks.fetch_add(1, Ordering::AcqRel);
        ChunkMark(self.clone())
    }

    /// Mapped chunks handed on and not yet dropped.
    pub fn chunks_alive(&self) -> u64 {
        self.chunks.load(Ordering::Acquire)
    }

    /// Files held now.
    pub fn files(&self) -> u32 {
        self.files.load(Ordering::Relaxed)
    }

    /// Mapped bytes pinned now.
    pub fn pinned(&self) -> u64 {
        self.pinned.load(Ordering::Relaxed)
    }
}

/// One open file a response holds.
#[derive(Debug)]
pub struct FileSlot(Arc<Quota>);

impl Drop for FileSlot {
    fn drop(&mut self) {
        self.0.files.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A mapped chunk alive somewhere in the connection's buffers.
#[derive(Debug)]
pub struct ChunkMark(Arc<Quota>);

impl Drop for ChunkMark {
    fn drop(&mut self) {
        self.0.chunks.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Mapped bytes a response pins.
#[derive(Debug)]
pub struct PinSlot {
    quota: Arc<Quota>,
    bytes: u64,
}

impl Drop for PinSlot {
    fn drop(&mut self) {
        self.quota.pinned.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_given_back() {
        let q = Arc::new(Quota::default());
        let files: Vec<FileSlot> = (0..FILES_PER_CONNECTION).map(|_| q.take_file().unwrap()).collect();
        assert!(q.take_file().is_none());
        drop(files);
        assert_eq!(q.files(), 0);
        let a = q.pin(60, 100).unwrap();
        assert!(q.pin(41, 100).is_none());
        let b = q.pin(40, 100).unwrap();
        assert!(q.pin(u64::MAX, u64::MAX).is_none(), "no overflow");
        drop((a, b));
        assert_eq!(q.pinned(), 0);
        let marks = [q.mark_chunk(), q.mark_chunk()];
        assert_eq!(q.chunks_alive(), 2);
        drop(marks);
        assert_eq!(q.chunks_alive(), 0);
    }
}
