//! Descriptor and signal hygiene for the processes the runtime makes: nothing the engine
//! (or the shell that started it) held reaches a container, and a workload starts with
//! the signal state of a fresh process. Also the two-way control channel between the
//! monitor and the container's first process, which carries a terminal's descriptor.

use std::io;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;

fn close_range(first: u32, last: u32, flags: u32) -> io::Result<()> {
    // SAFETY: close_range takes integers only; it closes (or marks) descriptors of this
    // process, none of which Rust code here holds beyond those the caller keeps.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Closes every descriptor from `first` up.
pub fn close_from(first: RawFd) -> io::Result<()> {
    close_range(first as u32, u32::MAX, 0)
}

/// Marks every descriptor from `first` up close-on-exec: whatever is still open when
/// the workload is executed goes then.
pub fn cloexec_from(first: RawFd) -> io::Result<()> {
    close_range(first as u32, u32::MAX, CLOSE_RANGE_CLOEXEC)
}

/// Closes every descriptor above 2 but those in `keep`.
pub fn close_except(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<u32> = keep.iter().filter(|f| **f > 2).map(|f| *f as u32).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut next = 3u32;
    for k in keep {
        if k > next {
            close_range(next, k - 1, 0)?;
        }
        next = k + 1;
    }
    close_range(next, u32::MAX, 0)
}

/// Every signal unblocked and at its default disposition, as a new process has them
/// (an ignored signal would otherwise stay ignored across `execve`).
pub fn reset_signals() {
    // SAFETY: sigset operations on a local set, sigprocmask and signal with valid
    // arguments; failures (for the signals that cannot be changed) are harmless.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        // By the syscall: glibc's `signal` refuses the two real-time signals it keeps
        // for itself (32 and 33), which an ignoring parent would otherwise pass on.
        let dfl: [libc::c_ulong; 4] = [libc::SIG_DFL as libc::c_ulong, 0, 0, 0];
        for s in 1..=64 {
            if s != libc::SIGKILL && s != libc::SIGSTOP {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    s,
                    dfl.as_ptr(),
                    std::ptr::null_mut::<u8>(),
                    8usize,
                );
            }
        }
    }
}

/// A connected pair of close-on-exec sequenced-packet sockets.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into `fds`.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends `data` with the descriptor `fd` attached.
pub fn send_with_fd(sock: RawFd, data: &[u8], fd: RawFd) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [io::IoSlice::new(data)];
    let fds = [fd];
    sendmsg::<()>(
        sock,
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(io::Error::from)?;
    Ok(())
}

/// One message (at most 64 KiB) and the descriptor attached to it, if any; an empty
/// message when the other side has closed.
pub fn recv_with_fd(sock: RawFd) -> io::Result<(Vec<u8>, Option<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = vec![0u8; 64 << 10];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let (n, fd) = {
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let msg = loop {
            match recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other.map_err(io::Error::from)?,
            }
        };
        let mut fd = None;
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for f in fds {
                    // SAFETY: a descriptor the kernel just installed for us.
                    let owned = unsafe { OwnedFd::from_raw_fd(f) };
                    if fd.is_none() {
                        fd = Some(owned);
                    }
                }
            }
        }
        (msg.bytes, fd)
    };
    buf.truncate(n);
    Ok((buf, fd))
}

/// Whether `fd` is open in this process.
pub fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// The raw numbers of `fds`, for [`close_except`].
pub fn raw<'a>(fds: impl IntoIterator<Item = &'a OwnedFd>) -> Vec<RawFd> {
    fds.into_iter().map(|f| f.as_raw_fd()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_travels_with_its_message() {
        let (a, b) = socketpair().unwrap();
        let f = std::fs::File::open("/dev/null").unwrap();
        send_with_fd(a.as_raw_fd(), b"pty", f.as_raw_fd()).unwrap();
        let (data, fd) = recv_with_fd(b.as_raw_fd()).unwrap();
        assert_eq!(data, b"pty");
        let got = std::fs::File::from(fd.unwrap()).metadata().unwrap();
        assert_eq!(
            std::os::unix::fs::MetadataExt::rdev(&got),
            std::os::unix::fs::MetadataExt::rdev(&f.metadata().unwrap())
        );
        drop(a);
        assert!(recv_with_fd(b.as_raw_fd()).unwrap().0.is_empty(), "closed");
    }
}
