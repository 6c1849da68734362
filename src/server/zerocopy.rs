//! Zero-copy sending of large slices of file mappings: `vmsplice` the mapped
//! pages into a pipe (the pipe takes page references, no copy) and `splice`
//! the pipe into the socket (TCP takes the same pages). This is what
//! `sendfile` does for nginx and lighttpd, without keeping a descriptor per
//! cached file: the mapping is the source.
//!
//! The pipe acts as a small extra send buffer: bytes moved into it count as
//! written for hyper, so the pipe is always drained into the socket before
//! anything else is written, and on flush and shutdown.
//!
//! Pipes are not owned by connections: a connection borrows one for a large
//! write and gives it back as soon as it is drained, to a small shared pool
//! (pipes idle for a few seconds are closed). So an idle keep-alive
//! connection holds one descriptor (its socket), and only connections whose
//! pipe still holds bytes (the socket is full) keep one. The number of pipes alive is capped (`set_limit`, derived
//! from the descriptor limit); past it, large slices are copied with
//! `writev` instead.

use crate::mmap::guard::Probe;
use crate::mmap::{PipeWriter, pipe, vmsplice_mapped};
use rustix::fd::OwnedFd;
use rustix::pipe::SpliceFlags;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::net::TcpStream;

pub use crate::track::MIN_SPLICE;

/// Most idle pipes kept for reuse.
const IDLE_MAX: usize = 64;

static ALIVE: AtomicUsize = AtomicUsize::new(0);
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Caps the pipes alive at once (each is two descriptors).
pub fn set_limit(pipes: usize) {
    LIMIT.store(pipes, Ordering::Relaxed);
}

/// Pipes alive now (borrowed or idle in a pool).
pub fn alive() -> usize {
    ALIVE.load(Ordering::Relaxed)
}

/// A pipe, counted against the limit while it exists.
#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    write: PipeWriter,
}

impl Pipe {
    fn new() -> Option<Pipe> {
        let limit = LIMIT.load(Ordering::Relaxed);
        ALIVE.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < limit).then_some(n + 1)).ok()?;
        match pipe() {
            Ok((read, write)) => Some(Pipe { read, write }),
            Err(_) => {
                ALIVE.fetch_sub(1, Ordering::AcqRel);
                None
            }
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        ALIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Idle pipes, with the time each was given back. One short lock per borrow
/// and per give-back; trimmed by [`close_idle`].
static IDLE: Mutex<Vec<(Pipe, Instant)>> = Mutex::new(Vec::new());

fn idle() -> MutexGuard<'static, Vec<(Pipe, Instant)>> {
    IDLE.lock().unwrap_or_else(|e| e.into_inner())
}

fn borrow() -> Option<Pipe> {
    let pooled = idle().pop();
    pooled.map(|(pipe, _)| pipe).or_else(Pipe::new)
}

fn give_back(pipe: Pipe) {
    let mut idle = idle();
    if idle.len() < IDLE_MAX {
        idle.push((pipe, Instant::now()));
    }
}

/// Closes pipes that have been idle for longer than `older_than`, so that a
/// quiet server holds no descriptors beyond its sockets. Called periodically.
pub fn close_idle(older_than: Duration) {
    let closed: Vec<(Pipe, Instant)> = {
        let mut idle = idle();
        let now = Instant::now();
        let (old, keep): (Vec<_>, Vec<_>) =
            idle.drain(..).partition(|(_, at)| now.duration_since(*at) >= older_than);
        *idle = keep;
        old
    };
    drop(closed);
}

/// A connection's use of a pipe: the one it has borrowed, if any, and how
/// many bytes wait in it.
#[derive(Debug, Default)]
pub struct Splicer {
    pipe: Option<Pipe>,
    pending: usize,
}

/// No pipe could be had (limit reached, or no descriptors): copy instead.
#[derive(Debug)]
pub struct NoPipe;

impl Splicer {
    /// Bytes spliced into the pipe and not yet to the socket.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Whether spliced bytes still wait in the pipe.
    pub fn has_pending(&self) -> bool {
        self.pending > 0
    }

    /// Moves bytes of the mapping `mapping` into the pipe, borrowing one if
    /// needed; returns how many it took (0: full).
    pub fn fill(&mut self, mapping: &Probe, data: &[u8]) -> Result<io::Result<usize>, NoPipe> {
        if self.pipe.is_none() {
            self.pipe = Some(borrow().ok_or(NoPipe)?);
        }
        let Some(pipe) = self.pipe.as_ref() else { return Err(NoPipe) };
        Ok(vmsplice_mapped(&pipe.write, mapping, data).inspect(|&n| self.pending += n))
    }

    /// Moves everything in the pipe to the socket, waiting for the socket to
    /// become writable as needed; gives the pipe back once empty.
    pub fn poll_drain(&mut self, stream: &TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pending > 0 {
            ready!(stream.poll_write_ready(cx))?;
            self.splice_out(stream)?;
        }
        self.release();
        Poll::Ready(Ok(()))
    }

    /// Tries to move the pipe to the socket without waiting.
    pub fn drain_now(&mut self, stream: &TcpStream) -> io::Result<()> {
        while self.pending > 0 {
            if !self.splice_out(stream)? {
                return Ok(());
            }
        }
        self.release();
        Ok(())
    }

    fn release(&mut self) {
        if self.pending == 0 {
            if let Some(pipe) = self.pipe.take() {
                give_back(pipe);
            }
        }
    }

    /// One `splice` from the pipe to the socket; `false` if the socket was
    /// full (tokio then waits for writability again).
    fn splice_out(&mut self, stream: &TcpStream) -> io::Result<bool> {
        let Some(pipe) = self.pipe.as_ref() else { return Err(io::ErrorKind::BrokenPipe.into()) };
        let moved = stream.try_io(Interest::WRITABLE, || {
            rustix::pipe::splice(&pipe.read, None, stream, None, self.pending, SpliceFlags::NONBLOCK)
                .map_err(io::Error::from)
        });
        match moved {
            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                self.pending -= n;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Writes `bufs` with `sendmsg(MSG_MORE)`: the bytes before a spliced slice
/// (the response head) wait to share a packet with it.
pub fn send_more(stream: &TcpStream, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    stream.try_io(Interest::WRITABLE, || {
        rustix::net::sendmsg(
            stream,
            bufs,
            &mut Default::default(),
            rustix::net::SendFlags::MORE | rustix::net::SendFlags::NOSIGNAL,
        )
        .map_err(io::Error::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_are_pooled_capped_and_closed_when_idle() {
        let before = alive();
        let a = borrow().unwrap();
        let b = borrow().unwrap();
        assert!(alive() >= before + 2);
        give_back(a);
        give_back(b);
        let pooled = alive();
        let again = borrow().unwrap();
        assert_eq!(alive(), pooled, "a pooled pipe is reused, not made");
        give_back(again);
        close_idle(Duration::ZERO);
        assert_eq!(alive(), 0, "idle pipes are closed");
        set_limit(1);
        let one = borrow().unwrap();
        assert!(borrow().is_none(), "over the limit");
        drop(one);
        assert!(borrow().is_some());
        set_limit(usize::MAX);
    }
}
