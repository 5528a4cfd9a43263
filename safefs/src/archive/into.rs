//! A tar stream unpacked into a directory tree that may be hostile (a container's, or
//! the host directory a container's archive is copied to): the destination is resolved
//! inside its root, and each entry is placed from the descriptor of its parent
//! directory, reached with no link on the way (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`):
//! neither an earlier entry nor the tree's own links can send one elsewhere.

use super::ArchiveError;
use crate::inroot;
use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

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
    pub userns: Option<crate::idmap::IdMap>,
}

fn c(name: &Path) -> Result<CString, ArchiveError> {
    CString::new(name.as_os_str().as_bytes()).map_err(|_| ArchiveError::Nul(name.to_path_buf()))
}

fn os(what: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: what.to_path_buf(),
        source,
    }
}

fn last_os(what: &Path) -> ArchiveError {
    os(what)(std::io::Error::last_os_error())
}

/// Where the entries go: a directory (entries land inside), or a parent directory and
/// the name the copied item takes there.
struct Destination {
    base: OwnedFd,
    renamed: Option<PathBuf>,
}

fn destination(root: BorrowedFd, dest: &Path, how: &Unpack) -> Result<Destination, ArchiveError> {
    if how.mkdir {
        inroot::mkdir_all(root, dest).map_err(os(dest))?;
    }
    match inroot::open(root, dest, libc::O_PATH | libc::O_DIRECTORY, 0) {
        Ok(base) => return Ok(Destination { base, renamed: None }),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {}
        Err(e) => return Err(os(dest)(e)),
    }
    let name = dest
        .file_name()
        .ok_or_else(|| ArchiveError::NotADirectory(dest.to_path_buf()))?;
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = inroot::open(root, parent, libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(|_| ArchiveError::NoSuchDirectory(parent.to_path_buf()))?;
    Ok(Destination {
        base,
        renamed: Some(PathBuf::from(name)),
    })
}

/// The owner an entry gets: its own with `owners`, else root's; through the mapping.
fn owner(h: &tar::Header, how: &Unpack) -> Option<(u32, u32)> {
    let (uid, gid) = if how.owners {
        (h.uid().unwrap_or(0), h.gid().unwrap_or(0))
    } else {
        (0, 0)
    };
    match &how.userns {
        Some(map) => {
            // An ID the range does not hold is stored as its overflow ID (nobody), as
            // the kernel shows unmapped ones.
            let nobody = u64::from(65534.min(map.size.saturating_sub(1)));
            let u = map.host_uid(uid).or_else(|| map.host_uid(nobody))?;
            let g = map.host_gid(gid).or_else(|| map.host_gid(nobody))?;
            Some((u, g))
        }
        None if how.owners => Some((u32::try_from(uid).ok()?, u32::try_from(gid).ok()?)),
        None => None,
    }
}

/// Places one entry as `name` in the directory `dir`.
fn place<R: Read>(
    entry: &mut tar::Entry<R>,
    dir: BorrowedFd,
    name: &Path,
    shown: &Path,
    how: &Unpack,
    base: BorrowedFd,
    renamed: Option<&Path>,
) -> Result<(), ArchiveError> {
    let cname = c(name)?;
    let h = entry.header().clone();
    let kind = h.entry_type();
    let mode = h.mode().unwrap_or(0o644) & 0o7777;
    let existing = inroot::stat_at(dir, name).ok();
    let is_dir = |st: &libc::stat| st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    if kind.is_dir() {
        match existing {
            Some(st) if is_dir(&st) => {}
            Some(_) => inroot::remove_at(dir, name).map_err(os(shown))?,
            None => {}
        }
        if existing.is_none_or(|st| !is_dir(&st)) {
            // SAFETY: a valid C string.
            if unsafe { libc::mkdirat(dir.as_raw_fd(), cname.as_ptr(), 0o700) } != 0 {
                return Err(last_os(shown));
            }
        }
    } else {
        // Whatever is there goes (a directory only where a sync replaces it).
        match existing {
            Some(st) if is_dir(&st) && !how.whiteouts => {
                return Err(ArchiveError::OverwriteDirectory(shown.to_path_buf()))
            }
            Some(_) => inroot::remove_at(dir, name).map_err(os(shown))?,
            None => {}
        }
        if kind.is_file() || kind == tar::EntryType::Continuous || kind.is_gnu_sparse() {
            let fd = inroot::open_beneath(
                dir,
                name,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                0o600,
            )
            .map_err(os(shown))?;
            let mut f = std::fs::File::from(fd);
            std::io::copy(entry, &mut f).map_err(os(shown))?;
        } else if kind.is_symlink() {
            let to = h
                .link_name()
                .map_err(os(shown))?
                .ok_or_else(|| ArchiveError::NoLinkTarget(shown.to_path_buf()))?;
            let cto = c(&to)?;
            // SAFETY: valid C strings.
            if unsafe { libc::symlinkat(cto.as_ptr(), dir.as_raw_fd(), cname.as_ptr()) } != 0 {
                return Err(last_os(shown));
            }
        } else if kind.is_hard_link() {
            let to = h
                .link_name()
                .map_err(os(shown))?
                .ok_or_else(|| ArchiveError::NoLinkTarget(shown.to_path_buf()))?;
            let rel = super::target(&to, renamed).ok_or_else(|| ArchiveError::LinkLeaves(shown.to_path_buf()))?;
            let (src_dir, src_name) = split(&rel).ok_or_else(|| ArchiveError::LinkToNothing(shown.to_path_buf()))?;
            let src = inroot::open_beneath(base, src_dir, libc::O_PATH | libc::O_DIRECTORY, 0).map_err(os(shown))?;
            let csrc = c(src_name)?;
            // SAFETY: valid descriptors and C strings.
            if unsafe { libc::linkat(src.as_raw_fd(), csrc.as_ptr(), dir.as_raw_fd(), cname.as_ptr(), 0) } != 0 {
                return Err(last_os(shown));
            }
            return Ok(());
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            let t = if kind.is_character_special() {
                libc::S_IFCHR
            } else if kind.is_block_special() {
                libc::S_IFBLK
            } else {
                libc::S_IFIFO
            };
            let dev = libc::makedev(
                h.device_major().ok().flatten().unwrap_or(0),
                h.device_minor().ok().flatten().unwrap_or(0),
            );
            // SAFETY: a valid C string.
            if unsafe { libc::mknodat(dir.as_raw_fd(), cname.as_ptr(), t | 0o600, dev) } != 0 {
                return Err(last_os(shown));
            }
        } else if matches!(kind, tar::EntryType::XGlobalHeader | tar::EntryType::XHeader) {
            return Ok(());
        } else {
            return Err(ArchiveError::UnsupportedEntry(shown.to_path_buf()));
        }
    }
    finish(dir, &cname, &h, mode, kind.is_symlink(), how).map_err(os(shown))
}

/// Owner, mode and times, on the entry itself (never through a link).
fn finish(
    dir: BorrowedFd,
    name: &CString,
    h: &tar::Header,
    mode: u32,
    link: bool,
    how: &Unpack,
) -> std::io::Result<()> {
    let check = |r: libc::c_int| {
        if r != 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    if let Some((uid, gid)) = owner(h, how) {
        // SAFETY: a valid C string; fchownat does not follow the link with the flag.
        check(unsafe { libc::fchownat(dir.as_raw_fd(), name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })?;
    }
    if !link {
        // After the owner: a chown clears the set-ID bits. Never by name: chmod follows
        // links, and the container may have put one where the entry was a moment ago.
        // The entry itself is opened without following anything, checked to be no link,
        // and changed through its descriptor.
        let path = Path::new(std::ffi::OsStr::from_bytes(name.as_bytes()));
        let fd = inroot::open_beneath(dir, path, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
        let st = nix::sys::stat::fstat(&fd).map_err(std::io::Error::from)?;
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            return Err(std::io::Error::other("replaced by a link while it was written"));
        }
        // An O_PATH descriptor takes no fchmod; its /proc/self/fd entry names exactly
        // the inode it holds.
        let by_fd = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(std::io::Error::other)?;
        // SAFETY: a valid C string naming this process's own descriptor.
        check(unsafe { libc::fchmodat(libc::AT_FDCWD, by_fd.as_ptr(), mode, 0) })?;
    }
    let mtime = h.mtime().unwrap_or(0) as libc::time_t;
    let t = libc::timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: a valid C string and two timespecs.
    check(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// (parent, last component) of a relative path.
fn split(rel: &Path) -> Option<(&Path, &Path)> {
    let name = rel.file_name()?;
    Some((rel.parent().unwrap_or(Path::new("")), Path::new(name)))
}

/// Unpacks a tar stream at `dest` of the tree rooted at `root` (resolved inside it),
/// keeping modes (and owners when asked), refusing entries that are not plain
/// relative paths or that would go through a link.
pub fn unpack_at(src: impl Read, root: BorrowedFd, dest: &Path, how: Unpack) -> Result<(), ArchiveError> {
    let mut d = destination(root, dest, &how)?;
    let mut a = tar::Archive::new(src);
    for (i, entry) in a.entries().map_err(ArchiveError::Stream)?.enumerate() {
        let mut entry = entry.map_err(ArchiveError::Stream)?;
        let path = entry.path().map_err(ArchiveError::Stream)?.into_owned();
        if i == 0 && path == Path::new(".") {
            if let Some(name) = d.renamed.take() {
                // A whole root (`cp SERVICE:/ DIR`), its entries named from it: the
                // new directory is where they go.
                let dir = inroot::mkdir_beneath(inroot::borrow(&d.base), &name).map_err(os(dest))?;
                d.base = dir;
                continue;
            }
        }
        let Some(rel) = super::target(&path, d.renamed.as_deref()) else {
            return Err(ArchiveError::Refused(path));
        };
        let Some((parent, name)) = split(&rel) else {
            // The destination directory itself (`.`): nothing to place.
            continue;
        };
        let shown = dest.join(&rel);
        let through_link = |e: std::io::Error| {
            if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::ENOTDIR) {
                ArchiveError::ThroughLink(path.clone())
            } else {
                os(&shown)(e)
            }
        };
        let fname = name.to_string_lossy();
        if let Some(gone) = fname.strip_prefix(super::WHITEOUT).filter(|_| how.whiteouts) {
            // A deletion makes no directory: one whose parent is gone already is done
            // (a tree's deletion arrives as the tree's and as each of its entries').
            let dir = match inroot::open_beneath(inroot::borrow(&d.base), parent, libc::O_PATH | libc::O_DIRECTORY, 0) {
                Ok(dir) => dir,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(through_link(e)),
            };
            inroot::remove_at(inroot::borrow(&dir), Path::new(gone)).map_err(os(&shown))?;
            continue;
        }
        let dir = inroot::mkdir_beneath(inroot::borrow(&d.base), parent).map_err(through_link)?;
        place(
            &mut entry,
            inroot::borrow(&dir),
            name,
            &shown,
            &how,
            inroot::borrow(&d.base),
            d.renamed.as_deref(),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(t: &tempfile::TempDir) -> OwnedFd {
        OwnedFd::from(std::fs::File::open(t.path()).unwrap())
    }

    fn stream(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
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
        let r = root(&t);
        // Into a new name, then into an existing directory.
        unpack_at(&data[..], inroot::borrow(&r), Path::new("/copy"), Unpack::default()).unwrap();
        let m = std::fs::metadata(t.path().join("copy/sub/run.sh")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o751);
        assert_eq!(
            std::fs::read_link(t.path().join("copy/link")).unwrap(),
            Path::new("sub/run.sh")
        );
        std::fs::create_dir(t.path().join("into")).unwrap();
        unpack_at(&data[..], inroot::borrow(&r), Path::new("into"), Unpack::default()).unwrap();
        assert!(t.path().join("into/tree/sub/run.sh").exists());
        assert!(unpack_at(
            &data[..],
            inroot::borrow(&r),
            Path::new("no/such/dir"),
            Unpack::default()
        )
        .is_err());
    }

    #[test]
    fn a_sync_stream_makes_its_destination_and_deletes_by_whiteout() {
        let t = tempfile::tempdir().unwrap();
        let r = root(&t);
        let dest = Path::new("app/src");
        let on_disk = t.path().join(dest);
        let sync = Unpack {
            whiteouts: true,
            mkdir: true,
            ..Unpack::default()
        };
        let unpack = |data: Vec<u8>, how| unpack_at(&data[..], inroot::borrow(&r), dest, how);
        unpack(stream(&[("a.txt", Some("one")), ("dir/b.txt", Some("two"))]), sync).unwrap();
        assert_eq!(std::fs::read_to_string(on_disk.join("dir/b.txt")).unwrap(), "two");
        // A deleted file and a deleted tree; a whiteout of what is not there is no error.
        unpack(
            stream(&[
                (".wh.a.txt", None),
                (".wh.dir", None),
                // The tree's entries' deletions after the tree's: no directory remade.
                ("dir/.wh.b.txt", None),
                ("dir/sub/.wh.c.txt", None),
                (".wh.never", None),
                ("c.txt", Some("3")),
            ]),
            sync,
        )
        .unwrap();
        assert!(!on_disk.join("a.txt").exists() && !on_disk.join("dir").exists());
        assert_eq!(std::fs::read_to_string(on_disk.join("c.txt")).unwrap(), "3");
        // Without the option, a whiteout is an ordinary file.
        unpack(stream(&[(".wh.c.txt", None)]), Unpack::default()).unwrap();
        assert!(on_disk.join("c.txt").exists() && on_disk.join(".wh.c.txt").exists());
        // A whiteout never reaches through a link.
        std::os::unix::fs::symlink(t.path(), on_disk.join("out")).unwrap();
        std::fs::write(t.path().join("precious"), "x").unwrap();
        assert!(unpack(stream(&[("out/.wh.precious", None)]), sync).is_err());
        assert!(t.path().join("precious").exists());
    }

    #[test]
    fn entries_never_land_through_links() {
        let t = tempfile::tempdir().unwrap();
        let inside = t.path().join("root");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(inside.join("d")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let r = OwnedFd::from(std::fs::File::open(&inside).unwrap());
        // A link planted in the tree, and one made by an earlier entry of the stream.
        std::os::unix::fs::symlink(&outside, inside.join("d/planted")).unwrap();
        let e = unpack_at(
            &stream(&[("planted/x", Some("pwned"))])[..],
            inroot::borrow(&r),
            Path::new("d"),
            Unpack::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("goes through a link"), "{e}");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "esc", &outside).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        b.append_data(&mut h, "esc/y", &b"pwned"[..]).unwrap();
        let data = b.into_inner().unwrap();
        assert!(unpack_at(&data[..], inroot::borrow(&r), Path::new("d"), Unpack::default()).is_err());
        // A destination reached through an absolute link resolves inside the root.
        std::os::unix::fs::symlink("/", inside.join("up")).unwrap();
        unpack_at(
            &stream(&[("z", Some("ok"))])[..],
            inroot::borrow(&r),
            Path::new("/up/../../d"),
            Unpack::default(),
        )
        .unwrap();
        assert!(inside.join("d/z").exists());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing outside");
    }

    #[test]
    fn a_link_swapped_in_for_an_entry_is_never_followed() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let host = tempfile::NamedTempFile::new().unwrap();
        std::fs::set_permissions(host.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        // What the container did while the entry was written: a link in its place.
        std::os::unix::fs::symlink(host.path(), t.path().join("x")).unwrap();
        let dir = root(&t);
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o777);
        h.set_mtime(0);
        let e = finish(
            inroot::borrow(&dir),
            &CString::new("x").unwrap(),
            &h,
            0o777,
            false,
            &Unpack::default(),
        );
        assert!(e.is_err());
        let mode = std::fs::metadata(host.path()).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600, "the host file's mode was changed");
        assert_ne!(
            std::fs::metadata(host.path()).unwrap().modified().unwrap(),
            std::time::UNIX_EPOCH
        );
    }
}
