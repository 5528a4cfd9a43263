//! A new layer from a directory of changes: the upper directory of an overlay a build
//! step wrote to. Its overlay whiteouts (0:0 character devices, `trusted.overlay.opaque`)
//! become OCI whiteouts in the layer's tar; the tar (uncompressed, so its digest is the
//! diff ID) goes into the blobs, and the directory itself becomes the unpacked layer,
//! since an upper directory is already what overlayfs stacks. Entries are sorted and
//! hard links kept, so the same tree gives the same layer.

use super::context::hashes::Hashes;
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
/// With `hashes`, the content hash of every regular file is noted there as its tar
/// is written (see [`Hashes::put_written`]), once the directory is the layer's: a
/// `COPY --from` of it then reads nothing for its cache key.
pub fn adopt_upper(store: &Store, upper: &Path, hashes: Option<&Hashes>) -> Result<LayerRecord, StoreError> {
    let tmp = store.tmp_file("layer.tar");
    let res = (|| {
        let f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let mut w = HashWriter::new(io::BufWriter::new(f));
        let mut noted = hashes.map(|_| Vec::new());
        write_tar(upper, &mut w, noted.as_mut()).map_err(io_err(upper))?;
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
            // Only files that stay: a removed one's inode could come back as another.
            if let (Some(h), Some(noted)) = (hashes, noted) {
                for (st, sum) in noted {
                    h.put_written(&st, sum);
                }
            }
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
    write_tar(upper, &mut w, None)?;
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

fn same_stat(a: &libc::stat, b: &libc::stat) -> bool {
    (
        a.st_ino,
        a.st_size,
        a.st_mtime,
        a.st_mtime_nsec,
        a.st_ctime,
        a.st_ctime_nsec,
    ) == (
        b.st_ino,
        b.st_size,
        b.st_mtime,
        b.st_mtime_nsec,
        b.st_ctime,
        b.st_ctime_nsec,
    )
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

/// The tree is read on this thread and written (and hashed) on another, so that the
/// two halves of the work overlap; the chunks between them are bounded.
fn write_tar(root: &Path, mut out: impl Write + Send, noted: Option<&mut Vec<Noted>>) -> io::Result<()> {
    let dir: OwnedFd = fs::File::open(root)?.into();
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
        let writer = s.spawn(move || -> io::Result<()> {
            for chunk in rx {
                out.write_all(&chunk)?;
            }
            out.flush()
        });
        let read = (|| {
            let mut b = tar::Builder::new(Chunks {
                buf: Vec::with_capacity(CHUNK),
                tx,
            });
            let mut w = Walk {
                links: HashMap::new(),
                noted,
            };
            walk(&mut b, dir.as_fd(), Path::new(""), &mut w, 0)?;
            b.into_inner()?.flush()
            // The sender goes here: the writer sees the end.
        })();
        let wrote = writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the layer writer panicked")));
        // The writer's own error first: a read side that stopped on a closed channel
        // only echoes it.
        wrote.and(read)
    })
}

/// A regular file's stat as its tar entry was written, and its content's SHA-256.
type Noted = (libc::stat, [u8; 32]);

/// What a walk keeps across directories: the first path of each hard-linked inode, and
/// the content hashes noted.
struct Walk<'a> {
    links: HashMap<(u64, u64), PathBuf>,
    noted: Option<&'a mut Vec<Noted>>,
}

/// Hashes what is read through it, when asked to.
struct Hashing<R> {
    inner: R,
    sha: Option<sha2::Sha256>,
    read: u64,
}

impl<R: io::Read> io::Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(sha) = &mut self.sha {
            sha2::Digest::update(sha, &buf[..n]);
        }
        self.read += n as u64;
        Ok(n)
    }
}

const CHUNK: usize = 256 * 1024;
const CHUNKS_IN_FLIGHT: usize = 4;

/// The tar's bytes in chunks, to the writer thread.
struct Chunks {
    buf: Vec<u8>,
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
}

impl Chunks {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .send(full)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the layer writer stopped"))
    }
}

