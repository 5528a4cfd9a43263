//! The content-addressed image store under `<root>/images`:
//!
//! ```text
//! blobs/sha256/<hex>          manifests, configs and layer blobs, by digest
//! layers/sha256/<diff hex>/   each layer unpacked once, an overlayfs lower directory
//! tmp/                        downloads and unpacks in progress (never trusted)
//! index.json                  images by manifest digest, and tags
//! .lock                       one writer at a time
//! ```
//!
//! A blob enters `blobs/` only after its digest was verified, by rename; a layer enters
//! `layers/` only after it was unpacked whole and its diff ID checked, by rename; the
//! index is replaced atomically. A crash at any point leaves at most garbage in `tmp/`,
//! which the next writer clears.

use super::config::ImageConfigFile;
use super::digest::{Digest, HashWriter};
use super::reference::ImageRef;
use super::unpack::{self, UnpackError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("layer {blob}: {source}")]
    Unpack {
        blob: Digest,
        #[source]
        source: UnpackError,
    },
    #[error("No such image: {0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The blob as stored (possibly compressed).
    pub blob: Digest,
    pub media_type: String,
    pub size: u64,
    /// Digest of the uncompressed tar: names the unpacked directory.
    pub diff_id: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub manifest: Digest,
    pub config: Digest,
    pub layers: Vec<LayerRecord>,
    /// Seconds since the epoch when it was stored (pulled, loaded or imported).
    pub stored_at: u64,
}

