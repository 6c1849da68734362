//! Who a connection or request comes from: the socket's address, a client
//! conveyed by the PROXY protocol, a client named by a trusted proxy's
//! forwarded headers, or a unix-socket peer (which has no address).

use std::net::{IpAddr, SocketAddr};

/// A client, as the access log and the trusted-proxy decisions see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A TCP peer (or a client the PROXY protocol conveyed), with its port.
    Addr(SocketAddr),
    /// A client named by a trusted proxy (no port).
    Forwarded(IpAddr),
    /// A peer on a unix socket.
    Unix,
}

impl Peer {
    /// The port, when the client is known by its socket address.
    pub fn port(&self) -> Option<u16> {
        match self {
            Peer::Addr(a) => Some(a.port()),
            Peer::Forwarded(_) | Peer::Unix => None,
        }
    }

    /// The address, when there is one (IPv4-mapped IPv6 addresses as IPv4).
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Peer::Addr(a) => Some(a.ip().to_canonical()),
            Peer::Forwarded(ip) => Some(ip.to_canonical()),
            Peer::Unix => None,
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Addr(a) => write!(f, "{a}"),
            Peer::Forwarded(ip) => write!(f, "{ip}"),
            Peer::Unix => f.write_str("unix"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_as_the_access_log_shows_them() {
        assert_eq!(Peer::Unix.to_string(), "unix");
        assert_eq!(Peer::Unix.ip(), None);
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:80".parse().unwrap();
        assert_eq!(Peer::Addr(mapped).ip(), Some("10.1.2.3".parse().unwrap()));
        assert_eq!(Peer::Forwarded("2001:db8::1".parse().unwrap()).to_string(), "2001:db8::1");
    }
}