impl Write for Chunks {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
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
fn walk(b: &mut tar::Builder<impl Write>, dir: BorrowedFd, rel: &Path, w: &mut Walk, depth: usize) -> io::Result<()> {
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
                walk(b, child.as_fd(), &r, w, depth + 1)?;
            }
            libc::S_IFLNK => {
                let mut h = header(&st, tar::EntryType::Symlink);
                let target = nix::fcntl::readlinkat(dir, c.as_c_str())?;
                b.append_link(&mut h, &r, target)?;
            }
            libc::S_IFREG => {
                if st.st_nlink > 1 {
                    if let Some(first) = w.links.get(&(st.st_dev, st.st_ino)) {
                        let mut h = header(&st, tar::EntryType::Link);
                        b.append_link(&mut h, &r, first)?;
                        continue;
                    }
                    w.links.insert((st.st_dev, st.st_ino), r.clone());
                }
                let mut h = header(&st, tar::EntryType::Regular);
                h.set_size(st.st_size as u64);
                let f = fs::File::from(open_in(dir, &c, libc::O_RDONLY)?);
                // Exactly the size it had when looked at: a file growing meanwhile
                // cannot make the entry disagree with its header.
                let mut data = Hashing {
                    inner: io::Read::take(f, st.st_size as u64),
                    sha: w.noted.is_some().then(sha2::Digest::new),
                    read: 0,
                };
                b.append_data(&mut h, &r, &mut data)?;
                if let (Some(noted), Some(sha)) = (w.noted.as_deref_mut(), data.sha) {
                    // Only a file whole and unchanged since it was looked at: one
                    // that changed while read is not noted at all.
                    let now = nix::sys::stat::fstat(data.inner.get_ref())?;
                    if data.read == st.st_size as u64 && same_stat(&now, &st) {
                        noted.push((st, sha2::Digest::finalize(sha).into()));
                    }
                }
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
        let rec = adopt_upper(&store, &up, None).unwrap();
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

    #[test]
    fn a_layers_files_are_hashed_as_its_tar_is_written_and_only_if_it_stays() {
        use sha2::Digest as _;
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        let hashes = Hashes::in_memory();
        let up = t.path().join("upper");
        fs::create_dir_all(up.join("app")).unwrap();
        fs::write(up.join("app/main"), "fresh content").unwrap();
        let rec = adopt_upper(&store, &up, Some(&hashes)).unwrap();
        let kept = store.layer_dir(&rec.diff_id).join("app/main");
        let st = nix::sys::stat::lstat(&kept).unwrap();
        // Just written (the racy rule would keep it out of the saved hashes), yet known.
        let want: [u8; 32] = sha2::Sha256::digest(b"fresh content").into();
        assert_eq!(hashes.get(&st), Some(want));

        // The same tree again: its upper is removed, not kept, so nothing is noted.
        let again = t.path().join("again");
        fs::create_dir_all(again.join("app")).unwrap();
        fs::write(again.join("app/main"), "fresh content").unwrap();
        let removed = nix::sys::stat::lstat(&again.join("app/main")).unwrap();
        let other = Hashes::in_memory();
        assert_eq!(adopt_upper(&store, &again, Some(&other)).unwrap().diff_id, rec.diff_id);
        assert!(!again.exists());
        assert_eq!(other.get(&removed), None);
    }

    #[test]
    fn a_failing_writer_ends_the_tar_with_its_error() {
        struct Full(usize);
        impl Write for Full {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                if self.0 < b.len() {
                    return Err(io::Error::other("disk full"));
                }
                self.0 -= b.len();
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let t = tempfile::tempdir().unwrap();
        // More than the chunks in flight hold, so the reader would block on a writer gone.
        for i in 0..40 {
            fs::write(t.path().join(format!("f{i}")), vec![7u8; 64 * 1024]).unwrap();
        }
        let e = write_tar(t.path(), Full(100_000), None).unwrap_err();
        assert_eq!(e.to_string(), "disk full");
        // And a writer with room gets the whole tar.
        let mut all = Vec::new();
        write_tar(t.path(), &mut all, None).unwrap();
        assert_eq!(tar::Archive::new(&all[..]).entries().unwrap().count(), 40);
    }
}
