//! A Compose service's `build:` as a build job, and the builds `build` and `up` make:
//! the image named as Compose names it (`image:`, else `<project>-<service>`), with
//! Compose's labels; keys this builder does not do are refused by name, never ignored.

use super::{BuildError, BuildJob, Ctx, NamedContext};
use crate::api::{BuildEvent, BuildRequest, Credentials, StreamMsg};
use crate::daemon::project::{OpError, OpResult, Out};
use crate::daemon::Engine;
use compose::model::{Build, Service};
use compose::Project;
use images::ImageRef;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

impl From<BuildError> for OpError {
    fn from(e: BuildError) -> OpError {
        let exit_code = match &e {
            BuildError::Failed { exit_code, .. } if *exit_code > 0 => 1,
            BuildError::Cancelled => 130,
            _ => 1,
        };
        OpError {
            message: e.to_string(),
            exit_code,
        }
    }
}

/// The image a service runs: its `image:`, else the one its build makes.
pub fn image_name(project: &str, service: &str, svc: &Service) -> String {
    svc.image.clone().unwrap_or_else(|| format!("{project}-{service}"))
}

/// Gives every service with `build:` and no `image:` the name of the image it builds.
pub fn name_images(project: &mut Project) {
    let name = project.name.clone().unwrap_or_default();
    for (s, svc) in project.services.iter_mut() {
        if svc.build.is_some() && svc.image.is_none() {
            svc.image = Some(format!("{name}-{s}"));
        }
    }
}

fn refuse(service: &str, key: &str, what: &str) -> OpError {
    OpError::from(format!("service {service:?}: build.{key}: {what}"))
}

