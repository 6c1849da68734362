//! Opening and checking files beneath ROOT without races.
//!
//! Every open resolves the request path relative to a descriptor of ROOT with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`: the kernel refuses any
//! resolution (through `..` in a symlink target or an absolute symlink) that
//! would leave ROOT, so there is no check-then-open window. Symlinks that stay
//! inside ROOT work. With `--follow-symlinks-outside-root` the open is a plain
//! `openat`. On kernels without `openat2` (before 5.6, or under a seccomp
//! filter that refuses it) the path is walked one component at a time with
//! `O_NOFOLLOW`, so no symlink is followed at all.
//!
//! Files are opened `O_NONBLOCK` so that a FIFO in the tree cannot block a
//! thread, and only regular files and directories are accepted.

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Statx, StatxFlags};
use rustix::io::Errno;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a file is, and the facts that identify one version of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Status-change time, nanoseconds since the epoch (changes on rename
    /// over, chmod, and every write, even with a forged mtime).
    pub ctime_ns: i128,
    /// Regular file, directory, or something else.
    pub kind: Kind,
    /// Owner (decides whether `mincore` tells the truth to us).
    pub uid: u32,
}

/// File type as far as serving cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// Anything else (FIFO, socket, device): never served.
    Other,
}

impl Identity {
    pub(crate) fn from_statx(st: &Statx) -> Identity {
        let ns = |t: rustix::fs::StatxTimestamp| i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec);
        let file_type = FileType::from_raw_mode(u32::from(st.stx_mode));
        let kind = match file_type {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            _ => Kind::Other,
        };
        Identity {
            dev: (u64::from(st.stx_dev_major) << 32) | u64::from(st.stx_dev_minor),
            ino: st.stx_ino,
            size: st.stx_size,
            mtime_ns: ns(st.stx_mtime),
            ctime_ns: ns(st.stx_ctime),
            kind,
            uid: st.stx_uid,
        }
    }

    /// Modification time in whole seconds, if after the epoch.
    pub fn mtime_secs(&self) -> Option<u64> {
        u64::try_from(self.mtime_ns.div_euclid(1_000_000_000)).ok()
    }
}

/// Why a file could not be opened or checked. Cheap to clone so that one
/// failed load can answer every request that waited for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    /// Does not exist, not a directory, name too long, symlink loop, escapes
    /// ROOT, or not a regular file (404).
    #[error("not found")]
    NotFound,
    /// Permission denied (403).
    #[error("permission denied")]
    Forbidden,
    /// Out of descriptors or memory, or the mapping failed (503).
    #[error("temporarily unavailable: {0}")]
    Unavailable(Errno),
    /// Anything else, such as EIO (500, logged).
    #[error("i/o error: {0}")]
    Io(Errno),
}

impl FsError {
    /// Classifies an errno the way the error table in the README says.
    pub fn from_errno(e: Errno) -> FsError {
        match e {
            Errno::NOENT
            | Errno::NOTDIR
            | Errno::NAMETOOLONG
            | Errno::LOOP
            | Errno::XDEV
            | Errno::NXIO
            | Errno::NODEV
            | Errno::ISDIR
            | Errno::INVAL => FsError::NotFound,
            Errno::ACCESS | Errno::PERM => FsError::Forbidden,
            Errno::MFILE | Errno::NFILE | Errno::NOMEM | Errno::AGAIN | Errno::NOBUFS => {
                FsError::Unavailable(e)
            }
            other => FsError::Io(other),
        }
    }
}

/// An open file or directory with the identity it had when opened.
#[derive(Debug)]
pub struct Opened {
    /// The descriptor.
    pub fd: OwnedFd,
    /// fstat of the descriptor.
    pub identity: Identity,
}

/// ROOT, held open as a directory descriptor.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    follow_outside: bool,
    openat2: AtomicBool,
}

const OPEN_FLAGS: OFlags =
    OFlags::RDONLY.union(OFlags::CLOEXEC).union(OFlags::NOCTTY).union(OFlags::NONBLOCK);

