//! A new layer from a directory of changes: the upper directory of an overlay a build
//! step wrote to. Its overlay whiteouts (0:0 character devices, `trusted.overlay.opaque`)
//! become OCI whiteouts in the layer's tar; the tar (uncompressed, so its digest is the
//! diff ID) goes into the blobs, and the directory itself becomes the unpacked layer,
//! since an upper directory is already what overlayfs stacks. Entries are sorted and
//! hard links kept, so the same tree gives the same layer.

use super::digest::{Digest, HashWriter};
use super::store::{LayerRecord, Store, StoreError};
use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
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

fn opaque(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str())) else {
        return false;
    };
    let mut buf = [0u8; 4];
    // SAFETY: a valid C path and a buffer of the given length.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

fn header(meta: &fs::Metadata, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_mtime(meta.mtime().max(0) as u64);
    h.set_size(0);
    h
}

fn write_tar(root: &Path, out: impl Write) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    walk(&mut b, root, Path::new(""), &mut links, 0)?;
    b.into_inner()?.flush()
}

fn walk(
    b: &mut tar::Builder<impl Write>,
    root: &Path,
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
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    if !rel.as_os_str().is_empty() && opaque(&dir) {
        let meta = fs::symlink_metadata(&dir)?;
        let mut h = header(&meta, tar::EntryType::Regular);
        h.set_mode(0o644);
        b.append_data(&mut h, rel.join(".wh..wh..opq"), io::empty())?;
    }
    for n in names {
        let r = rel.join(&n);
        let full = root.join(&r);
        let meta = fs::symlink_metadata(&full)?;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            let mut h = header(&meta, tar::EntryType::Regular);
            h.set_mode(0o644);
            let mut wh = std::ffi::OsString::from(safefs::archive::WHITEOUT);
            wh.push(&n);
            b.append_data(&mut h, rel.join(wh), io::empty())?;
        } else if ft.is_dir() {
            let mut h = header(&meta, tar::EntryType::Directory);
            b.append_data(&mut h, &r, io::empty())?;
            walk(b, root, &r, links, depth + 1)?;
        } else if ft.is_symlink() {
            let mut h = header(&meta, tar::EntryType::Symlink);
            b.append_link(&mut h, &r, fs::read_link(&full)?)?;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                    let mut h = header(&meta, tar::EntryType::Link);
                    b.append_link(&mut h, &r, first)?;
                    continue;
                }
                links.insert((meta.dev(), meta.ino()), r.clone());
            }
            let mut h = header(&meta, tar::EntryType::Regular);
            h.set_size(meta.len());
            let f = fs::File::open(&full)?;
            // Exactly the size it had when looked at: a file growing meanwhile cannot
            // make the entry disagree with its header.
            b.append_data(&mut h, &r, io::Read::take(f, meta.len()))?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else {
                tar::EntryType::Fifo
            };
            let mut h = header(&meta, kind);
            h.set_device_major(libc::major(meta.rdev()))?;
            h.set_device_minor(libc::minor(meta.rdev()))?;
            b.append_data(&mut h, &r, io::empty())?;
        }
        // Sockets are not archived, as tar leaves them out.
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
