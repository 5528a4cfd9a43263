//! Atomic writes, by path or relative to a directory descriptor (the monitor's
//! `exit.json`, which it writes in the container's directory by descriptor): a temporary
//! file, fsync, rename.
//! A crash or a full disk leaves the old file or none, never a short one.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::io::{FromRawFd, RawFd};
use std::path::Path;

/// Writes `data` to `name` in the directory `dir`, atomically.
pub fn write_at(dir: RawFd, name: &str, data: &[u8]) -> io::Result<()> {
    let bad = |_| io::Error::new(io::ErrorKind::InvalidInput, "a name with a NUL byte");
    let tmp = CString::new(format!(".{name}.{}.tmp", std::process::id())).map_err(bad)?;
    let fin = CString::new(name).map_err(bad)?;
    // SAFETY: valid C strings; the descriptor is checked and then owned.
    let fd = unsafe {
        libc::openat(
            dir,
            tmp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            0o644,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    let mut f = unsafe { File::from_raw_fd(fd) };
    let written = f.write_all(data).and_then(|_| f.sync_all());
    drop(f);
    let res = written.and_then(|_| {
        // SAFETY: valid C strings.
        if unsafe { libc::renameat(dir, tmp.as_ptr(), dir, fin.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fsync of the directory descriptor the caller holds.
        unsafe { libc::fsync(dir) };
        Ok(())
    });
    if res.is_err() {
        // SAFETY: a valid C string.
        unsafe { libc::unlinkat(dir, tmp.as_ptr(), 0) };
    }
    res
}

/// Writes `data` to `path` atomically: temporary file, fsync, rename, fsync the directory.
pub fn write(path: &Path, data: &[u8]) -> io::Result<()> {
    // `out.yaml` has the parent "", which names no directory to sync.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("f"),
        std::process::id()
    ));
    let res = (|| -> io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::io::AsRawFd;

    #[test]
    fn replaces_whole_or_not_at_all() {
        let t = tempfile::tempdir().unwrap();
        let d = File::open(t.path()).unwrap();
        write_at(d.as_raw_fd(), "exit.json", b"{\"a\":1}").unwrap();
        write_at(d.as_raw_fd(), "exit.json", b"{\"a\":2}").unwrap();
        assert_eq!(std::fs::read(t.path().join("exit.json")).unwrap(), b"{\"a\":2}");
        let left: Vec<_> = std::fs::read_dir(t.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "no temporary file left");
    }
}
