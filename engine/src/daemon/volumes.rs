//! Named volumes: a directory per volume under `<root>/volumes/<name>/_data`, with a
//! `volume.json` saying which project made it. A new, empty volume is filled from the
//! image's content at the mount point on first use, as Docker does: the image's layers
//! are stacked read-only with overlayfs at a private temporary mount, the subtree is
//! copied (modes, owners, symlinks kept), and the mount is taken down again. The copy is
//! written here because std has no tree copy that keeps owners and links.

use serde::{Deserialize, Serialize};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    pub project: String,
    pub key: String,
    pub created: i64,
}

pub fn dir(root: &Path, name: &str) -> PathBuf {
    super::state::child(&root.join("volumes"), name)
}

pub fn data_dir(root: &Path, name: &str) -> PathBuf {
    dir(root, name).join("_data")
}

pub fn exists(root: &Path, name: &str) -> bool {
    dir(root, name).join("volume.json").exists()
}

/// What can go wrong with a volume.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A name the engine never puts on disk (see `compose::names`).
    #[error("{0}")]
    Refused(String),
    #[error("external volume \"{0}\" not found")]
    ExternalMissing(String),
    #[error("volume name {0:?} is invalid: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error("{what} volume {name}: {message}")]
    Io {
        what: &'static str,
        name: String,
        message: String,
    },
    /// Filling a new volume from the image's content at its mount point.
    #[error("{what}: {message}")]
    Fill { what: String, message: String },
}

fn io(what: &'static str, name: &str, e: impl std::fmt::Display) -> VolumeError {
    VolumeError::Io {
        what,
        name: name.to_string(),
        message: e.to_string(),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Creates the volume if needed; returns whether it was created now.
pub fn ensure(root: &Path, name: &str, project: &str, key: &str, external: bool) -> Result<bool, VolumeError> {
    compose::names::resource("volume", name).map_err(VolumeError::Refused)?;
    if exists(root, name) {
        return Ok(false);
    }
    if external {
        return Err(VolumeError::ExternalMissing(name.into()));
    }
    if !valid_name(name) {
        return Err(VolumeError::InvalidName(name.into()));
    }
    let d = data_dir(root, name);
    std::fs::create_dir_all(&d).map_err(|e| io("creating", name, e))?;
    let rec = VolumeRecord {
        name: name.into(),
        project: project.into(),
        key: key.into(),
        created: conventions::durations::now(),
    };
    let data = serde_json::to_vec_pretty(&rec).map_err(|e| io("creating", name, e))?;
    safefs::atomic::write(&dir(root, name).join("volume.json"), &data).map_err(|e| io("creating", name, e))?;
    Ok(true)
}

pub fn remove(root: &Path, name: &str) -> Result<(), VolumeError> {
    match std::fs::remove_dir_all(dir(root, name)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing", name, e)),
        _ => Ok(()),
    }
}

pub fn list(root: &Path) -> Vec<VolumeRecord> {
    std::fs::read_dir(root.join("volumes"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path().join("volume.json")).ok()?).ok())
        .collect()
}

fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).map(|mut d| d.next().is_none()).unwrap_or(false)
}

/// Fills an empty volume directory from the image (layers lowest first) at `target`.
fn fill_err(what: impl Into<String>, e: impl std::fmt::Display) -> VolumeError {
    VolumeError::Fill {
        what: what.into(),
        message: e.to_string(),
    }
}

pub fn fill_from_image(tmp: &Path, layers: &[PathBuf], target: &str, dest: &Path) -> Result<(), VolumeError> {
    if layers.is_empty() || !is_empty_dir(dest) {
        return Ok(());
    }
    let rel = target.trim_start_matches('/').to_string();
    // Where the image has nothing at the target there is nothing to copy: look first,
    // so that most volumes need no mount at all.
    if !layers.iter().any(|l| l.join(&rel).exists()) {
        return Ok(());
    }
    if layers.len() == 1 {
        return copy_from(&layers[0], &rel, target, dest);
    }
    let mnt = tmp.join(format!("volfill-{}-{}", std::process::id(), super::random_hex(6)));
    std::fs::create_dir_all(&mnt).map_err(|e| fill_err(format!("creating {}", mnt.display()), e))?;
    let lower: Vec<PathBuf> = layers.iter().rev().cloned().collect();
    // The overlay is mounted in a private mount namespace of a thread of its own: it is
    // never seen on the host, and goes with the thread even if the engine dies midway.
    let (target, dest) = (target.to_string(), dest.to_path_buf());
    let at = mnt.clone();
    let res = std::thread::spawn(move || -> Result<(), VolumeError> {
        use nix::mount::{mount, MsFlags};
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS | nix::sched::CloneFlags::CLONE_NEWNS)
            .map_err(|e| fill_err("a mount namespace to fill a volume", e))?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|e| fill_err("a mount namespace to fill a volume", e))?;
        // Lower layers only: read-only by nature.
        let stack = runtime::overlay::Stack {
            lowers: &lower,
            upper: None,
            work: None,
        };
        runtime::overlay::mount(&stack, &at).map_err(|e| fill_err("mounting the image to fill a volume", e))?;
        let r = copy_from(&at, &rel, &target, &dest);
        let _ = nix::mount::umount2(&at, nix::mount::MntFlags::MNT_DETACH);
        r
    })
    .join()
    .unwrap_or_else(|_| Err(fill_err("filling a volume", "the filler thread panicked")));
    let _ = std::fs::remove_dir(&mnt);
    res
}

