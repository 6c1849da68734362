//! Where connections come from: TCP addresses, unix sockets, and sockets
//! inherited from systemd, each plain or TLS. One place knows what kind of
//! socket a listener is; the rest of the server sees [`Accepted`] streams.
//!
//! A unix socket is created with `--unix-mode` before it listens, so no
//! client can connect while its permissions are still the umask's. A socket
//! file left by a server that died is replaced only when nobody answers on
//! it; one a live server listens on stops start-up, naming it. The file is
//! removed on exit if it is still the one this process made.

use super::systemd::Inherited;
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// Unix socket listen backlog (the kernel caps it at `somaxconn`).
const BACKLOG: i32 = 4096;

/// A bound, listening socket.
#[derive(Debug)]
pub(super) struct Listener {
    socket: Socket,
    /// Connections on it speak TLS.
    pub tls: bool,
    /// The socket file this process created, and its identity (device,
    /// inode), removed on exit.
    created: Option<(PathBuf, (u64, u64))>,
}

#[derive(Debug)]
enum Socket {
    Tcp(TcpListener),
    Unix(UnixListener, Option<PathBuf>),
}

/// One accepted connection.
#[derive(Debug)]
pub(super) enum Accepted {
    /// A TCP connection and its peer.
    Tcp(TcpStream, SocketAddr),
    /// A unix-socket connection.
    Unix(UnixStream),
}

impl Listener {
    /// Binds a TCP address.
    pub(super) async fn tcp(addr: SocketAddr, tls: bool) -> io::Result<Listener> {
        let socket = TcpListener::bind(addr)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        Ok(Listener { socket: Socket::Tcp(socket), tls, created: None })
    }

    /// Creates a unix socket at `path` with permissions `mode`.
    pub(super) fn unix(path: &Path, mode: u32) -> io::Result<Listener> {
        let fail =
            |what: String| io::Error::other(format!("cannot listen on unix:{}: {what}", path.display()));
        clear_stale(path).map_err(|e| fail(e.to_string()))?;
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .map_err(|e| fail(e.to_string()))?;
        let addr = rustix::net::SocketAddrUnix::new(path).map_err(|e| fail(e.to_string()))?;
        rustix::net::bind(&fd, &addr).map_err(|e| fail(e.to_string()))?;
        let made = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
        let created = Some((path.to_owned(), (made.dev(), made.ino())));
        // Before `listen`: until then a connect is refused. On failure the
        // file just made goes again.
        let ready = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .and_then(|()| Ok(rustix::net::listen(&fd, BACKLOG)?));
        if let Err(e) = ready {
            let _ = std::fs::remove_file(path);
            return Err(fail(e.to_string()));
        }
        // Only now to tokio: a unix stream socket that does not listen yet
        // polls as hung up, and a reactor that saw that would report it
        // ready for ever (accept spinning on EAGAIN).
        Ok(Listener { socket: Socket::Unix(unix_from(fd)?, None), tls: false, created })
    }

    /// A socket systemd passed in. `tls` when its name says so.
    pub(super) fn inherited(inherited: Inherited) -> io::Result<Listener> {
        let Inherited { fd, name } = inherited;
        let which = if name.is_empty() { String::new() } else { format!(" ({name})") };
        let fail = |what: String| io::Error::other(format!("inherited socket{which}: {what}"));
        if rustix::net::sockopt::socket_type(&fd).map_err(|e| fail(e.to_string()))? != SocketType::STREAM {
            return Err(fail("not a stream socket (ListenStream= is needed)".into()));
        }
        if !rustix::net::sockopt::socket_acceptconn(&fd).map_err(|e| fail(e.to_string()))? {
            return Err(fail("not listening".into()));
        }
        rustix::io::ioctl_fionbio(&fd, true).map_err(|e| fail(e.to_string()))?;
        let family = rustix::net::getsockname(&fd).map_err(|e| fail(e.to_string()))?.address_family();
        let tls = name == "tls" || name.starts_with("tls-");
        let socket = if family == AddressFamily::UNIX {
            if tls {
                return Err(fail("TLS is served on TCP sockets only".into()));
            }
            let listener = unix_from(fd)?;
            let path = listener.local_addr().ok().and_then(|a| a.as_pathname().map(Path::to_owned));
            Socket::Unix(listener, path)
        } else if family == AddressFamily::INET || family == AddressFamily::INET6 {
            Socket::Tcp(TcpListener::from_std(std::net::TcpListener::from(fd))?)
        } else {
            return Err(fail("neither a TCP nor a unix socket".into()));
        };
        Ok(Listener { socket, tls, created: None })
    }

