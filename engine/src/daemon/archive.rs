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

/// Unpacks a tar stream at `dest`, keeping modes (and owners when `owners`), refusing
/// entries that are not plain relative paths.
pub fn unpack_at(src: impl Read, dest: &Path, owners: bool) -> Result<(), String> {
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
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        entry.unpack(&to).map_err(|e| format!("{}: {e}", to.display()))?;
    }
    Ok(())
}

/// Unpacks a tar stream into the container at `dest`.
pub fn write_in(
    pid: i32,
    dest: String,
    owners: bool,
    src: impl Read + Send + 'static,
) -> std::thread::JoinHandle<Result<(), String>> {
    in_container(pid, move || unpack_at(src, Path::new(&dest), owners))
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
        unpack_at(&data[..], &t.path().join("copy"), false).unwrap();
        let m = std::fs::metadata(t.path().join("copy/sub/run.sh")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o751);
        assert_eq!(
            std::fs::read_link(t.path().join("copy/link")).unwrap(),
            Path::new("sub/run.sh")
        );
        std::fs::create_dir(t.path().join("into")).unwrap();
        unpack_at(&data[..], &t.path().join("into"), false).unwrap();
        assert!(t.path().join("into/tree/sub/run.sh").exists());
        assert!(unpack_at(&data[..], &t.path().join("no/such/dir"), false).is_err());
    }
}
