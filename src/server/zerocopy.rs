//! Zero-copy sending of large slices of file mappings: `vmsplice` the mapped
//! pages into a pipe (the pipe takes page references, no copy) and `splice`
//! the pipe into the socket (TCP takes the same pages). This is what
//! `sendfile` does for nginx and lighttpd, without keeping a descriptor per
//! cached file: the mapping is the source.
//!
//! The pipe acts as a small extra send buffer: bytes moved into it count as
//! written for hyper, so the pipe is always drained into the socket before
//! anything else is written, and on flush and shutdown.

use rustix::fd::OwnedFd;
use rustix::pipe::{PipeFlags, SpliceFlags};
use std::io;
use std::task::{Context, Poll, ready};
use tokio::io::Interest;
use tokio::net::TcpStream;

pub use crate::track::MIN_SPLICE;
/// Pipe size asked for (the kernel may grant less).
const PIPE_SIZE: usize = 1 << 20;

/// A connection's pipe and how many bytes wait in it.
#[derive(Debug)]
pub struct Splicer {
    read: OwnedFd,
    write: OwnedFd,
    pending: usize,
}

impl Splicer {
    /// A non-blocking pipe, enlarged when the system allows.
    pub fn new() -> io::Result<Splicer> {
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let _ = rustix::pipe::fcntl_setpipe_size(&write, PIPE_SIZE);
        Ok(Splicer { read, write, pending: 0 })
    }

    /// Whether bytes wait in the pipe.
    pub fn has_pending(&self) -> bool {
        self.pending > 0
    }

    /// Moves mapped bytes into the pipe; returns how many it took.
    pub fn fill(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = match crate::mmap::vmsplice_mapped(&self.write, data) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        self.pending += n;
        Ok(n)
    }

    /// Moves everything in the pipe to the socket, waiting for the socket to
    /// become writable as needed.
    pub fn poll_drain(&mut self, stream: &TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pending > 0 {
            ready!(stream.poll_write_ready(cx))?;
            self.splice_out(stream)?;
        }
        Poll::Ready(Ok(()))
    }

    /// Tries to move the pipe to the socket without waiting.
    pub fn drain_now(&mut self, stream: &TcpStream) -> io::Result<()> {
        while self.pending > 0 {
            if !self.splice_out(stream)? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// One `splice` from the pipe to the socket; `false` if the socket was
    /// full (tokio then waits for writability again).
    fn splice_out(&mut self, stream: &TcpStream) -> io::Result<bool> {
        let moved = stream.try_io(Interest::WRITABLE, || {
            rustix::pipe::splice(&self.read, None, stream, None, self.pending, SpliceFlags::NONBLOCK)
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
