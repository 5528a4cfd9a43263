//! The helper binary as a sealed, read-only memfd: containers are started from it, so
//! nothing in a container can overwrite the host's binary (CVE-2019-5736), and the
//! engine's own binary can be replaced on disk while containers run.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::unix::io::{FromRawFd, OwnedFd};
use std::path::Path;

pub struct SealedExe {
    fd: OwnedFd,
}

impl SealedExe {
    /// Copies `exe` into a new memfd and seals it against every change.
    pub fn new(exe: &Path) -> io::Result<SealedExe> {
        let name = CString::new("rcompose-init").map_err(io::Error::other)?;
        // SAFETY: `name` is a valid C string; the returned fd is checked.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
        let mut file = unsafe { File::from_raw_fd(fd) };
        io::copy(&mut File::open(exe)?, &mut file)?;
        let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
        // SAFETY: fcntl on a descriptor we own.
        if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // Keep it clear of the low descriptors a child's setup rearranges (the helper's
        // socket goes to fd 3).
        // SAFETY: fcntl on a descriptor we own; the duplicate is checked and owned.
        let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100) };
        if high < 0 {
            return Err(io::Error::last_os_error());
        }
        drop(file);
        // SAFETY: `high` is a fresh descriptor owned by nobody else.
        Ok(SealedExe {
            fd: unsafe { OwnedFd::from_raw_fd(high) },
        })
    }

    /// A path that executes the sealed copy (valid in this process and its children
    /// that inherit the descriptor).
    pub fn path(&self) -> String {
        use std::os::unix::io::AsRawFd;
        format!("/proc/self/fd/{}", self.fd.as_raw_fd())
    }

    pub fn raw_fd(&self) -> i32 {
        use std::os::unix::io::AsRawFd;
        self.fd.as_raw_fd()
    }
}
