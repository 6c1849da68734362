//! Reading one directory beneath ROOT into [`Item`]s: exactly the entries a
//! click would serve.
//!
//! * Each name is checked by the request-path rules (`path::servable_name`):
//!   a name no URL could reach (a backslash, `C:` at the top) is left out,
//!   and so are dotfiles unless hidden files are served.
//! * One `statx` per entry, relative to the directory's descriptor, without
//!   following symlinks. A symlink is resolved by `fs::Root` exactly as a
//!   request would resolve it (with `O_PATH`: its target is never opened),
//!   so it is listed only when it leads beneath ROOT (or anywhere with
//!   `--follow-symlinks-outside-root`) to a file or a directory, with its
//!   target's size and time. When mapserve is not root, one `faccessat` per
//!   entry asks whether it may read it.
//! * FIFOs, sockets and devices are left out. An entry that cannot be
//!   inspected or that mapserve may not read (a click would get 403: a file
//!   of another user's with mode 0600, a symlink to one) is listed by name
//!   only, without size or time, so a listing shows no more than serving
//!   would.

use super::sort::Top;
use super::{Item, Kind, sort_key};
use crate::fs::{FsError, Identity, Root};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, Dir, FileType, StatxFlags};

/// What reading a directory found (the entries themselves went to a
/// [`Top`]).
#[derive(Debug, Default)]
pub struct Read {
    /// Directories listed.
    pub dirs: usize,
    /// Files listed.
    pub files: usize,
    /// Their bytes, where known.
    pub bytes: u64,
    /// The newest status change among the directory and its entries, in
    /// seconds (the listing's Last-Modified).
    pub newest_change: i64,
    /// Whether a name `index.html` exists (of any type): such a listing is
    /// not cached, since its index could start to resolve without an event
    /// in this directory (a dangling symlink whose target appears).
    pub has_index: bool,
}

/// Reads the directory `dir` (opened beneath ROOT at `key`, with
/// `identity`), offering every entry to list to `top`.
pub fn read(
    root: &Root,
    key: &[u8],
    dir: &OwnedFd,
    identity: &Identity,
    hidden: bool,
    top: &mut Top,
) -> Result<Read, FsError> {
    let stream = Dir::read_from(dir).map_err(FsError::from_errno)?;
    let secs = |ns: i128| i64::try_from(ns.div_euclid(1_000_000_000)).unwrap_or(0);
    let mut read = Read { newest_change: secs(identity.ctime_ns), ..Read::default() };
    let mut path = key.to_vec();
    // Root reads everything; anyone else asks the kernel (ACLs included).
    let check_access = !rustix::process::geteuid().is_root();
    for entry in stream {
        let entry = entry.map_err(FsError::from_errno)?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        read.has_index |= name == b"index.html";
        if !crate::path::servable_name(name, key.is_empty(), hidden) {
            continue;
        }
        let found =
            match rustix::fs::statx(dir.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS) {
                Ok(st) if FileType::from_raw_mode(u32::from(st.stx_mode)) == FileType::Symlink => {
                    path.truncate(key.len());
                    if !path.is_empty() {
                        path.push(b'/');
                    }
                    path.extend_from_slice(name);
                    match root.inspect(&path) {
                        Ok(id) => Found::Known(id),
                        Err(FsError::NotFound) => continue,
                        Err(_) => Found::Unknown(Kind::File),
                    }
                }
                Ok(st) => Found::Known(Identity::from_statx(&st)),
                // Gone since readdir.
                Err(rustix::io::Errno::NOENT) => continue,
                Err(_) => match entry.file_type() {
                    FileType::Directory => Found::Unknown(Kind::Dir),
                    FileType::RegularFile | FileType::Unknown | FileType::Symlink => {
                        Found::Unknown(Kind::File)
                    }
                    _ => continue,
                },
            };
        let found = match found {
            Found::Known(id) if check_access && !readable(dir, name, id.kind) => match id.kind {
                crate::fs::Kind::File => Found::Unknown(Kind::File),
                crate::fs::Kind::Dir => Found::Unknown(Kind::Dir),
                crate::fs::Kind::Other => continue,
            },
            other => other,
        };
        let item = match found {
            Found::Known(id) => {
                let kind = match id.kind {
                    crate::fs::Kind::File => Kind::File,
                    crate::fs::Kind::Dir => Kind::Dir,
                    crate::fs::Kind::Other => continue,
                };
                read.newest_change = read.newest_change.max(secs(id.ctime_ns));
                let size = (kind == Kind::File).then_some(id.size);
                Item {
                    name: name.into(),
                    sort_key: sort_key(name),
                    kind,
                    size,
                    mtime: Some(secs(id.mtime_ns)),
                }
            }
            Found::Unknown(kind) => {
                Item { name: name.into(), sort_key: sort_key(name), kind, size: None, mtime: None }
            }
        };
        if item.kind == Kind::Dir {
            read.dirs += 1;
        } else {
            read.files += 1;
        }
        read.bytes = read.bytes.saturating_add(item.size.unwrap_or(0));
        top.push(item);
    }
    Ok(read)
}

/// Whether mapserve may serve the entry `name` (following a symlink): read
/// a file; read and search a directory.
fn readable(dir: &OwnedFd, name: &[u8], kind: crate::fs::Kind) -> bool {
    use rustix::fs::Access;
    let mode = if kind == crate::fs::Kind::Dir { Access::READ_OK | Access::EXEC_OK } else { Access::READ_OK };
    rustix::fs::accessat(dir.as_fd(), name, mode, AtFlags::EACCESS).is_ok()
}

enum Found {
    Known(Identity),
    Unknown(Kind),
}
