//! What an earlier run of the same `COPY` made, reused: a context file unchanged since
//! that copy (the same inode, size, mtime and ctime, and not modified in the two
//! seconds before the copy was recorded, as the hash cache's racy rule has it) is
//! linked to the earlier layer's file instead of copied again, when that file still
//! has exactly the owner, mode, size and times a new copy would get. Layers are never
//! written once made, so one inode may serve in both; the image is byte for byte the
//! one a full copy makes. A one-file edit of a large context then makes one new file,
//! not one per context file (file creation is what a copy's time goes to).

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::CStr;
use std::io;
use std::os::unix::io::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The most a record may hold on disk, and the most files it notes (past that a copy
/// is not recorded: the next one copies in full).
const MAX_RECORD: u64 = 64 << 20;
pub const MAX_FILES: usize = 200_000;

/// A source file's identity and change marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatKey {
    pub dev: u64,
    pub ino: u64,
    pub size: i64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl StatKey {
    pub fn of(st: &libc::stat) -> StatKey {
        StatKey {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }
}

/// One regular file a copy made: from where (relative to the source), its source's
/// marks, and where it went (its path in the image).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Copied {
    pub rel: PathBuf,
    pub stat: StatKey,
    pub dest: PathBuf,
}

/// What a copy made, as kept between builds: the layer it went into and its files.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Record {
    pub layer: String,
    /// When the copy was made (seconds since the epoch).
    pub at: i64,
    pub files: Vec<Copied>,
}

impl Record {
    /// The record at `path`; `None` when missing, too big or unreadable.
    pub fn load(path: &Path) -> Option<Record> {
        let f = std::fs::File::open(path).ok()?;
        if f.metadata().ok()?.len() > MAX_RECORD {
            return None;
        }
        serde_json::from_reader(io::BufReader::new(f)).ok()
    }

    pub fn save(&self, path: &Path) -> io::Result<()> {
        if self.files.len() > MAX_FILES {
            return Ok(());
        }
        let data = serde_json::to_vec(self).map_err(io::Error::other)?;
        safefs::atomic::write(path, &data).map_err(|e| io::Error::other(e.to_string()))
    }
}

/// An earlier copy's files, with its layer's directory held open: by destination,
/// the last source written there (an earlier write to it was replaced).
#[derive(Debug)]
pub struct Reuse {
    root: OwnedFd,
    at: i64,
    files: HashMap<PathBuf, (PathBuf, StatKey)>,
    /// The earlier layer's directories last linked from (a copy places files on two
    /// threads, each in directories of its own).
    dirs: Mutex<Vec<(PathBuf, Arc<OwnedFd>)>>,
}

impl Reuse {
    /// `record`'s files in the layer directory `layer_dir`.
    pub fn new(record: Record, layer_dir: &Path) -> io::Result<Reuse> {
        let root = std::fs::File::open(layer_dir)?.into();
        // In the order written: the last writer of a destination wins.
        let files = record.files.into_iter().map(|c| (c.dest, (c.rel, c.stat))).collect();
        Ok(Reuse {
            root,
            at: record.at,
            files,
            dirs: Mutex::default(),
        })
    }

    /// Links the earlier copy of `rel` (source marks `st`) at `at/name`, the image's
    /// `dest`, if it is what a copy with owner `uid:gid` and `mode` would make now.
    pub(super) fn link(
        &self,
        rel: &Path,
        st: &libc::stat,
        dest: &Path,
        (uid, gid, mode): (u32, u32, u32),
        at: BorrowedFd,
        name: &CStr,
    ) -> bool {
        let Some((from, was)) = self.files.get(dest) else {
            return false;
        };
        let now = StatKey::of(st);
        // Another source's, changed, or touched so near the copy that a change may
        // not show.
        if from != rel || *was != now || super::hashes::racy(st, self.at) {
            return false;
        }
        let (Some(parent), Some(file)) = (dest.parent(), dest.file_name()) else {
            return false;
        };
        let Ok(old_name) = super::cname(file) else {
            return false;
        };
        let Some(dir) = self.dir_of(parent) else {
            return false;
        };
        let dir = safefs::inroot::borrow(&dir);
        let Ok(old) = safefs::inroot::stat_at(dir, Path::new(file)) else {
            return false;
        };
        let same = super::kind(&old) == libc::S_IFREG
            && (old.st_uid, old.st_gid, old.st_mode & 0o7777) == (uid, gid, mode)
            && old.st_size == st.st_size
            && (old.st_mtime, old.st_mtime_nsec) == (st.st_mtime, st.st_mtime_nsec);
        // By name in its directory: a layer is never written once made, so what was
        // looked at is what is linked (linkat never follows a link).
        same && super::copy::link_named(dir, &old_name, at, name)
    }
}

impl Reuse {
    /// The earlier layer's directory `parent`, open: files come directory by
    /// directory, so each is opened about once.
    fn dir_of(&self, parent: &Path) -> Option<Arc<OwnedFd>> {
        const KEPT: usize = 4;
        let mut dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, fd)) = dirs.iter().find(|(p, _)| p == parent) {
            return Some(fd.clone());
        }
        let fd = safefs::inroot::open(
            safefs::inroot::borrow(&self.root),
            parent,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )
        .ok()?;
        let fd = Arc::new(fd);
        if dirs.len() >= KEPT {
            dirs.remove(0);
        }
        dirs.push((parent.to_path_buf(), fd.clone()));
        Some(fd)
    }
}

/// Where a copy notes the regular files it makes.
pub type Recorder = Mutex<Vec<Copied>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_oversized_ones_are_not_read() {
        let d = tempfile::tempdir().unwrap();
        // SAFETY: stat is plain data; zeroes are a valid value.
        let st: libc::stat = unsafe { std::mem::zeroed() };
        let r = Record {
            layer: "sha256:x".into(),
            at: 7,
            files: vec![Copied {
                rel: "a/b".into(),
                stat: StatKey::of(&st),
                dest: "/app/a/b".into(),
            }],
        };
        r.save(&d.path().join("r")).unwrap();
        let back = Record::load(&d.path().join("r")).unwrap();
        assert_eq!((back.layer.as_str(), back.at, back.files.len()), ("sha256:x", 7, 1));
        let f = std::fs::File::create(d.path().join("big")).unwrap();
        f.set_len(MAX_RECORD + 1).unwrap();
        assert!(Record::load(&d.path().join("big")).is_none());
    }
}
