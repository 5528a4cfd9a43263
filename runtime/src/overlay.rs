//! Mounting an overlay of many layers. `mount(2)` takes its options in one page
//! (4 KiB), which holds about forty of the store's layer paths; since Linux 6.8 the new
//! mount API takes each lower layer on its own (`lowerdir+`), up to overlayfs's own
//! limit of 500. Short stacks keep the one `mount(2)` call; longer ones go through
//! `fsopen`/`fsconfig`/`fsmount`, which no crate wraps, hence the calls by hand.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The most option text handed to `mount(2)` (a page, less some room).
const PAGE_OPTIONS: usize = 4000;

const FSOPEN_CLOEXEC: u32 = 1;
const FSCONFIG_SET_STRING: u32 = 1;
const FSCONFIG_CMD_CREATE: u32 = 6;
const FSMOUNT_CLOEXEC: u32 = 1;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 4;

/// The layers of an overlay, highest first, and its writable directories.
pub struct Stack<'a> {
    pub lowers: &'a [PathBuf],
    pub upper: Option<&'a Path>,
    pub work: Option<&'a Path>,
}

impl Stack<'_> {
    /// `mount(2)`'s option text.
    pub fn options(&self) -> String {
        let low: Vec<String> = self.lowers.iter().map(|p| p.display().to_string()).collect();
        let mut o = format!("lowerdir={}", low.join(":"));
        if let (Some(u), Some(w)) = (self.upper, self.work) {
            o.push_str(&format!(",upperdir={},workdir={}", u.display(), w.display()));
        }
        o
    }

    /// Whether `mount(2)` can take it.
    pub fn fits_one_page(&self) -> bool {
        self.options().len() <= PAGE_OPTIONS
    }
}

fn cstr(p: &[u8]) -> io::Result<CString> {
    CString::new(p).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

fn check(r: libc::c_long, what: &str) -> io::Result<libc::c_long> {
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(r)
}

/// Mounts the stack at `target`.
pub fn mount(stack: &Stack, target: &Path) -> io::Result<()> {
    if stack.fits_one_page() {
        let o = stack.options();
        return nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(o.as_str()),
        )
        .map_err(io::Error::from);
    }
    // SAFETY: a C string naming the filesystem type and flags; the result is checked.
    let fs = check(
        unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) },
        "fsopen(overlay)",
    )?;
    // SAFETY: a fresh descriptor we own.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
    let set = |key: &std::ffi::CStr, value: &Path| -> io::Result<()> {
        let v = cstr(value.as_os_str().as_bytes())?;
        // SAFETY: a valid fs context descriptor, key and value C strings.
        let r = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                v.as_ptr(),
                0,
            )
        };
        check(r, &format!("overlay {}={}", key.to_string_lossy(), value.display())).map(drop)
    };
    // Lowest last in `lowerdir`: `lowerdir+` appends, so highest first as well.
    for l in stack.lowers {
        set(c"lowerdir+", l).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "{e} (an overlay of {} layers needs Linux 6.8 or later)",
                    stack.lowers.len()
                ),
            )
        })?;
    }
    if let (Some(u), Some(w)) = (stack.upper, stack.work) {
        set(c"upperdir", u)?;
        set(c"workdir", w)?;
    }
    // SAFETY: a valid fs context descriptor; the command takes no key or value.
    check(
        unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_CMD_CREATE,
                std::ptr::null::<libc::c_char>(),
                std::ptr::null::<libc::c_char>(),
                0,
            )
        },
        "creating the overlay",
    )?;
    // SAFETY: a valid, created fs context; the result is checked.
    let m = check(
        unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) },
        "fsmount(overlay)",
    )?;
    // SAFETY: a fresh descriptor we own.
    let m = unsafe { OwnedFd::from_raw_fd(m as i32) };
    let t = cstr(target.as_os_str().as_bytes())?;
    // SAFETY: a detached mount's descriptor, an empty path and a C target path.
    check(
        unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                m.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        },
        &format!("attaching the overlay at {}", target.display()),
    )?;
    Ok(())
}
