//! Layer unpacking against crafted archives: whiteouts, and every escape attempt.
//! Needs root (device nodes, ownership, trusted.* xattrs); skipped with a message otherwise.

use images::unpack::{unpack, UnpackError};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let is_root = unsafe { libc::geteuid() } == 0;
    if !is_root {
        eprintln!("skipped: layer unpacking tests need root");
    }
    is_root
}

/// One entry of a crafted tar; names are written raw, so `../` survives.
enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Dev(&'a str, u32, u32),
    Owned(&'a str, &'a [u8], u64, u64, u32),
    Xattr(&'a str, &'a str),
}

fn header(name: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let bytes = name.as_bytes();
    h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(1_600_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn link(h: &mut tar::Header, target: &str) {
    let bytes = target.as_bytes();
    h.as_old_mut().linkname[..bytes.len()].copy_from_slice(bytes);
}

fn build(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::Dir(n) => {
                let mut h = header(n, tar::EntryType::Directory, 0, 0o755);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            E::File(n, data) => {
                let mut h = header(n, tar::EntryType::Regular, data.len() as u64, 0o644);
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
            E::Owned(n, data, uid, gid, mode) => {
                let mut h = header(n, tar::EntryType::Regular, data.len() as u64, *mode);
                h.set_uid(*uid);
                h.set_gid(*gid);
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
            E::Sym(n, t) => {
                let mut h = header(n, tar::EntryType::Symlink, 0, 0o777);
                link(&mut h, t);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            E::Hard(n, t) => {
                let mut h = header(n, tar::EntryType::Link, 0, 0o644);
                link(&mut h, t);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            E::Dev(n, major, minor) => {
                let mut h = header(n, tar::EntryType::Char, 0, 0o666);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            E::Xattr(n, attr) => {
                b.append_pax_extensions([(format!("SCHILY.xattr.{attr}").as_str(), b"1".as_slice())])
                    .unwrap();
                let mut h = header(n, tar::EntryType::Regular, 1, 0o644);
                h.set_cksum();
                b.append(&h, b"x".as_slice()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn run(entries: &[E]) -> (tempfile::TempDir, Result<images::unpack::Unpacked, UnpackError>) {
    let outer = tempfile::tempdir().unwrap();
    std::fs::create_dir(outer.path().join("layer")).unwrap();
    let data = build(entries);
    let r = unpack(data.as_slice(), &outer.path().join("layer"));
    (outer, r)
}

fn escaped(outer: &Path) -> Vec<String> {
    std::fs::read_dir(outer)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "layer")
        .collect()
}

#[test]
fn files_dirs_links_owners_and_diff_id() {
    if !root() {
        return;
    }
    let entries = [
        E::Dir("etc/"),
        E::File("etc/hosts", b"127.0.0.1 localhost\n"),
        E::Owned("home/app/data", b"secret", 1000, 1001, 0o4750),
        E::Sym("bin", "usr/bin"),
        E::Sym("etc/mtab", "/proc/self/mounts"),
        E::Hard("etc/hosts2", "etc/hosts"),
        E::Dev("dev/null", 1, 3),
        E::Xattr("ping", "user.mark"),
    ];
    let data = build(&entries);
    let (outer, r) = run(&entries);
    let u = r.unwrap();
    let l = outer.path().join("layer");
    assert_eq!(std::fs::read(l.join("etc/hosts")).unwrap(), b"127.0.0.1 localhost\n");
    let m = std::fs::metadata(l.join("home/app/data")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1001, 0o4750));
    assert_eq!(m.mtime(), 1_600_000_000);
    assert_eq!(std::fs::read_link(l.join("bin")).unwrap(), Path::new("usr/bin"));
    assert_eq!(
        std::fs::metadata(l.join("etc/hosts2")).unwrap().ino(),
        std::fs::metadata(l.join("etc/hosts")).unwrap().ino()
    );
    assert!(std::fs::symlink_metadata(l.join("dev/null"))
        .unwrap()
        .file_type()
        .is_char_device());
    assert_eq!(u.diff_id, images::Digest::of(&data));
    let mut buf = [0u8; 4];
    let p = std::ffi::CString::new(l.join("ping").to_str().unwrap()).unwrap();
    let n = std::ffi::CString::new("user.mark").unwrap();
    // SAFETY: valid C strings and buffer.
    let len = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!((len, buf[0]), (1, b'1'));
    // The same layer, gzip- and zstd-compressed, has the same diff ID.
    for compressed in [
        {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, &data).unwrap();
            e.finish().unwrap()
        },
        zstd::encode_all(data.as_slice(), 1).unwrap(),
    ] {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(unpack(compressed.as_slice(), d.path()).unwrap().diff_id, u.diff_id);
    }
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    if !root() {
        return;
    }
    let (outer, r) = run(&[E::Dir("a/"), E::File("a/.wh.gone", b""), E::File("b/.wh..wh..opq", b"")]);
    r.unwrap();
    let l = outer.path().join("layer");
    let m = std::fs::symlink_metadata(l.join("a/gone")).unwrap();
    assert!(m.file_type().is_char_device() && m.rdev() == 0);
    let mut buf = [0u8; 4];
    let p = std::ffi::CString::new(l.join("b").to_str().unwrap()).unwrap();
    let n = std::ffi::CString::new("trusted.overlay.opaque").unwrap();
    // SAFETY: valid C strings and buffer.
    let len = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!((len, buf[0]), (1, b'y'));
    assert!(!l.join("a/.wh.gone").exists());
}

#[test]
fn escapes_are_refused_and_nothing_lands_outside() {
    if !root() {
        return;
    }
    let cases: Vec<(&str, Vec<E>)> = vec![
        ("dot-dot path", vec![E::File("../evil", b"x")]),
        ("deep dot-dot", vec![E::File("a/../../evil", b"x")]),
        ("absolute dot-dot", vec![E::File("/../evil", b"x")]),
        (
            "write through a symlinked dir",
            vec![E::Sym("link", ".."), E::File("link/evil", b"x")],
        ),
        (
            "write through an absolute symlink",
            vec![E::Sym("etc", "/etc"), E::File("etc/evil", b"x")],
        ),
        ("symlink pointing out", vec![E::Sym("s", "../../evil")]),
        ("hard link out", vec![E::Hard("h", "../evil")]),
        ("hard link to a missing file", vec![E::Hard("h", "nothing")]),
        (
            "hard link through a symlink",
            vec![E::Sym("l", "/"), E::Hard("h", "l/etc/passwd")],
        ),
        ("block device", vec![E::Dev("sda", 8, 0)]),
        ("char device not allowed", vec![E::Dev("mem", 1, 1)]),
        ("overlay xattr", vec![E::Xattr("f", "trusted.overlay.redirect")]),
        (
            "whiteout through a symlink",
            vec![E::Sym("w", "/tmp"), E::File("w/.wh.x", b"")],
        ),
    ];
    for (what, entries) in cases {
        let (outer, r) = run(&entries);
        assert!(r.is_err(), "{what}: accepted");
        assert!(
            escaped(outer.path()).is_empty(),
            "{what}: wrote {:?}",
            escaped(outer.path())
        );
    }
    assert!(!Path::new("/etc/evil").exists() && !Path::new("/tmp/x").exists());
}

#[test]
fn later_entries_replace_earlier_without_following_links() {
    if !root() {
        return;
    }
    // A symlink to a host file, then a regular file of the same name: the link is
    // replaced, the host file is untouched.
    let host = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(host.path(), b"host").unwrap();
    let (outer, r) = run(&[E::Sym("f", host.path().to_str().unwrap()), E::File("f", b"layer")]);
    r.unwrap();
    assert_eq!(std::fs::read(host.path()).unwrap(), b"host");
    assert_eq!(std::fs::read(outer.path().join("layer/f")).unwrap(), b"layer");
}

#[test]
fn corrupt_archives_are_errors() {
    let d = tempfile::tempdir().unwrap();
    let mut data = build(&[E::File("a", b"hello world")]);
    data.truncate(600);
    assert!(unpack(data.as_slice(), d.path()).is_err());
    let gz = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3];
    assert!(unpack(gz.as_slice(), d.path()).is_err());
}