impl ImageRecord {
    /// Docker's image ID is the config digest.
    pub fn id(&self) -> &Digest {
        &self.config
    }
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Index {
    images: BTreeMap<Digest, ImageRecord>,
    /// Full reference (`docker.io/library/redis:latest`) -> manifest digest.
    tags: BTreeMap<String, Digest>,
}

pub struct Store {
    root: PathBuf,
    /// Serializes index updates between tasks of this process (the file lock is for
    /// other processes).
    index_mutex: std::sync::Mutex<()>,
}

/// Held while writing; released on drop.
pub struct Lock {
    file: fs::File,
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: the descriptor is owned by `self.file` and still open.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Writes `data` to `path` atomically (see [`safefs::atomic::write`]).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    safefs::atomic::write(path, data).map_err(io_err(path))
}

impl Store {
    /// Opens (creating) the store under `<state root>/images`.
    pub fn open(state_root: &Path) -> Result<Store> {
        let root = state_root.join("images");
        for d in ["blobs/sha256", "layers/sha256", "tmp"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        Ok(Store {
            root,
            index_mutex: std::sync::Mutex::new(()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the store's write lock, and clears what an interrupted writer left in tmp/.
    pub fn lock(&self) -> Result<Lock> {
        let p = self.root.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err(&p))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_err(&p)(io::Error::last_os_error()));
        }
        let tmp = self.root.join("tmp");
        if let Ok(entries) = fs::read_dir(&tmp) {
            for e in entries.flatten() {
                // Names carry the writer's pid: keep what a live writer is working on.
                let name = e.file_name().to_string_lossy().into_owned();
                let pid = name
                    .split('-')
                    .nth(1)
                    .and_then(|p| p.trim_end_matches(".tar").parse::<u32>().ok());
                if pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists()) {
                    continue;
                }
                let path = e.path();
                // A crashed builder's scratch may still have mounts in it (a held
                // bind of a user's build context): detached first, never removed
                // through.
                let _ = if path.is_dir() {
                    safefs::mounts::remove_tree(&path)
                } else {
                    fs::remove_file(&path)
                };
            }
        }
        Ok(Lock { file })
    }

    /// A fresh path in tmp/ for a download in progress.
    pub fn tmp_file(&self, what: &str) -> PathBuf {
        self.tmp_path(what)
    }

    /// Moves a downloaded file into the store if its content has digest `expected`.
    pub fn adopt(&self, tmp: &Path, expected: &Digest) -> Result<()> {
        let f = fs::File::open(tmp).map_err(io_err(tmp))?;
        let mut w = HashWriter::new(io::sink());
        io::copy(&mut io::BufReader::new(f), &mut w).map_err(io_err(tmp))?;
        let (_, actual, _) = w.finish();
        if actual != *expected {
            let _ = fs::remove_file(tmp);
            return Err(StoreError::DigestMismatch {
                what: format!("blob {expected}"),
                expected: expected.clone(),
                actual,
            });
        }
        let dst = self.blob_path(expected);
        fs::rename(tmp, &dst).map_err(io_err(&dst))
    }

    /// Moves a file this process wrote into the store as the blob `digest`, which it
    /// computed while writing (never for what came from elsewhere: see [`Store::adopt`]).
    pub fn adopt_written(&self, tmp: &Path, digest: &Digest) -> Result<()> {
        let dst = self.blob_path(digest);
        fs::rename(tmp, &dst).map_err(io_err(&dst))
    }

    fn tmp_path(&self, what: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.root.join("tmp").join(format!("{what}-{}-{n}", std::process::id()))
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers/sha256").join(diff_id.hex())
    }

    /// The directories to stack for `layers` (lowest first), each once: the store
    /// keeps one directory per diff ID and overlayfs refuses a directory twice
    /// (ELOOP), so a layer that comes again (every empty `RUN` layer is the same) is
    /// stacked only where it is highest, which shows the same tree.
    pub fn layer_dirs(&self, layers: &[LayerRecord]) -> Vec<PathBuf> {
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<PathBuf> = layers
            .iter()
            .rev()
            .filter(|l| seen.insert(l.diff_id.clone()))
            .map(|l| self.layer_dir(&l.diff_id))
            .collect();
        out.reverse();
        out
    }

    /// Stores a blob from memory, checking it against `expected` when given.
    pub fn put_blob(&self, data: &[u8], expected: Option<&Digest>) -> Result<Digest> {
        self.put_blob_from(data, expected, "blob").map(|(d, _)| d)
    }

    /// Streams a blob into the store; it is kept only if its digest is `expected`.
    pub fn put_blob_from(&self, mut src: impl Read, expected: Option<&Digest>, what: &str) -> Result<(Digest, u64)> {
        let tmp = self.tmp_path("blob");
        let file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let mut w = HashWriter::new(io::BufWriter::new(file));
        let copied = io::copy(&mut src, &mut w);
        let (buf, digest, size) = w.finish();
        let res = copied.map_err(io_err(&tmp)).and_then(|_| {
            let f = buf.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
            f.sync_all().map_err(io_err(&tmp))
        });
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        if let Some(exp) = expected {
            if *exp != digest {
                let _ = fs::remove_file(&tmp);
                return Err(StoreError::DigestMismatch {
                    what: what.to_string(),
                    expected: exp.clone(),
                    actual: digest,
                });
            }
        }
        let dst = self.blob_path(&digest);
        fs::rename(&tmp, &dst).map_err(io_err(&dst))?;
        Ok((digest, size))
    }

    /// Reads a small blob (manifest, config) and checks its digest again.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(d);
        let data = fs::read(&p).map_err(io_err(&p))?;
        let actual = Digest::of(&data);
        if actual != *d {
            return Err(StoreError::DigestMismatch {
                what: format!("stored blob {}", p.display()),
                expected: d.clone(),
                actual,
            });
        }
        Ok(data)
    }

    /// Unpacks a stored layer blob once; returns its directory. The diff ID is checked.
    pub fn ensure_layer(&self, blob: &Digest, diff_id: &Digest) -> Result<PathBuf> {
        let dir = self.layer_dir(diff_id);
        if dir.is_dir() {
            return Ok(dir);
        }
        let tmp = self.tmp_path("layer");
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        let res = (|| {
            let p = self.blob_path(blob);
            let f = fs::File::open(&p).map_err(io_err(&p))?;
            let out = unpack::unpack(f, &tmp).map_err(|source| StoreError::Unpack {
                blob: blob.clone(),
                source,
            })?;
            if out.diff_id != *diff_id {
                return Err(StoreError::DigestMismatch {
                    what: format!("uncompressed layer {blob}"),
                    expected: diff_id.clone(),
                    actual: out.diff_id,
                });
            }
            fs::rename(&tmp, &dir).map_err(io_err(&dir))
        })();
        if res.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        res.map(|_| dir)
    }

