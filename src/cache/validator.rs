//! The `ETag` of a file version, by `--etag`:
//!
//! * `strict`: size, mtime, inode, ctime and device (`entry::etag`).
//! * `metadata`: mtime and size in nginx's form (`"<mtime hex>-<size hex>"`),
//!   so replicas whose deploys keep mtimes agree, with each other and with
//!   nginx serving the same files.
//! * `content`: a 128-bit xxh3 hash of the bytes, so replicas serving the
//!   same bytes agree whatever their inodes and mtimes. It is computed once
//!   per file version, by `pread` (never through a mapping, so a file
//!   truncated meanwhile cannot fault), on the blocking pool. Files up to
//!   [`HASH_INLINE_MAX`] are hashed while their first request waits (at
//!   page-cache speed, under a millisecond per MiB). Larger ones, up to
//!   `--etag-hash-max`, are hashed in the background: until the hash is
//!   ready they carry the metadata form, then the cached entry is dropped so
//!   the next request loads it with the content form. Larger files always
//!   carry the metadata form. A file that changes while it is hashed keeps
//!   the strict form for that version.

use crate::config::EtagMode;
use crate::fs::Identity;
use http::HeaderValue;
use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::Mutex;

/// Files up to this size are hashed while their first request waits.
pub(super) const HASH_INLINE_MAX: u64 = 8 << 20;
/// Hashes of larger files kept (by version) for the next load.
const REMEMBERED: usize = 4096;
/// Bytes read per `pread` while hashing.
const CHUNK: usize = 1 << 20;

/// The validator policy and the hashes computed in the background.
#[derive(Debug)]
pub(super) struct Validators {
    mode: EtagMode,
    hash_max: u64,
    done: Mutex<Done>,
}

#[derive(Debug, Default)]
struct Done {
    hashes: HashMap<Identity, u128>,
    order: VecDeque<Identity>,
    running: HashSet<Identity>,
}

/// What to do for a file version.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Tag {
    /// Keep the strict form.
    Strict,
    /// This tag.
    Ready(HeaderValue),
    /// The metadata form for now; hash it in the background.
    Later(HeaderValue),
}

impl Validators {
    pub(super) fn new(mode: EtagMode, hash_max: u64) -> Validators {
        Validators { mode, hash_max, done: Mutex::new(Done::default()) }
    }

    /// The tag for the version `id` of the file open as `fd` (on the
    /// blocking pool: it may hash the file).
    pub(super) fn tag(&self, fd: &OwnedFd, id: &Identity) -> Tag {
        match self.mode {
            EtagMode::Strict => Tag::Strict,
            EtagMode::Metadata => Tag::Ready(metadata(id)),
            EtagMode::Content if id.size > self.hash_max => Tag::Ready(metadata(id)),
            EtagMode::Content if id.size <= HASH_INLINE_MAX => match hash_fd(fd, id) {
                Some(h) => Tag::Ready(content(id.size, h)),
                None => Tag::Strict,
            },
            EtagMode::Content => match self.lock().hashes.get(id) {
                Some(&h) => Tag::Ready(content(id.size, h)),
                None => Tag::Later(metadata(id)),
            },
        }
    }

    /// Claims the background hash of `id`; false when one runs already.
    pub(super) fn claim(&self, id: &Identity) -> bool {
        let mut done = self.lock();
        !done.hashes.contains_key(id) && done.running.insert(*id)
    }

    /// Gives up a claim without hashing.
    pub(super) fn release(&self, id: &Identity) {
        self.lock().running.remove(id);
    }

