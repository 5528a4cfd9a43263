//! `exec` and `cp`. `exec`: a command in a running service container, as `docker compose exec` runs it:
//! a terminal when standard input is one (raw mode, window size, resizes followed),
//! `-T` for plain streams, `-d` to leave it running; the command's exit code is ours.

use crate::cli::{CpArgs, ExecArgs, Global};
use crate::client::connect;
use crate::lifecycle::{load_or_name, runtime};
use anyhow::{bail, Result};
use engine::api::{frames, ContainerSummary, ExecRequest};
use std::io::{IsTerminal, Write};
use std::os::unix::io::AsFd;
use std::process::ExitCode;
use tokio::io::AsyncReadExt;

/// The terminal's size (rows, columns), if standard output or input is one.
fn term_size() -> Option<(u16, u16)> {
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
struct RawMode(nix::sys::termios::Termios);

impl RawMode {
    fn enable() -> Result<RawMode> {
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

pub fn exec(g: &Global, a: ExecArgs) -> Result<ExitCode> {
    let (name, _) = load_or_name(g, std::slice::from_ref(&a.service))?;
    let tty = !a.no_tty && !a.detach && std::io::stdin().is_terminal();
    let rt = runtime()?;
    let code = rt.block_on(async {
        let c = connect().await?;
        let all: Vec<ContainerSummary> = c.get(&format!("/v1/containers?project={name}&all=1")).await?;
        let mine: Vec<&ContainerSummary> = all.iter().filter(|s| s.service == a.service).collect();
        let Some(target) = mine.iter().find(|s| s.number == a.index) else {
            if mine.is_empty() {
                bail!("service \"{}\" is not running", a.service);
            }
            bail!("service \"{}\" is not running container #{}", a.service, a.index);
        };
        if target.state != "running" {
            bail!("service \"{}\" is not running", a.service);
        }
        let (rows, cols) = if tty { term_size().unwrap_or((24, 80)) } else { (0, 0) };
        let req = ExecRequest {
            cmd: a.command.clone(),
            env: a.env.clone(),
            user: a.user.clone(),
            workdir: a.workdir.clone(),
            tty,
            privileged: a.privileged,
            detach: a.detach,
            rows,
            cols,
        };
        let path = format!("/v1/containers/{}/exec", target.id);
        if a.detach {
            c.post_json::<serde_json::Value>(&path, &req).await?;
            return Ok(0);
        }
        let io = c.upgrade(&path, &req).await?;
        let _raw = if tty { Some(RawMode::enable()?) } else { None };
        pump(io, tty, a.interactive).await
    });
    // Standard input may still be read by a blocking thread: leave without waiting for it.
    rt.shutdown_background();
    let code = code?;
    let _ = std::io::stdout().flush();
    std::process::exit(code.clamp(0, 255));
}

pub(crate) async fn pump(
    io: hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>,
    tty: bool,
    interactive: bool,
) -> Result<i32> {
    let (mut rd, mut wr) = tokio::io::split(io);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(64);
    tokio::spawn(async move {
        while let Some((kind, data)) = rx.recv().await {
            if frames::write(&mut wr, kind, &data).await.is_err() {
                break;
            }
        }
    });
    let input = tx.clone();
    tokio::spawn(async move {
        if !interactive {
            let _ = input.send((frames::STDIN_EOF, Vec::new())).await;
            return;
        }
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 8192];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = input.send((frames::STDIN_EOF, Vec::new())).await;
                    break;
                }
                Ok(n) => {
                    if input.send((frames::STDIN, buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    if tty {
        let resize = tx.clone();
        tokio::spawn(async move {
            let Ok(mut winch) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) else {
                return;
            };
            while winch.recv().await.is_some() {
                if let Some((r, c)) = term_size() {
                    let mut p = r.to_be_bytes().to_vec();
                    p.extend_from_slice(&c.to_be_bytes());
                    if resize.send((frames::RESIZE, p)).await.is_err() {
                        break;
                    }
                }
            }
        });
    }
    drop(tx);
    loop {
        let Some((kind, data)) = frames::read(&mut rd).await? else {
            bail!("the engine closed the exec stream before the command ended");
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
                eprint!("{}{msg}\n", if tty { "\r" } else { "" });
            }
            frames::EXIT if data.len() == 4 => return Ok(i32::from_be_bytes([data[0], data[1], data[2], data[3]])),
            _ => {}
        }
    }
}

/// A container path as a query value: percent-encoded but for `/._-` and alphanumerics.
pub(crate) fn query_escape(p: &str) -> String {
    p.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"/._-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `SERVICE:PATH` (a path inside a service's container) or a local path.
fn split_remote(s: &str) -> Option<(&str, &str)> {
    let (svc, path) = s.split_once(':')?;
    // `./a:b` and `/a:b` are local paths with a colon.
    (!svc.is_empty() && !svc.contains('/') && !svc.starts_with('.')).then_some((svc, path))
}

/// `cp`: files between a service container and the host, as tar streams through the
/// engine (directories, symlinks, modes; owners with `-a`).
pub fn cp(g: &Global, a: CpArgs) -> Result<ExitCode> {
    let (remote_src, remote_dest) = (split_remote(&a.src), split_remote(&a.dest));
    let (service, into) = match (remote_src, remote_dest) {
        (Some((s, _)), None) => (s, false),
        (None, Some((s, _))) => (s, true),
        (Some(_), Some(_)) => bail!("copying between services is not supported"),
        (None, None) => bail!("must specify at least one container source"),
    };
    let (name, _) = load_or_name(g, &[service.to_string()])?;
    runtime()?.block_on(async {
        let c = connect().await?;
        let all: Vec<ContainerSummary> = c.get(&format!("/v1/containers?project={name}&all=1")).await?;
        let Some(target) = all.iter().find(|s| s.service == service && s.number == a.index) else {
            bail!("service \"{service}\" is not running container #{}", a.index);
        };
        if into {
            let dest = remote_dest.map(|d| d.1).unwrap_or_default();
            let (chunks, worker) = if a.src == "-" {
                crate::tarstream::spawn_copy(std::io::stdin())
            } else {
                let src = std::path::PathBuf::from(&a.src);
                let meta = if a.follow_link {
                    std::fs::metadata(&src)
                } else {
                    std::fs::symlink_metadata(&src)
                };
                let meta = meta.map_err(|e| anyhow::anyhow!("{}: {e}", a.src))?;
                let follow = a.follow_link;
                crate::tarstream::spawn(move |b| {
                    b.follow_symlinks(follow);
                    let base = src
                        .file_name()
                        .map(std::path::PathBuf::from)
                        .unwrap_or_else(|| ".".into());
                    if meta.is_dir() {
                        b.append_dir_all(&base, &src)
                    } else {
                        b.append_path_with_name(&src, &base)
                    }
                })
            };
            let path = format!(
                "/v1/containers/{}/archive?path={}&owners={}",
                target.id,
                query_escape(dest),
                a.archive as u8
            );
            let sent = c.put_stream(&path, chunks).await;
            let made = crate::tarstream::finish(worker).await;
            sent?;
            made?;
        } else {
            let src = remote_src.map(|s| s.1).unwrap_or_default();
            let path = format!(
                "/v1/containers/{}/archive?path={}&follow={}",
                target.id,
                query_escape(src),
                a.follow_link as u8
            );
            let data = c
                .get_bytes(&path)
                .await
                .map_err(|e| anyhow::anyhow!("Error response from daemon: {e}"))?;
            if a.dest == "-" {
                std::io::stdout().write_all(&data)?;
            } else {
                let how = engine::daemon::archive::Unpack {
                    owners: a.archive,
                    ..Default::default()
                };
                engine::daemon::archive::unpack_at(&data[..], std::path::Path::new(&a.dest), how)
                    .map_err(anyhow::Error::msg)?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
