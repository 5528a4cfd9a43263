//! The build cache: each step's key (as BuildKit keys it: the parent's key, the
//! instruction as expanded, the build args and env a `RUN` sees, the content and
//! metadata of what a `COPY` copies) maps to what the step made: its layer, if any,
//! and the time its history entry carries, so that a rebuild with nothing changed gives
//! the very same image. Entries live in `<store>/build-cache/`, one small file each,
//! written atomically; an entry whose layer the store no longer has is a miss.

use images::store::LayerRecord;
use images::Store;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub created: String,
    #[serde(default)]
    pub layer: Option<LayerRecord>,
}

pub struct Cache {
    dir: PathBuf,
}

/// The key of a step after `parent`, described by `parts`.
pub fn key(parent: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(parent.as_bytes());
    for p in parts {
        h.update([0]);
        h.update(p.as_bytes());
    }
    format!("{:x}", h.finalize())
}

impl Cache {
    pub fn open(store: &Store) -> std::io::Result<Cache> {
        let dir = store.root().join("build-cache");
        std::fs::create_dir_all(&dir)?;
        Ok(Cache { dir })
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The digest a `COPY --from` source had under `key` (the source stage's cache key
    /// or the image's manifest, and the patterns): the same key is the same tree, so
    /// a rebuild neither mounts nor reads it again.
    pub fn source_digest(&self, key: &str) -> Option<String> {
        let data = std::fs::read(self.dir.join("sources").join(key)).ok()?;
        String::from_utf8(data)
            .ok()
            .filter(|d| d.starts_with("sha256:") && d.len() < 80)
    }

    pub fn put_source_digest(&self, key: &str, digest: &str) {
        let dir = self.dir.join("sources");
        let res = std::fs::create_dir_all(&dir).and_then(|_| safefs::atomic::write(&dir.join(key), digest.as_bytes()));
        if let Err(e) = res {
            tracing::warn!("build cache: {e}");
        }
    }

    /// The directory of `RUN --mount=type=cache` mounts, by their id.
    pub fn mounts_dir(&self) -> PathBuf {
        self.dir.join("mounts")
    }

    pub fn get(&self, store: &Store, key: &str) -> Option<Entry> {
        let data = std::fs::read(self.dir.join(key)).ok()?;
        let e: Entry = serde_json::from_slice(&data).ok()?;
        match &e.layer {
            Some(l) if !(store.has_blob(&l.blob) && store.layer_dir(&l.diff_id).is_dir()) => None,
            _ => Some(e),
        }
    }

    pub fn put(&self, key: &str, e: &Entry) {
        if let Ok(data) = serde_json::to_vec(e) {
            // A cache that cannot be written only makes the next build slower.
            if let Err(err) = safefs::atomic::write(&self.dir.join(key), &data) {
                tracing::warn!("build cache: {err}");
            }
        }
    }

    /// `builder prune`: every entry and cache mount; returns the bytes freed.
    pub fn prune(&self) -> u64 {
        let mut freed = 0;
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let p = e.path();
            freed += du(&p);
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
        freed
    }
}

fn du(p: &std::path::Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else { return 0 };
    if !m.is_dir() {
        return m.len();
    }
    std::fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| du(&e.path()))
        .sum()
}
