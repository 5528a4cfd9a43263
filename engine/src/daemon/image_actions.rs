//! Images through the engine, the one writer of its store: list, inspect, remove and
//! prune; pulls, streamed as they go; `load` and `import` of a body held in the store's
//! `tmp` while it is read; and the pulls `up` and `run` make as part of "image ready",
//! under `--pull` or each service's `pull_policy`. Credentials come with the request:
//! the engine never reads a user's Docker configuration.

use super::project::Out;
use super::pull_policy::PullPolicy;
use super::Engine;
use crate::api::{Credentials, ImageSummary, PullEvent, StreamMsg};
use images::archive::display_name;
use images::registry::{self, Progress};
use images::{ImageRecord, ImageRef};
use oci_client::secrets::RegistryAuth;
use std::collections::BTreeMap;
use std::sync::Arc;

fn auth_of(c: Option<&Credentials>) -> RegistryAuth {
    match c {
        Some(c) if !c.username.is_empty() => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
        _ => RegistryAuth::Anonymous,
    }
}

/// A pull's progress as the API says it (its end is said with the record).
fn event(p: Progress) -> Option<PullEvent> {
    Some(match p {
        Progress::Resolved { image, manifest } => PullEvent::Resolved {
            image,
            manifest: manifest.to_string(),
        },
        Progress::LayerExists { layer } => PullEvent::LayerExists {
            layer: layer.to_string(),
        },
        Progress::LayerProgress { layer, done, total } => PullEvent::LayerProgress {
            layer: layer.to_string(),
            done,
            total,
        },
        Progress::LayerDownloaded { layer, size } => PullEvent::LayerDownloaded {
            layer: layer.to_string(),
            size,
        },
        Progress::Done { .. } => return None,
    })
}

