//! The response body: a queue of parts, each a ready `Bytes` (a slice of a
//! heap copy, or a small heap header), a span of a mapped file (zero-copy
//! slices of its mapping or windows, checked chunk by chunk, or read with
//! `pread` on the blocking pool when it could not be mapped: see [`stream`]).
//!
//! Slices are yielded in chunks of at most [`MAX_CHUNK`] so that hyper writes
//! them from the mapping with `writev` (or the connection splices them); once
//! a body has yielded its first chunk, the rest of a long stream goes in
//! chunks of [`STREAM_CHUNK`]. A part that cannot be completed (the
//! file shrank under a `pread`) ends the body with an error: hyper then aborts
//! the connection, and the client sees a transfer shorter than its
//! Content-Length, never padding.
//!
//! When the body ends it finishes the request's access-log record
//! (complete or failed); dropped before its end, the request was cancelled
//! (the client went away, reset the stream, or stalled past the send
//! timeout), which only the drop can tell. Either way the connection's
//! in-flight mark is released with it.

use crate::access_log::{AccessRecord, Ending, Report, Tally};
use crate::cache::Entry;
use crate::quota::FileSlot;
use crate::track::RequestGuard;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use rustix::fd::AsFd;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

pub mod stream;

/// Largest slice handed to hyper at once: a file of up to 1 MiB goes out
/// in one.
pub const MAX_CHUNK: usize = 1 << 20;
/// Largest slice after the first: measured side by side on a 1 GiB stream
/// (4 connections, `scripts/bench` setup), 256 KiB cost 0.18 s of CPU per GB
/// against 0.21 s for 1 MiB chunks, 0.21 s for 512 KiB and 0.22 s for 128
/// KiB; a 1 MiB file, by contrast, is cheapest sent as a single chunk.
pub const STREAM_CHUNK: usize = 256 << 10;
/// Size of one `pread` when streaming.
pub const PREAD_CHUNK: usize = 64 << 10;

/// One piece of a body.
#[derive(Debug)]
pub enum Part {
    /// Bytes ready to send (heap memory).
    Ready(Bytes),
    /// A span of a file: large mapped chunks are offered to the connection
    /// for zero-copy sending.
    File(stream::FileStream),
}

impl Part {
    fn len(&self) -> u64 {
        match self {
            Part::Ready(b) => b.len() as u64,
            Part::File(s) => s.remaining(),
        }
    }
}

/// The queue of parts, with the first one held inline: most bodies have a
/// single part and then need no allocation.
#[derive(Debug, Default)]
struct Parts {
    first: Option<Part>,
    rest: VecDeque<Part>,
}

impl Parts {
    fn front_mut(&mut self) -> Option<&mut Part> {
        match self.first {
            Some(ref mut p) => Some(p),
            None => self.rest.front_mut(),
        }
    }

    fn pop_front(&mut self) -> Option<Part> {
        self.first.take().or_else(|| self.rest.pop_front())
    }

    fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }

    fn clear(&mut self) {
        self.first = None;
        self.rest.clear();
    }
}

/// The body type of every mapserve response.
#[derive(Debug, Default)]
pub struct FileBody {
    parts: Parts,
    remaining: u64,
    sent: u64,
    failed: bool,
    entry: Option<Arc<Entry>>,
    record: Option<Box<AccessRecord>>,
    tally: Option<Tally>,
    /// The entry was loaded for this request (a cache miss).
    loaded: bool,
    /// Its number in the connection's ledger, once a chunk was handed over.
    seq: Option<u64>,
    guard: Option<RequestGuard>,
    file_slot: Option<FileSlot>,
}

impl FileBody {
    /// An empty body.
    pub fn empty() -> FileBody {
        FileBody::default()
    }

    /// A body of the given parts. `entry` is kept alive (and so counted as
    /// pinned by the cache) until the body is dropped.
    pub fn new(parts: Vec<Part>, entry: Option<Arc<Entry>>) -> FileBody {
        let remaining = parts.iter().map(Part::len).fold(0u64, u64::saturating_add);
        FileBody {
            parts: Parts { first: None, rest: parts.into() },
            remaining,
            sent: 0,
            failed: false,
            entry,
            record: None,
            tally: None,
            loaded: false,
            seq: None,
            guard: None,
            file_slot: None,
        }
    }

    /// A body of one part (no allocation for the part list).
    pub fn one(part: Part) -> FileBody {
        let mut body = FileBody::new(Vec::new(), None);
        body.remaining = part.len();
        body.parts.first = Some(part);
        body
    }

    /// Keeps `entry` alive (and so counted as pinned by the cache) until the
    /// body is dropped.
    pub fn pinning(mut self, entry: Arc<Entry>) -> FileBody {
        self.entry = Some(entry);
        self
    }

    /// A body of one ready buffer.
    pub fn from_bytes(bytes: Bytes) -> FileBody {
        FileBody::one(Part::Ready(bytes))
    }

    /// Holds the connection's file slot until the body is dropped.
    pub fn hold(&mut self, file: Option<FileSlot>) {
        self.file_slot = file;
    }

    /// Attaches what the end of the response must report and release.
    pub fn attach(&mut self, record: Option<AccessRecord>, tally: Tally, guard: Option<RequestGuard>) {
        self.record = record.map(Box::new);
        self.tally = Some(tally);
        self.guard = guard;
    }

    /// Marks the entry as loaded for this request (a miss).
    pub fn mark_loaded(&mut self) {
        self.loaded = true;
    }

