//! Unpacking one image layer into a directory that overlayfs can stack.
//!
//! Written by hand, not with `tar::Archive::unpack`: a layer is hostile input, and every
//! entry is checked before anything is written. No entry may land outside the layer
//! directory or be written through a symlink; hard links and symlinks may not point out
//! of it; device nodes are limited to those a container may create; `trusted.overlay.*`
//! xattrs from the archive are refused. OCI whiteouts become overlay whiteouts
//! (`.wh.name` -> a 0:0 character device, `.wh..wh..opq` -> `trusted.overlay.opaque=y`).
//! Ownership, modes, allowed xattrs and timestamps are preserved. The uncompressed
//! stream is hashed on the way to give the layer's diff ID.

use super::digest::{Digest, HashReader};
use std::collections::VecDeque;
use std::ffi::CString;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {entry:?} would land outside the layer")]
    Escape { entry: String },
    #[error("layer entry {entry:?}: {reason}")]
    Refused { entry: String, reason: String },
    #[error("corrupt layer: {0}")]
    Corrupt(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Character devices a container may create (Docker's default device rules).
const ALLOWED_DEVICES: &[(u64, u64)] = &[(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (0, 0)];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Detects the compression of a stream from its first bytes.
pub fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// A reader of the uncompressed layer, whatever its compression.
pub fn decompress<'a, R: Read + 'a>(src: R) -> Result<Box<dyn Read + 'a>, UnpackError> {
    let mut buf = BufReader::with_capacity(256 * 1024, src);
    let head = buf.fill_buf().map_err(|e| UnpackError::Corrupt(e.to_string()))?;
    Ok(match sniff(head) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(buf)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(buf).map_err(|e| UnpackError::Corrupt(e.to_string()))?)
        }
        Compression::None => Box::new(buf),
    })
}

/// A path inside the layer, cleaned lexically; `None` if it climbs out.
pub fn clean_inside(raw: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Some(out)
}

/// What unpacking produced.
#[derive(Debug, Clone)]
pub struct Unpacked {
    /// SHA-256 of the uncompressed tar stream.
    pub diff_id: Digest,
    pub size: u64,
}

/// Unpacks `src` into `dest`, which must exist and be empty.
pub fn unpack(src: impl Read, dest: &Path) -> Result<Unpacked, UnpackError> {
    let stream = HashReader::new(decompress(src)?);
    let mut archive = tar::Archive::new(stream);
    let mut dir_times: VecDeque<(PathBuf, i64)> = VecDeque::new();
    let mut known = KnownDirs::default();
    let entries = archive.entries().map_err(|e| UnpackError::Corrupt(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| UnpackError::Corrupt(e.to_string()))?;
        apply(&mut entry, dest, &mut dir_times, &mut known)?;
    }
    // Directory times last: creating their children changed them.
    for (path, mtime) in dir_times.into_iter().rev() {
        set_mtime(&path, mtime, true)?;
    }
    let (diff_id, size) = archive
        .into_inner()
        .finish()
        .map_err(|e| UnpackError::Corrupt(e.to_string()))?;
    Ok(Unpacked { diff_id, size })
}

/// Directories (relative to the layer) already checked to be real directories in this
/// unpack, so that each entry does not `lstat` all its ancestors again. An entry that
/// replaces one of them (or anything under it) drops it from the set.
#[derive(Default)]
struct KnownDirs(std::collections::HashSet<PathBuf>);

impl KnownDirs {
    fn forget(&mut self, rel: &Path) {
        if self.0.remove(rel) {
            self.0.retain(|d| !d.starts_with(rel));
        }
    }
}

