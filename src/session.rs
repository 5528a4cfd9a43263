//! An interactive stream to a process in a container (`exec`, `attach`, `run`): the
//! local terminal in raw mode while it lasts, standard input sent as it comes (watching
//! for the detach keys), window resizes followed, output written as it arrives, and the
//! process's exit code at the end. Both sides speak `engine::api::frames`.

use anyhow::{bail, Result};
use engine::api::frames;
use std::io::Write;
use std::os::unix::io::AsFd;
use tokio::io::AsyncReadExt;

/// The terminal's size (rows, columns), if standard output or input is one.
pub fn term_size() -> Option<(u16, u16)> {
    for fd in [1, 0] {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize into `ws`.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0 {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

/// Standard input in raw mode while it lives; the old settings come back on drop.
pub struct RawMode(nix::sys::termios::Termios);

impl RawMode {
    pub fn enable() -> Result<RawMode> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let old = tcgetattr(stdin.as_fd())?;
        let mut raw = old.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)?;
        Ok(RawMode(old))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let stdin = std::io::stdin();
        let _ = nix::sys::termios::tcsetattr(stdin.as_fd(), nix::sys::termios::SetArg::TCSANOW, &self.0);
    }
}

/// Docker's default detach keys.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// Docker's `--detach-keys`: comma-separated keys, each a character or `ctrl-X` (X one
/// of `a`-`z`, `@`, `[`, `\`, `]`, `^`, `_`).
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>> {
    let bad = || anyhow::anyhow!("invalid detach keys ({s}) provided");
    let mut keys = Vec::new();
    for k in s.split(',') {
        let k = k.trim();
        if let Some(c) = k.strip_prefix("ctrl-") {
            let c = c.as_bytes();
            if c.len() != 1 {
                return Err(bad());
            }
            let c = c[0].to_ascii_lowercase();
            keys.push(match c {
                b'a'..=b'z' => c - b'a' + 1,
                b'@' => 0,
                b'[' => 27,
                b'\\' => 28,
                b']' => 29,
                b'^' => 30,
                b'_' => 31,
                _ => return Err(bad()),
            });
        } else if k.len() == 1 {
            keys.push(k.as_bytes()[0]);
        } else {
            return Err(bad());
        }
    }
    if keys.is_empty() {
        return Err(bad());
    }
    Ok(keys)
}

/// Watches input for the detach sequence. The keys of a sequence being typed are held
/// back; they go on when the next key breaks it, and never when it completes.
#[derive(Debug, Clone)]
pub struct DetachScanner {
    keys: Vec<u8>,
    held: usize,
}

impl DetachScanner {
    pub fn new(keys: Vec<u8>) -> DetachScanner {
        DetachScanner { keys, held: 0 }
    }

    /// The bytes to send on, and whether the sequence was completed (anything after it
    /// is dropped, as the session ends).
    pub fn feed(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(data.len());
        for &b in data {
            if b == self.keys[self.held] {
                self.held += 1;
                if self.held == self.keys.len() {
                    return (out, true);
                }
                continue;
            }
            out.extend_from_slice(&self.keys[..self.held]);
            self.held = 0;
            if b == self.keys[0] {
                self.held = 1;
                if self.keys.len() == 1 {
                    return (out, true);
                }
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Opts {
    /// The remote side is a terminal: resizes are sent.
    pub tty: bool,
    /// Standard input is sent (otherwise its end is, at once).
    pub input: bool,
    /// Ending the session from the keyboard.
    pub detach_keys: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum End {
    Exited(i32),
    Detached,
}

/// Runs the session until the process ends (its exit code) or the detach keys are typed.
pub async fn pump(io: hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>, opts: Opts) -> Result<End> {
    let (mut rd, mut wr) = tokio::io::split(io);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(64);
    tokio::spawn(async move {
        while let Some((kind, data)) = rx.recv().await {
            if frames::write(&mut wr, kind, &data).await.is_err() {
                break;
            }
        }
    });
    let (detach_tx, detach_rx) = tokio::sync::oneshot::channel::<()>();
    // Pending for ever when input ends without the keys (the sender dropped).
    let mut detached = Box::pin(async move {
        if detach_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
    });
    let input = tx.clone();
    let (interactive, keys) = (opts.input, opts.detach_keys.clone());
    tokio::spawn(async move {
        if !interactive {
            let _ = input.send((frames::STDIN_EOF, Vec::new())).await;
            return;
        }
        let mut scanner = keys.map(DetachScanner::new);
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 8192];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = input.send((frames::STDIN_EOF, Vec::new())).await;
                    break;
                }
                Ok(n) => {
                    let (data, done) = match scanner.as_mut() {
                        Some(s) => s.feed(&buf[..n]),
                        None => (buf[..n].to_vec(), false),
                    };
                    if !data.is_empty() && input.send((frames::STDIN, data)).await.is_err() {
                        break;
                    }
                    if done {
                        let _ = detach_tx.send(());
                        break;
                    }
                }
            }
        }
    });
    if opts.tty {
        let resize = tx.clone();
        tokio::spawn(async move {
            let Ok(mut winch) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) else {
                return;
            };
            // The size at the start too: the process may have begun with another.
            loop {
                if let Some((r, c)) = term_size() {
                    let mut p = r.to_be_bytes().to_vec();
                    p.extend_from_slice(&c.to_be_bytes());
                    if resize.send((frames::RESIZE, p)).await.is_err() {
                        break;
                    }
                }
                if winch.recv().await.is_none() {
                    break;
                }
            }
        });
    }
    drop(tx);
    loop {
        let frame = tokio::select! {
            f = frames::read(&mut rd) => f?,
            () = &mut detached => return Ok(End::Detached),
        };
        let Some((kind, data)) = frame else {
            bail!("the engine closed the stream before the process ended");
        };
        match kind {
            frames::STDOUT => {
                let mut o = std::io::stdout().lock();
                o.write_all(&data)?;
                o.flush()?;
            }
            frames::STDERR => {
                let mut e = std::io::stderr().lock();
                e.write_all(&data)?;
                e.flush()?;
            }
            frames::ERROR => {
                let msg = String::from_utf8_lossy(&data);
                eprintln!("{}{msg}", if opts.tty { "\r" } else { "" });
            }
            frames::EXIT if data.len() == 4 => {
                return Ok(End::Exited(i32::from_be_bytes([data[0], data[1], data[2], data[3]])))
            }
            _ => {}
        }
    }
}

/// `--sig-proxy`: SIGINT, SIGTERM and SIGHUP sent to the container instead of ending
/// this process, for as long as the returned task runs.
pub fn proxy_signals(container: String) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let kinds = [
            (SignalKind::interrupt(), "SIGINT"),
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::hangup(), "SIGHUP"),
        ];
        let mut streams = Vec::new();
        for (k, name) in kinds {
            if let Ok(s) = signal(k) {
                streams.push((s, name));
            }
        }
        loop {
            let recv = streams
                .iter_mut()
                .map(|(s, name)| Box::pin(async move { s.recv().await.map(|_| *name) }));
            let (got, _, _) = futures_util::future::select_all(recv).await;
            let Some(name) = got else { return };
            if let Ok(c) = crate::client::connect().await {
                let _ = c
                    .post_json::<serde_json::Value>(
                        &format!("/v1/containers/{container}/kill?signal={name}"),
                        &serde_json::json!({}),
                    )
                    .await;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_as_docker_spells_them() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys("ctrl-@,a,ctrl-\\").unwrap(), vec![0, b'a', 28]);
        for bad in ["", "ctrl-", "ctrl-1", "ab", "ctrl-p,,ctrl-q"] {
            assert!(parse_detach_keys(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_detach_sequence_is_held_back_then_released_or_swallowed() {
        let mut s = DetachScanner::new(vec![16, 17]);
        assert_eq!(s.feed(b"ab\x10"), (b"ab".to_vec(), false));
        // Broken by another key: the held key goes on with it.
        assert_eq!(s.feed(b"c"), (b"\x10c".to_vec(), false));
        // The first key repeated: one goes on, the other is held.
        assert_eq!(s.feed(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(s.feed(b"\x11rest"), (Vec::new(), true));
        let mut one = DetachScanner::new(vec![3]);
        assert_eq!(one.feed(b"xy\x03z"), (b"xy".to_vec(), true));
    }
}
