//! A cache entry: one version of one file (or directory), with every header
//! value it needs computed once at load time, so that a hit only clones
//! reference counts. Its mappings are in `mapping`.

use super::files::HeldFd;
pub use super::mapping::{Window, Windowed, residency_map};
use crate::fs::Identity;
use crate::http::encoding::Coding;
use bytes::Bytes;
use http::HeaderValue;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// What the entry can serve.
#[derive(Debug)]
pub enum Content {
    /// A directory: answered with a redirect or its index.
    Dir,
    /// The whole file as a heap copy (small files, and empty ones). Every
    /// response body is a slice of it.
    Heap(Bytes),
    /// The whole file as one mapping (a window starting at 0).
    Mapped(Arc<Window>),
    /// A file larger than the window size: mapped window by window, on
    /// demand. Every response holds the file's descriptor for as long as it
    /// runs, so that each window of *this* version can be mapped even after
    /// the path is replaced; the entry itself only remembers it weakly, so
    /// idle cached entries hold no descriptors.
    Windowed(Arc<Windowed>),
    /// The file could not be mapped within the budget (or mmap failed): it is
    /// streamed with `pread` from this descriptor, and never cached.
    Stream(Arc<HeldFd>),
}

/// Precomputed representation headers.
#[derive(Debug, Clone)]
pub struct Headers {
    /// `Content-Type`.
    pub content_type: HeaderValue,
    /// Strong `ETag`, quoted.
    pub etag: HeaderValue,
    /// `Last-Modified`, absent when mtime is 0 or 1 (reproducible builds).
    pub last_modified: Option<HeaderValue>,
    /// Last-Modified as epoch seconds, for date preconditions.
    pub last_modified_secs: Option<u64>,
    /// `Content-Length` of the whole file.
    pub content_length: HeaderValue,
    /// The complete header map of a 200 response, built by `response` on
    /// first use and cloned for every later one (no hashing per header).
    pub full: std::sync::OnceLock<http::HeaderMap>,
    /// The same for a 304: the validators a 200 would carry.
    pub not_modified: std::sync::OnceLock<http::HeaderMap>,
    /// The same for a 206 of one range: the 200's map with a `Content-Range`
    /// slot, so that filling it in never grows the cloned map.
    pub partial: std::sync::OnceLock<http::HeaderMap>,
    /// A rendered listing, not a file: revalidated on every request, varies
    /// with `Accept`, and ignores `Range`.
    pub listing: bool,
    /// The content coding of these bytes (`None`: identity).
    pub content_encoding: Option<Coding>,
    /// Whether the type gains from compression (`compress::compressible`
    /// of `content_type`, decided once).
    pub compressible: bool,
}

/// One version of one file.
#[derive(Debug)]
pub struct Entry {
    /// Unique per loaded version; names its windows in the cache.
    pub id: u64,
    /// The relative path it was loaded from.
    pub key: Box<[u8]>,
    /// What identified the file when it was loaded.
    pub identity: Identity,
    /// The bytes, or how to get them.
    pub content: Content,
    /// Header values.
    pub headers: Headers,
    /// Change detection: valid until inotify reports a change along the
    /// path; `None` means "revalidate with statx".
    pub token: Option<Arc<super::watch::Token>>,
    /// The generation of ROOT it was loaded under (see `cache::root`).
    pub root_generation: u64,
    /// Stale from this instant on, whatever the change detection says (a
    /// rendered listing shows facts no watch covers; files: `None`).
    pub expires: Option<std::time::Instant>,
    /// Which precompressed sidecars lie next to the file, probed on first
    /// use and kept while still true (see `variant`): the first probe, read
    /// without a lock, and the later ones once it stops holding.
    pub sidecars: (
        std::sync::OnceLock<super::variant::SidecarProbe>,
        std::sync::Mutex<Option<super::variant::SidecarProbe>>,
    ),
    /// The headers of this file served as a precompressed sidecar of the
    /// file its name extends (`app.js.br` for `app.js`), built on first use.
    pub as_sidecar: std::sync::OnceLock<Headers>,
    /// Its compressed variant per coding (br, zstd, gzip), once made or
    /// found: a hit reaches it without a table lookup. Weak, so that the
    /// table alone decides how long a variant stays.
    pub variants: [std::sync::Mutex<std::sync::Weak<Entry>>; 3],
    /// Its `ETag` is the metadata form until a background hash is ready
    /// (`--etag content`).
    pub hash_later: bool,
    /// How often and when it was last used, for the admin API.
    pub usage: Usage,
    /// Pinned by the admin API: never evicted.
    pub pinned: std::sync::atomic::AtomicBool,
}

/// Hits and last use of a cached value. Two relaxed atomics per hit.
#[derive(Debug, Default)]
pub struct Usage {
    hits: AtomicU64,
    last_ms: AtomicU64,
    /// Used without a table lookup (a compressed variant reached from its
    /// source) since eviction's hand last passed: counts as referenced.
    unlisted: std::sync::atomic::AtomicBool,
}

