//! `COPY`/`ADD` of a source's items into a root filesystem being built (the merged view
//! of a step's overlay). The destination is resolved inside that root, so an image's
//! links lead nowhere outside it; below it every entry is made from its parent's
//! descriptor with `O_NOFOLLOW`, replacing what was there as Docker's copy does.

use super::{cname, io_at, kind, reopen, ContextError, Entry, Source};
use safefs::inroot;
use std::ffi::{CStr, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// `--chmod`: an octal mode, or symbolic clauses applied to the source's mode.
#[derive(Debug, Clone, PartialEq)]
pub enum Chmod {
    Octal(u32),
    Symbolic(String),
}

impl Chmod {
    pub fn parse(s: &str) -> Result<Chmod, ContextError> {
        if !s.is_empty() && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return u32::from_str_radix(s, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .map(Chmod::Octal)
                .ok_or_else(|| ContextError::Chmod(s.into()));
        }
        // Checked once here, applied per file.
        apply_symbolic(s, 0o644, false).ok_or_else(|| ContextError::Chmod(s.into()))?;
        Ok(Chmod::Symbolic(s.into()))
    }

    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(s) => apply_symbolic(s, mode, is_dir).unwrap_or(mode),
        }
    }
}

/// `u+x,go-w,a=rX` as chmod(1) applies it.
fn apply_symbolic(s: &str, mut mode: u32, is_dir: bool) -> Option<u32> {
    for clause in s.split(',') {
        let op_at = clause.find(['+', '-', '='])?;
        let (who, rest) = clause.split_at(op_at);
        let mut mask = 0u32;
        for c in who.chars() {
            mask |= match c {
                'u' => 0o4700,
                'g' => 0o2070,
                'o' => 0o1007,
                'a' => 0o7777,
                _ => return None,
            };
        }
        if who.is_empty() {
            mask = 0o7777;
        }
        let op = rest.chars().next()?;
        let mut bits = 0u32;
        for c in rest[1..].chars() {
            bits |= match c {
                'r' => 0o444,
                'w' => 0o222,
                'x' => 0o111,
                'X' if is_dir || mode & 0o111 != 0 => 0o111,
                'X' => 0,
                's' => 0o6000,
                't' => 0o1000,
                _ => return None,
            };
        }
        let bits = bits & mask;
        mode = match op {
            '+' => mode | bits,
            '-' => mode & !bits,
            _ => (mode & !(mask & 0o7777)) | bits,
        };
    }
    Some(mode)
}

/// How items are copied.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// `--chown` resolved to IDs; else the context's items are root's and a tree's
    /// keep their owners.
    pub chown: Option<(u32, u32)>,
    pub chmod: Option<Chmod>,
    /// `--parents`: the source's path below the root is kept under the destination.
    pub parents: bool,
    /// `--exclude` patterns, relative to each named source.
    pub exclude: Vec<String>,
    /// A regular file whose owner and mode stay as they are is linked, not copied,
    /// where the file systems allow it: for sources never written again (the store's
    /// layers), whose inodes may serve in two layers.
    pub link: bool,
    /// An earlier run of the same copy, whose unchanged files are linked, not copied.
    pub reuse: Option<std::sync::Arc<super::reuse::Reuse>>,
    /// Where the context's regular files copied are noted, for the next run.
    pub record: Option<std::sync::Arc<super::reuse::Recorder>>,
}

pub(crate) fn readlink(fd: RawFd) -> io::Result<PathBuf> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: an empty path on an O_PATH link descriptor reads that link into `buf`.
    let n = unsafe { libc::readlinkat(fd, c"".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(OsStr::from_bytes(&buf)))
}

