//! Reading a container's json-file logs back (rotated files oldest first), with
//! `--tail`, `--since`, `--until`, and `--follow` (polling the file, following it across
//! rotations, ending when the container has stopped for good).

use super::state::State;
use super::Ctr;
use crate::api::LogLine;
use runtime::logs::LOG_FILE;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Seek};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct Query {
    pub follow: bool,
    pub tail: Option<usize>,
    /// RFC 3339 with nine-digit nanoseconds (log stamps compare as strings).
    pub since: Option<String>,
    pub until: Option<String>,
}

#[derive(serde::Deserialize)]
struct Raw {
    log: String,
    stream: String,
    time: String,
}

fn parse(line: &str, ctr: &Ctr, q: &Query) -> Option<LogLine> {
    let raw: Raw = serde_json::from_str(line).ok()?;
    if q.since.as_ref().is_some_and(|s| raw.time < *s) || q.until.as_ref().is_some_and(|u| raw.time > *u) {
        return None;
    }
    let rec = ctr.rec();
    Some(LogLine {
        container: rec.name,
        service: rec.service,
        number: rec.number,
        stream: raw.stream,
        time: raw.time,
        log: raw.log,
    })
}

/// Streams the logs to `send` (which returns false once nobody listens). Blocking: run
/// it on a blocking thread.
pub fn stream(ctr: Arc<Ctr>, q: Query, tx: tokio::sync::mpsc::Sender<LogLine>) {
    let send = |l: LogLine| tx.blocking_send(l).is_ok();
    let dir = ctr.dir.clone();
    let mut files: Vec<std::path::PathBuf> = (1..100)
        .map(|i| dir.join(format!("{LOG_FILE}.{i}")))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    let current = dir.join(LOG_FILE);
    let mut lines: VecDeque<LogLine> = VecDeque::new();
    let keep = q.tail.unwrap_or(usize::MAX);
    let push = |l: LogLine, lines: &mut VecDeque<LogLine>| {
        if keep == 0 {
            return;
        }
        if lines.len() == keep {
            lines.pop_front();
        }
        lines.push_back(l);
    };
    for f in &files {
        if let Ok(file) = std::fs::File::open(f) {
            for line in BufReader::new(file).lines().map_while(Result::ok) {
                if let Some(l) = parse(&line, &ctr, &q) {
                    push(l, &mut lines);
                }
            }
        }
    }
    let mut file = std::fs::File::open(&current).ok();
    let mut pending = String::new();
    if let Some(f) = file.as_mut() {
        let _ = f.read_to_string(&mut pending);
        let complete = pending.rfind('\n').map(|i| i + 1).unwrap_or(0);
        for line in pending[..complete].lines() {
            if let Some(l) = parse(line, &ctr, &q) {
                push(l, &mut lines);
            }
        }
        pending.drain(..complete);
    }
    for l in lines {
        if !send(l) {
            return;
        }
    }
    if !q.follow {
        return;
    }
    let inode = |p: &Path| std::fs::metadata(p).map(|m| m.ino()).ok();
    let mut ino = file.as_ref().and_then(|f| f.metadata().ok()).map(|m| m.ino());
    loop {
        let mut more = String::new();
        if let Some(f) = file.as_mut() {
            let _ = f.read_to_string(&mut more);
        }
        pending.push_str(&more);
        let complete = pending.rfind('\n').map(|i| i + 1).unwrap_or(0);
        for line in pending[..complete].lines() {
            if let Some(l) = parse(line, &ctr, &q) {
                if !send(l) {
                    return;
                }
            }
        }
        pending.drain(..complete);
        if more.is_empty() {
            // Rotated (or created): continue with the new file from its start.
            let now = inode(&current);
            if now.is_some() && now != ino {
                file = std::fs::File::open(&current).ok();
                if let Some(f) = file.as_mut() {
                    let _ = f.seek(std::io::SeekFrom::Start(0));
                }
                ino = now;
                continue;
            }
            let st = ctr.state();
            let rec = ctr.rec();
            let ended = matches!(st, State::Exited | State::Created)
                && !super::supervise::policy(&rec.model).is_ok_and(|p| super::supervise::should_restart(&p, &rec));
            if !ctr.dir.exists() || ended || tx.is_closed() {
                return;
            }
            // Keep-alive: a closed client is noticed even when the container is quiet.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