impl Usage {
    /// Counts one use now.
    pub fn touch(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        // Written only when the coarse clock moved: a hot entry's line is
        // not written twice per hit by every core.
        let now = now_ms();
        if self.last_ms.load(Ordering::Relaxed) != now {
            self.last_ms.store(now, Ordering::Relaxed);
        }
    }

    /// Counts one use that did not go through the table, so that eviction
    /// still sees it.
    pub fn touch_unlisted(&self) {
        self.touch();
        if !self.unlisted.load(Ordering::Relaxed) {
            self.unlisted.store(true, Ordering::Relaxed);
        }
    }

    /// Whether it was used without a table lookup since the last call.
    pub fn take_unlisted(&self) -> bool {
        self.unlisted.swap(false, Ordering::Relaxed)
    }

    /// Uses so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Seconds since the last use (or since it was made, when never used).
    pub fn idle_secs(&self) -> f64 {
        now_ms().saturating_sub(self.last_ms.load(Ordering::Relaxed)) as f64 / 1000.0
    }

    /// A record of use made now.
    pub fn new_now() -> Usage {
        Usage { last_ms: AtomicU64::new(now_ms()), ..Usage::default() }
    }
}

/// Milliseconds on the coarse monotonic clock (a few ms of resolution,
/// and cheaper than `Instant::now` on every hit).
fn now_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    (t.tv_sec as u64).saturating_mul(1000).saturating_add(t.tv_nsec as u64 / 1_000_000)
}

/// Which headers a response of an entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// The entry's own.
    Own,
    /// A sidecar's, standing for the file its name extends.
    Sidecar(Coding),
}