/// The job for one service's build.
pub fn job(
    run: &Builds,
    service: &str,
    svc: &Service,
    b: &Build,
    built: &BTreeMap<String, String>,
    out: &Out,
) -> Result<BuildJob, OpError> {
    let (project, working_dir, file_values) = (run.project, run.working_dir, run.file_values);
    let pname = project.name.clone().unwrap_or_default();
    let ctx_raw = b.context.clone().unwrap_or_else(|| ".".into());
    if ctx_raw.contains("://") || ctx_raw.starts_with("git@") || ctx_raw.ends_with(".git") {
        return Err(refuse(
            service,
            "context",
            &format!("{ctx_raw:?}: a git or URL context is not implemented yet"),
        ));
    }
    let context = working_dir.join(&ctx_raw);
    if !context.is_dir() {
        return Err(refuse(
            service,
            "context",
            &format!("{}: no such directory", context.display()),
        ));
    }
    for (set, key, what) in [
        (
            b.cache_from.as_ref().is_some_and(|v| !v.is_empty()),
            "cache_from",
            "importing a cache (local or registry) is not implemented yet",
        ),
        (
            b.cache_to.as_ref().is_some_and(|v| !v.is_empty()),
            "cache_to",
            "exporting a cache (local or registry) is not implemented yet",
        ),
        (
            b.no_cache_filter.as_ref().is_some_and(|v| !v.is_empty()),
            "no_cache_filter",
            "is not implemented yet",
        ),
        (
            b.entitlements
                .iter()
                .flatten()
                .any(|e| !["network.host", "security.insecure"].contains(&e.as_str())),
            "entitlements",
            "only network.host and security.insecure exist",
        ),
        (
            b.isolation.as_deref().is_some_and(|i| i != "default"),
            "isolation",
            "only \"default\" exists on Linux",
        ),
    ] {
        if set {
            return Err(refuse(service, key, what));
        }
    }
    if b.provenance.is_some() || b.sbom.is_some() {
        out.warn(format!(
            "service {service:?}: build.provenance and build.sbom are ignored: rcompose makes no attestations"
        ));
    }
    let (os, arch, variant) = images::config::host_platform();
    let host = [format!("{os}/{arch}"), format!("{os}/{arch}/{}", variant.unwrap_or(""))];
    for p in b.platforms.iter().flatten() {
        if !host.contains(p) && p != &format!("{os}/{arch}/") {
            return Err(refuse(
                service,
                "platforms",
                &format!("{p:?}: only this host's platform ({}) can be built", host[0]),
            ));
        }
    }
    let network = b.network.clone();
    if let Some(n) = network.as_deref() {
        if !["default", "none", "host"].contains(&n) {
            return Err(refuse(
                service,
                "network",
                &format!("{n:?}: a build runs on default, none or host"),
            ));
        }
    }
    let mut ulimits = Vec::new();
    for (name, u) in b.ulimits.iter().flatten() {
        let (soft, hard) = (u.soft(), u.hard());
        if soft < 0 || hard < 0 || soft > hard {
            return Err(refuse(
                service,
                "ulimits",
                &format!("{name}: soft {soft} and hard {hard} must be 0 or more, soft at most hard"),
            ));
        }
        ulimits.push((name.clone(), soft as u64, hard as u64));
    }
    let (dockerfile_name, dockerfile_path, dockerfile) = match (&b.dockerfile_inline, &b.dockerfile) {
        (Some(inline), _) => ("<inline>".to_string(), None, inline.clone()),
        (None, d) => {
            let d = d.clone().unwrap_or_else(|| "Dockerfile".into());
            let p = context.join(&d);
            let text = images::context::read_beside(&context, &p, images::context::DOCKERFILE_LIMIT)
                .map_err(|e| refuse(service, "dockerfile", &e.to_string()))?;
            (d, Some(p), String::from_utf8_lossy(text.as_slice()).into_owned())
        }
    };
    let image = image_name(&pname, service, svc);
    let mut tags = vec![ImageRef::parse(&image).map_err(|e| refuse(service, "tags", &format!("{image:?}: {e}")))?];
    for t in b.tags.iter().flatten() {
        tags.push(ImageRef::parse(t).map_err(|e| refuse(service, "tags", &format!("{t:?}: {e}")))?);
    }
    let mut labels = b.labels.clone().unwrap_or_default();
    labels.insert(conventions::labels::LABEL_PROJECT.into(), pname.clone());
    labels.insert(conventions::labels::LABEL_SERVICE.into(), service.into());
    let mut contexts = BTreeMap::new();
    for (name, v) in b.additional_contexts.iter().flatten() {
        let c = if let Some(img) = v.strip_prefix("docker-image://") {
            NamedContext::Image(img.to_string())
        } else if let Some(s) = v.strip_prefix("service:") {
            let id = built.get(s).ok_or_else(|| {
                refuse(
                    service,
                    "additional_contexts",
                    &format!("service {s:?} has no built image"),
                )
            })?;
            NamedContext::Image(id.clone())
        } else if v.contains("://") {
            return Err(refuse(
                service,
                "additional_contexts",
                &format!("{name}={v}: only paths, docker-image:// and service: are implemented"),
            ));
        } else {
            NamedContext::Dir(context.join(v))
        };
        contexts.insert(name.clone(), c);
    }
    Ok(BuildJob {
        dockerfile_name,
        dockerfile_path,
        dockerfile,
        context,
        args: b
            .args
            .iter()
            .flatten()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect(),
        target: b.target.clone(),
        tags,
        labels,
        no_cache: b.no_cache == Some(true),
        pull: b.pull == Some(true),
        allow_host_network: network.as_deref() == Some("host")
            || b.entitlements.iter().flatten().any(|e| e == "network.host"),
        allow_insecure: b.privileged == Some(true) || b.entitlements.iter().flatten().any(|e| e == "security.insecure"),
        network,
        extra_hosts: b.extra_hosts.as_ref().map(|e| e.0.clone()).unwrap_or_default(),
        shm_size: b.shm_size.map(|s| s.0.max(0) as u64).unwrap_or(0),
        ulimits,
        ssh: super::ssh::agents(b.ssh.as_ref(), working_dir).map_err(|e| refuse(service, "ssh", &e))?,
        secrets: secrets(project, service, b, file_values)?,
        contexts,
    })
}

/// `build.secrets`, read from the project's `secrets:` (a file, or the CLI's value of
/// an environment variable).
fn secrets(
    project: &Project,
    service: &str,
    b: &Build,
    values: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Vec<u8>>, OpError> {
    let mut out = BTreeMap::new();
    for r in b.secrets.iter().flatten() {
        let source = r.source.clone().unwrap_or_default();
        let d = project.secrets.get(&source).ok_or_else(|| {
            refuse(
                service,
                "secrets",
                &format!("secret {source:?} is not defined in the project's secrets"),
            )
        })?;
        let data = match (&d.file, &d.environment) {
            (Some(f), _) => compose::read::bytes(Path::new(f))
                .map_err(|e| refuse(service, "secrets", &format!("{source}: {e}")))?
                .to_vec(),
            (None, Some(_)) => values
                .get(&format!("secret:{source}"))
                .ok_or_else(|| {
                    refuse(
                        service,
                        "secrets",
                        &format!("{source}: its environment variable was not sent"),
                    )
                })?
                .clone()
                .into_bytes(),
            _ => {
                return Err(refuse(
                    service,
                    "secrets",
                    &format!("{source}: a build secret needs a file or an environment variable"),
                ))
            }
        };
        out.insert(r.target.clone().unwrap_or(source), data);
    }
    Ok(out)
}

/// The order to build services in: a service's `service:` contexts before it.
fn order(project: &Project, names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    fn visit(project: &Project, s: &str, out: &mut Vec<String>, depth: usize) {
        if out.iter().any(|o| o == s) || depth > 64 {
            return;
        }
        if let Some(b) = project.services.get(s).and_then(|svc| svc.build.as_ref()) {
            for v in b.additional_contexts.iter().flatten().map(|(_, v)| v) {
                if let Some(dep) = v.strip_prefix("service:") {
                    visit(project, dep, out, depth + 1);
                }
            }
            out.push(s.to_string());
        }
    }
    for n in names {
        visit(project, n, &mut out, 0);
    }
    out
}

/// What a run of builds is asked.
pub struct Builds<'a> {
    pub project: &'a Project,
    pub working_dir: &'a Path,
    pub services: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub no_cache: bool,
    pub pull: bool,
    pub file_values: &'a BTreeMap<String, String>,
    pub auths: BTreeMap<String, Credentials>,
}

