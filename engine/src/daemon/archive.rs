//! `cp`: a container's files as a tar stream, and a tar stream into a container. The
//! work is done by a thread that has joined the container's mount namespace, whose root
//! is the container's own: every path, and every symlink met on the way, resolves inside
//! the container, so none can lead to the host. The tar format is the `tar` crate's.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

/// Runs `f` on a thread inside the mount namespace of the container whose init is `pid`.
fn in_container<T: Send + 'static>(
    pid: i32,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> std::thread::JoinHandle<Result<T, String>> {
    let ns = File::open(format!("/proc/{pid}/ns/mnt"));
    std::thread::spawn(move || {
        let ns = ns.map_err(|e| format!("the container's mount namespace: {e}"))?;
        // A thread can only change its mount namespace once it shares no fs state.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).map_err(|e| format!("unshare: {e}"))?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| format!("setns: {e}"))?;
        std::env::set_current_dir("/").map_err(|e| e.to_string())?;
        f()
    })
}

/// The name a copied item gets: the last component of its path (`.` for the root).
fn base_name(p: &Path) -> PathBuf {
    p.file_name().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

/// Writes `path` of the container (a file, a link or a whole tree) as a tar stream to
/// `out`. `ready` says first whether the path exists (Docker's message if not).
pub fn read_out(
    pid: i32,
    container: String,
    path: String,
    follow: bool,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
    out: impl Write + Send + 'static,
) -> std::thread::JoinHandle<Result<(), String>> {
    in_container(pid, move || {
        let p = PathBuf::from(&path);
        let meta = if follow {
            std::fs::metadata(&p)
        } else {
            std::fs::symlink_metadata(&p)
        };
        if meta.is_err() {
            let msg = format!("Could not find the file {path} in container {container}");
            let _ = ready.send(Err(msg.clone()));
            return Err(msg);
        }
        let _ = ready.send(Ok(()));
        let mut b = tar::Builder::new(out);
        b.follow_symlinks(follow);
        let name = base_name(&p);
        let res = match meta {
            Ok(m) if m.is_dir() => b.append_dir_all(&name, &p),
            _ => b.append_path_with_name(&p, &name),
        };
        res.and_then(|_| b.finish()).map_err(|e| e.to_string())
    })
}

/// Where an entry of a copied item lands: inside `dest` when it is a directory, else
/// as `dest` itself (the item renamed), as `docker cp` does. `None` for an entry whose
/// path is not plain (`..`, absolute).
pub fn target(entry: &Path, dest: &Path, dest_is_dir: bool) -> Option<PathBuf> {
    let parts: Vec<&std::ffi::OsStr> = entry
        .components()
        .map(|c| match c {
            Component::Normal(s) => Some(s),
            Component::CurDir => Some(std::ffi::OsStr::new(".")),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    let parts: Vec<&std::ffi::OsStr> = parts.into_iter().filter(|p| *p != ".").collect();
    if dest_is_dir {
        return Some(parts.iter().fold(dest.to_path_buf(), |acc, p| acc.join(p)));
    }
    Some(parts.iter().skip(1).fold(dest.to_path_buf(), |acc, p| acc.join(p)))
}

/// How a tar stream is unpacked.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unpack {
    /// Keep the entries' owners (`cp -a`).
    pub owners: bool,
    /// An entry named `.wh.NAME` (the OCI layers' whiteout) removes `NAME`: how `watch`
    /// sends deletions in the same stream as the files.
    pub whiteouts: bool,
    /// Make `dest` (a directory) and its parents when missing.
    pub mkdir: bool,
    /// The container's user namespace mapping: owners are the container's IDs, so
    /// they are stored as the host IDs they map to.
    pub userns: Option<crate::runtime::spec::IdMap>,
}

/// The `.wh.` prefix of a whiteout entry.
pub const WHITEOUT: &str = ".wh.";

/// Unpacks a tar stream at `dest`, keeping modes (and owners when asked), refusing
/// entries that are not plain relative paths.
pub fn unpack_at(src: impl Read, dest: &Path, how: Unpack) -> Result<(), String> {
    if how.mkdir && !dest.exists() {
        std::fs::create_dir_all(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    }
    let owners = how.owners;
    let dest_is_dir = dest.is_dir();
    if !dest_is_dir {
        let parent = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(format!("no such directory: {}", parent.display()));
        }
    }
    let mut a = tar::Archive::new(src);
    a.set_preserve_permissions(true);
    a.set_preserve_ownerships(owners);
    a.set_preserve_mtime(true);
    a.set_overwrite(true);
    for entry in a.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        let Some(to) = target(&path, dest, dest_is_dir) else {
            return Err(format!("refusing the archive entry {}", path.display()));
        };
        // No entry may land through a symlink an earlier entry made (or one that was
        // there): that is how an archive reaches outside its destination.
        let base = if dest_is_dir {
            dest
        } else {
            dest.parent().unwrap_or(Path::new("."))
        };
        if let Ok(rel) = to.strip_prefix(base) {
            let mut at = base.to_path_buf();
            let n = rel.components().count();
            for (i, c) in rel.components().enumerate() {
                at.push(c);
                if i + 1 < n && std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(format!(
                        "refusing the archive entry {}: it goes through a link",
                        path.display()
                    ));
                }
            }
        }
        let name = to
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(gone) = name.strip_prefix(WHITEOUT).filter(|_| how.whiteouts) {
            let victim = to.with_file_name(gone);
            let removed = match std::fs::symlink_metadata(&victim) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&victim),
                Ok(_) => std::fs::remove_file(&victim),
                Err(_) => Ok(()),
            };
            removed.map_err(|e| format!("{}: {e}", victim.display()))?;
            continue;
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        // A directory where a file comes (or the reverse) is replaced, as a sync must.
        if how.whiteouts {
            if let Ok(m) = std::fs::symlink_metadata(&to) {
                let kind = entry.header().entry_type();
                if m.is_dir() && !kind.is_dir() {
                    std::fs::remove_dir_all(&to).map_err(|e| format!("{}: {e}", to.display()))?;
                }
            }
        }
        entry.unpack(&to).map_err(|e| format!("{}: {e}", to.display()))?;
        if let Some(map) = &how.userns {
            // Without `owners`, the container's root owns what arrives, as in Docker.
            let h = entry.header();
            let (uid, gid) = if owners {
                (h.uid().unwrap_or(0), h.gid().unwrap_or(0))
            } else {
                (0, 0)
            };
            // An ID the range does not hold is stored as its overflow ID (nobody), as
            // the kernel shows unmapped ones.
            let nobody = u64::from(65534.min(map.size.saturating_sub(1)));
            let uid = map.host_uid(uid).or_else(|| map.host_uid(nobody));
            let gid = map.host_gid(gid).or_else(|| map.host_gid(nobody));
            std::os::unix::fs::lchown(&to, uid, gid).map_err(|e| format!("{}: {e}", to.display()))?;
        }
    }
    Ok(())
}

