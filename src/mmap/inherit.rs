//! Taking ownership of descriptors a service manager passed to this
//! process (systemd socket activation: descriptors 3 and up, named by
//! `LISTEN_FDS` and `LISTEN_PID`). Turning a bare number into an `OwnedFd`
//! is `unsafe` because nothing else may own or close that descriptor; this
//! module makes each number adoptable at most once and only while open.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Mutex;

/// First descriptor of the socket-activation protocol (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: i32 = 3;
/// The most descriptors adopted (systemd itself allows far fewer sockets).
pub const MAX_INHERITED: i32 = 1024;

/// Descriptors already adopted.
static TAKEN: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Takes ownership of inherited descriptor `fd`, which must lie in
/// `LISTEN_FDS_START..LISTEN_FDS_START + MAX_INHERITED`, be open, and not be
/// adopted yet. Marks it close-on-exec.
pub fn adopt_listen_fd(fd: i32) -> std::io::Result<OwnedFd> {
    if !(LISTEN_FDS_START..LISTEN_FDS_START + MAX_INHERITED).contains(&fd) {
        return Err(std::io::Error::other(format!("descriptor {fd} is not a socket-activation descriptor")));
    }
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    if taken.contains(&fd) {
        return Err(std::io::Error::other(format!("descriptor {fd} was already taken")));
    }
    // SAFETY: `fd` is only borrowed for this one call, during which nothing
    // in this process can close it: it is in the socket-activation range,
    // which the standard library and mapserve never allocate from before
    // adoption (descriptors 3.. are inherited, so new ones get higher
    // numbers), and it has not been adopted (checked under the lock).
    // `fcntl(F_GETFD)` on a closed number fails with EBADF, which is how a
    // number that is not open is refused.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let flags = rustix::io::fcntl_getfd(borrowed)
        .map_err(|e| std::io::Error::other(format!("descriptor {fd} is not open: {e}")))?;
    rustix::io::fcntl_setfd(borrowed, flags | rustix::io::FdFlags::CLOEXEC)?;
    taken.push(fd);
    // SAFETY: `fd` is open (checked above) and was handed to this process
    // by its service manager for it to own; no other `OwnedFd` holds it
    // (each number is adopted once, recorded in `TAKEN` under the lock), so
    // this `OwnedFd` is its only owner and closing it on drop is sound.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, IntoRawFd};

    #[test]
    fn adopts_an_open_descriptor_once_and_refuses_others() {
        assert!(adopt_listen_fd(2).is_err(), "stderr is not inherited for us");
        assert!(adopt_listen_fd(LISTEN_FDS_START + MAX_INHERITED).is_err());
        // An open descriptor in range: a socket the test makes and gives up.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let raw = listener.into_raw_fd();
        if raw >= LISTEN_FDS_START + MAX_INHERITED {
            return;
        }
        let owned = adopt_listen_fd(raw).unwrap();
        assert_eq!(owned.as_raw_fd(), raw);
        assert!(adopt_listen_fd(raw).unwrap_err().to_string().contains("already taken"));
        let again = std::net::TcpListener::from(owned);
        assert_eq!(again.local_addr().unwrap(), addr, "the same socket, now owned again");
        drop(again);
        // Closed now: a number that is not open is refused (unless the test
        // harness reused it meanwhile, which the bound check cannot tell).
        let _ = adopt_listen_fd(raw);
    }
}