impl<'a> Builds<'a> {
    /// The builds `up` or `run` may make of `services`: no build args or flags of its own.
    pub fn for_up(
        project: &'a Project,
        working_dir: &'a str,
        services: &[String],
        file_values: &'a BTreeMap<String, String>,
        auths: &BTreeMap<String, Credentials>,
    ) -> Builds<'a> {
        Builds {
            project,
            working_dir: Path::new(working_dir),
            services: services.to_vec(),
            build_args: BTreeMap::new(),
            no_cache: false,
            pull: false,
            file_values,
            auths: auths.clone(),
        }
    }
}

impl Engine {
    /// `POST /v1/projects/{name}/build`.
    pub async fn build_project(self: &Arc<Self>, req: BuildRequest, out: Out) -> OpResult {
        let project = crate::daemon::state::project_from_json(&req.project)?;
        for s in &req.services {
            if !project.services.contains_key(s) {
                return Err(format!("no such service: {s}").into());
            }
        }
        let mut names: Vec<String> = if req.services.is_empty() {
            project.services.keys().cloned().collect()
        } else if req.with_dependencies {
            let graph = compose::Graph::new(&project).map_err(|e| e.to_string())?;
            graph.selection(&project, &req.services, false)
        } else {
            req.services.clone()
        };
        names.retain(|n| project.services.get(n).is_some_and(|s| s.build.is_some()));
        let b = Builds {
            project: &project,
            working_dir: Path::new(&req.working_dir),
            services: names,
            build_args: req.build_args.clone(),
            no_cache: req.no_cache,
            pull: req.pull,
            file_values: &req.file_values,
            auths: req.auths.clone(),
        };
        self.build_services(b, &out).await
    }

    /// Builds the services' images in order (one after another, each build's own stages
    /// in parallel); returns when all are stored.
    pub async fn build_services(self: &Arc<Self>, b: Builds<'_>, out: &Out) -> OpResult {
        let mut built: BTreeMap<String, String> = BTreeMap::new();
        for s in order(b.project, &b.services) {
            let svc = &b.project.services[&s];
            let Some(bs) = &svc.build else { continue };
            let mut job = job(&b, &s, svc, bs, &built, out)?;
            job.args.extend(b.build_args.clone());
            job.no_cache |= b.no_cache;
            job.pull |= b.pull;
            let ctx = Ctx::new(self.clone(), out.clone(), b.auths.clone())?;
            let rec = tokio::task::spawn_blocking(move || super::build(&ctx, &job).map(|r| (r, job.tags)))
                .await
                .map_err(OpError::from)?;
            let (rec, tags) = rec.map_err(|e| OpError::from(format!("service {s:?}: failed to solve: {e}")))?;
            out.send(StreamMsg::Build(BuildEvent::Image {
                service: s.clone(),
                id: rec.config.to_string(),
                tags: tags.iter().map(|t| t.full()).collect(),
            }));
            built.insert(s.clone(), rec.config.to_string());
        }
        Ok(())
    }

    /// `up`'s "image ready" for services with `build:`: built when `--build`, when
    /// `pull_policy: build`, or when the image is missing (unless `--no-build`).
    /// `b.services` are those selected; only those that need it are built.
    pub async fn build_for_up(self: &Arc<Self>, mut b: Builds<'_>, force: bool, no_build: bool, out: &Out) -> OpResult {
        let project = b.project;
        let mut wanted = Vec::new();
        for s in &b.services {
            let svc = &project.services[s];
            if svc.build.is_none() {
                continue;
            }
            let image = svc.image.clone().unwrap_or_default();
            let present = ImageRef::parse(&image)
                .ok()
                .and_then(|r| self.store.resolve(&r.full()).ok())
                .is_some();
            let policy_build = svc.pull_policy.as_deref() == Some("build");
            if no_build {
                if !present {
                    return Err(format!("service {s:?}: image {image} is missing and --no-build was given").into());
                }
                continue;
            }
            if force || policy_build || !present {
                wanted.push(s.clone());
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        b.services = wanted;
        self.build_services(b, out).await
    }
}
