//! The PROXY protocol (`--proxy-protocol`): every connection begins with a
//! v1 or v2 header from the proxy in front (HAProxy `send-proxy`,
//! `send-proxy-v2`), naming the client. It must arrive whole within the
//! header timeout; a connection whose first bytes are not one is closed
//! without an answer (answering would let a client without the proxy talk
//! to the server as if it were one). Bytes read past the header are handed
//! on, in front of the stream ([`super::conn::Rewind`]).

pub(super) mod header;

use bytes::{Bytes, BytesMut};
use header::{Parsed, ProxyHeader};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Reads a PROXY header from `stream`: what it says, and the bytes read
/// beyond it.
pub(super) async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<(ProxyHeader, Bytes)> {
    let mut buf = BytesMut::with_capacity(header::MAX_V1.max(536));
    loop {
        if buf.len() >= header::MAX_V2 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "PROXY header too long"));
        }
        let room = header::MAX_V2 - buf.len();
        if buf.capacity() - buf.len() < room.min(512) {
            buf.reserve(room.min(512));
        }
        let n = stream.read_buf(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before a PROXY header"));
        }
        match header::parse(&buf) {
            Ok(Parsed::Incomplete) => continue,
            Ok(Parsed::Done { header, consumed }) => {
                let ahead = buf.split_off(consumed.min(buf.len())).freeze();
                return Ok((header, ahead));
            }
            Err(e) => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("bad PROXY header: {e}")));
            }
        }
    }
}
