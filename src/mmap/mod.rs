//! The only module with `unsafe` code: read-only shared file mappings, the
//! SIGBUS guard that protects user-space reads of them ([`guard`]), and the
//! system calls that touch mapped memory directly (`vmsplice`, `madvise`,
//! `mincore`), the one call that hands freed heap memory back to the
//! kernel (`malloc_trim`), and adopting descriptors a service manager passed
//! in ([`inherit`]).
//!
//! A [`Region`] is one `mmap(PROT_READ, MAP_SHARED)` of part of a file, made
//! with memmap2 at a page-aligned offset, and registered with the guard for
//! as long as it is mapped. The descriptor it was made from can be closed at
//! once; the mapping keeps the inode alive.
//!
//! # The hazard
//!
//! If another process truncates the file, pages past the new end of file are
//! gone: a user-space load from them raises SIGBUS (which the guard turns
//! into a zero page and a poison mark), while the kernel copying from them
//! into a socket (`writev`, `vmsplice`) fails with EFAULT instead. Either way
//! the response in flight is aborted (a short transfer) and the process
//! lives. The bytes between the new end of file and the end of the page-cache
//! folio that holds it are zeroed in place by the kernel, which a zero-copy
//! send can still carry (README, "The mmap caveats"). mapserve's contract is
//! that served files are replaced by atomic rename, never truncated in place.

#![allow(unsafe_code)]

pub mod guard;
pub mod inherit;
mod resident;
mod splice;
mod trim;

pub use resident::{Residency, advise_sequential, is_resident, populate, resident_pages};
pub use splice::{PipeWriter, pipe, vmsplice_mapped};
pub use trim::{free_heap_bytes, release_free_heap, rss_anon_kib};

use std::io;
use std::os::fd::AsRawFd;

/// A read-only, shared mapping of `len` bytes of a file starting at a
/// page-aligned `offset`. Unmapped on drop.
#[derive(Debug)]
pub struct Region {
    // Field order matters: the registration is dropped (unregistered) before
    // the mapping is unmapped.
    registration: guard::Registration,
    map: memmap2::Mmap,
}

impl Region {
    /// Maps `len` bytes of `file` from `offset`, which must be a multiple of
    /// the page size. `len` must be non-zero.
    ///
    /// # Errors
    /// Whatever `mmap(2)` reports (ENOMEM under an address-space limit,
    /// ENODEV for files that cannot be mapped, ...).
    pub fn map(file: &impl std::os::fd::AsFd, offset: u64, len: usize) -> io::Result<Region> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        if offset % crate::limits::page_size() != 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "unaligned mapping offset"));
        }
        // SAFETY: memmap2 marks file mappings unsafe because another process
        // may change the file while it is mapped, which Rust's model of `&[u8]`
        // (immutable while borrowed) cannot express. What we uphold:
        // * the mapping is PROT_READ and MAP_SHARED: nothing in this process
        //   ever writes through it;
        // * its bytes are read in user space in a few places (h2 copies small
        //   DATA frames, `--verified-sends` copies every chunk, the residency
        //   fallback touches one byte per page), and each such read is either
        //   checked afterwards (poison mark, file size) before the bytes leave
        //   the process, or its value does not matter; no code derives an
        //   invariant from mapped bytes (they are opaque payload), so a
        //   concurrent change yields wrong payload at worst, never a wrong
        //   program state;
        // * a read of a page lost to truncation raises SIGBUS, which the guard
        //   registered just below turns into a zero page and a poison mark;
        // * the kernel-side readers (`writev`, `vmsplice`) get EFAULT instead;
        // * `offset` is page-aligned (checked above) and the caller checked
        //   `len` against fstat, so the mapping starts within the file.
        let map =
            unsafe { memmap2::MmapOptions::new().offset(offset).len(len).map(file.as_fd().as_raw_fd())? };
        guard::install();
        let registration = guard::register(map.as_ptr() as usize, map.len())
            .ok_or_else(|| io::Error::other("SIGBUS guard registry is full"))?;
        MAPPED.fetch_add(vma_len(map.len()), std::sync::atomic::Ordering::Relaxed);
        Ok(Region { registration, map })
    }

    /// The poison probe of this mapping.
    pub fn probe(&self) -> guard::Probe {
        self.registration.probe()
    }

    /// The mapped bytes. A user-space read of a page lost to truncation
    /// raises SIGBUS, which the guard repairs (zeros, poison mark): whoever
    /// copies them must check the probe before the copy leaves the process.
    pub fn as_slice(&self) -> &[u8] {
        &self.map
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Always false: regions are never empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Asks the kernel to read the whole region ahead (`MADV_WILLNEED`).
    pub fn will_need(&self) {
        let _ = self.map.advise(memmap2::Advice::WillNeed);
    }
}

/// Bytes of every live [`Region`], each rounded up to whole pages as the
/// kernel maps it (what `/proc/self/maps` shows for them).
static MAPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Bytes mapped by live regions now.
pub fn mapped_bytes() -> u64 {
    MAPPED.load(std::sync::atomic::Ordering::Relaxed)
}

fn vma_len(len: usize) -> u64 {
    let page = crate::limits::page_size();
    (len as u64).div_ceil(page).saturating_mul(page)
}

impl Drop for Region {
    fn drop(&mut self) {
        MAPPED.fetch_sub(vma_len(self.map.len()), std::sync::atomic::Ordering::Relaxed);
    }
}

impl AsRef<[u8]> for Region {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Write;

