//! Reading the files a project is made of (Compose files, `.env`, `--env-file`,
//! `env_file`, `label_file`) with a size limit, and only files that end: regular files
//! and pipes (`-f <(...)`). A device (`-f /dev/zero`), a directory or a socket is
//! refused at once, and a pipe that goes on past the limit is refused when it passes it,
//! so no input makes the loader read without end.

use std::io::{self, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// The most any one file may hold.
pub const LIMIT: u64 = 32 << 20;

/// The text of `path`, at most [`LIMIT`] bytes.
pub fn text(path: &Path) -> io::Result<String> {
    text_limited(path, LIMIT)
}

pub fn text_limited(path: &Path, limit: u64) -> io::Result<String> {
    let data = bytes_limited(path, limit)?;
    String::from_utf8(data).map_err(not_utf8)
}

/// The content of `path` (a secret's or a config's `file`), at most [`LIMIT`] bytes.
pub fn bytes(path: &Path) -> io::Result<Vec<u8>> {
    bytes_limited(path, LIMIT)
}

fn not_utf8(e: std::string::FromUtf8Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("not valid UTF-8 (at byte offset {})", e.utf8_error().valid_up_to()),
    )
}

pub fn bytes_limited(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    let t = meta.file_type();
    let kind = if t.is_dir() {
        Some("a directory")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        None
    };
    if let Some(kind) = kind {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file (it is {kind})"),
        ));
    }
    if t.is_file() && meta.len() > limit {
        return Err(too_large(limit));
    }
    let f = std::fs::File::open(path)?;
    read_limited(f, limit)
}

fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("larger than {} MiB, the most a file of a project may hold", limit >> 20),
    )
}

/// Everything `r` gives (standard input, say), at most `limit` bytes, as UTF-8.
pub fn from_reader(r: impl Read, limit: u64) -> io::Result<String> {
    String::from_utf8(read_limited(r, limit)?).map_err(not_utf8)
}

fn read_limited(r: impl Read, limit: u64) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    r.take(limit + 1).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_directories_and_huge_inputs_are_refused() {
        let e = text(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        assert!(text(Path::new("/")).unwrap_err().to_string().contains("directory"));
        let t = tempfile::tempdir().unwrap();
        let big = t.path().join("big");
        std::fs::write(&big, vec![b'a'; 2048]).unwrap();
        assert!(text_limited(&big, 1024)
            .unwrap_err()
            .to_string()
            .contains("larger than"));
        assert_eq!(text_limited(&big, 4096).unwrap().len(), 2048);
        // A pipe that never ends stops at the limit.
        assert!(from_reader(std::io::repeat(b'x'), 1 << 20).is_err());
        let e = from_reader(&b"ab\xffcd"[..], 100).unwrap_err();
        assert!(e.to_string().contains("byte offset 2"), "{e}");
    }
}
