//! A copy's cache key: the digest of what it would copy (names, types, modes, owners
//! for a tree, link targets and contents; never times, so a touched file is a cache
//! hit). A file's content hash comes from the [`Hashes`] when its stat is unchanged,
//! so a rebuild reads only changed files and the digest is mostly the walk itself.
//! That walk runs on two threads: each entry directly inside a named directory is a
//! unit whose records are hashed apart (in the walk's order, by the same rules), and
//! the units' hashes go into the digest in name order, so the result never depends on
//! which thread did what.

use super::hashes::Hashes;
use super::{copy, io_at, kind, look_all, reopen, ContextError, Entry, Source, LOOK_CHUNK};
use sha2::{Digest as _, Sha256};
use std::ffi::OsStr;
use std::io::{Read, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

thread_local! {
    /// This thread hashes units, the other core another: a walk inside looks at a
    /// directory's entries on this thread only.
    static IN_UNIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is hashing a digest's units.
pub(super) fn in_unit() -> bool {
    IN_UNIT.with(|u| u.get())
}

/// One unit's hash, or none when it recorded nothing (a directory excluded with all
/// it holds).
type Unit = Option<[u8; 32]>;

impl Source {
    /// The digest of what copying `rels` would copy.
    pub fn digest(&self, rels: &[PathBuf], hashes: &Hashes) -> Result<String, ContextError> {
        let mut h = Sha256::new();
        let mut line = Vec::with_capacity(64);
        for r in rels {
            let e = self.open(r)?;
            h.update(r.as_os_str().as_bytes());
            h.update([0]);
            self.record(&mut h, &mut line, Path::new(""), &e, hashes)?;
            if kind(&e.stat) != libc::S_IFDIR {
                continue;
            }
            let dir = e.shared_fd().map_err(io_at(&e.rel))?.clone();
            let kept = self.kept_children(&e, &dir)?;
            for chunk in kept.chunks(LOOK_CHUNK) {
                let kids = look_all(&dir, chunk)?;
                for unit in self.units(&kids, hashes)?.into_iter().flatten() {
                    h.update(unit);
                }
            }
        }
        Ok(format!("sha256:{:x}", h.finalize()))
    }

    /// The hashes of `kids`' subtrees, in their order, on two threads.
    fn units(&self, kids: &[(&OsStr, Entry)], hashes: &Hashes) -> Result<Vec<Unit>, ContextError> {
        let next = AtomicUsize::new(0);
        let work = || -> Result<Vec<(usize, Unit)>, ContextError> {
            let was = IN_UNIT.with(|u| u.replace(kids.len() > 1));
            let done = self.units_on_this_thread(kids, &next, hashes);
            IN_UNIT.with(|u| u.set(was));
            done
        };
        let mut all = std::thread::scope(|s| -> Result<Vec<(usize, Unit)>, ContextError> {
            let other = (kids.len() > 1)
                .then(|| std::thread::Builder::new().spawn_scoped(s, work).ok())
                .flatten();
            let mut all = work()?;
            if let Some(h) = other {
                let theirs = h
                    .join()
                    .map_err(|_| io_at(Path::new(""))(std::io::Error::other("a digest's thread failed")))??;
                all.extend(theirs);
            }
            Ok(all)
        })?;
        all.sort_unstable_by_key(|(i, _)| *i);
        Ok(all.into_iter().map(|(_, u)| u).collect())
    }

    /// Units taken from `kids` by `next` until none is left: (index, hash).
    fn units_on_this_thread(
        &self,
        kids: &[(&OsStr, Entry)],
        next: &AtomicUsize,
        hashes: &Hashes,
    ) -> Result<Vec<(usize, Unit)>, ContextError> {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some((name, child)) = kids.get(i) else {
                return Ok(done);
            };
            done.push((i, self.unit(name, child, hashes)?));
        }
    }

    /// The hash of the records of `child` (named `name` in the item) and all below it.
    fn unit(&self, name: &OsStr, child: &Entry, hashes: &Hashes) -> Result<Unit, ContextError> {
        let mut h = Sha256::new();
        let mut line = Vec::with_capacity(64);
        let mut wrote = false;
        let mut f = |below: &Path, ent: &Entry| {
            wrote = true;
            self.record(&mut h, &mut line, below, ent, hashes)
        };
        let below = Path::new(name);
        if self.excluded(&child.rel) {
            // A directory kept only for the exceptions inside it.
            self.walk_excluded_dir(child, below, &mut f, 1)?;
        } else {
            self.walk_in(child, below, &mut f, 1)?;
        }
        Ok(wrote.then(|| h.finalize().into()))
    }

    /// One entry's record: its path below the item, mode, owner (a tree's; the
    /// context's are root's), size, and content hash or link target.
    fn record(
        &self,
        h: &mut Sha256,
        line: &mut Vec<u8>,
        below: &Path,
        ent: &Entry,
        hashes: &Hashes,
    ) -> Result<(), ContextError> {
        h.update(below.as_os_str().as_bytes());
        let st = &ent.stat;
        let owner = if self.is_context {
            (0, 0)
        } else {
            (st.st_uid, st.st_gid)
        };
        line.clear();
        let _ = write!(line, "\0{:o} {} {} {}\0", st.st_mode, owner.0, owner.1, st.st_size);
        h.update(&line);
        match kind(st) {
            libc::S_IFREG => {
                let content = match hashes.get(st) {
                    Some(c) => c,
                    None => {
                        let c = content_hash(ent)?;
                        hashes.put(st, c);
                        c
                    }
                };
                h.update(content);
            }
            libc::S_IFLNK => {
                h.update(
                    copy::readlink(ent.fd().map_err(io_at(&ent.rel))?.as_raw_fd())
                        .map_err(io_at(&ent.rel))?
                        .as_os_str()
                        .as_bytes(),
                );
            }
            _ => {}
        }
        Ok(())
    }
}

/// The SHA-256 of a regular file's first `st_size` bytes.
fn content_hash(ent: &Entry) -> Result<[u8; 32], ContextError> {
    let mut f = reopen(ent.fd().map_err(io_at(&ent.rel))?).map_err(io_at(&ent.rel))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = ent.stat.st_size as u64;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = f.read(&mut buf[..want]).map_err(io_at(&ent.rel))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `src/` with 50 directories of 20 files and a file of its own.
    fn tree(root: &Path) {
        for d in 0..50 {
            let dir = root.join(format!("src/d{d}"));
            std::fs::create_dir_all(&dir).unwrap();
            for f in 0..20 {
                std::fs::write(dir.join(format!("f{f}")), format!("{d}/{f}")).unwrap();
            }
        }
        std::fs::write(root.join("src/top"), "top").unwrap();
    }

    #[test]
    fn the_digest_on_two_threads_is_the_contents_not_the_schedule() {
        let t = tempfile::tempdir().unwrap();
        tree(t.path());
        std::fs::write(t.path().join(".dockerignore"), "src/skipped\n").unwrap();
        let src = Source::context(t.path(), None).unwrap();
        let hashes = Hashes::in_memory();
        let rels = [PathBuf::from("src")];
        let first = src.digest(&rels, &hashes).unwrap();
        for _ in 0..5 {
            assert_eq!(src.digest(&rels, &hashes).unwrap(), first);
        }
        // An excluded directory, whatever it holds, changes nothing.
        std::fs::create_dir_all(t.path().join("src/skipped/deep")).unwrap();
        std::fs::write(t.path().join("src/skipped/deep/x"), "x").unwrap();
        assert_eq!(src.digest(&rels, &hashes).unwrap(), first);
        // A file deep in one unit does; so does a new empty directory.
        std::fs::write(t.path().join("src/d37/f5"), "changed").unwrap();
        let edited = src.digest(&rels, &hashes).unwrap();
        assert_ne!(edited, first);
        std::fs::create_dir(t.path().join("src/d37/new")).unwrap();
        assert_ne!(src.digest(&rels, &hashes).unwrap(), edited);
        // The same names and contents elsewhere give the same digest.
        let u = tempfile::tempdir().unwrap();
        tree(u.path());
        let other = Source::context(u.path(), None).unwrap();
        assert_eq!(other.digest(&rels, &Hashes::in_memory()).unwrap(), first);
    }
}