/// Unpacks a tar stream into the container at `dest`.
pub fn write_in(
    pid: i32,
    dest: String,
    how: Unpack,
    src: impl Read + Send + 'static,
) -> std::thread::JoinHandle<Result<(), String>> {
    in_container(pid, move || unpack_at(src, Path::new(&dest), how))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_entries_land() {
        let d = Path::new("/dst");
        assert_eq!(target(Path::new("app/x"), d, true), Some(PathBuf::from("/dst/app/x")));
        assert_eq!(target(Path::new("app/x"), d, false), Some(PathBuf::from("/dst/x")));
        assert_eq!(target(Path::new("app"), d, false), Some(PathBuf::from("/dst")));
        assert_eq!(target(Path::new("./app"), d, true), Some(PathBuf::from("/dst/app")));
        assert_eq!(target(Path::new("app/../../etc"), d, true), None);
        assert_eq!(target(Path::new("/etc/passwd"), d, true), None);
    }

    #[test]
    fn a_tree_round_trips_with_modes_and_links() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("tree");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(src.join("sub/run.sh"), std::fs::Permissions::from_mode(0o751)).unwrap();
        std::os::unix::fs::symlink("sub/run.sh", src.join("link")).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        b.follow_symlinks(false);
        b.append_dir_all("tree", &src).unwrap();
        let data = b.into_inner().unwrap();
        // Into a new name, then into an existing directory.
        unpack_at(&data[..], &t.path().join("copy"), Unpack::default()).unwrap();
        let m = std::fs::metadata(t.path().join("copy/sub/run.sh")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o751);
        assert_eq!(
            std::fs::read_link(t.path().join("copy/link")).unwrap(),
            Path::new("sub/run.sh")
        );
        std::fs::create_dir(t.path().join("into")).unwrap();
        unpack_at(&data[..], &t.path().join("into"), Unpack::default()).unwrap();
        assert!(t.path().join("into/tree/sub/run.sh").exists());
        assert!(unpack_at(&data[..], &t.path().join("no/such/dir"), Unpack::default()).is_err());
    }

    #[test]
    fn a_sync_stream_makes_its_destination_and_deletes_by_whiteout() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("app/src");
        let sync = Unpack {
            whiteouts: true,
            mkdir: true,
            ..Unpack::default()
        };
        let stream = |entries: &[(&str, Option<&str>)]| {
            let mut b = tar::Builder::new(Vec::new());
            for (name, body) in entries {
                let body = body.unwrap_or("");
                let mut h = tar::Header::new_gnu();
                h.set_size(body.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                b.append_data(&mut h, name, body.as_bytes()).unwrap();
            }
            b.into_inner().unwrap()
        };
        unpack_at(
            &stream(&[("a.txt", Some("one")), ("dir/b.txt", Some("two"))])[..],
            &dest,
            sync,
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("dir/b.txt")).unwrap(), "two");
        // A deleted file and a deleted tree; a whiteout of what is not there is no error.
        unpack_at(
            &stream(&[
                (".wh.a.txt", None),
                (".wh.dir", None),
                (".wh.never", None),
                ("c.txt", Some("3")),
            ])[..],
            &dest,
            sync,
        )
        .unwrap();
        assert!(!dest.join("a.txt").exists() && !dest.join("dir").exists());
        assert_eq!(std::fs::read_to_string(dest.join("c.txt")).unwrap(), "3");
        // Without the option, a whiteout is an ordinary file.
        unpack_at(&stream(&[(".wh.c.txt", None)])[..], &dest, Unpack::default()).unwrap();
        assert!(dest.join("c.txt").exists() && dest.join(".wh.c.txt").exists());
        // A whiteout never reaches through a link.
        std::os::unix::fs::symlink(t.path(), dest.join("out")).unwrap();
        std::fs::write(t.path().join("precious"), "x").unwrap();
        assert!(unpack_at(&stream(&[("out/.wh.precious", None)])[..], &dest, sync).is_err());
        assert!(t.path().join("precious").exists());
    }
}
