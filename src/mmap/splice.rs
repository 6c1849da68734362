//! `vmsplice` of mapped file pages into a pipe, made impossible to misuse
//! from safe code.
//!
//! `vmsplice` on a pipe's *write* end makes the pipe hold references to the
//! pages of the given memory (a read, no copy); on a *read* end it would
//! write pipe data *into* that memory. So the write end is a type of its own,
//! [`PipeWriter`], that only [`pipe`] makes, and [`vmsplice_mapped`] takes
//! nothing else. It also refuses memory that is not inside a live, registered
//! file mapping: only page-cache pages keep the bytes a response promised
//! after they leave the mapping (heap pages could be reused by the allocator
//! while the pipe still refers to them).

use super::guard::Probe;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::pipe::{PipeFlags, SpliceFlags};
use std::io;

/// Pipe size asked for (the kernel may grant less).
const PIPE_SIZE: usize = 1 << 20;

/// The write end of a pipe made by [`pipe`].
#[derive(Debug)]
pub struct PipeWriter(OwnedFd);

impl AsFd for PipeWriter {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A non-blocking, close-on-exec pipe, enlarged when the system allows:
/// (read end, write end).
///
/// # Errors
/// EMFILE/ENFILE when no descriptors are left.
pub fn pipe() -> io::Result<(OwnedFd, PipeWriter)> {
    let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
    let _ = rustix::pipe::fcntl_setpipe_size(&write, PIPE_SIZE);
    Ok((read, PipeWriter(write)))
}

/// Moves up to `data.len()` bytes of mapped file memory into `pipe` without
/// copying them: the pipe takes references to the page-cache pages, and a
/// later `splice` to a socket hands those same pages to TCP. Returns how many
/// bytes went into the pipe (0 when it is full).
///
/// # Errors
/// `InvalidInput` when `data` is not inside the live mapping `mapping`
/// identifies; EFAULT for a page past the end of a truncated file (as
/// `writev` would, with no signal).
pub fn vmsplice_mapped(pipe: &PipeWriter, mapping: &Probe, data: &[u8]) -> io::Result<usize> {
    if !mapping.contains(data) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not inside a live file mapping"));
    }
    let iov = [rustix::pipe::IoSliceRaw::from_slice(data)];
    // SAFETY: `pipe` is a write end (only `pipe()` makes a PipeWriter), so
    // vmsplice reads `data` and never writes to it; without SPLICE_F_GIFT it
    // only takes references to the pages. `data` is borrowed for the call and
    // was just checked to lie in a registered (so still mapped) read-only
    // MAP_SHARED file mapping: its pages are page-cache pages, which keep the
    // file's bytes after the mapping is unmapped, so the references the pipe
    // keeps past this borrow never see memory that Rust reuses. (They do see
    // the file change if it is truncated or rewritten in place: the README's
    // "mmap caveats" states the bound, and `--verified-sends` avoids it.)
    match unsafe { rustix::pipe::vmsplice(&pipe.0, &iov, SpliceFlags::NONBLOCK) } {
        Ok(n) => Ok(n),
        Err(rustix::io::Errno::AGAIN) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Region;
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn vmsplice_moves_mapped_pages_that_outlive_the_mapping() {
        let mut tmp = super::super::tests::tempfile_in_target("vmsplice");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
        tmp.write_all(&data).unwrap();
        let region = Region::map(&tmp, 0, data.len()).unwrap();
        let probe = region.probe();
        let (read, write) = pipe().unwrap();
        let mut sent = 0;
        while sent < 150_000 {
            let n = vmsplice_mapped(&write, &probe, &region.as_slice()[1000 + sent..151_000]).unwrap();
            assert!(n > 0, "the 1 MiB pipe has room");
            sent += n;
        }
        // Unmap before reading: the pipe holds the pages, not the mapping.
        drop(region);
        drop(write);
        let mut got = Vec::new();
        std::fs::File::from(read).read_to_end(&mut got).unwrap();
        assert_eq!(got, &data[1000..151_000]);
    }

    #[test]
    fn only_memory_inside_a_live_mapping_is_accepted() {
        let mut tmp = super::super::tests::tempfile_in_target("vmsplice-refuse");
        tmp.write_all(&vec![9u8; 3 * 4096]).unwrap();
        let region = Region::map(&tmp, 0, 3 * 4096).unwrap();
        let other = Region::map(&tmp, 0, 4096).unwrap();
        let (_read, write) = pipe().unwrap();
        let refused = |r: io::Result<usize>| r.is_err_and(|e| e.kind() == io::ErrorKind::InvalidInput);
        let heap = vec![1u8; 4096];
        assert!(refused(vmsplice_mapped(&write, &region.probe(), &heap)), "heap memory");
        assert!(
            refused(vmsplice_mapped(&write, &other.probe(), &region.as_slice()[..10])),
            "another mapping"
        );
        assert_eq!(vmsplice_mapped(&write, &region.probe(), &region.as_slice()[10..20]).unwrap(), 10);
    }
}
