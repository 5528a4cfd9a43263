//! What a watch rule does to a service's running containers: files written straight
//! into each container's filesystem by the engine, from a tar stream made as it is sent
//! (deletions are whiteout entries in the same stream), a restart, or a command.

use super::rules::{Exec, Rule};
use crate::client::Client;
use anyhow::{bail, Result};
use engine::api::{ActionRequest, ContainerSummary, ExecRequest, StreamMsg};
use hyper::Method;
use std::path::{Path, PathBuf};

/// The running containers of a service.
pub async fn running(c: &Client, project: &str, service: &str) -> Result<Vec<ContainerSummary>> {
    let all: Vec<ContainerSummary> = c.get(&format!("/v1/containers?project={project}")).await?;
    Ok(all
        .into_iter()
        .filter(|s| s.service == service && s.state == "running")
        .collect())
}

/// Every path under `root` that `rule` wants (for an initial sync or a new directory),
/// not descending into directories it skips.
pub fn walk(rule: &Rule, root: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && rule.skips_dir(&p) {
            continue;
        }
        if rule.wants(&p).is_some() {
            out.push(p.clone());
        }
        if is_dir {
            walk(rule, &p, out);
        }
    }
}

/// The tar stream of one rule's changes, relative to where it is unpacked: `changed`
/// are host paths under the rule's path; each present one is sent as it is now, each
/// missing one as a whiteout. Returns the container directory to unpack at.
fn stream_for(rule: &Rule, changed: Vec<PathBuf>) -> (String, crate::tarstream::Stream) {
    let target = rule.target.clone().unwrap_or_default();
    let single = rule.path.is_file() || !rule.path.exists() && changed.iter().all(|p| *p == rule.path);
    // A rule on one file: its target is the file, unpacked in the target's directory.
    let (dest, base) = if single {
        let t = Path::new(&target);
        let parent = t
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into());
        let name = t.file_name().map(PathBuf::from).unwrap_or_default();
        (parent, Some(name))
    } else {
        (target, None)
    };
    let rule_path = rule.path.clone();
    let stream = crate::tarstream::spawn(move |b| {
        b.follow_symlinks(false);
        for p in changed {
            let rel = match &base {
                Some(name) => name.clone(),
                None => match p.strip_prefix(&rule_path) {
                    Ok(r) if !r.as_os_str().is_empty() => r.to_path_buf(),
                    _ => continue,
                },
            };
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {
                    let mut h = tar::Header::new_gnu();
                    h.set_metadata(&m);
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, &rel, std::io::empty())?;
                }
                Ok(_) => match b.append_path_with_name(&p, &rel) {
                    Ok(()) => {}
                    // Gone since the event: it is a deletion after all.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => whiteout(b, &rel)?,
                    Err(e) => return Err(e),
                },
                Err(_) => whiteout(b, &rel)?,
            }
        }
        Ok(())
    });
    (dest, stream)
}

fn whiteout(b: &mut tar::Builder<crate::tarstream::ChunkWriter>, rel: &Path) -> std::io::Result<()> {
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let wh = rel.with_file_name(format!("{}{name}", safefs::archive::WHITEOUT));
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, wh, std::io::empty())
}

/// Sends one rule's changes into every running container of its service.
pub async fn sync(c: &Client, project: &str, rule: &Rule, changed: &[PathBuf]) -> Result<()> {
    let containers = running(c, project, &rule.service).await?;
    if containers.is_empty() {
        bail!("service {:?} has no running container to sync into", rule.service);
    }
    for ctr in containers {
        let (dest, (chunks, worker)) = stream_for(rule, changed.to_vec());
        let path = format!(
            "/v1/containers/{}/archive?path={}&whiteouts=1&mkdir=1",
            ctr.id,
            crate::client::query_escape(&dest)
        );
        let sent = c.put_stream(&path, chunks).await;
        let made = crate::tarstream::finish(worker).await;
        sent.map_err(|e| anyhow::anyhow!("syncing into {}: {e}", ctr.name))?;
        made?;
    }
    Ok(())
}

/// Restarts a service's containers.
pub async fn restart(c: &Client, project: &str, model: &serde_json::Value, service: &str) -> Result<()> {
    let req = ActionRequest {
        services: vec![service.to_string()],
        project: Some(model.clone()),
        ..Default::default()
    };
    let mut lines = c
        .stream(Method::POST, &format!("/v1/projects/{project}/restart"), Some(&req))
        .await?;
    while let Some(m) = lines.next::<StreamMsg>().await? {
        match m {
            StreamMsg::Error { message, .. } => bail!("{message}"),
            StreamMsg::Done { exit_code } if exit_code != 0 => bail!("restart failed ({exit_code})"),
            StreamMsg::Done { .. } => return Ok(()),
            _ => {}
        }
    }
    Ok(())
}

/// `rebuild`: the service's image built again, and its containers recreated if the
/// image changed, the project's other containers untouched (`up --build --no-deps`).
pub async fn rebuild(c: &Client, project: &str, model: &serde_json::Value, service: &str) -> Result<()> {
    let req = engine::api::UpRequest {
        project: model.clone(),
        services: vec![service.to_string()],
        no_deps: true,
        build: true,
        ..Default::default()
    };
    let lines = c
        .stream(Method::POST, &format!("/v1/projects/{project}/up"), Some(&req))
        .await?;
    match crate::progress::follow_operation(lines).await? {
        0 => Ok(()),
        code => bail!("up --build failed ({code})"),
    }
}

/// Runs `sync+exec`'s command in each running container of the service; its output is
/// passed through.
pub async fn exec(c: &Client, project: &str, service: &str, e: &Exec) -> Result<()> {
    for ctr in running(c, project, service).await? {
        let req = ExecRequest {
            cmd: e.command.clone(),
            env: e.env.clone(),
            user: e.user.clone(),
            workdir: e.working_dir.clone(),
            tty: false,
            privileged: e.privileged,
            detach: false,
            rows: 0,
            cols: 0,
        };
        let io = c.upgrade(&format!("/v1/containers/{}/exec", ctr.id), &req).await?;
        let code = match crate::session::pump(io, crate::session::Opts::default()).await? {
            crate::session::End::Exited(code) => code,
            crate::session::End::Detached => 0,
        };
        if code != 0 {
            bail!("{:?} in {} exited with {code}", e.command.join(" "), ctr.name);
        }
    }
    Ok(())
}