    /// Hashes `fd` (version `id`, claimed) and remembers the result.
    /// Whether a hash was stored.
    pub(super) fn hash_claimed(&self, fd: &OwnedFd, id: &Identity) -> bool {
        let hash = hash_fd(fd, id);
        let mut done = self.lock();
        done.running.remove(id);
        let Some(hash) = hash else { return false };
        if done.order.len() >= REMEMBERED {
            if let Some(old) = done.order.pop_front() {
                done.hashes.remove(&old);
            }
        }
        done.hashes.insert(*id, hash);
        done.order.push_back(*id);
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Done> {
        self.done.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// nginx's form: `"<mtime seconds hex>-<size hex>"`.
fn metadata(id: &Identity) -> HeaderValue {
    let secs = id.mtime_secs().unwrap_or(0);
    HeaderValue::from_str(&format!("\"{secs:x}-{:x}\"", id.size))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

fn content(size: u64, hash: u128) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{size:x}-x{hash:032x}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// The xxh3-128 of the file's `id.size` bytes, if it still is version `id`
/// after they were read.
fn hash_fd(fd: &OwnedFd, id: &Identity) -> Option<u128> {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; CHUNK.min(usize::try_from(id.size).ok()?.max(1))];
    let mut at = 0u64;
    while at < id.size {
        let want = usize::try_from(id.size - at).ok()?.min(buf.len());
        let n = match rustix::io::pread(fd, buf.get_mut(..want)?, at) {
            Ok(0) => return None,
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return None,
        };
        hasher.update(buf.get(..n)?);
        at += n as u64;
    }
    let after =
        rustix::fs::statx(fd, "", rustix::fs::AtFlags::EMPTY_PATH, rustix::fs::StatxFlags::BASIC_STATS)
            .ok()
            .map(|st| Identity::from_statx(&st))?;
    (after == *id).then(|| hasher.digest128())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &[u8]) -> (std::path::PathBuf, OwnedFd, Identity) {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "mapserve-validator-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, data).unwrap();
        let fd = OwnedFd::from(std::fs::File::open(&path).unwrap());
        let st =
            rustix::fs::statx(&fd, "", rustix::fs::AtFlags::EMPTY_PATH, rustix::fs::StatxFlags::BASIC_STATS)
                .unwrap();
        (path, fd, Identity::from_statx(&st))
    }

    #[test]
    fn the_same_bytes_give_the_same_content_tag_whatever_the_file() {
        let v = Validators::new(EtagMode::Content, 1 << 30);
        let (p1, f1, id1) = file(b"same bytes");
        let (p2, f2, id2) = file(b"same bytes");
        let (p3, f3, id3) = file(b"other byte");
        assert_ne!(id1.ino, id2.ino);
        let (t1, t2, t3) = (v.tag(&f1, &id1), v.tag(&f2, &id2), v.tag(&f3, &id3));
        assert!(matches!(&t1, Tag::Ready(t) if t.to_str().unwrap().contains("-x")), "{t1:?}");
        assert_eq!(t1, t2);
        assert_ne!(t1, t3);
        for p in [p1, p2, p3] {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn metadata_is_nginx_form_and_large_files_hash_later() {
        let (path, fd, id) = file(&vec![7u8; (HASH_INLINE_MAX + 1) as usize]);
        let meta = Validators::new(EtagMode::Metadata, 0).tag(&fd, &id);
        let want = format!("\"{:x}-{:x}\"", id.mtime_secs().unwrap(), id.size);
        assert_eq!(meta, Tag::Ready(HeaderValue::from_str(&want).unwrap()));
        let v = Validators::new(EtagMode::Content, 1 << 30);
        assert_eq!(v.tag(&fd, &id), Tag::Later(HeaderValue::from_str(&want).unwrap()));
        assert!(v.claim(&id) && !v.claim(&id), "one hash per version at a time");
        assert!(v.hash_claimed(&fd, &id));
        assert!(matches!(v.tag(&fd, &id), Tag::Ready(t) if t != HeaderValue::from_str(&want).unwrap()));
        assert!(!v.claim(&id), "hashed already");
        let over = Validators::new(EtagMode::Content, 1024).tag(&fd, &id);
        assert_eq!(over, Tag::Ready(HeaderValue::from_str(&want).unwrap()), "above --etag-hash-max");
        assert_eq!(Validators::new(EtagMode::Strict, 0).tag(&fd, &id), Tag::Strict);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_file_changed_while_hashed_keeps_the_strict_form() {
        let (path, fd, mut id) = file(b"0123456789");
        id.mtime_ns += 1;
        assert_eq!(Validators::new(EtagMode::Content, 1 << 30).tag(&fd, &id), Tag::Strict);
        let _ = std::fs::remove_file(path);
    }
}
