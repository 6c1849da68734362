//! Giving freed heap memory back to the kernel.
//!
//! After a burst (thousands of HTTP/2 streams held, then released) glibc's
//! allocator keeps the freed memory in its arenas: measured here, 12,800
//! stalled streams left RssAnon at 33.7 MB after release against 4.6 MB
//! before, and `malloc_trim(0)` brought it back to 7.5 MB. The server's
//! housekeeping calls [`release_free_heap`] when the allocator holds a lot
//! free ([`free_heap_bytes`]).

#![allow(unsafe_code)]

/// Returns free heap pages in every arena to the kernel (glibc's
/// `malloc_trim(0)`); a no-op on other C libraries.
pub fn release_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes no pointers and only releases memory the
    // allocator holds as free; it is safe to call from any thread at any
    // time (it takes the arena locks itself).
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Bytes the allocator holds free (glibc's `mallinfo2().fordblks`); `None`
/// on other C libraries.
pub fn free_heap_bytes() -> Option<u64> {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallinfo2 takes no arguments and returns a plain struct by
        // value; it takes the arena locks itself (glibc 2.33 and later).
        let info = unsafe { libc::mallinfo2() };
        Some(info.fordblks as u64)
    }
    #[cfg(not(target_env = "gnu"))]
    None
}

/// This process's anonymous resident memory in KiB (`RssAnon`), if known.
pub fn rss_anon_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("RssAnon:"))?.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_heap_goes_back_to_the_kernel() {
        // Many small blocks freed out of order stay in the arenas...
        let blocks: Vec<Vec<u8>> = (0..200_000).map(|i| vec![i as u8; 200]).collect();
        let keep: Vec<Vec<u8>> = blocks.iter().step_by(1000).cloned().collect();
        drop(blocks);
        let before = rss_anon_kib().unwrap();
        assert!(free_heap_bytes().unwrap() > 16 << 20, "the allocator says how much it holds free");
        release_free_heap();
        let after = rss_anon_kib().unwrap();
        assert!(after + 8 * 1024 < before, "RssAnon {before} KiB -> {after} KiB");
        drop(keep);
    }
}
