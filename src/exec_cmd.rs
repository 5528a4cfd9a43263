//! `exec` and `cp`. `exec`: a command in a running service container, as `docker compose exec` runs it:
//! a terminal when standard input is one (raw mode, window size, resizes followed),
//! `-T` for plain streams, `-d` to leave it running; the command's exit code is ours.

use crate::cli::{CpArgs, ExecArgs, Global};
use crate::client::connect;
use crate::lifecycle::{load_or_name, runtime};
use crate::session::{pump, term_size, End, Opts, RawMode};
use anyhow::{bail, Result};
use engine::api::{ContainerSummary, ExecRequest};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

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
        let opts = Opts {
            tty,
            input: a.interactive,
            detach_keys: None,
        };
        match pump(io, opts).await? {
            End::Exited(code) => Ok(code),
            End::Detached => Ok(0),
        }
    });
    // Standard input may still be read by a blocking thread: leave without waiting for it.
    rt.shutdown_background();
    let code = code?;
    let _ = std::io::stdout().flush();
    std::process::exit(code.clamp(0, 255));
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
                // The archive is the container's to make: its entries are placed from the
                // destination's descriptor, none through a link.
                let dest = std::env::current_dir()?.join(&a.dest);
                let root = std::fs::File::open("/")?;
                use std::os::unix::io::AsFd;
                engine::daemon::archive::unpack_at(&data[..], root.as_fd(), &dest, how).map_err(anyhow::Error::msg)?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
