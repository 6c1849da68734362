//! Residency of mapped pages: whether sending them can block on the disk,
//! and faulting them in ahead of time on a thread that may block.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;

/// How residency of mapped pages is learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residency {
    /// `mincore`: page-cache residency. Truthful only when the process owns
    /// the file or runs as root; for anyone else the kernel reports every
    /// page resident (docs/mmap.md).
    Mincore,
    /// `/proc/self/pagemap`: whether *our* page tables map each page. Truthful
    /// for everyone in the direction that matters: a mapped page is in memory.
    /// A page that is cached but not yet mapped by us reads as absent, which
    /// only costs a prefault on the blocking pool.
    Pagemap,
}

/// Whether every page of `data` (a slice of a mapping) is in memory, so
/// that sending it cannot block on disk.
pub fn is_resident(data: &[u8], how: Residency) -> bool {
    let pages = resident_pages(data, how);
    data.is_empty() || (!pages.is_empty() && pages.iter().all(|&p| p))
}

/// Reads `/proc/self/pagemap` entries: bit 63 means "present in RAM".
fn pagemap(first_page: usize, pages: usize) -> Option<Vec<bool>> {
    use std::os::unix::fs::FileExt;
    static PAGEMAP: std::sync::OnceLock<Option<File>> = std::sync::OnceLock::new();
    let file = PAGEMAP.get_or_init(|| File::open("/proc/self/pagemap").ok()).as_ref()?;
    let mut buf = vec![0u8; pages * 8];
    file.read_exact_at(&mut buf, (first_page * 8) as u64).ok()?;
    Some(buf.chunks_exact(8).map(|e| e.get(7).is_some_and(|b| b & 0x80 != 0)).collect())
}

/// Faults every page of `data` in (`MADV_POPULATE_READ`, Linux 5.14+; older
/// kernels get `MADV_WILLNEED` and a read of one byte per page, which the
/// SIGBUS guard covers). Blocks on disk: call it on the blocking pool only.
///
/// # Errors
/// EFAULT when a page lies past the end of a truncated file.
pub fn populate(data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let page = crate::limits::page_size() as usize;
    let start = data.as_ptr() as usize & !(page - 1);
    let end = (data.as_ptr() as usize + data.len()).div_ceil(page) * page;
    // SAFETY: [start, end) lies inside the mapping `data` borrows; both
    // pieces of advice only read or prefetch, they never change contents.
    let rc = unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_POPULATE_READ) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EINVAL) {
        return Err(err);
    }
    // SAFETY: as above.
    unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_WILLNEED) };
    let mut sum = 0u8;
    for offset in (0..data.len()).step_by(page) {
        // Touching reads a mapped byte in user space; a truncated page is
        // repaired by the SIGBUS guard and poisons the mapping.
        sum = sum.wrapping_add(data.get(offset).copied().unwrap_or(0));
    }
    std::hint::black_box(sum);
    Ok(())
}

/// Marks `data` as read sequentially (`MADV_SEQUENTIAL`): aggressive
/// readahead, pages dropped soon after use. For windows of huge files.
pub fn advise_sequential(data: &[u8]) {
    let page = crate::limits::page_size() as usize;
    let start = data.as_ptr() as usize & !(page - 1);
    let end = (data.as_ptr() as usize + data.len()).div_ceil(page) * page;
    if end > start {
        // SAFETY: advice on a range inside a mapping `data` borrows; it does
        // not change contents.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_SEQUENTIAL) };
    }
}

/// Which pages of `data` (a slice of a [`super::Region`] starting on a page
/// boundary) are in memory, the way `how` tells it; empty on failure.
pub fn resident_pages(data: &[u8], how: Residency) -> Vec<bool> {
    let page = crate::limits::page_size() as usize;
    let start = data.as_ptr() as usize & !(page - 1);
    let end = (data.as_ptr() as usize + data.len()).div_ceil(page) * page;
    if end <= start {
        return Vec::new();
    }
    let pages = (end - start) / page;
    match how {
        Residency::Mincore => {
            let mut vec = vec![0u8; pages];
            // SAFETY: [start, end) is page-aligned and lies inside a mapping
            // that `data` borrows (so it stays mapped); `vec` has one byte per
            // page, as mincore requires.
            let rc = unsafe { libc::mincore(start as *mut libc::c_void, end - start, vec.as_mut_ptr()) };
            if rc != 0 {
                return Vec::new();
            }
            vec.iter().map(|&b| b & 1 == 1).collect()
        }
        Residency::Pagemap => pagemap(start / page, pages).unwrap_or_default(),
    }
}