    /// Waits for the next connection.
    pub(super) async fn accept(&self) -> io::Result<Accepted> {
        match &self.socket {
            Socket::Tcp(l) => l.accept().await.map(|(s, peer)| Accepted::Tcp(s, peer)),
            Socket::Unix(l, _) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
        }
    }

    /// `http://ADDR`, `https://ADDR` or `unix:PATH`, as logged.
    pub(super) fn describe(&self) -> String {
        match &self.socket {
            Socket::Tcp(l) => {
                let scheme = if self.tls { "https" } else { "http" };
                match l.local_addr() {
                    Ok(addr) => format!("{scheme}://{addr}"),
                    Err(_) => format!("{scheme}://?"),
                }
            }
            Socket::Unix(_, inherited) => {
                let path = self.created.as_ref().map(|(p, _)| p).or(inherited.as_ref());
                path.map_or_else(|| "unix:(unnamed)".to_owned(), |p| format!("unix:{}", p.display()))
            }
        }
    }

    /// Removes the socket file this process created, if it is still ours.
    pub(super) fn remove_socket_file(&self) {
        let Some((path, id)) = &self.created else { return };
        match std::fs::symlink_metadata(path) {
            Ok(m) if (m.dev(), m.ino()) == *id => {
                if let Err(e) = std::fs::remove_file(path) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove the unix socket");
                }
            }
            _ => tracing::debug!(path = %path.display(), "the unix socket file was replaced; left alone"),
        }
    }
}

fn unix_from(fd: std::os::fd::OwnedFd) -> io::Result<UnixListener> {
    UnixListener::from_std(std::os::unix::net::UnixListener::from(fd))
}

/// Makes room for a new socket at `path`: nothing there, or a socket file
/// nobody listens on (removed). A live socket or any other file is an error.
fn clear_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(meta) => meta,
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "the path exists and is not a socket"));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is listening on it (stop it first, or choose another path)",
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "replacing a stale unix socket nobody listens on");
            std::fs::remove_file(path)
        }
        Err(e) => Err(io::Error::new(e.kind(), format!("cannot tell whether it is in use: {e}"))),
    }
}

/// Every listener the configuration asks for, or the inherited ones.
pub(super) async fn bind_all(config: &crate::config::Config) -> io::Result<Vec<Listener>> {
    let inherited = super::systemd::listen_fds()?;
    let mut listeners = Vec::new();
    if !inherited.is_empty() {
        tracing::info!(
            sockets = inherited.len(),
            "socket activation: serving on the inherited sockets, not binding"
        );
        for socket in inherited {
            listeners.push(Listener::inherited(socket)?);
        }
        return Ok(listeners);
    }
    for addr in &config.listen {
        listeners.push(match addr {
            crate::config::ListenAddr::Tcp(addr) => Listener::tcp(*addr, false).await?,
            crate::config::ListenAddr::Unix(path) => Listener::unix(path, config.unix_mode)?,
        });
    }
    for addr in &config.tls_listen {
        listeners.push(Listener::tcp(*addr, true).await?);
    }
    Ok(listeners)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_unix_socket_gets_its_mode_replaces_a_stale_one_and_refuses_a_live_one() {
        let dir = std::env::temp_dir().join(format!("mapserve-listener-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        // A stale socket: bound, never listened on, closed.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let first = Listener::unix(&path, 0o600).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(first.describe(), format!("unix:{}", path.display()));
        let second = Listener::unix(&path, 0o600).unwrap_err().to_string();
        assert!(second.contains("another process is listening") && second.contains("s.sock"), "{second}");
        first.remove_socket_file();
        assert!(!path.exists());
        std::fs::write(&path, b"x").unwrap();
        assert!(Listener::unix(&path, 0o600).unwrap_err().to_string().contains("not a socket"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