impl AsFd for Root {
    fn as_fd(&self) -> rustix::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Root {
    /// Opens ROOT.
    pub fn new(path: &Path, follow_outside: bool) -> std::io::Result<Root> {
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        let root = Root { fd, follow_outside, openat2: AtomicBool::new(true) };
        // Probe openat2 once; remember if the kernel lacks it.
        if let Err(Errno::NOSYS | Errno::PERM) =
            rustix::fs::openat2(root.fd.as_fd(), ".", OPEN_FLAGS, Mode::empty(), ResolveFlags::BENEATH)
        {
            root.openat2.store(false, Ordering::Relaxed);
        }
        Ok(root)
    }

    /// Device and inode of the directory: which directory a ROOT path led to.
    pub fn dir_identity(&self) -> Option<(u64, u64)> {
        let st = rustix::fs::statx(self.fd.as_fd(), "", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS).ok()?;
        let id = Identity::from_statx(&st);
        Some((id.dev, id.ino))
    }

    /// Whether opens use `openat2` (false: the O_NOFOLLOW walk).
    pub fn uses_openat2(&self) -> bool {
        self.openat2.load(Ordering::Relaxed)
    }

    /// Opens `rel` (a validated relative path, empty for ROOT itself) and
    /// fstats it. Only regular files and directories are returned.
    ///
    /// The path is resolved with `O_PATH` first, so a FIFO, socket or device
    /// is refused before anything opens it (opening a device can act: a
    /// watchdog arms, a tape rewinds); the file is then opened through
    /// `/proc/self/fd`, which reaches exactly the inode resolved.
    pub fn open(&self, rel: &[u8]) -> Result<Opened, FsError> {
        let resolved = self.resolve(rel, OFlags::PATH | OFlags::CLOEXEC)?;
        if Identity::from_statx(&statx_fd(&resolved)?).kind == Kind::Other {
            return Err(FsError::NotFound);
        }
        let through = format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(&resolved));
        let fd = match rustix::fs::open(through.as_str(), OPEN_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            // No /proc: open by the path (a node swapped in since is refused below).
            Err(Errno::NOENT) => self.resolve(rel, OPEN_FLAGS)?,
            Err(e) => return Err(FsError::from_errno(e)),
        };
        let identity = Identity::from_statx(&statx_fd(&fd)?);
        if identity.kind == Kind::Other {
            return Err(FsError::NotFound);
        }
        Ok(Opened { fd, identity })
    }

    /// The identity of what `rel` leads to, resolved exactly as [`Root::open`]
    /// resolves it but without opening it (`O_PATH`: a device or FIFO a
    /// symlink points at is never opened), for listings.
    pub fn inspect(&self, rel: &[u8]) -> Result<Identity, FsError> {
        let fd = self.resolve(rel, OFlags::PATH | OFlags::CLOEXEC)?;
        Ok(Identity::from_statx(&statx_fd(&fd)?))
    }

    /// `rel` resolved beneath ROOT (or not, with `follow_outside`) and
    /// opened with `flags`.
    fn resolve(&self, rel: &[u8], flags: OFlags) -> Result<OwnedFd, FsError> {
        let path: &[u8] = if rel.is_empty() { b"." } else { rel };
        if self.follow_outside {
            rustix::fs::openat(self.fd.as_fd(), path, flags, Mode::empty())
        } else if self.uses_openat2() {
            rustix::fs::openat2(
                self.fd.as_fd(),
                path,
                flags,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
            )
        } else {
            self.walk_nofollow(path, flags)
        }
        .map_err(FsError::from_errno)
    }

    /// The identity `rel` has now (following symlinks), for revalidating a
    /// cached entry. Costs one `statx`. It does not need to enforce the
    /// beneath rule: a cached entry is only reused when the identity equals
    /// the one it had when it was opened beneath ROOT.
    pub fn stat(&self, rel: &[u8]) -> Result<Identity, FsError> {
        let path: &[u8] = if rel.is_empty() { b"." } else { rel };
        rustix::fs::statx(self.fd.as_fd(), path, AtFlags::empty(), StatxFlags::BASIC_STATS)
            .map(|st| Identity::from_statx(&st))
            .map_err(FsError::from_errno)
    }

