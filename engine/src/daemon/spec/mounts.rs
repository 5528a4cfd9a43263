//! The service's mounts: `tmpfs` (both syntaxes), bind mounts (made with
//! `create_host_path`), named and anonymous volumes (the engine's directories, seen
//! through the container's ID mapping), devices, and the secrets and configs the engine
//! wrote for the container.

use super::SpecProblem;
use compose::model::Service;
use runtime::spec::{Device, Mount};
use std::path::{Path, PathBuf};

/// `/run:size=10m,mode=1777`-style tmpfs entries as mounts.
fn tmpfs_mount(entry: &str) -> Mount {
    let (target, opts) = entry.split_once(':').unwrap_or((entry, ""));
    let data = if opts.is_empty() {
        "mode=1777".to_string()
    } else {
        opts.to_string()
    };
    Mount {
        kind: "tmpfs".into(),
        target: target.into(),
        data,
        ..Default::default()
    }
}

/// `tmpfs:` and `volumes:`; `dir` is the container's directory (anonymous volumes live
/// there), `volume_dir` finds a named volume's by its Compose key.
pub(super) fn mounts(
    svc: &Service,
    dir: &Path,
    volume_dir: &dyn Fn(&str) -> Option<PathBuf>,
) -> Result<Vec<Mount>, SpecProblem> {
    let mut mounts: Vec<Mount> = svc.tmpfs.iter().flatten().map(|t| tmpfs_mount(t)).collect();
    for v in svc.volumes.iter().flatten() {
        let target = PathBuf::from(v.target.clone().unwrap_or_default());
        let ro = v.read_only == Some(true);
        match v.r#type.as_deref().unwrap_or("volume") {
            "bind" => {
                let src = PathBuf::from(v.source.clone().unwrap_or_default());
                let create = v.bind.as_ref().and_then(|b| b.create_host_path).unwrap_or(false);
                if !src.exists() {
                    if create {
                        std::fs::create_dir_all(&src).map_err(|source| SpecProblem::Create {
                            path: src.clone(),
                            source,
                        })?;
                    } else {
                        return Err(SpecProblem::NoBindSource(src));
                    }
                }
                let propagation = v.bind.as_ref().and_then(|b| b.propagation.clone()).unwrap_or_default();
                mounts.push(Mount {
                    kind: "bind".into(),
                    source: src,
                    target,
                    read_only: ro,
                    propagation,
                    ..Default::default()
                });
            }
            "volume" => {
                let key = v.source.clone().unwrap_or_default();
                let dir = if key.is_empty() {
                    dir.join("anonymous")
                        .join(target.to_string_lossy().trim_start_matches('/').replace('/', "_"))
                } else {
                    volume_dir(&key).ok_or_else(|| SpecProblem::NoVolume(key.clone()))?
                };
                std::fs::create_dir_all(&dir).map_err(|source| SpecProblem::Create {
                    path: dir.clone(),
                    source,
                })?;
                mounts.push(Mount {
                    kind: "bind".into(),
                    source: dir,
                    target,
                    read_only: ro,
                    idmap: true,
                    ..Default::default()
                });
            }
            "tmpfs" => {
                let size = v.tmpfs.as_ref().and_then(|t| t.size).map(|b| format!("size={}", b.0));
                let mode = v.tmpfs.as_ref().and_then(|t| t.mode).map(|m| format!("mode={:o}", m.0));
                let data = [size, mode].into_iter().flatten().collect::<Vec<_>>().join(",");
                mounts.push(Mount {
                    kind: "tmpfs".into(),
                    target,
                    read_only: ro,
                    data,
                    ..Default::default()
                });
            }
            other => return Err(SpecProblem::VolumeType(other.to_string())),
        }
    }
    Ok(mounts)
}

/// Secrets and configs: (file in the container's directory, target), read-only.
pub(super) fn files(files: &[(PathBuf, String)]) -> impl Iterator<Item = Mount> + '_ {
    files.iter().map(|(src, target)| Mount {
        kind: "bind".into(),
        source: src.clone(),
        target: target.into(),
        read_only: true,
        // The engine's files: owned as the container counts owners.
        idmap: true,
        ..Default::default()
    })
}

pub(super) fn devices(svc: &Service) -> Vec<Device> {
    svc.devices
        .iter()
        .flatten()
        .map(|d| {
            let host = PathBuf::from(d.source.clone().unwrap_or_default());
            let container = d.target.clone().map(PathBuf::from).unwrap_or_else(|| host.clone());
            Device {
                host,
                container,
                permissions: d.permissions.clone().unwrap_or_else(|| "rwm".into()),
            }
        })
        .collect()
}