/// Copies the items `rels` of `src` to `dest` (absolute, in the image) inside `root`.
/// `dest_is_dir` says the destination is a directory (a trailing `/`, several sources
/// or a wildcard); an existing directory is one too.
pub fn copy(
    src: &Source,
    rels: &[PathBuf],
    root: BorrowedFd,
    dest: &str,
    dest_is_dir: bool,
    o: &CopyOptions,
) -> Result<(), ContextError> {
    let dest_path = Path::new(dest);
    let existing_dir = inroot::open(root, dest_path, libc::O_PATH | libc::O_DIRECTORY, 0).is_ok();
    for rel in rels {
        let e = src.open(rel)?;
        let is_dir = kind(&e.stat) == libc::S_IFDIR;
        let target: PathBuf = if o.parents {
            dest_path.join(rel)
        } else if is_dir || !(dest_is_dir || existing_dir) {
            dest_path.to_path_buf()
        } else {
            dest_path.join(rel.file_name().unwrap_or(OsStr::new("")))
        };
        let (parent, name) = match (target.parent(), target.file_name()) {
            (Some(p), Some(n)) => (p.to_path_buf(), n.to_os_string()),
            _ => (PathBuf::from("/"), std::ffi::OsString::new()),
        };
        let pfd = std::sync::Arc::new(mkdir_owned(root, &parent, o)?);
        let excludes: Vec<super::ignore::Ignore> = o.exclude.iter().map(|p| super::ignore::Ignore::parse(p)).collect();
        // The directory stack of the destination, by depth below the item.
        let mut dirs: Vec<std::sync::Arc<OwnedFd>> = Vec::new();
        let mut pending_times: Vec<(std::sync::Arc<OwnedFd>, libc::stat)> = Vec::new();
        // Everything but directories is placed in batches (see [`super::batch`]).
        let mut batch = super::batch::Batch::default();
        src.walk(&e, &mut |below, ent| {
            if !below.as_os_str().is_empty() && excludes.iter().any(|x| x.excludes(&below.to_string_lossy())) {
                return Ok(());
            }
            let depth = below.components().count();
            dirs.truncate(depth);
            let (at, n): (&std::sync::Arc<OwnedFd>, &OsStr) = if depth == 0 {
                if name.is_empty() {
                    // The destination is the root itself.
                    let fd = inroot::open(root, Path::new("/"), libc::O_PATH | libc::O_DIRECTORY, 0)
                        .map_err(io_at(&target))?;
                    dirs.push(std::sync::Arc::new(fd));
                    return Ok(());
                }
                (&pfd, name.as_os_str())
            } else {
                let Some(top) = dirs.last() else {
                    return Ok(());
                };
                (top, below.file_name().unwrap_or(OsStr::new("")))
            };
            if kind(&ent.stat) != libc::S_IFDIR {
                batch.push(at.clone(), n.to_os_string(), ent.clone(), target.join(below));
                if batch.full() {
                    batch.run(src, o)?;
                }
                return Ok(());
            }
            if let Some(made) = place(src, ent, inroot::borrow(at), n, o, &target.join(below))? {
                let made = std::sync::Arc::new(made);
                dirs.push(made.clone());
                pending_times.push((made, ent.stat));
            }
            Ok(())
        })?;
        batch.run(src, o)?;
        // Directory times last, after their contents stopped changing them.
        for (fd, st) in pending_times.iter().rev() {
            set_times(fd.as_raw_fd(), st, true).map_err(io_at(&target))?;
        }
    }
    Ok(())
}

/// The destination's parent directory, made when missing (owned by `--chown`'s IDs).
fn mkdir_owned(root: BorrowedFd, parent: &Path, o: &CopyOptions) -> Result<OwnedFd, ContextError> {
    let existed = inroot::open(root, parent, libc::O_PATH | libc::O_DIRECTORY, 0);
    if let Ok(fd) = existed {
        return Ok(fd);
    }
    let fd = inroot::mkdir_all(root, parent).map_err(io_at(parent))?;
    if let Some((u, g)) = o.chown {
        fchown(fd.as_raw_fd(), u, g, true).map_err(io_at(parent))?;
    }
    Ok(fd)
}

fn last_err() -> io::Error {
    io::Error::last_os_error()
}

fn fchown(fd: RawFd, uid: u32, gid: u32, path_fd: bool) -> io::Result<()> {
    let flags = if path_fd {
        libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW
    } else {
        libc::AT_EMPTY_PATH
    };
    // SAFETY: an empty path on a valid descriptor changes that inode's owner.
    if unsafe { libc::fchownat(fd, c"".as_ptr(), uid, gid, flags) } != 0 {
        return Err(last_err());
    }
    Ok(())
}

/// A stat's access and modification times, as utimensat takes them.
fn times_of(st: &libc::stat) -> [libc::timespec; 2] {
    [
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ]
}

