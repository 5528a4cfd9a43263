//! A build's sources: the context directory (read in place, through `.dockerignore`),
//! or another stage's or image's tree for `COPY --from`. Every path is resolved inside
//! the source's root (`openat2` with `RESOLVE_IN_ROOT`), and below a named source the
//! walk goes by directory descriptors and never follows a link: a hostile context's
//! symlinks cannot make a build read outside it. Only what a step names is read.

mod batch;
pub mod copy;
mod digest;
pub mod glob;
pub mod hashes;
pub mod ignore;
pub mod reuse;

use ignore::Ignore;
use safefs::inroot;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to compute cache key: \"{0}\" not found in the build context (or excluded by .dockerignore)")]
    NotFound(String),
    #[error("{0:?}: a device, pipe or socket in the build context cannot be copied")]
    Special(String),
    #[error("{0:?} is outside the build context")]
    Outside(String),
    #[error("invalid --chmod {0:?}: an octal mode or a symbolic one (u+x,go-w)")]
    Chmod(String),
    #[error("{what}: more than {limit} bytes")]
    TooBig { what: String, limit: u64 },
    #[error("{pattern:?} matches more than {limit} paths")]
    TooMany { pattern: String, limit: usize },
}

/// The most paths a source's wildcards may match at any level (links to directories
/// are followed inside the root, so `*/*/*` over links to `.` would multiply).
const MAX_MATCHES: usize = 100_000;

pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The most a `.dockerignore` may hold.
const IGNORE_LIMIT: u64 = 1 << 20;

/// A tree files are copied from.
pub struct Source {
    root: OwnedFd,
    pub path: PathBuf,
    ignore: Ignore,
    /// The context (owners are not kept, devices are refused) or a stage's tree.
    pub is_context: bool,
}

/// One thing found under a source: its path relative to the source root, and stat.
/// Below a named source an entry is only looked at (`fstatat` in its directory) until
/// something needs it open: a walk that only stats (a cache key from known hashes)
/// opens nothing but directories.
#[derive(Clone)]
pub struct Entry {
    pub rel: PathBuf,
    pub stat: libc::stat,
    fd: std::sync::OnceLock<std::sync::Arc<OwnedFd>>,
    /// The directory it was found in and its name there, to open it from.
    at: Option<(std::sync::Arc<OwnedFd>, CString)>,
}

impl Entry {
    fn opened(rel: PathBuf, stat: libc::stat, fd: OwnedFd) -> Entry {
        Entry {
            rel,
            stat,
            fd: std::sync::OnceLock::from(std::sync::Arc::new(fd)),
            at: None,
        }
    }

    /// The entry opened `O_PATH`, never through a link; an error if what is at its
    /// name now is not the inode it was seen as.
    pub fn fd(&self) -> io::Result<&OwnedFd> {
        Ok(self.shared_fd()?.as_ref())
    }

    /// The directory it was found in and its name there, while it is not open.
    pub(crate) fn unopened(&self) -> Option<(BorrowedFd<'_>, &CStr)> {
        match (&self.at, self.fd.get()) {
            (Some((dir, name)), None) => Some((inroot::borrow(dir), name.as_c_str())),
            _ => None,
        }
    }

    fn shared_fd(&self) -> io::Result<&std::sync::Arc<OwnedFd>> {
        if let Some(fd) = self.fd.get() {
            return Ok(fd);
        }
        let Some((dir, name)) = &self.at else {
            return Err(io::Error::other("an entry without a descriptor"));
        };
        let fd = open_child(inroot::borrow(dir), OsStr::from_bytes(name.to_bytes()))?;
        let now = fstat(inroot::borrow(&fd))?;
        if (now.st_dev, now.st_ino, kind(&now)) != (self.stat.st_dev, self.stat.st_ino, kind(&self.stat)) {
            return Err(io::Error::other("it was replaced while it was read"));
        }
        Ok(self.fd.get_or_init(|| std::sync::Arc::new(fd)))
    }
}

