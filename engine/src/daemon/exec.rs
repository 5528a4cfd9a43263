//! `exec` through the API: a process run in a running container (its namespaces, cgroup,
//! capabilities, seccomp, user, environment and working directory, by the runtime), with
//! its standard streams carried over the upgraded HTTP connection as `api::frames`: a
//! pty when a terminal is asked (resizes follow), pipes otherwise.

use super::{Ctr, Engine};
use crate::api::{frames, ExecRequest};
use std::os::unix::io::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An exec that cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("the container's spec is unreadable")]
    Unreadable,
    #[error("exec needs a command")]
    NoCommand,
    #[error("the container is not running")]
    NotRunning,
    #[error(transparent)]
    Process(#[from] runtime::process::ProcessError),
}

/// The process to run, from the container's own process settings.
pub fn process(ctr: &Ctr, req: &ExecRequest) -> Result<runtime::spec::Process, ExecError> {
    let spec: runtime::spec::ContainerSpec = std::fs::read(ctr.dir.join("config.json"))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .ok_or(ExecError::Unreadable)?;
    let mut p = spec.process;
    if req.cmd.is_empty() {
        return Err(ExecError::NoCommand);
    }
    p.args = req.cmd.clone();
    for kv in &req.env {
        let key = kv.split_once('=').map(|(k, _)| k).unwrap_or(kv);
        p.env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
        if kv.contains('=') {
            p.env.push(kv.clone());
        }
    }
    if let Some(u) = req.user.clone().filter(|u| !u.is_empty()) {
        p.user = u;
    }
    if let Some(w) = req.workdir.clone().filter(|w| !w.is_empty()) {
        p.cwd = w;
    }
    if req.privileged {
        p.capabilities = runtime::process::capabilities(&[], &[], true)?;
    }
    p.tty = req.tty;
    Ok(p)
}

/// A pty of the container's own devpts (through its init's root), so that the process
/// sees its terminal as `/dev/pts/N` inside the container, as with Docker. The peer is
/// opened with TIOCGPTPEER, never by a path the container could swap.
fn container_pty(init_pid: i32, ws: &nix::pty::Winsize) -> std::io::Result<(OwnedFd, OwnedFd)> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::io::FromRawFd;
    let root = std::fs::File::open(format!("/proc/{init_pid}/root"))?;
    // SAFETY: open_how is plain integers, for which all zeroes is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) as u64;
    // The path is the container's: resolved inside its root, whatever its links say.
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    let path = c"dev/pts/ptmx";
    // SAFETY: openat2 reads the path and one open_how; the result is checked and owned.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    } as i32;
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    // Only the pty multiplexer (character device 5:2) is acceptable.
    let meta = std::fs::File::from(master.try_clone()?).metadata()?;
    let rdev = meta.rdev();
    if !std::os::unix::fs::FileTypeExt::is_char_device(&meta.file_type())
        || libc::major(rdev) != 5
        || libc::minor(rdev) != 2
    {
        return Err(std::io::Error::other(
            "the container's /dev/pts/ptmx is not the pty multiplexer",
        ));
    }
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int; TIOCSWINSZ one winsize; TIOCGPTPEER returns a
    // new descriptor, checked and then owned.
    unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, ws);
        let fd = libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((master, OwnedFd::from_raw_fd(fd)))
    }
}