    #[test]
    fn maps_a_file_and_a_page_aligned_window() {
        let page = crate::limits::page_size() as usize;
        let mut tmp = tempfile_in_target("region");
        let data: Vec<u8> = (0..3 * page).map(|i| (i % 251) as u8).collect();
        tmp.write_all(&data).unwrap();
        let whole = Region::map(&tmp, 0, data.len()).unwrap();
        assert_eq!(whole.as_slice(), &data[..]);
        let window = Region::map(&tmp, page as u64, page + 10).unwrap();
        assert_eq!(window.as_slice(), &data[page..2 * page + 10]);
        assert!(Region::map(&tmp, 1, 10).is_err(), "unaligned offset refused");
        assert!(Region::map(&tmp, 0, 0).is_err(), "empty refused");
    }

    #[test]
    fn a_truncated_mapping_reads_zeros_and_is_poisoned_instead_of_killing_the_process() {
        let page = crate::limits::page_size() as usize;
        let mut tmp = tempfile_in_target("sigbus");
        tmp.write_all(&vec![b'A'; 4 * page]).unwrap();
        let region = Region::map(&tmp, 0, 4 * page).unwrap();
        let probe = region.probe();
        assert!(!probe.is_poisoned());
        let before = guard::epoch();
        tmp.set_len(page as u64).unwrap();
        // A user-space copy, as h2 or TLS would make.
        let copy = region.as_slice().to_vec();
        assert!(copy[..page].iter().all(|&b| b == b'A'));
        assert!(copy[page..].iter().all(|&b| b == 0), "the lost pages read as zeros");
        assert!(probe.is_poisoned());
        assert!(guard::epoch() > before);
    }

    /// Several threads fault on the same truncated page at once: the ones that
    /// come second find it already repaired. None of them may give the fault
    /// to the previous handler (Rust's resets SIGBUS to the default), or the
    /// guard is gone and the next truncation kills the process.
    #[test]
    fn concurrent_faults_on_one_page_leave_the_guard_installed() {
        let page = crate::limits::page_size() as usize;
        let threads = 8;
        let mut tmp = tempfile_in_target("sigbus-race");
        for round in 0..300 {
            tmp.set_len(0).unwrap();
            tmp.write_all(&vec![b'C'; 8 * page]).unwrap();
            let region = Region::map(&tmp, 0, 8 * page).unwrap();
            tmp.set_len(page as u64).unwrap();
            let barrier = std::sync::Barrier::new(threads);
            let target = region.as_slice().as_ptr() as usize + 4 * page + 17;
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        barrier.wait();
                        // SAFETY: (test) `target` lies inside `region`, which
                        // outlives the scope; the guard repairs the fault.
                        let b = unsafe { std::ptr::read_volatile(target as *const u8) };
                        assert_eq!(b, 0, "a lost page reads as zeros");
                    });
                }
            });
            assert!(region.probe().is_poisoned());
            assert!(guard::is_active(), "round {round}: the SIGBUS disposition is no longer the guard's");
            use std::io::Seek;
            tmp.seek(std::io::SeekFrom::Start(0)).unwrap();
        }
    }

    /// Run only as a child of the next test: faults on a mapping that is not
    /// registered, which must kill the process as it always would.
    #[test]
    #[ignore]
    fn child_faults_on_an_unregistered_mapping() {
        if std::env::var_os("MAPSERVE_SIGBUS_CHILD").is_none() {
            return;
        }
        let page = crate::limits::page_size() as usize;
        let mut tmp = tempfile_in_target("sigbus-child");
        tmp.write_all(&vec![b'B'; 2 * page]).unwrap();
        guard::install();
        // SAFETY: (test) a plain memmap2 mapping, deliberately not registered.
        let map = unsafe { memmap2::Mmap::map(&tmp).unwrap() };
        tmp.set_len(0).unwrap();
        let v = map.to_vec();
        println!("survived with {} bytes", v.len());
    }

    #[test]
    fn faults_outside_registered_mappings_still_kill_the_process() {
        use std::os::unix::process::ExitStatusExt;
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "mmap::tests::child_faults_on_an_unregistered_mapping",
                "--nocapture",
            ])
            .env("MAPSERVE_SIGBUS_CHILD", "1")
            .output()
            .unwrap();
        assert_eq!(out.status.signal(), Some(libc::SIGBUS), "{}", String::from_utf8_lossy(&out.stdout));
        assert!(!String::from_utf8_lossy(&out.stdout).contains("survived"));
    }

    #[test]
    fn residency_probes_and_populate() {
        let page = crate::limits::page_size() as usize;
        let mut tmp = tempfile_in_target("resident");
        tmp.write_all(&vec![7u8; 64 * page]).unwrap();
        let region = Region::map(&tmp, 0, 64 * page).unwrap();
        let data = &region.as_slice()[page / 2..40 * page];
        // Written just now: in the page cache, but not mapped by us yet.
        assert!(is_resident(data, Residency::Mincore));
        assert!(!is_resident(data, Residency::Pagemap), "nothing touched through this mapping yet");
        populate(data).unwrap();
        assert!(is_resident(data, Residency::Pagemap), "populate maps every page");
        assert!(resident_pages(region.as_slice(), Residency::Pagemap).iter().filter(|&&p| p).count() >= 40);
        advise_sequential(data);
        // A truncated file fails populate with an error, not a signal.
        tmp.set_len(page as u64).unwrap();
        assert!(populate(&region.as_slice()[2 * page..]).is_err());
    }

    pub(super) fn tempfile_in_target(name: &str) -> File {
        let dir = std::env::temp_dir().join(format!("mapserve-unit-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }
}
