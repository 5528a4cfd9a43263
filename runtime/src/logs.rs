//! Container logs in Docker's json-file format (one `{"log","stream","time"}` object a
//! line), with rotation by size and count (`logging.options.max-size`, `max-file`).
//! Files are reached through a directory descriptor, so the writer keeps working after
//! the container's init has pivoted into the container's root.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::io::{FromRawFd, RawFd};

pub const LOG_FILE: &str = "container-json.log";

pub struct LogWriter {
    dir: RawFd,
    file: File,
    size: u64,
    max_size: u64,
    max_file: u32,
    partial: [Vec<u8>; 2],
}

fn open_at(dir: RawFd, name: &str, truncate: bool) -> io::Result<File> {
    let c = CString::new(name).map_err(io::Error::other)?;
    let flags = libc::O_WRONLY
        | libc::O_CREAT
        | libc::O_CLOEXEC
        | libc::O_NOFOLLOW
        | if truncate { libc::O_TRUNC } else { libc::O_APPEND };
    // SAFETY: `c` is a valid C string; the returned descriptor is checked and owned.
    let fd = unsafe { libc::openat(dir, c.as_ptr(), flags, 0o640) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn rename_at(dir: RawFd, from: &str, to: &str) -> io::Result<()> {
    let (f, t) = (
        CString::new(from).map_err(io::Error::other)?,
        CString::new(to).map_err(io::Error::other)?,
    );
    // SAFETY: valid C strings; renameat does not keep them.
    if unsafe { libc::renameat(dir, f.as_ptr(), dir, t.as_ptr()) } != 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::NotFound {
            return Err(e);
        }
    }
    Ok(())
}

/// RFC 3339 with nanoseconds, UTC (Docker's log timestamps).
pub fn timestamp_now() -> String {
    conventions::timefmt::rfc3339(true)
}

impl LogWriter {
    /// Appends to `<dir>/container-json.log`.
    pub fn open(dir: RawFd, max_size: u64, max_file: u32) -> io::Result<LogWriter> {
        let file = open_at(dir, LOG_FILE, false)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            dir,
            file,
            size,
            max_size,
            max_file: max_file.max(1),
            partial: [Vec::new(), Vec::new()],
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        if self.max_file <= 1 {
            self.file = open_at(self.dir, LOG_FILE, true)?;
        } else {
            for i in (1..self.max_file - 1).rev() {
                rename_at(self.dir, &format!("{LOG_FILE}.{i}"), &format!("{LOG_FILE}.{}", i + 1))?;
            }
            rename_at(self.dir, LOG_FILE, &format!("{LOG_FILE}.1"))?;
            self.file = open_at(self.dir, LOG_FILE, true)?;
        }
        self.size = 0;
        Ok(())
    }

    fn emit(&mut self, stream: usize, line: &[u8]) -> io::Result<()> {
        let obj = serde_json::json!({
            "log": String::from_utf8_lossy(line),
            "stream": if stream == 0 { "stdout" } else { "stderr" },
            "time": timestamp_now(),
        });
        let mut text = obj.to_string();
        text.push('\n');
        if self.max_size > 0 && self.size > 0 && self.size + text.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(text.as_bytes())?;
        self.size += text.len() as u64;
        Ok(())
    }

    /// Output of stream 0 (stdout) or 1 (stderr): complete lines are written at once,
    /// a partial one waits for its end (or for 16 KiB, or `flush`).
    pub fn write(&mut self, stream: usize, data: &[u8]) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.partial[stream]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
            let end = start + nl + 1;
            self.emit(stream, &buf[start..end])?;
            start = end;
        }
        let rest = buf.split_off(start);
        if rest.len() >= 16 * 1024 {
            self.emit(stream, &rest)?;
        } else {
            self.partial[stream] = rest;
        }
        Ok(())
    }

    /// Writes what is left of partial lines.
    pub fn flush(&mut self) -> io::Result<()> {
        for s in 0..2 {
            let rest = std::mem::take(&mut self.partial[s]);
            if !rest.is_empty() {
                self.emit(s, &rest)?;
            }
        }
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::io::AsRawFd;

    #[test]
    fn json_lines_and_rotation() {
        let t = tempfile::tempdir().unwrap();
        let dir = File::open(t.path()).unwrap();
        let mut w = LogWriter::open(dir.as_raw_fd(), 300, 3).unwrap();
        w.write(0, b"hello\nwor").unwrap();
        w.write(1, b"oops\n").unwrap();
        w.write(0, b"ld\n").unwrap();
        w.flush().unwrap();
        let text = std::fs::read_to_string(t.path().join(LOG_FILE)).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(
            lines
                .iter()
                .map(|l| (l["log"].as_str().unwrap(), l["stream"].as_str().unwrap()))
                .collect::<Vec<_>>(),
            vec![("hello\n", "stdout"), ("oops\n", "stderr"), ("world\n", "stdout")]
        );
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
        for i in 0..40 {
            w.write(0, format!("line {i}\n").as_bytes()).unwrap();
        }
        w.flush().unwrap();
        let mut names: Vec<String> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![LOG_FILE.to_string(), format!("{LOG_FILE}.1"), format!("{LOG_FILE}.2")]
        );
        for n in &names {
            assert!(std::fs::metadata(t.path().join(n)).unwrap().len() <= 300);
        }
        let last = std::fs::read_to_string(t.path().join(LOG_FILE)).unwrap();
        assert!(last.contains("line 39"));
    }
}