    fn load(&self) -> Result<Index> {
        let p = self.root.join("index.json");
        match fs::read(&p) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| StoreError::Invalid(format!("{}: {e}", p.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    fn save(&self, idx: &Index) -> Result<()> {
        let data = serde_json::to_vec_pretty(idx).map_err(|e| StoreError::Invalid(e.to_string()))?;
        write_atomic(&self.root.join("index.json"), &data)
    }

    /// Records an image whose manifest, config and layer blobs are stored: unpacks its
    /// layers (checking each diff ID against the config) and tags it.
    pub fn commit(
        &self,
        manifest: &Digest,
        config: &Digest,
        blobs: &[(Digest, String, u64)],
        tags: &[ImageRef],
    ) -> Result<ImageRecord> {
        let cfg: ImageConfigFile = serde_json::from_slice(&self.read_blob(config)?)
            .map_err(|e| StoreError::Invalid(format!("image config {config}: {e}")))?;
        if cfg.rootfs.diff_ids.len() != blobs.len() {
            return Err(StoreError::Invalid(format!(
                "image config {config} lists {} layers, the manifest {}",
                cfg.rootfs.diff_ids.len(),
                blobs.len()
            )));
        }
        let mut layers = Vec::new();
        for ((blob, media_type, size), diff) in blobs.iter().zip(&cfg.rootfs.diff_ids) {
            let diff_id = Digest::parse(diff)
                .ok_or_else(|| StoreError::Invalid(format!("image config {config}: invalid diff ID {diff:?}")))?;
            self.ensure_layer(blob, &diff_id)?;
            layers.push(LayerRecord {
                blob: blob.clone(),
                media_type: media_type.clone(),
                size: *size,
                diff_id,
            });
        }
        let rec = ImageRecord {
            manifest: manifest.clone(),
            config: config.clone(),
            layers,
            stored_at: conventions::durations::now().max(0) as u64,
        };
        let _guard = self.index_mutex.lock().unwrap_or_else(|p| p.into_inner());
        let mut idx = self.load()?;
        idx.images.insert(manifest.clone(), rec.clone());
        for t in tags {
            idx.tags.insert(t.full(), manifest.clone());
        }
        self.save(&idx)?;
        Ok(rec)
    }

    /// Finds an image by reference, full or short image ID, or manifest digest.
    pub fn resolve(&self, name: &str) -> Result<ImageRecord> {
        let idx = self.load()?;
        Self::find(&idx, name)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(name.to_string()))
    }

    fn find<'a>(idx: &'a Index, name: &str) -> Option<&'a ImageRecord> {
        if let Ok(r) = ImageRef::parse(name) {
            if let Some(m) = idx.tags.get(&r.full()) {
                return idx.images.get(m);
            }
            if let Some(d) = r.digest().and_then(Digest::parse) {
                if let Some(rec) = idx.images.get(&d) {
                    return Some(rec);
                }
            }
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if hex.len() >= 12 && hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            let mut hits = idx
                .images
                .values()
                .filter(|r| r.config.hex().starts_with(hex) || r.manifest.hex().starts_with(hex));
            let first = hits.next();
            if hits.next().is_none() {
                return first;
            }
        }
        None
    }

    /// Every image with its tags (untagged ones with none).
    pub fn list(&self) -> Result<Vec<(ImageRecord, Vec<String>)>> {
        let idx = self.load()?;
        Ok(idx
            .images
            .values()
            .map(|rec| {
                let tags = idx
                    .tags
                    .iter()
                    .filter(|(_, m)| **m == rec.manifest)
                    .map(|(t, _)| t.clone())
                    .collect();
                (rec.clone(), tags)
            })
            .collect())
    }

    /// The image's configuration.
    pub fn config(&self, rec: &ImageRecord) -> Result<ImageConfigFile> {
        serde_json::from_slice(&self.read_blob(&rec.config)?)
            .map_err(|e| StoreError::Invalid(format!("image config {}: {e}", rec.config)))
    }

