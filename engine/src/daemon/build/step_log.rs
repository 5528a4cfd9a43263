//! A step's output as BuildKit shows it: the container's json-file log followed as it
//! grows, line by line, clipped past BuildKit's limit.

use std::io::{BufRead, Seek};
use std::path::PathBuf;

/// The longest output line held before it is shown anyway.
const MAX_LINE: usize = 64 * 1024;

/// Follows a container's json-file log as it grows.
pub struct LogTail {
    path: PathBuf,
    pos: u64,
    partial: String,
    /// Bytes shown so far; past [`MAX_STEP_LOG`] the rest is dropped, as BuildKit clips.
    shown: usize,
}

/// The most of one step's output that is shown (BuildKit's default step log limit).
const MAX_STEP_LOG: usize = 2 << 20;

/// The step container's log file is rotated past this, so a step that writes without
/// end fills neither the disk nor, through the tail, the engine's memory.
pub const STEP_LOG_FILE_MAX: u64 = 64 << 20;

impl LogTail {
    pub fn new(path: PathBuf) -> LogTail {
        LogTail {
            path,
            pos: 0,
            partial: String::new(),
            shown: 0,
        }
    }

    fn show(&mut self, line: &str, log: &mut dyn FnMut(&str)) {
        if self.shown > MAX_STEP_LOG {
            return;
        }
        self.shown += line.len() + 1;
        if self.shown > MAX_STEP_LOG {
            log(&format!(
                "[output clipped, log limit {}MiB reached]",
                MAX_STEP_LOG >> 20
            ));
            return;
        }
        log(line);
    }

    pub fn read(&mut self, log: &mut dyn FnMut(&str)) {
        if self.shown > MAX_STEP_LOG {
            return;
        }
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return;
        };
        if f.metadata().is_ok_and(|m| m.len() < self.pos) {
            // Rotated under us: what was between is gone, so the log is clipped here.
            self.shown = MAX_STEP_LOG;
            self.show("", log);
            return;
        }
        if f.seek(std::io::SeekFrom::Start(self.pos)).is_err() {
            return;
        }
        let mut r = std::io::BufReader::new(f);
        let mut line = String::new();
        while let Ok(n) = r.read_line(&mut line) {
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            self.pos += n as u64;
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                self.partial.push_str(v["log"].as_str().unwrap_or_default());
                while let Some(i) = self.partial.find('\n') {
                    let l: String = self.partial.drain(..=i).collect();
                    self.show(l.trim_end_matches('\n'), log);
                }
                // Output that never ends a line is shown in pieces, not held whole.
                if self.partial.len() > MAX_LINE {
                    let l = std::mem::take(&mut self.partial);
                    self.show(&l, log);
                }
            }
            line.clear();
        }
    }
}
