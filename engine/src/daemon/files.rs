//! Secrets and configs as files in the container (from `file`, `environment` or
//! `content`, with `target`, `uid`, `gid`, `mode`), `volumes_from`, and the
//! `post_start`/`pre_stop` hooks run inside a running container.

use super::{Ctr, Engine};
use compose::model::Service;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A secret or config as a file in the container.
#[derive(Debug, Clone, PartialEq)]
pub struct FileMount {
    pub target: String,
    pub content: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// What can go wrong with a container's secrets, configs, `volumes_from` or hooks.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("service refers to undefined {kind} {source_name}: invalid compose project")]
    Undefined { kind: &'static str, source_name: String },
    #[error("{kind}s.{source_name}: external {kind}s are not implemented yet")]
    External { kind: &'static str, source_name: String },
    #[error("{kind}s.{source_name}: reading {file}: {message}")]
    Read {
        kind: &'static str,
        source_name: String,
        file: String,
        message: String,
    },
    #[error("{kind}s.{source_name}: its environment variable was not sent")]
    NotSent { kind: &'static str, source_name: String },
    #[error("{kind}s.{source_name}: needs file, environment or content")]
    NoContent { kind: &'static str, source_name: String },
    #[error("{kind}s.{source_name}: invalid {what} {value:?}")]
    InvalidId {
        kind: &'static str,
        source_name: String,
        what: &'static str,
        value: String,
    },
    #[error("{}: {source}", .path.display())]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("writing {} for {target}: {source}", .path.display())]
    WriteFor {
        path: std::path::PathBuf,
        target: String,
        source: std::io::Error,
    },
    #[error("volumes_from {0:?}: no container of {1}")]
    NoSource(String, String),
    #[error("volumes_from {0:?}: {1} has not been started yet")]
    NotStarted(String, String),
    #[error("the container is not running")]
    NotRunning,
    #[error("the container's spec is unreadable")]
    Unreadable,
    #[error("hook has no command")]
    NoCommand,
    #[error("exited with code {0}")]
    Exited(i32),
    #[error(transparent)]
    Process(#[from] runtime::process::ProcessError),
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    #[error("{0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The service's secrets and configs from the project's definitions: `file`,
/// `environment` (values sent by the CLI as `secret:NAME`/`config:NAME`) or `content`.
pub fn file_mounts(
    project: &compose::Project,
    svc: &Service,
    values: &BTreeMap<String, String>,
) -> Result<Vec<FileMount>, FilesError> {
    let mut out = Vec::new();
    let secrets = svc.secrets.iter().flatten().map(|r| ("secret", r));
    let configs = svc.configs.iter().flatten().map(|r| ("config", r));
    for (kind, r) in secrets.chain(configs) {
        let source = r.source.clone().unwrap_or_default();
        let (file, env, content, external) = if kind == "secret" {
            let d = project.secrets.get(&source).ok_or_else(|| FilesError::Undefined {
                kind: "secret",
                source_name: source.clone(),
            })?;
            (d.file.clone(), d.environment.clone(), None, d.external.clone())
        } else {
            let d = project.configs.get(&source).ok_or_else(|| FilesError::Undefined {
                kind: "config",
                source_name: source.clone(),
            })?;
            (
                d.file.clone(),
                d.environment.clone(),
                d.content.clone(),
                d.external.clone(),
            )
        };
        if external.is_some_and(|e| e.is_external()) {
            return Err(FilesError::External {
                kind,
                source_name: source,
            });
        }
        let content = match (file, env, content) {
            (Some(f), _, _) => compose::read::bytes(std::path::Path::new(&f)).map_err(|e| FilesError::Read {
                kind,
                source_name: source.clone(),
                message: e.to_string(),
                file: f.clone(),
            })?,
            (_, Some(_), _) => values
                .get(&format!("{kind}:{source}"))
                .ok_or_else(|| FilesError::NotSent {
                    kind,
                    source_name: source.clone(),
                })?
                .clone()
                .into_bytes(),
            (_, _, Some(c)) => c.into_bytes(),
            _ => {
                return Err(FilesError::NoContent {
                    kind,
                    source_name: source,
                })
            }
        };
        let target = match (kind, r.target.clone()) {
            (_, Some(t)) if t.starts_with('/') => t,
            ("secret", t) => format!("/run/secrets/{}", t.unwrap_or_else(|| source.clone())),
            (_, t) => format!("/{}", t.unwrap_or_else(|| source.clone())),
        };
        let id = |v: &Option<String>, what: &'static str| -> Result<u32, FilesError> {
            v.as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse().map_err(|_| FilesError::InvalidId {
                        kind,
                        source_name: source.clone(),
                        what,
                        value: s.to_string(),
                    })
                })
                .transpose()
                .map(|o| o.unwrap_or(0))
        };
        out.push(FileMount {
            target,
            content,
            uid: id(&r.uid, "uid")?,
            gid: id(&r.gid, "gid")?,
            mode: r.mode.as_ref().map(|m| m.0).unwrap_or(0o444),
        });
    }
    Ok(out)
}

/// Writes secrets and configs into `<dir>/files/`, owned and moded as asked.
pub(super) fn write_files(
    dir: &std::path::Path,
    files: &[FileMount],
) -> Result<Vec<(std::path::PathBuf, String)>, FilesError> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    if files.is_empty() {
        return Ok(out);
    }
    let fdir = dir.join("files");
    std::fs::create_dir_all(&fdir).map_err(|source| FilesError::Write {
        path: fdir.clone(),
        source,
    })?;
    for (i, f) in files.iter().enumerate() {
        let p = fdir.join(i.to_string());
        let res = std::fs::write(&p, &f.content)
            .and_then(|_| std::fs::set_permissions(&p, std::fs::Permissions::from_mode(f.mode & 0o7777)))
            .and_then(|_| std::os::unix::fs::chown(&p, Some(f.uid), Some(f.gid)));
        res.map_err(|source| FilesError::WriteFor {
            path: p.clone(),
            target: f.target.clone(),
            source,
        })?;
        out.push((p, f.target.clone()));
    }
    Ok(out)
}

impl Engine {
    /// `volumes_from`: the bind and volume mounts of another service's (or container's)
    /// container, read-only when asked.
    pub(super) fn volumes_from(&self, project: &str, svc: &Service) -> Result<Vec<runtime::spec::Mount>, FilesError> {
        let mut out = Vec::new();
        for v in svc.volumes_from.iter().flatten() {
            let (target, mode) = match v.rsplit_once(':') {
                Some((t, m)) if m == "ro" || m == "rw" => (t, m),
                _ => (v.as_str(), "rw"),
            };
            let (by_name, target) = match target.strip_prefix("container:") {
                Some(c) => (true, c),
                None => (false, target.strip_prefix("service:").unwrap_or(target)),
            };
            let src = self
                .containers()
                .into_iter()
                .find(|c| {
                    let r = c.rec();
                    if by_name {
                        r.name == target
                    } else {
                        r.project == project && r.service == target
                    }
                })
                .ok_or_else(|| FilesError::NoSource(v.clone(), target.to_string()))?;
            let spec: runtime::spec::ContainerSpec = std::fs::read(src.dir.join("config.json"))
                .ok()
                .and_then(|d| serde_json::from_slice(&d).ok())
                .ok_or_else(|| FilesError::NotStarted(v.clone(), target.to_string()))?;
            for mut m in spec.mounts.into_iter().filter(|m| m.kind == "bind") {
                if mode == "ro" {
                    m.read_only = true;
                }
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Runs a `post_start`/`pre_stop` hook in the running container; its exit code must be 0.
    pub(super) async fn run_hook(
        self: &Arc<Self>,
        ctr: &Arc<Ctr>,
        hook: &compose::model::Hook,
    ) -> Result<(), FilesError> {
        let c = ctr.live().ok_or(FilesError::NotRunning)?;
        let spec: runtime::spec::ContainerSpec = std::fs::read(ctr.dir.join("config.json"))
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .ok_or(FilesError::Unreadable)?;
        let mut p = spec.process.clone();
        p.args = hook.command.clone().unwrap_or_default();
        if p.args.is_empty() {
            return Err(FilesError::NoCommand);
        }
        if let Some(u) = &hook.user {
            p.user = u.clone();
        }
        if let Some(w) = &hook.working_dir {
            p.cwd = w.clone();
        }
        for (k, v) in hook.environment.iter().flatten() {
            p.env.retain(|e| !e.starts_with(&format!("{k}=")));
            if let Some(v) = v {
                p.env.push(format!("{k}={v}"));
            }
        }
        if hook.privileged == Some(true) {
            p.capabilities = runtime::process::capabilities(&[], &[], true)?;
        }
        p.tty = false;
        let me = self.clone();
        let code =
            tokio::task::spawn_blocking(move || me.runtime.exec_with(&c, &p, None, Some(Duration::from_secs(60))))
                .await??;
        if code != 0 {
            return Err(FilesError::Exited(code));
        }
        Ok(())
    }
}
