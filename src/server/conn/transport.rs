//! What a connection runs over: plain TCP, a unix socket, or TLS over TCP,
//! each behind [`Rewind`], which first hands back bytes read ahead of the
//! application (after a PROXY protocol header).
//!
//! Only plain TCP can take mapped pages by `splice` ([`Transport::tcp`]):
//! over TLS every byte is encrypted in user space, and a unix socket is
//! written with `writev` (no copy in user space either).
//!
//! Under TLS, rustls reads mapped bytes in user space and sends the
//! ciphertext in the same write: a page lost to a truncation at that moment
//! reads as zeros (the SIGBUS guard's repair). [`Checked`] sits between
//! rustls and the socket and refuses to write once a mapping the connection
//! read from is poisoned, so those zeros never leave.

use crate::track::ConnTracker;
use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::server::TlsStream;

/// A stream a connection can run over.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The TCP socket the bytes written go to unchanged, for `splice`.
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }

    /// Bytes written reach the socket as they are (no TLS framing).
    fn plain(&self) -> bool {
        false
    }

    /// Writes what the socket takes now, without waiting: a best-effort
    /// answer just before the connection is closed. `WouldBlock` where
    /// bytes cannot be written outside the stream's own framing (TLS).
    fn write_now(&self, buf: &[u8]) -> io::Result<usize>;
}

impl Transport for TcpStream {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }

    fn plain(&self) -> bool {
        true
    }

    fn write_now(&self, buf: &[u8]) -> io::Result<usize> {
        self.try_write(buf)
    }
}

impl Transport for UnixStream {
    fn plain(&self) -> bool {
        true
    }

    fn write_now(&self, buf: &[u8]) -> io::Result<usize> {
        self.try_write(buf)
    }
}

impl<S: Transport> Transport for TlsStream<S> {
    fn write_now(&self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl<T: Transport> Transport for Box<T> {
    fn tcp(&self) -> Option<&TcpStream> {
        (**self).tcp()
    }

    fn plain(&self) -> bool {
        (**self).plain()
    }

    fn write_now(&self, buf: &[u8]) -> io::Result<usize> {
        (**self).write_now(buf)
    }
}

/// The socket under a TLS stream: every write first checks that no mapping
/// this connection read from was poisoned since the last check.
#[derive(Debug)]
pub struct Checked<S> {
    inner: S,
    tracker: Arc<ConnTracker>,
    poison: PoisonWatch,
}

impl<S> Checked<S> {
    /// `inner`, checked against the mappings `tracker` records.
    pub fn new(inner: S, tracker: Arc<ConnTracker>) -> Checked<S> {
        Checked { inner, tracker, poison: PoisonWatch::new() }
    }

    fn check(&mut self) -> io::Result<()> {
        self.poison.check(&self.tracker)
    }
}

/// Whether a mapping a connection read from was poisoned by the SIGBUS
/// guard since the last look: the guard's epoch is one atomic load; the
/// connection's mappings are looked at only when it moved.
#[derive(Debug)]
pub struct PoisonWatch {
    seen_epoch: u64,
}

impl Default for PoisonWatch {
    fn default() -> PoisonWatch {
        PoisonWatch::new()
    }
}

impl PoisonWatch {
    /// Watching from now.
    pub fn new() -> PoisonWatch {
        PoisonWatch { seen_epoch: crate::mmap::guard::epoch() }
    }

    /// An error once a mapping `tracker` records was poisoned.
    pub fn check(&mut self, tracker: &ConnTracker) -> io::Result<()> {
        let epoch = crate::mmap::guard::epoch();
        if epoch != self.seen_epoch {
            self.seen_epoch = epoch;
            if tracker.may_have_read_poison() {
                return Err(io::Error::other("a mapping this connection read from was truncated (SIGBUS)"));
            }
        }
        Ok(())
    }
}

impl<S: Transport> Transport for Checked<S> {
    fn write_now(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_now(buf)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Checked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Checked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A stream with bytes already read from it put back in front.
#[derive(Debug)]
pub struct Rewind<S> {
    ahead: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    /// `inner`, whose next bytes are `ahead`.
    pub fn new(inner: S, ahead: Bytes) -> Rewind<S> {
        Rewind { ahead, inner }
    }
}

impl<S: Transport> Transport for Rewind<S> {
    fn tcp(&self) -> Option<&TcpStream> {
        // Nothing may overtake the bytes still held.
        if self.ahead.is_empty() { self.inner.tcp() } else { None }
    }

    fn plain(&self) -> bool {
        self.inner.plain()
    }

    fn write_now(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_now(buf)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.ahead.is_empty() {
            let n = self.ahead.len().min(buf.remaining());
            let head = self.ahead.split_to(n);
            buf.put_slice(&head);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn rewound_bytes_come_first_and_splicing_waits_for_them() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b" world").await.unwrap();
        });
        let (s, _) = listener.accept().await.unwrap();
        let mut r = Rewind::new(s, Bytes::from_static(b"hello"));
        assert!(r.tcp().is_none(), "no splice while bytes are held");
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello world");
        assert!(r.tcp().is_some());
        client.await.unwrap();
    }
}
