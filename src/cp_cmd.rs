//! `cp`: files between a service container and the host, as tar streams through the
//! engine (directories, symlinks, modes; owners with `-a`).

use crate::args::CpArgs;
use crate::client::{connect, query_escape, runtime};
use crate::global::Global;
use crate::project::load_or_name;
use anyhow::{bail, Result};
use engine::api::ContainerSummary;
use std::process::ExitCode;

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
            let chunks = c
                .get_stream(&path)
                .await
                .map_err(|e| anyhow::anyhow!("Error response from daemon: {e}"))?;
            let to_stdout = a.dest == "-";
            let how = safefs::archive::Unpack {
                owners: a.archive,
                ..Default::default()
            };
            let dest = std::env::current_dir()?.join(&a.dest);
            tokio::task::spawn_blocking(move || -> Result<()> {
                let mut from = crate::tarstream::ChunkReader::new(chunks);
                if to_stdout {
                    std::io::copy(&mut from, &mut std::io::stdout().lock())?;
                    return Ok(());
                }
                // The archive is the container's to make: its entries are placed from the
                // destination's descriptor, none through a link.
                let root = std::fs::File::open("/")?;
                use std::os::unix::io::AsFd;
                safefs::archive::unpack_at(from, root.as_fd(), &dest, how)?;
                Ok(())
            })
            .await??;
        }
        Ok(ExitCode::SUCCESS)
    })
}
