//! The content hashes of files already read, keyed by what `stat` says of them
//! (device, inode, size, mode, and the modification and change times to the
//! nanosecond), so a rebuild reads only the files that changed. As git's index does
//! for "racy" entries, a file changed within the last two seconds is not remembered:
//! a coarse clock could give its next change the same times. The change time cannot be
//! set from user space, so no one can make a changed file look unchanged. Kept in one
//! file (`save`), read back with a size limit.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key([i64; 8]);

impl Key {
    fn of(st: &libc::stat) -> Key {
        Key([
            st.st_dev as i64,
            st.st_ino as i64,
            st.st_size,
            i64::from(st.st_mode),
            st.st_mtime,
            st.st_mtime_nsec,
            st.st_ctime,
            st.st_ctime_nsec,
        ])
    }
}

/// Whether the file `st` describes changed within two seconds of `at` (seconds since
/// the epoch): too near for its next change to be told apart by its times.
pub(crate) fn racy(st: &libc::stat, at: i64) -> bool {
    st.st_ctime >= at - 2 || st.st_mtime >= at - 2
}

/// The most entries kept (about 96 bytes each on disk).
const MAX_ENTRIES: usize = 500_000;
/// The most hashes of written files kept (96 bytes each).
const MAX_WRITTEN: usize = 200_000;
const RECORD: usize = 8 * 8 + 32;

pub struct Hashes {
    map: Mutex<HashMap<Key, [u8; 32]>>,
    /// Files the engine wrote and never changes (see [`Hashes::put_written`]): in
    /// memory only, for the engine's lifetime.
    written: Mutex<HashMap<Key, [u8; 32]>>,
    path: Option<PathBuf>,
    dirty: std::sync::atomic::AtomicBool,
}

impl Hashes {
    /// An empty set that is never saved.
    pub fn in_memory() -> Hashes {
        Hashes {
            map: Mutex::default(),
            written: Mutex::default(),
            path: None,
            dirty: Default::default(),
        }
    }

    /// The set saved at `path` (empty when missing or unreadable).
    pub fn open(path: &Path) -> Hashes {
        let mut map = HashMap::new();
        let limit = (MAX_ENTRIES * RECORD) as u64;
        if let Ok(f) = std::fs::File::open(path) {
            let mut data = Vec::new();
            if io::Read::read_to_end(&mut io::Read::take(f, limit), &mut data).is_ok() {
                for rec in data.chunks_exact(RECORD) {
                    let mut k = [0i64; 8];
                    for (i, v) in k.iter_mut().enumerate() {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&rec[i * 8..i * 8 + 8]);
                        *v = i64::from_le_bytes(b);
                    }
                    let mut h = [0u8; 32];
                    h.copy_from_slice(&rec[64..]);
                    map.insert(Key(k), h);
                }
            }
        }
        Hashes {
            map: Mutex::new(map),
            written: Mutex::default(),
            path: Some(path.to_path_buf()),
            dirty: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, [u8; 32]>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, st: &libc::stat) -> Option<[u8; 32]> {
        let k = Key::of(st);
        if let Some(h) = self.lock().get(&k) {
            return Some(*h);
        }
        self.written.lock().unwrap_or_else(|p| p.into_inner()).get(&k).copied()
    }

    /// The hash of a file of a layer, hashed as the engine wrote the layer's tar:
    /// no one writes to it afterwards, so the racy rule (a change within the
    /// timestamps' granularity) does not apply; a link to it changes its ctime and so
    /// its key. Not saved: only the layers written in the engine's lifetime.
    pub fn put_written(&self, st: &libc::stat, hash: [u8; 32]) {
        let mut m = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_WRITTEN {
            m.clear();
        }
        m.insert(Key::of(st), hash);
    }

    /// Remembers `hash` for the file as `st` describes it, unless it changed too
    /// recently to be told apart from its next change.
    pub fn put(&self, st: &libc::stat, hash: [u8; 32]) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if racy(st, now) {
            return;
        }
        let mut m = self.lock();
        if m.len() >= MAX_ENTRIES {
            m.clear();
        }
        m.insert(Key::of(st), hash);
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Writes the set to its file, if it changed.
    pub fn save(&self) -> io::Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        if !self.dirty.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let m = self.lock();
        let mut data = Vec::with_capacity(m.len() * RECORD);
        for (k, h) in m.iter() {
            for v in k.0 {
                data.extend_from_slice(&v.to_le_bytes());
            }
            data.extend_from_slice(h);
        }
        drop(m);
        safefs::atomic::write(path, &data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_kept_by_stat_and_saved() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, "x").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let st = nix::sys::stat::lstat(&f).unwrap();
        let h = Hashes::open(&t.path().join("hashes"));
        // Changed a moment ago (its ctime is now): not remembered.
        h.put(&st, [1; 32]);
        assert_eq!(h.get(&st), None);
        let mut aged = st;
        aged.st_ctime -= 60;
        h.put(&aged, [1; 32]);
        assert_eq!(h.get(&aged), Some([1; 32]));
        h.save().unwrap();
        let again = Hashes::open(&t.path().join("hashes"));
        assert_eq!(again.get(&aged), Some([1; 32]));
        // Any change of size or times is another file.
        let mut grown = aged;
        grown.st_size += 1;
        assert_eq!(again.get(&grown), None);
    }
}