    /// Removes a tag, or an image by ID with all its tags; an image with no tag left is
    /// deleted with whatever only it used. Returns Docker's `Untagged:`/`Deleted:` lines.
    pub fn remove(&self, name: &str) -> Result<Vec<String>> {
        let _guard = self.index_mutex.lock().unwrap_or_else(|p| p.into_inner());
        let mut idx = self.load()?;
        let rec = Self::find(&idx, name)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(name.to_string()))?;
        let mut out = Vec::new();
        let by_tag = ImageRef::parse(name)
            .ok()
            .map(|r| r.full())
            .filter(|t| idx.tags.contains_key(t));
        let untag: Vec<String> = match by_tag {
            Some(t) => vec![t],
            None => idx
                .tags
                .iter()
                .filter(|(_, m)| **m == rec.manifest)
                .map(|(t, _)| t.clone())
                .collect(),
        };
        for t in untag {
            idx.tags.remove(&t);
            out.push(format!(
                "Untagged: {}",
                ImageRef::parse(&t)
                    .map(|r| super::archive::display_name(&r))
                    .unwrap_or(t.clone())
            ));
        }
        if !idx.tags.values().any(|m| *m == rec.manifest) {
            idx.images.remove(&rec.manifest);
            out.push(format!("Deleted: {}", rec.config));
        }
        self.save(&idx)?;
        self.collect_garbage(&idx)?;
        Ok(out)
    }

    /// Removes images without tags (`all`: every image; no container uses images yet).
    pub fn prune(&self, all: bool) -> Result<Vec<String>> {
        let _guard = self.index_mutex.lock().unwrap_or_else(|p| p.into_inner());
        let mut idx = self.load()?;
        let tagged: BTreeSet<Digest> = idx.tags.values().cloned().collect();
        let gone: Vec<ImageRecord> = idx
            .images
            .values()
            .filter(|r| all || !tagged.contains(&r.manifest))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for r in &gone {
            idx.images.remove(&r.manifest);
            for (t, _) in idx.tags.iter().filter(|(_, m)| **m == r.manifest) {
                out.push(format!("untagged: {t}"));
            }
            idx.tags.retain(|_, m| *m != r.manifest);
            out.push(format!("deleted: {}", r.config));
        }
        self.save(&idx)?;
        self.collect_garbage(&idx)?;
        Ok(out)
    }

    /// Deletes blobs and unpacked layers no recorded image refers to.
    fn collect_garbage(&self, idx: &Index) -> Result<()> {
        let mut blobs: BTreeSet<String> = BTreeSet::new();
        let mut layers: BTreeSet<String> = BTreeSet::new();
        for r in idx.images.values() {
            blobs.insert(r.manifest.hex().to_string());
            blobs.insert(r.config.hex().to_string());
            for l in &r.layers {
                blobs.insert(l.blob.hex().to_string());
                layers.insert(l.diff_id.hex().to_string());
            }
        }
        for (dir, keep) in [("blobs/sha256", &blobs), ("layers/sha256", &layers)] {
            let p = self.root.join(dir);
            for e in fs::read_dir(&p).map_err(io_err(&p))?.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !keep.contains(&name) {
                    let path = e.path();
                    let r = if path.is_dir() {
                        fs::remove_dir_all(&path)
                    } else {
                        fs::remove_file(&path)
                    };
                    r.map_err(io_err(&path))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clearing_tmp_never_deletes_through_a_mount_a_crashed_builder_left() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(&t.path().join("store")).unwrap();
        let context = t.path().join("context");
        fs::create_dir_all(&context).unwrap();
        fs::write(context.join("precious"), "x").unwrap();
        // A dead builder's held bind of the context (pid 4194304 is above pid_max).
        let scratch = store.root().join("tmp/bind-4194304-1");
        let point = scratch.join("src");
        fs::create_dir_all(&point).unwrap();
        nix::mount::mount(
            Some(&context),
            &point,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        // Gone with the test even when it fails.
        struct Detach(PathBuf);
        impl Drop for Detach {
            fn drop(&mut self) {
                let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        let _guard = Detach(point.clone());
        drop(store.lock().unwrap());
        let left = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!left.contains(point.to_str().unwrap()), "the bind was left mounted");
        assert!(context.join("precious").exists(), "deleted through the bind");
        assert!(!scratch.exists());
    }

    #[test]
    fn a_layer_that_comes_again_is_stacked_once_where_it_is_highest() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        let rec = |c: char| LayerRecord {
            blob: Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap(),
            media_type: String::new(),
            size: 0,
            diff_id: Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap(),
        };
        let dirs = store.layer_dirs(&[rec('a'), rec('e'), rec('b'), rec('e')]);
        let names: Vec<String> = dirs
            .iter()
            .map(|d| d.file_name().unwrap().to_string_lossy()[..1].to_string())
            .collect();
        assert_eq!(names, ["a", "b", "e"]);
    }
}
