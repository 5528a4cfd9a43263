//! A copy's files and links, placed in batches, links on two threads: most of a
//! large linking copy's time is the kernel adding directory entries, which it does for
//! two directories at once but for one directory one at a time (the directory is
//! locked). So a batch is cut in two where the directory changes, each half on a
//! thread of its own (a 20,000-file `COPY --from`: 150 ms on one thread, 100 on two).
//! Directories are made by the walk itself, before any file goes into them.

use super::copy::{place, CopyOptions};
use super::{ContextError, Entry, Source};
use safefs::inroot;
use std::ffi::OsString;
use std::os::unix::io::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

/// The most entries held before they are placed.
const MAX_BATCH: usize = 8192;
/// The most directories a batch's entries are in: each held open until its entries
/// are placed (the engine's descriptors are few).
const MAX_DIRS: usize = 128;
/// From how many entries a batch is shared with a second thread.
const PARALLEL_FROM: usize = 256;

/// One non-directory to make: `name` in the destination directory `at`, shown as
/// `shown` in the image.
struct Job {
    at: Arc<OwnedFd>,
    name: OsString,
    ent: Entry,
    shown: PathBuf,
}

#[derive(Default)]
pub(super) struct Batch {
    jobs: Vec<Job>,
    dirs: usize,
}

impl Batch {
    pub fn push(&mut self, at: Arc<OwnedFd>, name: OsString, ent: Entry, shown: PathBuf) {
        if self.jobs.last().is_none_or(|j| !Arc::ptr_eq(&j.at, &at)) {
            self.dirs += 1;
        }
        self.jobs.push(Job { at, name, ent, shown });
    }

    pub fn full(&self) -> bool {
        self.jobs.len() >= MAX_BATCH || self.dirs >= MAX_DIRS
    }

    /// Places every entry held, each let go (its descriptors closed) once placed; the
    /// first error (in walk order within each half).
    pub fn run(&mut self, src: &Source, o: &CopyOptions) -> Result<(), ContextError> {
        let mut jobs = std::mem::take(&mut self.jobs);
        self.dirs = 0;
        let place_all = |part: Vec<Job>| -> Result<(), ContextError> {
            for j in part {
                place(src, &j.ent, inroot::borrow(&j.at), &j.name, o, &j.shown)?;
            }
            Ok(())
        };
        // Only links: two threads making new inodes in one block group contend for
        // it (measured: a 20,000-file copy 0.6-0.9 s on one thread, 1.1-1.6 s on two).
        let links = o.link || o.reuse.is_some();
        let Some(cut) = cut_between_dirs(&jobs).filter(|_| links) else {
            return place_all(jobs);
        };
        let second = std::sync::Mutex::new(Some(jobs.split_off(cut)));
        let take = || {
            second
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_default()
        };
        std::thread::scope(|s| {
            let other = std::thread::Builder::new().spawn_scoped(s, || place_all(take()));
            let mine = place_all(jobs);
            let theirs = match other {
                Ok(h) => h.join().unwrap_or_else(|_| {
                    Err(super::io_at(std::path::Path::new(""))(std::io::Error::other(
                        "a copy's thread failed",
                    )))
                }),
                // No second thread: this one places the other half too.
                Err(_) => place_all(take()),
            };
            mine.and(theirs)
        })
    }
}

/// Where to cut `jobs` in two: the place nearest the middle where one directory's
/// entries end; none for a small batch or one directory's.
fn cut_between_dirs(jobs: &[Job]) -> Option<usize> {
    if jobs.len() < PARALLEL_FROM {
        return None;
    }
    let mid = jobs.len() / 2;
    let boundary = |i: usize| i > 0 && i < jobs.len() && !Arc::ptr_eq(&jobs[i].at, &jobs[i - 1].at);
    (0..=mid).find_map(|d| [mid - d, mid + d].into_iter().find(|&i| boundary(i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(at: &Arc<OwnedFd>) -> Job {
        // SAFETY: stat is plain data; zeroes are a valid value.
        let st: libc::stat = unsafe { std::mem::zeroed() };
        Job {
            at: at.clone(),
            name: "f".into(),
            ent: Entry {
                rel: PathBuf::new(),
                stat: st,
                fd: std::sync::OnceLock::new(),
                at: None,
            },
            shown: PathBuf::new(),
        }
    }

    #[test]
    fn a_batch_is_full_at_its_count_of_directories() {
        let mut b = Batch::default();
        for i in 0..MAX_DIRS {
            let dir: Arc<OwnedFd> = Arc::new(std::fs::File::open("/").unwrap().into());
            assert!(!b.full(), "{i} directories");
            b.push(dir.clone(), "a".into(), job(&dir).ent, PathBuf::new());
            b.push(dir.clone(), "b".into(), job(&dir).ent, PathBuf::new());
        }
        assert!(b.full(), "the directories held are bounded, not only the entries");
    }

    #[test]
    fn a_batch_is_cut_only_between_directories() {
        let a: Arc<OwnedFd> = Arc::new(std::fs::File::open("/").unwrap().into());
        let b: Arc<OwnedFd> = Arc::new(std::fs::File::open("/").unwrap().into());
        let mut jobs: Vec<Job> = (0..300).map(|_| job(&a)).collect();
        assert_eq!(
            cut_between_dirs(&jobs),
            None,
            "one directory's entries stay on one thread"
        );
        jobs.extend((0..100).map(|_| job(&b)));
        assert_eq!(cut_between_dirs(&jobs), Some(300));
        jobs.truncate(10);
        assert_eq!(cut_between_dirs(&jobs), None, "a small batch is not shared");
    }
}
