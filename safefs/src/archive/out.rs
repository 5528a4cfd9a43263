//! A container's files as a tar stream: a file, a link, a device node or a whole tree,
//! walked by descriptors inside the container's root. Virtual filesystems (`/proc`,
//! `/sys`, `devpts`, cgroups...) have no files of fixed size to archive: copying from
//! one is refused with a message, and a tree that holds one (`cp SERVICE:/`) has its
//! mount point as an empty directory, as Docker's archive of a container shows them.
//! A file is archived with exactly the size it had when it was opened; one that
//! changes meanwhile fails the copy instead of making a corrupt archive.

use super::ArchiveError;
use crate::inroot;
use std::io::{Read, Write};
use std::os::unix::io::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Filesystems whose files are made up as they are read.
const VIRTUAL: &[(i64, &str)] = &[
    (0x9fa0, "proc"),
    (0x6265_6572, "sysfs"),
    (0x1cd1, "devpts"),
    (0x1980_0202, "mqueue"),
    (0x0027_e0eb, "cgroup"),
    (0x6367_7270, "cgroup2"),
    (0xcafe_4a11, "bpf"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0x6165_676c, "pstore"),
    (0x6265_6570, "configfs"),
    (0x6573_5543, "fusectl"),
    (0x6e73_6673, "nsfs"),
    (0xf97c_ff8c, "selinuxfs"),
];

/// The virtual filesystem `fd` is on, if it is on one.
fn virtual_fs(fd: BorrowedFd) -> Option<&'static str> {
    // SAFETY: statfs is plain data; fstatfs writes one.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a writable statfs.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } != 0 {
        return None;
    }
    VIRTUAL.iter().find(|(m, _)| *m == st.f_type as i64).map(|(_, n)| *n)
}

fn fstat(fd: BorrowedFd) -> std::io::Result<libc::stat> {
    // SAFETY: stat is plain data; fstat writes one.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a writable stat.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

/// Reopens a file held by an `O_PATH` descriptor for reading: the very inode that was
/// looked at, whatever has been renamed over its name since.
fn reopen(fd: &OwnedFd) -> std::io::Result<std::fs::File> {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
}

use std::os::unix::fs::OpenOptionsExt;

fn readlink(fd: BorrowedFd) -> std::io::Result<PathBuf> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: an empty path on an O_PATH link descriptor reads that link into `buf`.
    let n = unsafe { libc::readlinkat(fd.as_raw_fd(), c"".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(
        <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(buf),
    ))
}

/// A reader of exactly `left` bytes: fewer is an error (the file shrank meanwhile).
struct Exact<R> {
    inner: R,
    left: u64,
    path: PathBuf,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::other(format!(
                "{} changed size as it was read",
                self.path.display()
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn header(st: &libc::stat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid.into());
    h.set_gid(st.st_gid.into());
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

/// Appends the item open (`O_PATH`) at `fd`, named `name`, and everything under it.
fn append<W: Write>(b: &mut tar::Builder<W>, fd: OwnedFd, name: &Path, shown: &Path) -> std::io::Result<()> {
    let st = fstat(inroot::borrow(&fd))?;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            // Each level holds two descriptors and a frame: a tree the container made
            // deep enough to exhaust either is refused instead.
            if name.components().count() > super::MAX_DEPTH {
                return Err(std::io::Error::other(format!(
                    "{}: deeper than {} levels",
                    shown.display(),
                    super::MAX_DEPTH
                )));
            }
            let mut h = header(&st, tar::EntryType::Directory);
            b.append_data(&mut h, name, std::io::empty())?;
            // A virtual filesystem mounted here shows as its (empty) mount point.
            if virtual_fs(inroot::borrow(&fd)).is_some() {
                return Ok(());
            }
            let dir = inroot::open_beneath(
                inroot::borrow(&fd),
                Path::new("."),
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
            )?;
            for entry in inroot::entries(&dir)? {
                let child = match inroot::open_beneath(
                    inroot::borrow(&dir),
                    Path::new(&entry),
                    libc::O_PATH | libc::O_NOFOLLOW,
                    0,
                ) {
                    Ok(c) => c,
                    // Gone meanwhile: there is nothing to copy.
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                    Err(e) => return Err(e),
                };
                append(b, child, &name.join(&entry), &shown.join(&entry))?;
            }
        }
        libc::S_IFREG => {
            let f = reopen(&fd)?;
            // Still the same file (reopened by descriptor, so it is).
            let now = fstat(std::os::unix::io::AsFd::as_fd(&f))?;
            if now.st_ino != st.st_ino || now.st_dev != st.st_dev {
                return Err(std::io::Error::other(format!(
                    "{} changed as it was read",
                    shown.display()
                )));
            }
            let mut h = header(&st, tar::EntryType::Regular);
            h.set_size(st.st_size.max(0) as u64);
            let data = Exact {
                inner: f,
                left: st.st_size.max(0) as u64,
                path: shown.to_path_buf(),
            };
            b.append_data(&mut h, name, data)?;
        }
        libc::S_IFLNK => {
            let to = readlink(inroot::borrow(&fd))?;
            let mut h = header(&st, tar::EntryType::Symlink);
            b.append_link(&mut h, name, &to)?;
        }
        kind @ (libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO) => {
            let t = match kind {
                libc::S_IFCHR => tar::EntryType::Char,
                libc::S_IFBLK => tar::EntryType::Block,
                _ => tar::EntryType::Fifo,
            };
            let mut h = header(&st, t);
            if kind != libc::S_IFIFO {
                h.set_device_major(libc::major(st.st_rdev))?;
                h.set_device_minor(libc::minor(st.st_rdev))?;
            }
            b.append_data(&mut h, name, std::io::empty())?;
        }
        // Sockets are not archived (as tar leaves them out).
        _ => {}
    }
    Ok(())
}

/// What `cp SERVICE:PATH` copies out: `path` opened inside `root` (followed when
/// `follow`, as `cp -L`), refused with the reason when it cannot be archived; the
/// message is Docker's for a path that is not there.
pub fn open_source(root: &OwnedFd, path: &str, follow: bool, container: &str) -> Result<OwnedFd, ArchiveError> {
    let mut flags = libc::O_PATH;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    let (path, container) = (path.to_string(), container.to_string());
    let fd = inroot::open(inroot::borrow(root), Path::new(&path), flags, 0).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => ArchiveError::NotFound {
            path: path.clone(),
            container: container.clone(),
        },
        Some(libc::ELOOP) => ArchiveError::Loop {
            path: path.clone(),
            container: container.clone(),
        },
        _ => ArchiveError::Source {
            path: path.clone(),
            container: container.clone(),
            source: e,
        },
    })?;
    if let Some(kind) = virtual_fs(inroot::borrow(&fd)) {
        return Err(ArchiveError::Virtual { path, container, kind });
    }
    Ok(fd)
}

/// Writes the item `fd` (a file, a link or a whole tree), named by the last component of
/// `path`, as a tar stream to `out`.
pub fn write_tar(fd: OwnedFd, path: &str, out: impl Write) -> std::io::Result<()> {
    let mut b = tar::Builder::new(out);
    let name = super::base_name(Path::new(path));
    append(&mut b, fd, &name, Path::new(path))?;
    b.finish()
}