impl Entry {
    /// Builds the headers for the file at `key` with `identity`.
    pub fn new(key: &[u8], identity: Identity, content: Content) -> Entry {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let name = key.rsplit(|&b| b == b'/').next().unwrap_or(key);
        let last_modified_secs = identity.mtime_secs().filter(|&s| s > 1);
        let last_modified = last_modified_secs.and_then(http_date);
        let content_type = crate::http::mime::content_type(name);
        let headers = Headers {
            compressible: crate::compress::compressible(content_type.as_bytes()),
            content_type,
            etag: etag(&identity),
            last_modified,
            last_modified_secs,
            content_length: HeaderValue::from(identity.size),
            full: std::sync::OnceLock::new(),
            not_modified: std::sync::OnceLock::new(),
            partial: std::sync::OnceLock::new(),
            listing: false,
            content_encoding: None,
        };
        Entry {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            key: key.into(),
            identity,
            content,
            headers,
            token: None,
            root_generation: 0,
            expires: None,
            sidecars: Default::default(),
            as_sidecar: std::sync::OnceLock::new(),
            variants: Default::default(),
            hash_later: false,
            usage: Usage::new_now(),
            pinned: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A compressed representation of `source`, in `coding`: the same type,
    /// validators tied to the source's version (its ETag with the coding
    /// added, so never the identity one) and the same change detection, so
    /// it goes stale exactly when its source does.
    pub fn encoded(source: &Entry, coding: Coding, body: Bytes) -> Entry {
        let len = body.len();
        let mut entry = Entry::new(&source.key, source.identity, Content::Heap(body));
        let h = &mut entry.headers;
        h.content_type = source.headers.content_type.clone();
        h.compressible = source.headers.compressible;
        h.etag = tagged(&source.headers.etag, &crate::compress::etag_tag(coding));
        h.content_length = HeaderValue::from(len);
        h.last_modified = source.headers.last_modified.clone();
        h.last_modified_secs = source.headers.last_modified_secs;
        h.listing = source.headers.listing;
        h.content_encoding = Some(coding);
        entry.token = source.token.clone();
        entry.root_generation = source.root_generation;
        entry.expires = source.expires;
        entry
    }

    /// The headers a response of this entry carries as `face`.
    pub fn face(&self, face: Face) -> &Headers {
        match face {
            Face::Own => &self.headers,
            Face::Sidecar(coding) => self.as_sidecar.get_or_init(|| {
                let stem =
                    self.key.get(..self.key.len().saturating_sub(suffix(coding).len())).unwrap_or_default();
                let name = stem.rsplit(|&b| b == b'/').next().unwrap_or(stem);
                let mut h = self.headers.clone();
                h.content_type = crate::http::mime::content_type(name);
                h.compressible = crate::compress::compressible(h.content_type.as_bytes());
                h.content_encoding = Some(coding);
                h.full = std::sync::OnceLock::new();
                h
            }),
        }
    }

    /// A rendered listing of the directory `dir` (with `identity`): `body`,
    /// of type `content_type`, last changed at `changed` (seconds). Its ETag
    /// is a hash of the bytes and the variant's `tag`, so it changes exactly
    /// when the page would, and differs between representations.
    pub fn rendered(
        dir: &[u8],
        identity: Identity,
        body: Bytes,
        content_type: HeaderValue,
        tag: u8,
        changed: i64,
    ) -> Entry {
        let mut entry = Entry::new(dir, identity, Content::Heap(body.clone()));
        let hash = body.iter().fold(0xcbf2_9ce4_8422_2325_u64 ^ u64::from(tag), |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let etag = format!("\"L{tag:x}-{:x}-{hash:016x}\"", body.len());
        let h = &mut entry.headers;
        h.etag = HeaderValue::from_str(&etag).unwrap_or_else(|_| HeaderValue::from_static("\"L\""));
        h.compressible = crate::compress::compressible(content_type.as_bytes());
        h.content_type = content_type;
        h.content_length = HeaderValue::from(body.len());
        h.last_modified_secs = u64::try_from(changed).ok().filter(|&s| s > 1);
        h.last_modified = h.last_modified_secs.and_then(http_date);
        h.listing = true;
        entry
    }

    /// Length of what it serves.
    pub fn len(&self) -> u64 {
        match &self.content {
            Content::Heap(bytes) => bytes.len() as u64,
            _ => self.identity.size,
        }
    }

    /// Whether it serves nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The file-name suffix of a precompressed sidecar in `coding`.
pub fn suffix(coding: Coding) -> &'static [u8] {
    match coding {
        Coding::Br => b".br",
        Coding::Zstd => b".zst",
        Coding::Gzip => b".gz",
        Coding::Identity => b"",
    }
}

/// `etag` (quoted) with `-tag` added inside the quotes.
fn tagged(etag: &HeaderValue, tag: &str) -> HeaderValue {
    let inner = etag.as_bytes().strip_prefix(b"\"").and_then(|e| e.strip_suffix(b"\"")).unwrap_or_default();
    let mut text = Vec::with_capacity(inner.len() + tag.len() + 3);
    text.push(b'"');
    text.extend_from_slice(inner);
    text.push(b'-');
    text.extend_from_slice(tag.as_bytes());
    text.push(b'"');
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| etag.clone())
}

/// `Last-Modified` for `secs` since the epoch.
fn http_date(secs: u64) -> Option<HeaderValue> {
    let time = SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(secs))?;
    HeaderValue::from_str(&httpdate::fmt_http_date(time)).ok()
}

/// A strong ETag that changes whenever the content may have changed: size and
/// mtime (as nginx does), mixed with inode, ctime and device so that a
/// same-size, same-mtime replacement (`touch -r`, or a copy within one clock
/// tick) still gets a new tag. The format is an implementation detail.
pub fn etag(id: &Identity) -> HeaderValue {
    let mut h = mix(id.dev ^ 0x6d61_7073_6572_7665);
    h = mix(h ^ id.ino);
    h = mix(h ^ id.ctime_ns as u64 ^ ((id.ctime_ns >> 64) as u64));
    h = mix(h ^ id.mtime_ns as u64);
    let text = format!("\"{:x}-{:x}-{:016x}\"", id.size, id.mtime_secs().unwrap_or(0), h);
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    x = (x ^ (x >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::Kind;

    fn id(ino: u64, ctime_ns: i128, mtime_ns: i128, size: u64) -> Identity {
        Identity { dev: 1, ino, size, mtime_ns, ctime_ns, kind: Kind::File, uid: 0 }
    }

    #[test]
    fn etag_changes_with_any_identity_field() {
        let base = id(10, 5_000_000_000, 4_000_000_000, 100);
        let tags = [
            etag(&base),
            etag(&id(11, 5_000_000_000, 4_000_000_000, 100)),
            etag(&id(10, 5_000_000_001, 4_000_000_000, 100)),
            etag(&id(10, 5_000_000_000, 4_000_000_001, 100)),
            etag(&id(10, 5_000_000_000, 4_000_000_000, 101)),
        ];
        for (i, a) in tags.iter().enumerate() {
            for b in tags.iter().skip(i + 1) {
                assert_ne!(a, b);
            }
        }
        assert_eq!(etag(&base), etag(&base));
        assert!(etag(&base).to_str().unwrap().starts_with('"'));
    }

    #[test]
    fn last_modified_is_left_out_for_epoch_and_one() {
        for (mtime, present) in [(0i128, false), (1_000_000_000, false), (2_000_000_000, true)] {
            let e = Entry::new(b"a.txt", id(1, 0, mtime, 0), Content::Heap(Bytes::new()));
            assert_eq!(e.headers.last_modified.is_some(), present, "mtime {mtime}");
        }
        let e = Entry::new(b"a.txt", id(1, 0, 784_111_777_000_000_000, 0), Content::Heap(Bytes::new()));
        assert_eq!(e.headers.last_modified.unwrap(), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn entries_get_distinct_ids() {
        let a = Entry::new(b"a", id(1, 0, 0, 0), Content::Dir);
        let b = Entry::new(b"a", id(1, 0, 0, 0), Content::Dir);
        assert_ne!(a.id, b.id);
    }
}
