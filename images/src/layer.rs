//! A new layer from a directory of changes: the upper directory of an overlay a build
//! step wrote to. Its overlay whiteouts (0:0 character devices, `trusted.overlay.opaque`)
//! become OCI whiteouts in the layer's tar; the tar (uncompressed, so its digest is the
//! diff ID) goes into the blobs, and the directory itself becomes the unpacked layer,
//! since an upper directory is already what overlayfs stacks. Entries are sorted and
//! hard links kept, so the same tree gives the same layer.

use super::digest::{Digest, HashWriter};
use super::store::{LayerRecord, Store, StoreError};
use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether the directory has changes at all (an empty upper makes no layer).
pub fn is_empty(upper: &Path) -> bool {
    fs::read_dir(upper).map(|mut d| d.next().is_none()).unwrap_or(true)
}

/// Stores `upper` as a layer: its tar in the blobs, the directory itself moved to the
/// layers (or removed, when the same layer is already there).
pub fn adopt_upper(store: &Store, upper: &Path) -> Result<LayerRecord, StoreError> {
    let tmp = store.tmp_file("layer.tar");
    let res = (|| {
        let f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let mut w = HashWriter::new(io::BufWriter::new(f));
        write_tar(upper, &mut w).map_err(io_err(upper))?;
        let (buf, diff_id, size) = w.finish();
        buf.into_inner()
            .map_err(|e| io_err(&tmp)(e.into_error()))?
            .sync_all()
            .map_err(io_err(&tmp))?;
        // Hashed as it was written, and synced: not read again.
        store.adopt_written(&tmp, &diff_id)?;
        let dir = store.layer_dir(&diff_id);
        if dir.is_dir() {
            fs::remove_dir_all(upper).map_err(io_err(upper))?;
        } else {
            fs::rename(upper, &dir).map_err(io_err(&dir))?;
        }
        Ok(LayerRecord {
            blob: diff_id.clone(),
            media_type: crate::media::OCI_LAYER.into(),
            size,
            diff_id,
        })
    })();
    let _ = fs::remove_file(&tmp);
    res
}

/// The diff ID `upper` would have, without storing it.
pub fn diff_id(upper: &Path) -> io::Result<Digest> {
    let mut w = HashWriter::new(io::sink());
    write_tar(upper, &mut w)?;
    Ok(w.finish().1)
}

