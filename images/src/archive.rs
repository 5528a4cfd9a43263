//! `rcompose image load`: `docker save` archives (legacy `manifest.json` layout, and the
//! OCI layout newer Docker writes), OCI image layouts as archives or directories,
//! optionally compressed. Every blob is digest-checked on its way into the store.

use super::digest::Digest;
use super::manifest::{self, Descriptor, Manifest, Parsed};
use super::media;
use super::reference::ImageRef;
use super::store::{Store, StoreError};
use super::unpack::{self, clean_inside, Compression};
use safefs::safepath::resolve_in_root;
use serde::Deserialize;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid archive: {0}")]
    Invalid(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LoadError + '_ {
    move |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Extracts an archive's regular files, directories and symlinks (no ownership, no
/// devices): enough to read a `docker save` or OCI layout, nothing more.
fn extract_plain(src: impl Read, dest: &Path) -> Result<(), LoadError> {
    let reader = unpack::decompress(src).map_err(|e| LoadError::Invalid(e.to_string()))?;
    let mut ar = tar::Archive::new(reader);
    for entry in ar.entries().map_err(|e| LoadError::Invalid(e.to_string()))? {
        let mut entry = entry.map_err(|e| LoadError::Invalid(e.to_string()))?;
        let raw = entry
            .path()
            .map_err(|e| LoadError::Invalid(e.to_string()))?
            .into_owned();
        let rel = clean_inside(&raw)
            .ok_or_else(|| LoadError::Invalid(format!("entry {} would land outside the archive", raw.display())))?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        // Parents are created by us as real directories; a symlink in the way is refused.
        let path = resolve_in_root(dest, rel.parent().unwrap_or(Path::new("")))
            .map_err(io_err(dest))?
            .join(rel.file_name().unwrap_or_default());
        if let Some(p) = path.parent() {
            fs::create_dir_all(p).map_err(io_err(p))?;
        }
        match entry.header().entry_type() {
            tar::EntryType::Directory => fs::create_dir_all(&path).map_err(io_err(&path))?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let _ = fs::remove_file(&path);
                let mut f = fs::File::create(&path).map_err(io_err(&path))?;
                io::copy(&mut entry, &mut f).map_err(io_err(&path))?;
            }
            tar::EntryType::Symlink => {
                if let Some(t) = entry.link_name().map_err(|e| LoadError::Invalid(e.to_string()))? {
                    let _ = fs::remove_file(&path);
                    std::os::unix::fs::symlink(t.as_ref(), &path).map_err(io_err(&path))?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The digest a layout path names (`blobs/sha256/<hex>`), to check the content against.
fn digest_in_path(p: &str) -> Option<Digest> {
    let mut parts = p.rsplit('/');
    let hex = parts.next()?.trim_end_matches(".json").trim_end_matches(".tar");
    Digest::parse(&format!("sha256:{hex}"))
}

fn layer_media_type(path: &Path) -> Result<String, LoadError> {
    let mut head = [0u8; 4];
    let n = fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(io_err(path))?;
    Ok(match unpack::sniff(&head[..n]) {
        Compression::Gzip => media::OCI_LAYER_GZIP,
        Compression::Zstd => media::OCI_LAYER_ZSTD,
        Compression::None => media::OCI_LAYER,
    }
    .to_string())
}

/// Loads from an archive file or an OCI layout directory. Returns Docker's lines
/// (`Loaded image: name:tag`, `Loaded image ID: sha256:...`).
pub fn load(store: &Store, input: &Path) -> Result<Vec<String>, LoadError> {
    let _lock = store.lock()?;
    if input.is_dir() {
        return load_dir(store, input);
    }
    let tmp = store.root().join("tmp").join(format!("load-{}", std::process::id()));
    fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let res = fs::File::open(input)
        .map_err(io_err(input))
        .and_then(|f| extract_plain(f, &tmp))
        .and_then(|_| load_dir(store, &tmp));
    let _ = fs::remove_dir_all(&tmp);
    res
}

fn file(root: &Path, rel: &str) -> Result<PathBuf, LoadError> {
    let p = resolve_in_root(root, Path::new(rel)).map_err(io_err(root))?;
    if !p.is_file() {
        return Err(LoadError::Invalid(format!("{rel} is missing from the archive")));
    }
    Ok(p)
}

fn load_dir(store: &Store, dir: &Path) -> Result<Vec<String>, LoadError> {
    if dir.join("manifest.json").is_file() {
        load_docker(store, dir)
    } else if dir.join("index.json").is_file() {
        load_oci(store, dir)
    } else {
        Err(LoadError::Invalid(
            "neither a docker save archive (manifest.json) nor an OCI layout (index.json)".into(),
        ))
    }
}

fn load_docker(store: &Store, dir: &Path) -> Result<Vec<String>, LoadError> {
    let mpath = dir.join("manifest.json");
    let entries: Vec<DockerEntry> = serde_json::from_slice(&fs::read(&mpath).map_err(io_err(&mpath))?)
        .map_err(|e| LoadError::Invalid(format!("manifest.json: {e}")))?;
    let mut out = Vec::new();
    for e in entries {
        let cfg_path = file(dir, &e.config)?;
        let cfg_bytes = fs::read(&cfg_path).map_err(io_err(&cfg_path))?;
        let config = store.put_blob(&cfg_bytes, digest_in_path(&e.config).as_ref())?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let p = file(dir, l)?;
            let media_type = layer_media_type(&p)?;
            let f = fs::File::open(&p).map_err(io_err(&p))?;
            let expected = digest_in_path(l).filter(|_| l.starts_with("blobs/"));
            let (d, size) = store.put_blob_from(f, expected.as_ref(), l)?;
            layers.push((d, media_type, size));
        }
        let tags: Vec<ImageRef> = e
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| ImageRef::parse(t).map_err(|err| LoadError::Invalid(err.to_string())))
            .collect::<Result<_, _>>()?;
        let m = Manifest::oci(&config, cfg_bytes.len() as u64, &layers);
        let mbytes = serde_json::to_vec(&m).map_err(|e| LoadError::Invalid(e.to_string()))?;
        let mdigest = store.put_blob(&mbytes, None)?;
        let rec = store.commit(&mdigest, &config, &layers, &tags)?;
        if tags.is_empty() {
            out.push(format!("Loaded image ID: {}", rec.config));
        }
        out.extend(tags.iter().map(|t| format!("Loaded image: {}", display_name(t))));
    }
    Ok(out)
}

/// `redis:latest`, `localhost:5000/app:1`: the name as Docker prints it.
pub fn display_name(r: &ImageRef) -> String {
    match (r.tag(), r.digest()) {
        (_, Some(d)) => format!("{}@{d}", r.familiar_repository()),
        (t, None) => format!("{}:{}", r.familiar_repository(), t.unwrap_or("latest")),
    }
}

fn oci_blob(store: &Store, dir: &Path, d: &Descriptor) -> Result<(Digest, u64), LoadError> {
    let digest =
        Digest::parse(&d.digest).ok_or_else(|| LoadError::Invalid(format!("invalid digest {:?}", d.digest)))?;
    if store.has_blob(&digest) {
        return Ok((digest, d.size));
    }
    let p = file(dir, &format!("blobs/sha256/{}", digest.hex()))?;
    let f = fs::File::open(&p).map_err(io_err(&p))?;
    Ok(store.put_blob_from(f, Some(&digest), &d.digest)?)
}

fn load_oci(store: &Store, dir: &Path) -> Result<Vec<String>, LoadError> {
    let ipath = dir.join("index.json");
    let index = match manifest::parse(&fs::read(&ipath).map_err(io_err(&ipath))?).map_err(LoadError::Invalid)? {
        Parsed::Index(i) => i,
        Parsed::Manifest(_) => return Err(LoadError::Invalid("index.json is not an image index".into())),
    };
    let mut out = Vec::new();
    for top in &index.manifests {
        let name = top
            .annotations
            .as_ref()
            .and_then(|a| {
                a.get("io.containerd.image.name")
                    .or_else(|| a.get("org.opencontainers.image.ref.name"))
            })
            .cloned();
        let mut desc = top.clone();
        // A nested index: take the host's platform.
        let manifest = loop {
            let (d, _) = oci_blob(store, dir, &desc)?;
            match manifest::parse(&store.read_blob(&d)?).map_err(LoadError::Invalid)? {
                Parsed::Manifest(m) => break (d, m),
                Parsed::Index(i) => {
                    desc = manifest::select_host(&i)
                        .cloned()
                        .ok_or_else(|| LoadError::Invalid(format!("{}: no manifest for this platform", desc.digest)))?;
                }
            }
        };
        let (mdigest, m) = manifest;
        let (config, _) = oci_blob(store, dir, &m.config)?;
        let mut layers = Vec::new();
        for l in &m.layers {
            let (d, size) = oci_blob(store, dir, l)?;
            layers.push((d, l.media_type.clone(), size));
        }
        // A bare tag (`latest`) names no repository: the image is loaded untagged.
        let tags: Vec<ImageRef> = name
            .filter(|n| n.contains('/') || n.contains(':'))
            .and_then(|n| ImageRef::parse(&n).ok())
            .into_iter()
            .collect();
        let rec = store.commit(&mdigest, &config, &layers, &tags)?;
        if tags.is_empty() {
            out.push(format!("Loaded image ID: {}", rec.config));
        }
        out.extend(tags.iter().map(|t| format!("Loaded image: {}", display_name(t))));
    }
    Ok(out)
}