pub(crate) fn kind(st: &libc::stat) -> libc::mode_t {
    st.st_mode & libc::S_IFMT
}

pub(crate) fn fstat(fd: BorrowedFd) -> io::Result<libc::stat> {
    // SAFETY: stat is plain data that fstat fills.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a writable stat.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

pub(crate) fn cname(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a name with a NUL byte"))
}

/// Opens `name` in the directory `dir`, never following a link (`O_PATH`).
pub(crate) fn open_child(dir: BorrowedFd, name: &OsStr) -> io::Result<OwnedFd> {
    let c = cname(name)?;
    // SAFETY: a valid directory descriptor and C string; the result is checked.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reopens an `O_PATH` descriptor of a regular file for reading (non-blocking: a pipe
/// swapped in cannot hang the build).
pub(crate) fn reopen(fd: &OwnedFd) -> io::Result<std::fs::File> {
    inroot::reopen_regular(fd)
}

impl Source {
    /// The context directory with its ignore file: `<Dockerfile>.dockerignore` beside the
    /// Dockerfile when there is one, else `.dockerignore` at the context's root.
    pub fn context(dir: &Path, dockerfile: Option<&Path>) -> Result<Source, ContextError> {
        let root = std::fs::File::open(dir).map_err(io_at(dir))?;
        let meta = root.metadata().map_err(io_at(dir))?;
        if !meta.is_dir() {
            return Err(ContextError::Io {
                path: dir.display().to_string(),
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        let root: OwnedFd = root.into();
        let specific = dockerfile.map(|d| {
            let mut n = d.as_os_str().to_owned();
            n.push(".dockerignore");
            PathBuf::from(n)
        });
        let mut text = None;
        if let Some(p) = specific {
            match read_beside(dir, &p, IGNORE_LIMIT) {
                Ok(t) => text = Some(t),
                Err(ContextError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        if text.is_none() {
            match inroot::read_file(inroot::borrow(&root), Path::new(".dockerignore"), IGNORE_LIMIT) {
                Ok(t) => text = Some(t),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(io_at(&dir.join(".dockerignore"))(e)),
            }
        }
        let ignore = Ignore::parse(&String::from_utf8_lossy(&text.unwrap_or_default()));
        Ok(Source {
            root,
            path: dir.to_path_buf(),
            ignore,
            is_context: true,
        })
    }

    /// A stage's or image's root filesystem, everything in it copyable.
    pub fn tree(dir: &Path) -> Result<Source, ContextError> {
        let root: OwnedFd = std::fs::File::open(dir).map_err(io_at(dir))?.into();
        Ok(Source {
            root,
            path: dir.to_path_buf(),
            ignore: Ignore::default(),
            is_context: false,
        })
    }

    /// Whether `.dockerignore` leaves anything out.
    pub fn filters(&self) -> bool {
        self.is_context && !self.ignore.is_empty()
    }

    pub fn excluded(&self, rel: &Path) -> bool {
        self.is_context && !self.ignore.is_empty() && self.ignore.excludes(&rel.to_string_lossy())
    }

    /// The paths a `COPY` source names (wildcards expanded), relative to the root.
    /// None found is an error naming the source, as BuildKit's.
    pub fn resolve(&self, pattern: &str) -> Result<Vec<PathBuf>, ContextError> {
        let cleaned = ignore::clean(pattern);
        if self.is_context && pattern.split('/').filter(|p| *p == "..").count() > 0 && escapes(pattern) {
            return Err(ContextError::Outside(pattern.to_string()));
        }
        let parts: Vec<&str> = cleaned.split('/').filter(|p| !p.is_empty()).collect();
        let mut found = vec![PathBuf::new()];
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let mut next = Vec::new();
            for base in &found {
                if glob::has_wildcards(part) {
                    let Ok(dir) = inroot::open(inroot::borrow(&self.root), base, libc::O_PATH | libc::O_DIRECTORY, 0)
                    else {
                        continue;
                    };
                    for n in inroot::entries(&dir).map_err(io_at(base))? {
                        if glob::path_matches(part, &n.to_string_lossy()) {
                            next.push(base.join(n));
                        }
                    }
                    if next.len() > MAX_MATCHES {
                        break;
                    }
                } else {
                    next.push(base.join(part));
                }
            }
            if next.len() > MAX_MATCHES {
                return Err(ContextError::TooMany {
                    pattern: pattern.to_string(),
                    limit: MAX_MATCHES,
                });
            }
            found = next;
            if last {
                break;
            }
        }
        let hits: Vec<PathBuf> = found
            .into_iter()
            .filter(|p| {
                (p.as_os_str().is_empty() || !self.excluded(p))
                    && inroot::open(inroot::borrow(&self.root), p, libc::O_PATH, 0).is_ok()
            })
            .collect();
        if hits.is_empty() {
            return Err(ContextError::NotFound(pattern.to_string()));
        }
        Ok(hits)
    }

    /// A named source, opened inside the root (links on the way followed inside it).
    pub fn open(&self, rel: &Path) -> Result<Entry, ContextError> {
        let fd =
            inroot::open(inroot::borrow(&self.root), rel, libc::O_PATH, 0).map_err(|e| match e.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ENOTDIR) => ContextError::NotFound(rel.display().to_string()),
                _ => io_at(rel)(e),
            })?;
        let stat = fstat(inroot::borrow(&fd)).map_err(io_at(rel))?;
        Ok(Entry::opened(rel.to_path_buf(), stat, fd))
    }

    /// Visits `e` and, for a directory, everything below it that is not excluded, parents
    /// before children, names sorted; `f` gets each entry with its path relative to `e`.
    pub fn walk(
        &self,
        e: &Entry,
        f: &mut dyn FnMut(&Path, &Entry) -> Result<(), ContextError>,
    ) -> Result<(), ContextError> {
        self.walk_in(e, Path::new(""), f, 0)
    }

    fn walk_in(
        &self,
        e: &Entry,
        below: &Path,
        f: &mut dyn FnMut(&Path, &Entry) -> Result<(), ContextError>,
        depth: usize,
    ) -> Result<(), ContextError> {
        if depth > inroot::MAX_DEPTH {
            return Err(io_at(&e.rel)(io::Error::other("too deep")));
        }
        f(below, e)?;
        if kind(&e.stat) != libc::S_IFDIR {
            return Ok(());
        }
        let dir = e.shared_fd().map_err(io_at(&e.rel))?.clone();
        let kept = self.kept_children(e, &dir)?;
        for chunk in kept.chunks(LOOK_CHUNK) {
            for (n, child) in look_all(&dir, chunk)? {
                if self.excluded(&child.rel) {
                    // A directory kept only for the exceptions inside it.
                    self.walk_excluded_dir(&child, &below.join(n), f, depth + 1)?;
                    continue;
                }
                self.walk_in(&child, &below.join(n), f, depth + 1)?;
            }
        }
        Ok(())
    }

    /// The names in the directory `e` (open as `dir`) that a walk goes to, with their
    /// paths: those not excluded, and excluded directories with exceptions inside.
    fn kept_children(&self, e: &Entry, dir: &OwnedFd) -> Result<Vec<(OsString, PathBuf)>, ContextError> {
        let names: Vec<OsString> = inroot::entries(dir).map_err(io_at(&e.rel))?;
        Ok(names
            .into_iter()
            .map(|n| {
                let rel = e.rel.join(&n);
                (n, rel)
            })
            .filter(|(n, rel)| {
                !self.excluded(rel) || (kind_is_dir(dir, n) && self.ignore.may_include_under(&rel.to_string_lossy()))
            })
            .collect())
    }

    fn walk_excluded_dir(
        &self,
        e: &Entry,
        below: &Path,
        f: &mut dyn FnMut(&Path, &Entry) -> Result<(), ContextError>,
        depth: usize,
    ) -> Result<(), ContextError> {
        let mut inner: Vec<(PathBuf, Entry)> = Vec::new();
        let dir = e.shared_fd().map_err(io_at(&e.rel))?.clone();
        let names = inroot::entries(&dir).map_err(io_at(&e.rel))?;
        for n in names {
            let rel = e.rel.join(&n);
            inner.push((below.join(&n), child_entry(&dir, &n, rel)?));
        }
        let mut any = false;
        for (b, child) in inner {
            if !self.excluded(&child.rel) {
                if !any {
                    // The directory itself, before the first thing kept inside it.
                    f(below, e)?;
                    any = true;
                }
                self.walk_in(&child, &b, f, depth + 1)?;
            } else if kind(&child.stat) == libc::S_IFDIR && self.ignore.may_include_under(&child.rel.to_string_lossy())
            {
                self.walk_excluded_dir(&child, &b, f, depth + 1)?;
            }
        }
        Ok(())
    }
}

/// How many entries of one directory are looked at together (and held at once).
const LOOK_CHUNK: usize = 4096;
/// From how many entries looking at them is shared with a second thread: the walk of
/// a large context is mostly `fstatat`, which runs in parallel in one directory.
const LOOK_PARALLEL: usize = 256;

/// The entries `names` (with their paths) of the directory `dir`, looked at, in order.
fn look_all<'a>(
    dir: &std::sync::Arc<OwnedFd>,
    names: &'a [(OsString, PathBuf)],
) -> Result<Vec<(&'a OsStr, Entry)>, ContextError> {
    let look = |part: &'a [(OsString, PathBuf)]| -> Result<Vec<(&'a OsStr, Entry)>, ContextError> {
        part.iter()
            .map(|(n, rel)| Ok((n.as_os_str(), child_entry(dir, n, rel.clone())?)))
            .collect()
    };
    if names.len() < LOOK_PARALLEL || digest::in_unit() {
        return look(names);
    }
    let (first, second) = names.split_at(names.len() / 2);
    std::thread::scope(|s| {
        let other = std::thread::Builder::new().spawn_scoped(s, || look(second));
        let mut all = look(first)?;
        let rest = match other {
            Ok(h) => h
                .join()
                .map_err(|_| io_at(Path::new(""))(io::Error::other("a walk's thread failed")))??,
            // No second thread: this one looks at the rest too.
            Err(_) => look(second)?,
        };
        all.extend(rest);
        Ok(all)
    })
}

/// The entry `name` of the directory `dir` (at `rel`), looked at. Nothing is opened:
/// a directory is when the walk goes into it (a directory's entries are looked at
/// thousands at a time, and the engine's descriptors are few).
fn child_entry(dir: &std::sync::Arc<OwnedFd>, name: &OsStr, rel: PathBuf) -> Result<Entry, ContextError> {
    let c = cname(name).map_err(io_at(&rel))?;
    let stat = inroot::stat_at(inroot::borrow(dir), Path::new(name)).map_err(io_at(&rel))?;
    Ok(Entry {
        rel,
        stat,
        fd: std::sync::OnceLock::new(),
        at: Some((dir.clone(), c)),
    })
}

fn kind_is_dir(dir: &OwnedFd, name: &OsStr) -> bool {
    inroot::stat_at(inroot::borrow(dir), Path::new(name))
        .map(|st| kind(&st) == libc::S_IFDIR)
        .unwrap_or(false)
}

/// Whether a relative path climbs above its root.
fn escapes(p: &str) -> bool {
    let mut depth: i64 = 0;
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

/// The most a Dockerfile may hold.
pub const DOCKERFILE_LIMIT: u64 = 32 << 20;

/// A file that goes with a context (its Dockerfile, the Dockerfile's `.dockerignore`):
/// a path inside the context is resolved inside it, so a link there cannot make the
/// engine read a host file; a path the Compose file puts outside the context is
/// that file's author's choice, and is read as given. Either way only a regular file
/// is opened (never a device or a pipe), and at most `limit` bytes of it.
pub fn read_beside(context: &Path, path: &Path, limit: u64) -> Result<Vec<u8>, ContextError> {
    let inside = path
        .strip_prefix(context)
        .ok()
        .map(Path::to_path_buf)
        .or_else(|| path.is_relative().then(|| path.to_path_buf()))
        .filter(|rel| !escapes(&rel.to_string_lossy()));
    let (root, rel) = match inside {
        Some(rel) => (context.to_path_buf(), rel),
        None => (PathBuf::from("/"), path.to_path_buf()),
    };
    let dir: OwnedFd = std::fs::File::open(&root).map_err(io_at(&root))?.into();
    inroot::read_file(inroot::borrow(&dir), &rel, limit).map_err(|e| {
        if e.to_string().contains("larger than") {
            ContextError::TooBig {
                what: path.display().to_string(),
                limit,
            }
        } else {
            io_at(path)(e)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_replaced_after_it_was_looked_at_is_not_opened() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("src")).unwrap();
        std::fs::write(t.path().join("src/a"), "a").unwrap();
        std::fs::write(t.path().join("secret"), "outside").unwrap();
        let src = Source::tree(t.path()).unwrap();
        let top = src.open(Path::new("src")).unwrap();
        let mut seen = Vec::new();
        src.walk(&top, &mut |below, ent| {
            if below == Path::new("a") {
                // Swapped for a link out once looked at: opening it now must fail, not
                // follow the link nor open the new inode.
                std::fs::remove_file(t.path().join("src/a")).unwrap();
                std::os::unix::fs::symlink(t.path().join("secret"), t.path().join("src/a")).unwrap();
                let err = ent.fd().unwrap_err();
                assert!(err.to_string().contains("replaced"), "{err}");
                seen.push(below.to_path_buf());
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![PathBuf::from("a")]);
    }

    #[test]
    fn a_large_directory_is_walked_in_name_order() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        // Past the point where looking at entries is shared with a second thread.
        let mut names: Vec<String> = (0..LOOK_PARALLEL * 3).map(|i| format!("n{i}")).collect();
        for n in &names {
            std::fs::write(t.path().join("d").join(n), n).unwrap();
        }
        std::fs::create_dir(t.path().join("d/n5x")).unwrap();
        std::fs::write(t.path().join("d/n5x/inner"), "i").unwrap();
        names.push("n5x".into());
        names.push("n5x/inner".into());
        names.sort();
        let src = Source::tree(t.path()).unwrap();
        let top = src.open(Path::new("d")).unwrap();
        let mut seen = Vec::new();
        src.walk(&top, &mut |below, ent| {
            if !below.as_os_str().is_empty() {
                assert_eq!(ent.rel, Path::new("d").join(below));
                seen.push(below.to_string_lossy().into_owned());
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, names);
    }

    #[test]
    fn a_directory_of_many_directories_is_walked_with_few_descriptors() {
        let t = tempfile::tempdir().unwrap();
        for i in 0..1500 {
            std::fs::create_dir_all(t.path().join(format!("d/s{i}"))).unwrap();
        }
        let src = Source::tree(t.path()).unwrap();
        let top = src.open(Path::new("d")).unwrap();
        let open_fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
        let mut most = 0;
        let mut seen = 0;
        src.walk(&top, &mut |_, _| {
            most = most.max(open_fds());
            seen += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, 1501);
        // The siblings are looked at, not held open (other tests' descriptors count too).
        assert!(most < 400, "{most} descriptors open during the walk");
    }

    #[test]
    fn a_walk_that_only_stats_gives_the_digest_of_the_contents() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("d/e")).unwrap();
        std::fs::write(t.path().join("d/e/f"), "one").unwrap();
        let src = Source::tree(t.path()).unwrap();
        let hashes = hashes::Hashes::in_memory();
        let first = src.digest(&[PathBuf::from("d")], &hashes).unwrap();
        assert_eq!(first, src.digest(&[PathBuf::from("d")], &hashes).unwrap());
        std::fs::write(t.path().join("d/e/f"), "two").unwrap();
        assert_ne!(first, src.digest(&[PathBuf::from("d")], &hashes).unwrap());
    }
}