/// Whether the directory `dir` is an overlay's opaque one.
fn opaque(dir: BorrowedFd) -> bool {
    let mut buf = [0u8; 4];
    // SAFETY: a valid descriptor, C name and a buffer of the given length.
    let n = unsafe {
        libc::fgetxattr(
            dir.as_raw_fd(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

fn header(st: &libc::stat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

fn write_tar(root: &Path, out: impl Write) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let dir: OwnedFd = fs::File::open(root)?.into();
    walk(&mut b, dir.as_fd(), Path::new(""), &mut links, 0)?;
    b.into_inner()?.flush()
}

/// `openat` below `dir`, never following a link.
fn open_in(dir: BorrowedFd, name: &CStr, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: a valid descriptor and C name; the result is checked and owned.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor just returned to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The names in the directory `dir`, sorted.
fn names_in(dir: BorrowedFd) -> io::Result<Vec<CString>> {
    use nix::fcntl::OFlag;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let listing = nix::dir::Dir::openat(dir, c".", flags, nix::sys::stat::Mode::empty())?;
    let mut names = Vec::new();
    for e in listing {
        let e = e?;
        let n = e.file_name();
        if n != c"." && n != c".." {
            names.push(n.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The tree below the directory `dir` (at `rel` in the layer) into `b`, by directory
/// descriptors: each name is looked up once, in its own directory.
fn walk(
    b: &mut tar::Builder<impl Write>,
    dir: BorrowedFd,
    rel: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
    depth: usize,
) -> io::Result<()> {
    if depth > safefs::inroot::MAX_DEPTH {
        return Err(io::Error::other(format!(
            "deeper than {} levels",
            safefs::inroot::MAX_DEPTH
        )));
    }
    let names = names_in(dir)?;
    if !rel.as_os_str().is_empty() && opaque(dir) {
        let st = nix::sys::stat::fstat(dir)?;
        let mut h = header(&st, tar::EntryType::Regular);
        h.set_mode(0o644);
        b.append_data(&mut h, rel.join(".wh..wh..opq"), io::empty())?;
    }
    for c in names {
        let n = OsStr::from_bytes(c.to_bytes());
        let r = rel.join(n);
        let st = nix::sys::stat::fstatat(dir, c.as_c_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let kind = st.st_mode & libc::S_IFMT;
        match kind {
            libc::S_IFCHR if st.st_rdev == 0 => {
                let mut h = header(&st, tar::EntryType::Regular);
                h.set_mode(0o644);
                let mut wh = std::ffi::OsString::from(safefs::archive::WHITEOUT);
                wh.push(n);
                b.append_data(&mut h, rel.join(wh), io::empty())?;
            }
            libc::S_IFDIR => {
                let mut h = header(&st, tar::EntryType::Directory);
                b.append_data(&mut h, &r, io::empty())?;
                let child = open_in(dir, &c, libc::O_RDONLY | libc::O_DIRECTORY)?;
                walk(b, child.as_fd(), &r, links, depth + 1)?;
            }
            libc::S_IFLNK => {
                let mut h = header(&st, tar::EntryType::Symlink);
                let target = nix::fcntl::readlinkat(dir, c.as_c_str())?;
                b.append_link(&mut h, &r, target)?;
            }
            libc::S_IFREG => {
                if st.st_nlink > 1 {
                    if let Some(first) = links.get(&(st.st_dev, st.st_ino)) {
                        let mut h = header(&st, tar::EntryType::Link);
                        b.append_link(&mut h, &r, first)?;
                        continue;
                    }
                    links.insert((st.st_dev, st.st_ino), r.clone());
                }
                let mut h = header(&st, tar::EntryType::Regular);
                h.set_size(st.st_size as u64);
                let f = fs::File::from(open_in(dir, &c, libc::O_RDONLY)?);
                // Exactly the size it had when looked at: a file growing meanwhile
                // cannot make the entry disagree with its header.
                b.append_data(&mut h, &r, io::Read::take(f, st.st_size as u64))?;
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
                let kind = match kind {
                    libc::S_IFCHR => tar::EntryType::Char,
                    libc::S_IFBLK => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                let mut h = header(&st, kind);
                h.set_device_major(libc::major(st.st_rdev))?;
                h.set_device_minor(libc::minor(st.st_rdev))?;
                b.append_data(&mut h, &r, io::empty())?;
            }
            // Sockets are not archived, as tar leaves them out.
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upper_directory_becomes_a_layer_with_whiteouts() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        let up = t.path().join("upper");
        fs::create_dir_all(up.join("etc/sub")).unwrap();
        fs::write(up.join("etc/a"), "a").unwrap();
        fs::hard_link(up.join("etc/a"), up.join("etc/b")).unwrap();
        std::os::unix::fs::symlink("a", up.join("etc/l")).unwrap();
        let root = nix::unistd::geteuid().is_root();
        if root {
            nix::sys::stat::mknod(
                &up.join("etc/gone"),
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::empty(),
                0,
            )
            .unwrap();
        }
        let want = diff_id(&up).unwrap();
        let rec = adopt_upper(&store, &up).unwrap();
        assert_eq!(rec.diff_id, want);
        assert!(!up.exists() && store.layer_dir(&want).join("etc/a").is_file());
        let data = store.read_blob(&rec.blob).unwrap();
        let mut a = tar::Archive::new(&data[..]);
        let names: Vec<(String, tar::EntryType)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.header().entry_type())
            })
            .collect();
        let mut expect = vec![
            ("etc".to_string(), tar::EntryType::Directory),
            ("etc/a".into(), tar::EntryType::Regular),
            ("etc/b".into(), tar::EntryType::Link),
        ];
        if root {
            expect.push(("etc/.wh.gone".into(), tar::EntryType::Regular));
        }
        expect.push(("etc/l".into(), tar::EntryType::Symlink));
        expect.push(("etc/sub".into(), tar::EntryType::Directory));
        assert_eq!(names, expect);
    }
}