    fn walk_nofollow(&self, path: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
        let mut components = path.split(|&b| b == b'/').filter(|c| !c.is_empty()).peekable();
        let mut dir: Option<OwnedFd> = None;
        while let Some(component) = components.next() {
            let at = dir.as_ref().map_or(self.fd.as_fd(), |d| d.as_fd());
            let last = components.peek().is_none();
            let flags = if last {
                flags | OFlags::NOFOLLOW
            } else {
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
            };
            let next = rustix::fs::openat(at, component, flags, Mode::empty())?;
            if last {
                return Ok(next);
            }
            dir = Some(next);
        }
        rustix::fs::openat(self.fd.as_fd(), ".", flags, Mode::empty())
    }
}

fn statx_fd(fd: &OwnedFd) -> Result<Statx, FsError> {
    rustix::fs::statx(fd.as_fd(), "", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS)
        .map_err(FsError::from_errno)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mapserve-fs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root/sub")).unwrap();
        std::fs::write(dir.join("root/a.txt"), b"hello").unwrap();
        std::fs::write(dir.join("root/sub/b.txt"), b"world").unwrap();
        std::fs::write(dir.join("secret.txt"), b"secret").unwrap();
        symlink("a.txt", dir.join("root/inside")).unwrap();
        symlink("../secret.txt", dir.join("root/outside_rel")).unwrap();
        symlink(dir.join("secret.txt"), dir.join("root/outside_abs")).unwrap();
        symlink("../sub/b.txt", dir.join("root/sub/up_and_back")).unwrap();
        symlink("loop", dir.join("root/loop")).unwrap();
        dir
    }

    #[test]
    fn opens_files_and_follows_only_symlinks_that_stay_inside() {
        let dir = scratch("beneath");
        let root = Root::new(&dir.join("root"), false).unwrap();
        assert!(root.uses_openat2(), "this kernel has openat2");
        assert_eq!(root.open(b"a.txt").unwrap().identity.size, 5);
        assert_eq!(root.open(b"inside").unwrap().identity.size, 5);
        assert_eq!(root.open(b"sub/up_and_back").unwrap().identity.size, 5);
        assert_eq!(root.open(b"sub").unwrap().identity.kind, Kind::Dir);
        assert_eq!(root.open(b"").unwrap().identity.kind, Kind::Dir);
        assert_eq!(root.open(b"outside_rel").unwrap_err(), FsError::NotFound);
        assert_eq!(root.open(b"outside_abs").unwrap_err(), FsError::NotFound);
        assert_eq!(root.open(b"loop").unwrap_err(), FsError::NotFound);
        assert_eq!(root.open(b"missing").unwrap_err(), FsError::NotFound);
        assert_eq!(root.open(b"a.txt/x").unwrap_err(), FsError::NotFound);
        assert_eq!(root.open(&vec![b'x'; 300]).unwrap_err(), FsError::NotFound);
    }

    #[test]
    fn follow_outside_opens_escaping_links() {
        let dir = scratch("outside");
        let root = Root::new(&dir.join("root"), true).unwrap();
        assert_eq!(root.open(b"outside_abs").unwrap().identity.size, 6);
    }

    #[test]
    fn nofollow_walk_refuses_every_symlink() {
        let dir = scratch("walk");
        let root = Root::new(&dir.join("root"), false).unwrap();
        root.openat2.store(false, Ordering::Relaxed);
        assert_eq!(root.open(b"sub/b.txt").unwrap().identity.size, 5);
        assert_eq!(root.open(b"inside").unwrap_err(), FsError::NotFound);
        assert_eq!(root.open(b"outside_abs").unwrap_err(), FsError::NotFound);
    }

    #[test]
    fn fifos_are_not_served_and_do_not_block() {
        let dir = scratch("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.join("root/pipe"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let root = Root::new(&dir.join("root"), false).unwrap();
        assert_eq!(root.open(b"pipe").unwrap_err(), FsError::NotFound);
    }

    #[test]
    fn stat_sees_a_rename_replacement() {
        let dir = scratch("stat");
        let root = Root::new(&dir.join("root"), false).unwrap();
        let before = root.stat(b"a.txt").unwrap();
        std::fs::write(dir.join("root/new"), b"hello").unwrap();
        std::fs::rename(dir.join("root/new"), dir.join("root/a.txt")).unwrap();
        let after = root.stat(b"a.txt").unwrap();
        assert_ne!(before.ino, after.ino);
        assert_eq!(before.size, after.size);
    }
}