    /// How the body is served, for the access log: `hit`, `load`, `window`,
    /// `pread`, `compressed`, `listing`, or `none` (no entry).
    fn outcome(&self) -> &'static str {
        use crate::cache::Content;
        let Some(entry) = &self.entry else { return "none" };
        if entry.headers.listing {
            "listing"
        } else if entry.headers.content_encoding.is_some() {
            "compressed"
        } else {
            match &entry.content {
                Content::Windowed(_) => "window",
                Content::Stream(_) => "pread",
                _ if self.loaded => "load",
                _ => "hit",
            }
        }
    }

    /// Total bytes this body will yield.
    pub fn len(&self) -> u64 {
        self.remaining
    }

    /// Whether nothing is left to yield.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

/// How much of a file span to yield next, given the bytes already sent.
fn chunk_limit(sent: u64) -> usize {
    if sent == 0 { MAX_CHUNK } else { STREAM_CHUNK }
}

/// The result of a blocking task, with a failed join as an I/O error.
pub(crate) fn joined<T>(r: Result<io::Result<T>, tokio::task::JoinError>) -> io::Result<T> {
    r.unwrap_or_else(|join| Err(io::Error::other(join)))
}

/// Reads exactly `want` bytes at `at`, or fails: a short read means the file
/// shrank, and the response must be aborted rather than padded.
pub(crate) fn read_at(fd: &impl AsFd, at: u64, want: usize) -> io::Result<Bytes> {
    let mut buf = vec![0u8; want];
    let mut done = 0;
    while done < want {
        let dst = buf.get_mut(done..).unwrap_or_default();
        match rustix::io::pread(fd, dst, at.saturating_add(done as u64)) {
            Ok(0) => {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being served"));
            }
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Bytes::from(buf))
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            let chunk = match this.parts.front_mut() {
                None => return Poll::Ready(None),
                Some(Part::Ready(bytes)) if bytes.is_empty() => {
                    this.parts.pop_front();
                    continue;
                }
                Some(Part::File(stream)) => match ready!(stream.poll_chunk(cx, chunk_limit(this.sent))) {
                    None => {
                        this.parts.pop_front();
                        continue;
                    }
                    Some(Ok(chunk)) => {
                        if let (Some(guard), Some(probe)) = (&this.guard, chunk.probe) {
                            // Recorded, then checked once more: a repair after
                            // this check bumps the epoch with the probe known.
                            guard.tracker().note_probe(probe);
                            if probe.is_poisoned() {
                                this.failed = true;
                                this.parts.clear();
                                this.finish(Ending::Failed);
                                return Poll::Ready(Some(Err(io::Error::other(
                                    "file changed under its mapping (SIGBUS)",
                                ))));
                            }
                        }
                        chunk.bytes
                    }
                    Some(Err(e)) => {
                        this.failed = true;
                        this.parts.clear();
                        this.finish(Ending::Failed);
                        return Poll::Ready(Some(Err(e)));
                    }
                },
                Some(Part::Ready(bytes)) if bytes.len() > MAX_CHUNK => bytes.split_to(MAX_CHUNK),
                Some(Part::Ready(_)) => match this.parts.pop_front() {
                    Some(Part::Ready(bytes)) => bytes,
                    _ => continue,
                },
            };
            if let Some(tracker) = this.guard.as_ref().map(RequestGuard::tracker).filter(|t| t.ledger_on()) {
                tracker.ledger_chunk(&mut this.seq, &chunk);
            }
            let n = chunk.len() as u64;
            this.sent = this.sent.saturating_add(n);
            this.remaining = this.remaining.saturating_sub(n);
            if this.remaining == 0 {
                // Every byte is now hyper's to write.
                this.finish(Ending::Complete);
            }
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

impl FileBody {
    /// Reports the request (metrics, access line), once: now, or, on an
    /// HTTP/1 connection that counts what it writes, when its bytes are out
    /// (`track::ledger`).
    fn finish(&mut self, ending: Ending) {
        if self.tally.is_none() && self.record.is_none() {
            return;
        }
        let report = Report { record: self.record.take(), tally: self.tally.take(), outcome: self.outcome() };
        match (&self.guard, self.seq) {
            (Some(guard), Some(seq)) => guard.tracker().ledger_defer(seq, self.sent, ending, report),
            (guard, _) => report.send(self.sent, ending, guard.as_ref().map(|g| g.tracker().repeats())),
        }
    }
}

impl Drop for FileBody {
    fn drop(&mut self) {
        let ending = if self.failed {
            Ending::Failed
        } else if self.remaining == 0 {
            // A body that had nothing (left) to yield: HEAD, 304, or one
            // hyper saw the end of without polling again.
            Ending::Complete
        } else {
            Ending::Cancelled
        };
        self.finish(ending);
        self.entry = None;
        self.guard = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body;

    async fn collect(mut body: FileBody) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            out.extend_from_slice(frame?.data_ref().map(|b| &b[..]).unwrap_or_default());
        }
        Ok(out)
    }

    #[tokio::test]
    async fn ready_parts_are_chunked_and_exact() {
        let big = Bytes::from(vec![1u8; MAX_CHUNK * 2 + 5]);
        let body = FileBody::new(vec![Part::Ready(Bytes::from_static(b"head")), Part::Ready(big)], None);
        assert_eq!(body.size_hint().exact(), Some((MAX_CHUNK * 2 + 9) as u64));
        let out = collect(body).await.unwrap();
        assert_eq!(out.len(), MAX_CHUNK * 2 + 9);
    }
}