/// Copies `root`/`rel` (the image's content at `target`) into `dest`, if a directory.
fn copy_from(root: &Path, rel: &str, target: &str, dest: &Path) -> Result<(), VolumeError> {
    let src = safefs::safepath::resolve_in_root(root, Path::new(rel))
        .map_err(|e| fill_err(format!("the image's {target}"), e))?;
    if src.is_dir() {
        copy_tree(&src, dest).map_err(|e| fill_err(format!("filling the volume from {target}"), e))
    } else {
        Ok(())
    }
}

/// Copies the contents of `src` into `dst`, keeping modes, owners, times and symlinks.
pub fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(src)?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()))?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let (s, d) = (entry.path(), dst.join(entry.file_name()));
        let m = std::fs::symlink_metadata(&s)?;
        let ft = m.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&d)?;
            copy_tree(&s, &d)?;
            continue;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&s)?, &d)?;
        } else if ft.is_file() {
            std::fs::copy(&s, &d)?;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
        } else {
            // Devices, fifos and sockets are not volume content.
            continue;
        }
        std::os::unix::fs::lchown(&d, Some(m.uid()), Some(m.gid()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_remove_and_external() {
        let t = tempfile::tempdir().unwrap();
        assert!(ensure(t.path(), "p_data", "p", "data", false).unwrap());
        assert!(!ensure(t.path(), "p_data", "p", "data", false).unwrap());
        assert!(data_dir(t.path(), "p_data").is_dir());
        assert_eq!(list(t.path()).len(), 1);
        let e = ensure(t.path(), "shared", "p", "shared", true).unwrap_err();
        assert_eq!(e.to_string(), "external volume \"shared\" not found");
        assert!(matches!(e, VolumeError::ExternalMissing(_)));
        assert!(ensure(t.path(), "../x", "p", "x", false)
            .unwrap_err()
            .to_string()
            .contains("invalid"));
        remove(t.path(), "p_data").unwrap();
        assert!(!exists(t.path(), "p_data"));
    }

    #[test]
    fn fills_from_stacked_layers_without_a_mount_on_the_host() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root (overlayfs)");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let (lower, upper) = (t.path().join("l1"), t.path().join("l2"));
        std::fs::create_dir_all(lower.join("data")).unwrap();
        std::fs::create_dir_all(upper.join("data")).unwrap();
        std::fs::write(lower.join("data/a"), "lower").unwrap();
        std::fs::write(upper.join("data/a"), "upper").unwrap();
        std::fs::write(upper.join("data/b"), "b").unwrap();
        let dest = t.path().join("vol");
        std::fs::create_dir(&dest).unwrap();
        std::fs::create_dir(t.path().join("tmp")).unwrap();
        fill_from_image(&t.path().join("tmp"), &[lower, upper], "/data", &dest).unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("a")).unwrap(), "upper");
        assert_eq!(std::fs::read_to_string(dest.join("b")).unwrap(), "b");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains("volfill"), "{mounts}");
        assert_eq!(std::fs::read_dir(t.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn fills_an_empty_volume_from_a_single_layer() {
        let t = tempfile::tempdir().unwrap();
        let layer = t.path().join("layer");
        std::fs::create_dir_all(layer.join("data/sub")).unwrap();
        std::fs::write(layer.join("data/sub/f"), "hi").unwrap();
        std::fs::set_permissions(layer.join("data/sub/f"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("sub/f", layer.join("data/link")).unwrap();
        let dest = t.path().join("vol");
        std::fs::create_dir(&dest).unwrap();
        fill_from_image(t.path(), std::slice::from_ref(&layer), "/data", &dest).unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("sub/f")).unwrap(), "hi");
        assert_eq!(std::fs::metadata(dest.join("sub/f")).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_link(dest.join("link")).unwrap(), Path::new("sub/f"));
        // Not empty any more: never filled twice.
        std::fs::write(layer.join("data/new"), "x").unwrap();
        fill_from_image(t.path(), &[layer], "/data", &dest).unwrap();
        assert!(!dest.join("new").exists());
    }
}