/// The caller's ends of a process's standard streams: where its input goes, where its
/// output comes from (with the frame kind), the process's own three, and the terminal's
/// master when there is one.
type Ends = (OwnedFd, Vec<(OwnedFd, u8)>, [Stdio; 3], Option<OwnedFd>);

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// Copies everything from `src` into frames of `kind` until its end.
async fn pump_out(mut src: tokio::fs::File, kind: u8, tx: tokio::sync::mpsc::Sender<(u8, Vec<u8>)>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match src.read(&mut buf).await {
            // EIO: a pty whose other side has closed.
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send((kind, buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        }
    }
}

impl Engine {
    /// Runs an exec on an upgraded connection `io` until the process ends.
    pub async fn exec_stream<IO>(self: Arc<Self>, ctr: Arc<Ctr>, req: ExecRequest, io: IO)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (mut rd, mut wr) = tokio::io::split(io);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(64);
        let writer = tokio::spawn(async move {
            while let Some((kind, data)) = rx.recv().await {
                if frames::write(&mut wr, kind, &data).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        let res = self.exec_run(&ctr, &req, &mut rd, tx.clone()).await;
        let code = match res {
            Ok(code) => code,
            Err((code, message)) => {
                let _ = tx.send((frames::ERROR, message.into_bytes())).await;
                code
            }
        };
        tracing::debug!("exec: sending the exit code {code}");
        let _ = tx.send((frames::EXIT, code.to_be_bytes().to_vec())).await;
        drop(tx);
        let _ = writer.await;
        tracing::debug!("exec: stream done");
    }

    async fn exec_run(
        self: &Arc<Self>,
        ctr: &Arc<Ctr>,
        req: &ExecRequest,
        rd: &mut (impl AsyncReadExt + Unpin),
        tx: tokio::sync::mpsc::Sender<(u8, Vec<u8>)>,
    ) -> Result<i32, (i32, String)> {
        let c = ctr.live().ok_or((1, "the container is not running".to_string()))?;
        let p = process(ctr, req).map_err(|e| (126, e.to_string()))?;
        let io = |e: std::io::Error| (126, e.to_string());
        // The caller's ends: where its input goes, where the output comes from.
        let (stdin_w, outputs, stdio, master): Ends = if req.tty {
            let ws = nix::pty::Winsize {
                ws_row: req.rows.max(1),
                ws_col: req.cols.max(1),
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            let (m, slave) = container_pty(c.pid, &ws).map_err(|e| (126, format!("opening a pty: {e}")))?;
            let stdio = [
                Stdio::from(slave.try_clone().map_err(io)?),
                Stdio::from(slave.try_clone().map_err(io)?),
                Stdio::from(slave),
            ];
            (
                m.try_clone().map_err(io)?,
                vec![(m.try_clone().map_err(io)?, frames::STDOUT)],
                stdio,
                Some(m),
            )
        } else {
            let (in_r, in_w) = pipe().map_err(io)?;
            let (out_r, out_w) = pipe().map_err(io)?;
            let (err_r, err_w) = pipe().map_err(io)?;
            (
                in_w,
                vec![(out_r, frames::STDOUT), (err_r, frames::STDERR)],
                [Stdio::from(in_r), Stdio::from(out_w), Stdio::from(err_w)],
                None,
            )
        };
        let me = self.clone();
        let run = tokio::task::spawn_blocking(move || me.runtime.exec_with(&c, &p, Some(stdio), None));
        let pumps: Vec<_> = outputs
            .into_iter()
            .map(|(fd, kind)| {
                tokio::spawn(pump_out(
                    tokio::fs::File::from_std(std::fs::File::from(fd)),
                    kind,
                    tx.clone(),
                ))
            })
            .collect();
        drop(tx);
        // Input and resizes until the process ends (or the client stops sending).
        let mut stdin = Some(tokio::fs::File::from_std(std::fs::File::from(stdin_w)));
        let input = async {
            while let Ok(Some((kind, data))) = frames::read(rd).await {
                match kind {
                    frames::STDIN => {
                        if let Some(w) = stdin.as_mut() {
                            if w.write_all(&data).await.is_err() || w.flush().await.is_err() {
                                stdin = None;
                            }
                        }
                    }
                    frames::STDIN_EOF => {
                        // A terminal ends input with ^D; a pipe by closing.
                        if req.tty {
                            if let Some(w) = stdin.as_mut() {
                                let _ = w.write_all(&[4]).await;
                                let _ = w.flush().await;
                            }
                        } else {
                            stdin = None;
                        }
                    }
                    frames::RESIZE => {
                        if let Some(m) = &master {
                            runtime::attach::resize(m.as_raw_fd(), &data);
                        }
                    }
                    _ => {}
                }
            }
            // The client is gone or done sending: keep waiting for the process.
            std::future::pending::<()>().await;
        };
        let code = tokio::select! {
            r = run => r,
            // `input` only ends by never ending; this arm is for the type checker.
            _ = input => return Err((1, "the exec stream ended".into())),
        };
        drop(master);
        tracing::debug!("exec: process ended: {code:?}");
        let code = match code {
            Ok(Ok(code)) => code,
            Ok(Err(runtime::RuntimeError::Start { exit_code, message })) => return Err((exit_code, message)),
            Ok(Err(e)) => return Err((126, e.to_string())),
            Err(e) => return Err((126, e.to_string())),
        };
        // The last output, unless something the process left behind holds it open.
        for p in pumps {
            let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
        }
        Ok(code)
    }

    /// `exec -d`: started and left to run.
    pub fn exec_detached(self: &Arc<Self>, ctr: &Arc<Ctr>, req: &ExecRequest) -> Result<(), ExecError> {
        let c = ctr.live().ok_or(ExecError::NotRunning)?;
        let p = process(ctr, req)?;
        let me = self.clone();
        let name = ctr.rec().name;
        tokio::task::spawn_blocking(move || {
            if let Err(e) = me.runtime.exec_with(&c, &p, None, None) {
                tracing::warn!("exec -d in {name}: {e}");
            }
        });
        Ok(())
    }
}
