//! Paths of a container resolved by the kernel inside its root: `openat2` with
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`, so `..`, absolute symlinks and the magic
//! links of `/proc` (`/proc/*/fd`, `/proc/*/root`, `/proc/*/cwd`) never lead out,
//! whatever the container planted. Used for the workload's working directory, the files
//! read before it runs (`/etc/passwd`), and `cp` both ways. libc has the syscall but no
//! wrapper, and nix has none, hence the call by hand.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Component, Path};

/// How every path is resolved.
pub const RESOLVE: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

/// `openat2(root, path, flags, mode)` resolved inside `root`. `path` may be absolute:
/// it is taken relative to `root` as the container sees it.
pub fn open(root: BorrowedFd, path: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    open_with(root, path, flags, mode, RESOLVE)
}

/// As [`open`], with extra `RESOLVE_*` flags (e.g. `RESOLVE_NO_SYMLINKS` to refuse a
/// link as the last component without following it).
pub fn open_with(root: BorrowedFd, path: &Path, flags: i32, mode: u32, resolve: u64) -> io::Result<OwnedFd> {
    let rel = relative(path);
    openat2(root, rel, flags, mode, resolve | RESOLVE)
}

/// The syscall: `path` (`.` when empty) from `dir`, close-on-exec, retried while the
/// kernel asks for a retry (a rename raced the lookup).
fn openat2(dir: BorrowedFd, path: &Path, flags: i32, mode: u32, resolve: u64) -> io::Result<OwnedFd> {
    let c = cstr(if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    })?;
    // SAFETY: open_how is plain integers, for which all zeroes is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
        how.mode = mode as u64;
    }
    how.resolve = resolve;
    loop {
        // SAFETY: openat2 reads the path and one open_how; the result is checked and owned.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        } as RawFd;
        if fd >= 0 {
            // SAFETY: a fresh descriptor owned by nobody else.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(e);
        }
    }
}

/// `path` without its leading `/`.
pub fn relative(path: &Path) -> &Path {
    path.strip_prefix("/").unwrap_or(path)
}

/// The directory `path` inside `root`, made (mode 0755, as `mkdir -p`) where missing.
/// Each prefix of the path is looked up from the root again, so links on the way
/// resolve as the container would resolve them, and never outside it.
pub fn mkdir_all(root: BorrowedFd, path: &Path) -> io::Result<OwnedFd> {
    let dir_flags = libc::O_PATH | libc::O_DIRECTORY;
    match open(root, path, dir_flags, 0) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let mut prefix = std::path::PathBuf::new();
    let mut at = open(root, Path::new("/"), dir_flags, 0)?;
    for c in relative(path).components() {
        let name = match c {
            Component::Normal(n) => n,
            Component::ParentDir => std::ffi::OsStr::new(".."),
            _ => continue,
        };
        prefix.push(name);
        at = match open(root, &prefix, dir_flags, 0) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let n = cstr(Path::new(name))?;
                // SAFETY: a valid C string; mkdirat does not keep it.
                if unsafe { libc::mkdirat(at.as_raw_fd(), n.as_ptr(), 0o755) } != 0 {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EEXIST) {
                        return Err(e);
                    }
                }
                open(root, &prefix, dir_flags, 0)?
            }
            Err(e) => return Err(e),
        };
    }
    Ok(at)
}

/// A borrowed view of an owned descriptor.
pub fn borrow(fd: &OwnedFd) -> BorrowedFd<'_> {
    // SAFETY: the descriptor outlives the borrow.
    unsafe { BorrowedFd::borrow_raw(fd.as_raw_fd()) }
}

/// `rel` under the directory `dir`, with no symlink on the way (nor as the last
/// component, unless `flags` has `O_PATH | O_NOFOLLOW`, which opens the link itself) and
/// never above `dir`: how an archive's entries are placed, so none lands through a link
/// an earlier entry (or the container) made.
pub fn open_beneath(dir: BorrowedFd, rel: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    openat2(
        dir,
        rel,
        flags,
        mode,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    )
}

/// The directory `rel` under `dir`, made (mode 0755) where missing, with no link on
/// the way.
pub fn mkdir_beneath(dir: BorrowedFd, rel: &Path) -> io::Result<OwnedFd> {
    let flags = libc::O_PATH | libc::O_DIRECTORY;
    let mut at = open_beneath(dir, Path::new("."), flags, 0)?;
    for c in rel.components() {
        let Component::Normal(name) = c else {
            if matches!(c, Component::CurDir) {
                continue;
            }
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a plain relative path"));
        };
        let name = Path::new(name);
        at = match open_beneath(borrow(&at), name, flags, 0) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let n = cstr(name)?;
                // SAFETY: a valid C string; mkdirat does not keep it.
                if unsafe { libc::mkdirat(at.as_raw_fd(), n.as_ptr(), 0o755) } != 0 {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EEXIST) {
                        return Err(e);
                    }
                }
                open_beneath(borrow(&at), name, flags, 0)?
            }
            Err(e) => return Err(e),
        };
    }
    Ok(at)
}

/// `lstat` of `name` in the directory `dir`.
pub fn stat_at(dir: BorrowedFd, name: &Path) -> io::Result<libc::stat> {
    let c = cstr(name)?;
    // SAFETY: stat is plain data; fstatat writes one.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a writable stat.
    if unsafe { libc::fstatat(dir.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// Removes `name` in `dir`: a file, a link, or a whole tree (never following a link).
pub fn remove_at(dir: BorrowedFd, name: &Path) -> io::Result<()> {
    remove_below(dir, name, 0)
}

/// The deepest tree walked by descriptors (each level holds one and a stack frame).
pub const MAX_DEPTH: usize = 512;

fn remove_below(dir: BorrowedFd, name: &Path, depth: usize) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(io::Error::other(format!("deeper than {MAX_DEPTH} levels")));
    }
    let c = cstr(name)?;
    let st = match stat_at(dir, name) {
        Ok(st) => st,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        let sub = open_beneath(dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        for entry in entries(&sub)? {
            remove_below(borrow(&sub), Path::new(&entry), depth + 1)?;
        }
        // SAFETY: a valid C string.
        if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) } != 0 {
            return Err(io::Error::last_os_error());
        }
        return Ok(());
    }
    // SAFETY: a valid C string.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The names in the directory open at `dir` (without `.` and `..`), sorted.
pub fn entries(dir: &OwnedFd) -> io::Result<Vec<std::ffi::OsString>> {
    let fd = open_beneath(borrow(dir), Path::new("."), libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let mut d = nix::dir::Dir::from_fd(fd).map_err(io::Error::from)?;
    let mut names = Vec::new();
    for e in d.iter() {
        let e = e.map_err(io::Error::from)?;
        let name = e.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(std::ffi::OsString::from(std::ffi::OsStr::from_bytes(name)));
        }
    }
    names.sort();
    Ok(names)
}

/// A regular file of the container, at most `limit` bytes: a link to a pipe, a device or
/// a huge file is refused instead of blocking or filling memory.
pub fn read_file(root: BorrowedFd, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    // Looked at before it is opened: opening a device runs its driver (a watchdog
    // arms, a tape rewinds), which a planted node must never get from us.
    let held = open(root, path, libc::O_PATH, 0)?;
    let st = fstat_path(&held)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(io::Error::other(format!("{} is not a regular file", path.display())));
    }
    let f = reopen_regular(&held)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other(format!("{} is not a regular file", path.display())));
    }
    if meta.len() > limit {
        return Err(io::Error::other(format!(
            "{} is larger than {limit} bytes",
            path.display()
        )));
    }
    let mut data = Vec::new();
    f.take(limit).read_to_end(&mut data)?;
    Ok(data)
}

fn fstat_path(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: stat is plain data that fstat fills.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a writable stat.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// Opens for reading the regular file an `O_PATH` descriptor holds (through its
/// `/proc/self/fd` link, which names that inode whatever happens to its path);
/// non-blocking, so a pipe cannot hang the reader.
pub fn reopen_regular(held: &OwnedFd) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{}", held.as_raw_fd()))
}

/// The calling process's root directory, opened.
pub fn own_root() -> io::Result<OwnedFd> {
    let f = std::fs::File::open("/")?;
    Ok(OwnedFd::from(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root_of(t: &tempfile::TempDir) -> OwnedFd {
        OwnedFd::from(std::fs::File::open(t.path()).unwrap())
    }

    fn b(fd: &OwnedFd) -> BorrowedFd<'_> {
        borrow(fd)
    }

    #[test]
    fn links_stay_inside_and_magic_links_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
        symlink("/etc", r.join("abs")).unwrap();
        symlink("../../../../etc", r.join("up")).unwrap();
        symlink("/proc/self/cwd", r.join("magic")).unwrap();
        let root = root_of(&t);
        assert_eq!(
            read_file(b(&root), Path::new("/abs/passwd"), 100).unwrap(),
            b"root:x:0:0::/:/bin/sh\n"
        );
        assert!(read_file(b(&root), Path::new("up/passwd"), 100).is_ok());
        assert!(read_file(b(&root), Path::new("/etc/passwd"), 3).is_err(), "size limit");
        // A device node is refused without being opened (a FIFO would block an open
        // for reading; the refusal comes first).
        nix::unistd::mkfifo(&r.join("etc/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = read_file(b(&root), Path::new("/etc/fifo"), 100).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        // The host's /proc is not the container's: an absolute /proc link resolves
        // inside (and is missing here); a real magic link is refused.
        assert!(open(b(&root), Path::new("magic"), libc::O_PATH, 0).is_err());
        let host_root = own_root().unwrap();
        let e = open(b(&host_root), Path::new("/proc/self/cwd"), libc::O_PATH, 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        let e = open(b(&host_root), Path::new("/proc/self/fd/0"), libc::O_PATH, 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
    }

    #[test]
    fn mkdir_all_makes_directories_inside() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        symlink("/", r.join("top")).unwrap();
        let root = root_of(&t);
        mkdir_all(b(&root), Path::new("/top/../../a/b/c")).unwrap();
        assert!(r.join("a/b/c").is_dir());
        mkdir_all(b(&root), Path::new("a/b")).unwrap();
        std::fs::write(r.join("file"), "").unwrap();
        assert!(mkdir_all(b(&root), Path::new("file/x")).is_err());
    }
}