/// What can go wrong with the engine's images: the store's, the registry's, an
/// archive's or an import's error, or a policy that does not apply.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Store(#[from] images::store::StoreError),
    #[error(transparent)]
    Reference(#[from] images::reference::RefError),
    #[error(transparent)]
    Pull(#[from] images::registry::PullError),
    #[error(transparent)]
    Load(#[from] images::archive::LoadError),
    #[error(transparent)]
    Import(#[from] images::import::ImportError),
    #[error(transparent)]
    Policy(#[from] super::pull_policy::PolicyError),
    #[error("invalid pull policy {0:?}: missing or always")]
    PullPolicy(String),
    #[error("service {service:?}: {source}")]
    Service { service: String, source: Box<ImageError> },
    #[error("service {service:?}: image {image} not found locally and pull_policy is never")]
    NotLocal { service: String, image: String },
    #[error("{0}")]
    Join(#[from] tokio::task::JoinError),
}

impl Engine {
    /// Every image of the store, with its tags.
    pub fn image_list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let list = self.store.list()?;
        Ok(list
            .into_iter()
            .map(|(rec, tags)| ImageSummary {
                id: rec.config.to_string(),
                created: self.created(&rec),
                size: rec.size(),
                names: tags
                    .iter()
                    .map(|t| match ImageRef::parse(t) {
                        Ok(r) => (r.familiar_repository(), r.tag().unwrap_or("latest").to_string()),
                        Err(_) => (t.clone(), "<none>".into()),
                    })
                    .collect(),
                tags,
            })
            .collect())
    }

    fn created(&self, rec: &ImageRecord) -> u64 {
        self.store
            .config(rec)
            .ok()
            .and_then(|c| c.created)
            .and_then(|c| conventions::timefmt::parse(&c))
            .unwrap_or(rec.stored_at)
    }

    /// `docker image inspect`'s object for one image; `None` when there is no such image.
    pub fn image_inspect(&self, name: &str) -> Result<Option<serde_json::Value>, ImageError> {
        let Ok(rec) = self.store.resolve(name) else {
            return Ok(None);
        };
        let list = self.store.list()?;
        let tags = list
            .iter()
            .find(|(r, _)| r.manifest == rec.manifest)
            .map(|(_, t)| t.clone())
            .unwrap_or_default();
        let cfg = self.store.config(&rec)?;
        let refs: Vec<ImageRef> = tags.iter().filter_map(|t| ImageRef::parse(t).ok()).collect();
        let repo_tags: Vec<String> = refs.iter().map(display_name).collect();
        let repo_digests: Vec<String> = refs
            .iter()
            .map(|r| format!("{}@{}", r.familiar_repository(), rec.manifest))
            .collect();
        Ok(Some(serde_json::json!({
            "Id": rec.config.to_string(),
            "RepoTags": repo_tags,
            "RepoDigests": repo_digests,
            "Created": cfg.created,
            "Architecture": cfg.architecture,
            "Os": cfg.os,
            "Variant": cfg.variant,
            "Config": cfg.config,
            "RootFS": {"Type": cfg.rootfs.kind, "Layers": cfg.rootfs.diff_ids},
            "Size": rec.size(),
            "Metadata": {"Manifest": rec.manifest.to_string(), "StoredAt": rec.stored_at},
        })))
    }

    pub async fn image_remove(self: &Arc<Self>, name: String) -> Result<Vec<String>, ImageError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.store.remove(&name).map_err(ImageError::from)).await?
    }

    pub async fn image_prune(self: &Arc<Self>, all: bool) -> Result<Vec<String>, ImageError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.store.prune(all).map_err(ImageError::from)).await?
    }

    /// Loads a `docker save` or OCI archive held at `path`.
    pub async fn image_load(self: &Arc<Self>, path: std::path::PathBuf) -> Result<Vec<String>, ImageError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || images::archive::load(&me.store, &path).map_err(ImageError::from)).await?
    }

    /// Imports the root filesystem tarball at `path` as a one-layer image; its ID.
    pub async fn image_import(
        self: &Arc<Self>,
        path: std::path::PathBuf,
        tag: Option<String>,
        changes: Vec<String>,
    ) -> Result<String, ImageError> {
        let tag = tag.as_deref().map(ImageRef::parse).transpose()?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            images::import::import(&me.store, &path, tag.as_ref(), &changes)
                .map(|rec| rec.config.to_string())
                .map_err(ImageError::from)
        })
        .await?
    }

    /// Pulls one image (unless `missing` and present), its progress to `out`.
    pub async fn pull(
        self: &Arc<Self>,
        reference: &str,
        policy: Option<&str>,
        auth: Option<&Credentials>,
        out: &Out,
    ) -> Result<(), ImageError> {
        let r = ImageRef::parse(reference)?;
        let policy = PullPolicy::parse(policy.unwrap_or("always"))?;
        if !matches!(policy, PullPolicy::Missing | PullPolicy::Always) {
            return Err(ImageError::PullPolicy(format!("{policy:?}")));
        }
        let present = self.store.resolve(&r.full()).ok().map(|rec| rec.stored_at);
        if !policy.needs_pull(present, conventions::durations::now().max(0) as u64) {
            out.send(StreamMsg::Pull(PullEvent::Present { image: r.full() }));
            return Ok(());
        }
        self.pull_one(&r, auth, out, false).await
    }

    async fn pull_one(
        &self,
        r: &ImageRef,
        auth: Option<&Credentials>,
        out: &Out,
        quiet: bool,
    ) -> Result<(), ImageError> {
        let print = |p: Progress| {
            if let Some(e) = event(p).filter(|_| !quiet) {
                out.send(StreamMsg::Pull(e));
            }
        };
        let rec = registry::pull(self.store.clone(), r, auth_of(auth), &print).await?;
        if !quiet {
            out.send(StreamMsg::Pull(PullEvent::Done {
                image: r.full(),
                display: display_name(r),
                manifest: rec.manifest.to_string(),
            }));
        }
        Ok(())
    }

    /// Before `up`, `create` and `run`: pulls what the services need under `flag`
    /// (`--pull`) or each one's `pull_policy` (`missing` by default), each image once,
    /// in parallel. A missing image with `never` is an error.
    pub async fn pull_for_services(
        &self,
        project: &compose::Project,
        names: &[String],
        flag: Option<&str>,
        quiet: bool,
        auths: &BTreeMap<String, Credentials>,
        out: &Out,
    ) -> Result<(), ImageError> {
        let forced = flag.map(PullPolicy::parse).transpose()?;
        let mut wanted: Vec<ImageRef> = Vec::new();
        for n in names {
            let Some(s) = project.services.get(n) else { continue };
            let Some(image) = &s.image else { continue };
            if s.build.is_some() {
                // Its image is built (`build_for_up`); its base images come with the build.
                continue;
            }
            let policy = match forced {
                Some(f) => f,
                None => PullPolicy::parse(s.pull_policy.as_deref().unwrap_or("missing"))?,
            };
            let r = ImageRef::parse(image).map_err(|e| ImageError::Service {
                service: n.clone(),
                source: Box::new(e.into()),
            })?;
            let present = self.store.resolve(&r.full()).ok().map(|rec| rec.stored_at);
            if matches!(policy, PullPolicy::Never | PullPolicy::Build) {
                if present.is_none() {
                    return Err(ImageError::NotLocal {
                        service: n.clone(),
                        image: image.clone(),
                    });
                }
                continue;
            }
            if policy.needs_pull(present, conventions::durations::now().max(0) as u64) && !wanted.contains(&r) {
                wanted.push(r);
            }
        }
        let jobs = wanted
            .iter()
            .map(|r| self.pull_one(r, auths.get(r.registry()), out, quiet));
        for res in futures_util::future::join_all(jobs).await {
            res?;
        }
        Ok(())
    }

    /// `down --rmi all`: the services' images, each said as it goes.
    pub(super) async fn remove_images(self: &Arc<Self>, project: &compose::Project, out: &Out) {
        let mut images: Vec<String> = project.services.values().filter_map(|s| s.image.clone()).collect();
        images.sort();
        images.dedup();
        for i in images {
            out.progress("Image", &i, "Removing");
            match self.image_remove(i.clone()).await {
                Ok(_) => out.progress("Image", &i, "Removed"),
                Err(e) => out.warn(format!("removing image {i}: {e}")),
            }
        }
    }
}
