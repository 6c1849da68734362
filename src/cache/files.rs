//! Files held open by responses in flight (a windowed file's descriptor, or
//! one streamed with `pread`), counted against a limit of their own. The
//! descriptor limit is shared out at start-up (`limits::FdPlan`): keeping
//! responses inside their share means they can never take the descriptors
//! that accepting new clients needs. At the limit, a response that needs a
//! file of its own gets 503 with `Retry-After`; files already cached in
//! memory or mapped keep being served, since they need no descriptor.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The count and the limit.
#[derive(Debug)]
pub struct FilePool {
    held: AtomicU64,
    limit: u64,
}

impl FilePool {
    /// A pool of at most `limit` open files.
    pub fn new(limit: u64) -> Arc<FilePool> {
        Arc::new(FilePool { held: AtomicU64::new(0), limit })
    }

    /// Counts `fd` against the pool; gives it back (to be closed) when full.
    pub fn hold(self: &Arc<Self>, fd: OwnedFd) -> Result<HeldFd, OwnedFd> {
        let limit = self.limit;
        match self.held.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < limit).then_some(n + 1)) {
            Ok(_) => Ok(HeldFd { fd, pool: self.clone() }),
            Err(_) => Err(fd),
        }
    }

    /// Files held now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }
}

/// A descriptor counted in a [`FilePool`] until it is closed.
#[derive(Debug)]
pub struct HeldFd {
    fd: OwnedFd,
    pool: Arc<FilePool>,
}

impl AsFd for HeldFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for HeldFd {
    fn drop(&mut self) {
        self.pool.held.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_counts_open_files_and_refuses_past_its_limit() {
        let pool = FilePool::new(2);
        let open = || OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        let a = pool.hold(open()).unwrap();
        let b = pool.hold(open()).unwrap();
        assert!(pool.hold(open()).is_err());
        assert_eq!(pool.held(), 2);
        drop(a);
        assert!(pool.hold(open()).is_ok());
        drop(b);
        assert_eq!(pool.held(), 0);
    }
}