/// Checks that every ancestor of `rel` inside `root` is a real directory (creating the
/// missing ones), so nothing is ever written through a symlink.
fn prepare_parents(root: &Path, rel: &Path, entry: &str, known: &mut KnownDirs) -> Result<(), UnpackError> {
    let Some(parent) = rel.parent() else { return Ok(()) };
    if parent.as_os_str().is_empty() || known.0.contains(parent) {
        return Ok(());
    }
    let mut cur = root.to_path_buf();
    let mut cur_rel = PathBuf::new();
    for c in parent.components() {
        cur.push(c);
        cur_rel.push(c);
        if known.0.contains(&cur_rel) {
            continue;
        }
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(UnpackError::Refused {
                    entry: entry.into(),
                    reason: "its path goes through a symlink".into(),
                })
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(UnpackError::Refused {
                    entry: entry.into(),
                    reason: "a parent is not a directory".into(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&cur).map_err(io_err(&cur))?,
            Err(e) => return Err(io_err(&cur)(e)),
        }
        known.0.insert(cur_rel.clone());
    }
    Ok(())
}

/// Removes whatever is at `path` (not following symlinks), unless both are directories.
fn clear(path: &Path, keep_dir: bool) -> Result<(), UnpackError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() && keep_dir => Ok(()),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(io_err(path)),
        Ok(_) => fs::remove_file(path).map_err(io_err(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn cpath(p: &Path) -> Result<CString, UnpackError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| UnpackError::Corrupt(format!("NUL in path {}", p.display())))
}

fn mknod(path: &Path, kind: libc::mode_t, mode: u32, major: u64, minor: u64) -> Result<(), UnpackError> {
    let c = cpath(path)?;
    // SAFETY: `c` is a valid NUL-terminated path; mknod does not retain it.
    let rc = unsafe {
        libc::mknod(
            c.as_ptr(),
            kind | (mode & 0o7777),
            libc::makedev(major as u32, minor as u32),
        )
    };
    if rc != 0 {
        return Err(io_err(path)(io::Error::last_os_error()));
    }
    Ok(())
}

fn lsetxattr(path: &Path, name: &str, value: &[u8]) -> Result<(), UnpackError> {
    let c = cpath(path)?;
    let n = CString::new(name).map_err(|_| UnpackError::Corrupt(format!("NUL in xattr name {name:?}")))?;
    // SAFETY: both strings are NUL-terminated and `value` is a valid slice for its length.
    let rc = unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc != 0 {
        return Err(io_err(path)(io::Error::last_os_error()));
    }
    Ok(())
}

fn lchown(path: &Path, uid: u64, gid: u64) -> Result<(), UnpackError> {
    let c = cpath(path)?;
    let (uid, gid) = (
        u32::try_from(uid).unwrap_or(u32::MAX - 1),
        u32::try_from(gid).unwrap_or(u32::MAX - 1),
    );
    // SAFETY: `c` is a valid NUL-terminated path.
    let rc = unsafe { libc::lchown(c.as_ptr(), uid, gid) };
    if rc != 0 {
        return Err(io_err(path)(io::Error::last_os_error()));
    }
    Ok(())
}

fn set_mtime(path: &Path, mtime: i64, _dir: bool) -> Result<(), UnpackError> {
    let c = cpath(path)?;
    let t = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: `c` is NUL-terminated and `times` points to two timespecs.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    if rc != 0 {
        return Err(io_err(path)(io::Error::last_os_error()));
    }
    Ok(())
}

fn apply<R: Read>(
    entry: &mut tar::Entry<R>,
    root: &Path,
    dir_times: &mut VecDeque<(PathBuf, i64)>,
    known: &mut KnownDirs,
) -> Result<(), UnpackError> {
    let raw = entry
        .path()
        .map_err(|e| UnpackError::Corrupt(e.to_string()))?
        .into_owned();
    let name = raw.display().to_string();
    let rel = clean_inside(&raw).ok_or_else(|| UnpackError::Escape { entry: name.clone() })?;
    if rel.as_os_str().is_empty() {
        return Ok(()); // the layer root itself
    }
    let header = entry.header().clone();
    let kind = header.entry_type();
    let base = rel
        .file_name()
        .map(|b| b.to_string_lossy().into_owned())
        .unwrap_or_default();

    // Whiteouts.
    if let Some(hidden) = base.strip_prefix(".wh.") {
        prepare_parents(root, &rel, &name, known)?;
        let parent = root.join(rel.parent().unwrap_or(Path::new("")));
        if hidden == ".wh..opq" {
            lsetxattr(&parent, "trusted.overlay.opaque", b"y")?;
        } else if !hidden.starts_with(".wh.") && !hidden.is_empty() && !hidden.contains('/') {
            let target = parent.join(hidden);
            known.forget(&rel.parent().unwrap_or(Path::new("")).join(hidden));
            clear(&target, false)?;
            mknod(&target, libc::S_IFCHR, 0, 0, 0)?;
        }
        return Ok(());
    }

    prepare_parents(root, &rel, &name, known)?;
    let path = root.join(&rel);
    // Empty numeric fields read as zero, as Go's archive/tar (Docker's) reads them.
    let default_mode = if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    };
    let mode = header.mode().unwrap_or(default_mode);
    let uid = header.uid().unwrap_or(0);
    let gid = header.gid().unwrap_or(0);
    let mtime = header.mtime().unwrap_or(0) as i64;
    let refused = |reason: &str| UnpackError::Refused {
        entry: name.clone(),
        reason: reason.into(),
    };

    match kind {
        tar::EntryType::Directory => {
            clear(&path, true)?;
            if !path.is_dir() {
                fs::create_dir(&path).map_err(io_err(&path))?;
            }
        }
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            // Create first (the common case: nothing there); clear and retry only if
            // something is in the way. O_EXCL|O_NOFOLLOW: never writes through a link.
            let open = || {
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
            };
            let mut f = match open() {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    clear(&path, false)?;
                    open().map_err(io_err(&path))?
                }
                Err(e) => return Err(io_err(&path)(e)),
            };
            io::copy(entry, &mut f).map_err(|e| UnpackError::Corrupt(format!("{name}: {e}")))?;
            // Metadata through the open descriptor: no further path lookups.
            use std::os::unix::io::AsRawFd;
            let fd = f.as_raw_fd();
            let (u, g) = (
                u32::try_from(uid).unwrap_or(u32::MAX - 1),
                u32::try_from(gid).unwrap_or(u32::MAX - 1),
            );
            let t = libc::timespec {
                tv_sec: mtime as libc::time_t,
                tv_nsec: 0,
            };
            // SAFETY: `fd` is open for the lifetime of `f`; `times` holds two timespecs.
            let rc = unsafe {
                let mut rc = libc::fchown(fd, u, g);
                if rc == 0 {
                    rc = libc::fchmod(fd, (mode & 0o7777) as libc::mode_t);
                }
                if rc == 0 {
                    rc = libc::futimens(fd, [t, t].as_ptr());
                }
                rc
            };
            if rc != 0 {
                return Err(io_err(&path)(io::Error::last_os_error()));
            }
            drop(f);
            return set_xattrs(entry, &path, &name);
        }
        tar::EntryType::Symlink => {
            let target = entry
                .link_name()
                .map_err(|e| UnpackError::Corrupt(e.to_string()))?
                .ok_or_else(|| refused("symlink without a target"))?;
            let target = target.into_owned();
            if target.is_relative() {
                let from = rel.parent().unwrap_or(Path::new("")).join(&target);
                if clean_inside(&from).is_none() {
                    return Err(refused(&format!(
                        "symlink to {} points outside the layer",
                        target.display()
                    )));
                }
            }
            clear(&path, false)?;
            symlink(&target, &path).map_err(io_err(&path))?;
        }
        tar::EntryType::Link => {
            let target = entry
                .link_name()
                .map_err(|e| UnpackError::Corrupt(e.to_string()))?
                .ok_or_else(|| refused("hard link without a target"))?;
            let src_rel = clean_inside(&target).ok_or_else(|| refused("hard link points outside the layer"))?;
            prepare_parents(root, &src_rel, &name, known)?;
            let src = root.join(&src_rel);
            match fs::symlink_metadata(&src) {
                Ok(m) if m.is_file() || m.file_type().is_symlink() => {}
                Ok(_) => return Err(refused("hard link to something that is not a file")),
                Err(_) => return Err(refused("hard link to a file not in the layer")),
            }
            if src == path {
                return Ok(());
            }
            clear(&path, false)?;
            fs::hard_link(&src, &path).map_err(io_err(&path))?;
            // A hard link shares its target's metadata; nothing more to set.
            return Ok(());
        }
        tar::EntryType::Char | tar::EntryType::Block => {
            let major = header.device_major().ok().flatten().unwrap_or(0) as u64;
            let minor = header.device_minor().ok().flatten().unwrap_or(0) as u64;
            if kind == tar::EntryType::Block || !ALLOWED_DEVICES.contains(&(major, minor)) {
                return Err(refused(&format!(
                    "device node {major}:{minor} is not one a container may create"
                )));
            }
            clear(&path, false)?;
            mknod(&path, libc::S_IFCHR, mode, major, minor)?;
        }
        tar::EntryType::Fifo => {
            clear(&path, false)?;
            mknod(&path, libc::S_IFIFO, mode, 0, 0)?;
        }
        other => return Err(refused(&format!("unsupported entry type {other:?}"))),
    }

    lchown(&path, uid, gid)?;
    if kind != tar::EntryType::Symlink {
        // After chown, which clears set-id bits.
        let c = cpath(&path)?;
        // SAFETY: `c` is a valid NUL-terminated path.
        if unsafe { libc::chmod(c.as_ptr(), (mode & 0o7777) as libc::mode_t) } != 0 {
            return Err(io_err(&path)(io::Error::last_os_error()));
        }
    }
    set_xattrs(entry, &path, &name)?;
    if kind == tar::EntryType::Directory {
        dir_times.push_back((path, mtime));
    } else {
        set_mtime(&path, mtime, false)?;
    }
    Ok(())
}

/// The archive's allowed xattrs (`user.*`, `security.capability`); overlay ones refused.
fn set_xattrs<R: Read>(entry: &mut tar::Entry<R>, path: &Path, name: &str) -> Result<(), UnpackError> {
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts.flatten() {
            let Ok(key) = ext.key() else { continue };
            let Some(attr) = key.strip_prefix("SCHILY.xattr.") else {
                continue;
            };
            if attr.starts_with("trusted.overlay.") {
                return Err(UnpackError::Refused {
                    entry: name.to_string(),
                    reason: format!("xattr {attr} would change how overlayfs reads the layer"),
                });
            }
            if attr.starts_with("user.") || attr == "security.capability" {
                lsetxattr(path, attr, ext.value_bytes())?;
            }
        }
    }
    Ok(())
}