fn set_times(fd: RawFd, st: &libc::stat, _dir: bool) -> io::Result<()> {
    let ts = times_of(st);
    let path = CStringPath::of(fd)?;
    // SAFETY: a valid C path of /proc/self/fd/N and two timespecs; links not followed.
    if unsafe { libc::utimensat(libc::AT_FDCWD, path.0.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(last_err());
    }
    Ok(())
}

/// The source's times on a file open for writing.
fn set_file_times(f: &std::fs::File, st: &libc::stat) -> io::Result<()> {
    let ts = times_of(st);
    // SAFETY: a valid descriptor and two timespecs.
    if unsafe { libc::futimens(f.as_raw_fd(), ts.as_ptr()) } != 0 {
        return Err(last_err());
    }
    Ok(())
}

/// `/proc/self/fd/N`, which utimensat and chmod reach an `O_PATH` descriptor's inode by.
struct CStringPath(std::ffi::CString);

impl CStringPath {
    fn of(fd: RawFd) -> io::Result<CStringPath> {
        std::ffi::CString::new(format!("/proc/self/fd/{fd}"))
            .map(CStringPath)
            .map_err(io::Error::other)
    }
}

fn chmod_fd(fd: RawFd, mode: u32) -> io::Result<()> {
    let p = CStringPath::of(fd)?;
    // SAFETY: a valid C path naming our own descriptor's inode.
    if unsafe { libc::chmod(p.0.as_ptr(), mode) } != 0 {
        return Err(last_err());
    }
    Ok(())
}

/// Removes whatever non-directory is at `name` (a directory is kept, to copy into).
fn clear(at: BorrowedFd, name: &OsStr, keep_dir: bool) -> io::Result<()> {
    let c = cname(name)?;
    match inroot::stat_at(at, Path::new(name)) {
        Ok(st) if kind(&st) == libc::S_IFDIR && keep_dir => Ok(()),
        Ok(st) if kind(&st) == libc::S_IFDIR => inroot::remove_at(at, Path::new(name)),
        Ok(_) => {
            // SAFETY: a valid directory descriptor and C string.
            if unsafe { libc::unlinkat(at.as_raw_fd(), c.as_ptr(), 0) } != 0 {
                return Err(last_err());
            }
            Ok(())
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Links the source's inode at `at/name` (replacing what is there); false when it
/// cannot be linked (another file system), for the caller to copy instead. An entry
/// only looked at is linked by its name in its directory (no open), and what was
/// linked is checked to be the inode it was seen as.
fn link(ent: &Entry, at: BorrowedFd, name: &CStr) -> Result<bool, ContextError> {
    let Some((dir, from)) = ent.unopened() else {
        return Ok(ent.fd().is_ok_and(|fd| link_fd(fd.as_raw_fd(), at, name)));
    };
    if !link_named(dir, from, at, name) {
        return Ok(false);
    }
    let made = inroot::stat_at(at, Path::new(OsStr::from_bytes(name.to_bytes()))).map_err(io_at(&ent.rel))?;
    if (made.st_dev, made.st_ino) != (ent.stat.st_dev, ent.stat.st_ino) {
        // SAFETY: a valid directory descriptor and C name.
        unsafe { libc::unlinkat(at.as_raw_fd(), name.as_ptr(), 0) };
        return Err(io_at(&ent.rel)(io::Error::other("it was replaced while it was read")));
    }
    Ok(true)
}

/// Links `dir/from` (never following a link) at `at/name`, replacing what is there.
pub(super) fn link_named(dir: BorrowedFd, from: &CStr, at: BorrowedFd, name: &CStr) -> bool {
    replacing(at, name, || {
        // SAFETY: valid directory descriptors and C names; flags 0 links a symlink
        // itself, never its target.
        unsafe { libc::linkat(dir.as_raw_fd(), from.as_ptr(), at.as_raw_fd(), name.as_ptr(), 0) }
    })
}

/// Links the inode of the O_PATH descriptor `fd` at `at/name`, as [`link`].
pub(super) fn link_fd(fd: RawFd, at: BorrowedFd, name: &CStr) -> bool {
    replacing(at, name, || {
        // SAFETY: an O_PATH descriptor with AT_EMPTY_PATH (the engine is root), a valid
        // directory descriptor and C name; the result is checked.
        unsafe { libc::linkat(fd, c"".as_ptr(), at.as_raw_fd(), name.as_ptr(), libc::AT_EMPTY_PATH) }
    })
}

/// Runs `try_link`; when `at/name` exists, clears it and tries once more.
fn replacing(at: BorrowedFd, name: &CStr, try_link: impl Fn() -> libc::c_int) -> bool {
    if try_link() == 0 {
        return true;
    }
    if last_err().raw_os_error() != Some(libc::EEXIST) {
        return false;
    }
    let n = OsStr::from_bytes(name.to_bytes());
    clear(at, n, false).is_ok() && try_link() == 0
}

/// Notes a context file copied (or linked from the earlier copy) for the next run.
fn note(src: &Source, ent: &Entry, shown: &Path, o: &CopyOptions) {
    if let (true, Some(r)) = (src.is_context, &o.record) {
        r.lock().unwrap_or_else(|p| p.into_inner()).push(super::reuse::Copied {
            rel: ent.rel.clone(),
            stat: super::reuse::StatKey::of(&ent.stat),
            dest: shown.to_path_buf(),
        });
    }
}

/// Makes one entry at `at/name`; returns its descriptor.
pub(super) fn place(
    src: &Source,
    ent: &Entry,
    at: BorrowedFd,
    name: &OsStr,
    o: &CopyOptions,
    shown: &Path,
) -> Result<Option<OwnedFd>, ContextError> {
    let st = &ent.stat;
    let is_dir = kind(st) == libc::S_IFDIR;
    let (uid, gid) = o
        .chown
        .unwrap_or(if src.is_context { (0, 0) } else { (st.st_uid, st.st_gid) });
    let mode = o
        .chmod
        .as_ref()
        .map(|c| c.apply(st.st_mode & 0o7777, is_dir))
        .unwrap_or(st.st_mode & 0o7777);
    let c = cname(name).map_err(io_at(shown))?;
    let err = io_at(shown);
    match kind(st) {
        libc::S_IFDIR => {
            clear(at, name, true).map_err(io_at(shown))?;
            // SAFETY: a valid directory descriptor and C string; EEXIST is an existing one.
            if unsafe { libc::mkdirat(at.as_raw_fd(), c.as_ptr(), 0o700) } != 0
                && last_err().raw_os_error() != Some(libc::EEXIST)
            {
                return Err(err(last_err()));
            }
            let fd =
                inroot::open_beneath(at, Path::new(name), libc::O_PATH | libc::O_DIRECTORY, 0).map_err(io_at(shown))?;
            fchown(fd.as_raw_fd(), uid, gid, true).map_err(io_at(shown))?;
            chmod_fd(fd.as_raw_fd(), mode).map_err(io_at(shown))?;
            Ok(Some(fd))
        }
        libc::S_IFREG if o.link && !src.is_context && o.chown.is_none() && o.chmod.is_none() && link(ent, at, &c)? => {
            Ok(None)
        }
        libc::S_IFREG
            if src.is_context
                && o.reuse
                    .as_ref()
                    .is_some_and(|r| r.link(&ent.rel, st, shown, (uid, gid, mode), at, &c)) =>
        {
            note(src, ent, shown, o);
            Ok(None)
        }
        libc::S_IFREG => {
            let mut from = reopen(ent.fd().map_err(io_at(&ent.rel))?).map_err(io_at(&ent.rel))?;
            let create = || {
                // SAFETY: a valid directory descriptor and C string; the result is checked.
                unsafe {
                    libc::openat(
                        at.as_raw_fd(),
                        c.as_ptr(),
                        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                        0o600,
                    )
                }
            };
            // Made new where nothing is (the common case); what is there is replaced.
            let mut fd = create();
            if fd < 0 && last_err().raw_os_error() == Some(libc::EEXIST) {
                clear(at, name, false).map_err(io_at(shown))?;
                fd = create();
            }
            if fd < 0 {
                return Err(err(last_err()));
            }
            // SAFETY: a fresh descriptor we own.
            let mut to = unsafe { std::fs::File::from_raw_fd(fd) };
            let n = io::copy(&mut io::Read::take(&mut from, st.st_size as u64), &mut to).map_err(io_at(shown))?;
            if n != st.st_size as u64 {
                return Err(io_at(&ent.rel)(io::Error::other(
                    "the file changed while it was copied",
                )));
            }
            fchown(to.as_raw_fd(), uid, gid, false).map_err(io_at(shown))?;
            // SAFETY: a valid descriptor.
            if unsafe { libc::fchmod(to.as_raw_fd(), mode) } != 0 {
                return Err(io_at(shown)(last_err()));
            }
            set_file_times(&to, st).map_err(io_at(shown))?;
            note(src, ent, shown, o);
            Ok(Some(to.into()))
        }
        libc::S_IFLNK => {
            clear(at, name, false).map_err(io_at(shown))?;
            let target = readlink(ent.fd().map_err(io_at(&ent.rel))?.as_raw_fd()).map_err(io_at(&ent.rel))?;
            let t = cname(target.as_os_str()).map_err(io_at(shown))?;
            // SAFETY: valid C strings and directory descriptor.
            if unsafe { libc::symlinkat(t.as_ptr(), at.as_raw_fd(), c.as_ptr()) } != 0 {
                return Err(err(last_err()));
            }
            // SAFETY: as above; the link itself changes owner.
            if unsafe { libc::fchownat(at.as_raw_fd(), c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
                return Err(io_at(shown)(last_err()));
            }
            Ok(None)
        }
        _ if src.is_context => Err(ContextError::Special(ent.rel.display().to_string())),
        _ => {
            clear(at, name, false).map_err(io_at(shown))?;
            // SAFETY: valid descriptor and C string; the node is the tree's own.
            if unsafe { libc::mknodat(at.as_raw_fd(), c.as_ptr(), st.st_mode, st.st_rdev) } != 0 {
                return Err(err(last_err()));
            }
            // SAFETY: as above.
            if unsafe { libc::fchownat(at.as_raw_fd(), c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
                return Err(io_at(shown)(last_err()));
            }
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_octal_and_symbolic() {
        assert_eq!(Chmod::parse("755").unwrap().apply(0o600, false), 0o755);
        assert_eq!(Chmod::parse("u+x,go-w").unwrap().apply(0o666, false), 0o744);
        assert_eq!(Chmod::parse("a=rX").unwrap().apply(0o600, true), 0o555);
        assert_eq!(Chmod::parse("a=rX").unwrap().apply(0o600, false), 0o444);
        assert!(Chmod::parse("99").is_err() && Chmod::parse("q+x").is_err() && Chmod::parse("17777").is_err());
    }

    /// A tree of `dirs` directories of `files` files each, with modes and a link.
    fn tree(root: &Path, dirs: usize, files: usize) {
        for d in 0..dirs {
            let dir = root.join(format!("src/d{d}"));
            std::fs::create_dir_all(&dir).unwrap();
            for f in 0..files {
                std::fs::write(dir.join(format!("f{f}")), format!("{d}/{f}")).unwrap();
            }
            std::os::unix::fs::symlink("f0", dir.join("link")).unwrap();
        }
    }

    #[test]
    fn a_large_copy_placed_on_two_threads_is_the_whole_tree() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        // Over a batch (8192) in all, and several directories per half.
        tree(t.path(), 6, 1500);
        let into = tempfile::tempdir().unwrap();
        let root: OwnedFd = std::fs::File::open(into.path()).unwrap().into();
        for (rel, link) in [("src", false), ("src", true)] {
            let src = Source::tree(t.path()).unwrap();
            let o = CopyOptions {
                chmod: Some(Chmod::Octal(0o640)).filter(|_| !link),
                link,
                ..Default::default()
            };
            let dest = if link { "/linked" } else { "/copied" };
            copy(&src, &[PathBuf::from(rel)], inroot::borrow(&root), dest, true, &o).unwrap();
            for d in 0..6 {
                for f in (0..1500).step_by(97) {
                    let p = into.path().join(format!("{}/d{d}/f{f}", &dest[1..]));
                    assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("{d}/{f}"));
                    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
                    assert_eq!(mode == 0o640, !link, "{}", p.display());
                }
                let l = into.path().join(format!("{}/d{d}/link", &dest[1..]));
                assert_eq!(std::fs::read_link(l).unwrap(), Path::new("f0"));
                let n = std::fs::read_dir(into.path().join(format!("{}/d{d}", &dest[1..])))
                    .unwrap()
                    .count();
                assert_eq!(n, 1501);
            }
        }
        // Linked: the same inodes as the tree's.
        use std::os::unix::fs::MetadataExt;
        let a = std::fs::metadata(t.path().join("src/d3/f7")).unwrap().ino();
        assert_eq!(std::fs::metadata(into.path().join("linked/d3/f7")).unwrap().ino(), a);
    }

    #[test]
    fn an_entry_replaced_before_it_is_linked_is_refused() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("a"), "a").unwrap();
        std::fs::write(t.path().join("secret"), "outside").unwrap();
        let dir = std::sync::Arc::new(OwnedFd::from(std::fs::File::open(t.path()).unwrap()));
        let ent = super::super::child_entry(&dir, OsStr::new("a"), PathBuf::from("a")).unwrap();
        // Swapped for another file once looked at: linking it by name would link the
        // new inode.
        std::fs::remove_file(t.path().join("a")).unwrap();
        std::fs::hard_link(t.path().join("secret"), t.path().join("a")).unwrap();
        let into = tempfile::tempdir().unwrap();
        let at = OwnedFd::from(std::fs::File::open(into.path()).unwrap());
        let err = link(&ent, inroot::borrow(&at), c"b").unwrap_err();
        assert!(err.to_string().contains("replaced"), "{err}");
        assert!(!into.path().join("b").exists(), "nothing is left where it was linked");
    }
}
