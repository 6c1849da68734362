//! systemd integration without libsystemd: socket activation (the sockets a
//! `.socket` unit, or `systemd-socket-activate`, passed in as descriptors 3
//! and up, announced by `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES`)
//! and readiness notification (`READY=1`, `RELOADING=1`, `STOPPING=1` as
//! datagrams to `NOTIFY_SOCKET`, for `Type=notify` services).

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;

/// One inherited listening socket.
#[derive(Debug)]
pub(super) struct Inherited {
    /// The socket.
    pub fd: OwnedFd,
    /// Its `FileDescriptorName=` (`tls` makes it a TLS listener).
    pub name: String,
}

/// The sockets passed to this process, if any (an empty list when the
/// variables are absent or name another process, as after a fork).
pub(super) fn listen_fds() -> io::Result<Vec<Inherited>> {
    let (Some(pid), Some(count)) = (std::env::var_os("LISTEN_PID"), std::env::var_os("LISTEN_FDS")) else {
        return Ok(Vec::new());
    };
    let pid: u32 = pid.to_string_lossy().trim().parse().map_err(|_| bad("LISTEN_PID", &pid))?;
    if pid != std::process::id() {
        return Ok(Vec::new());
    }
    let count: i32 = count.to_string_lossy().trim().parse().map_err(|_| bad("LISTEN_FDS", &count))?;
    if !(0..=crate::mmap::inherit::MAX_INHERITED).contains(&count) {
        return Err(bad("LISTEN_FDS", &std::ffi::OsString::from(count.to_string())));
    }
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let mut names = names.split(':');
    let mut out = Vec::new();
    for i in 0..count {
        let fd = crate::mmap::inherit::adopt_listen_fd(crate::mmap::inherit::LISTEN_FDS_START + i)?;
        let name = names.next().unwrap_or_default().to_owned();
        out.push(Inherited { fd, name });
    }
    Ok(out)
}

fn bad(var: &str, value: &std::ffi::OsStr) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{var}={} is not a number", value.to_string_lossy()))
}

/// Tells the service manager `state` (`READY=1`, `STOPPING=1`...), when it
/// asked to be told (`NOTIFY_SOCKET`). Failures are logged, never fatal.
pub(super) fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    if let Err(e) = send(&path, state) {
        tracing::warn!(socket = %path.to_string_lossy(), error = %e, state, "cannot notify the service manager");
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    // `@name` is an abstract socket (systemd uses them for containers).
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name)?,
        None => std::os::unix::net::SocketAddr::from_pathname(std::path::Path::new(path))?,
    };
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("mapserve-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let receiver = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
