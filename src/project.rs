//! The project as the CLI loads it: the loader's options from the global flags, the
//! model (typed and as the JSON the engine is sent), and the requests made from it.

use crate::global::Global;
use anyhow::{bail, Context, Result};
use engine::api::UpRequest;
use std::collections::BTreeMap;

/// The loader's options from the global flags and the process.
pub fn load_options(g: &Global) -> Result<compose::Options> {
    Ok(compose::Options {
        working_dir: std::env::current_dir()?,
        files: g.files.clone(),
        project_directory: g.project_directory.clone(),
        project_name: g.project_name.clone(),
        env_files: g.env_files.clone(),
        profiles: g
            .profile
            .iter()
            .flat_map(|p| p.split(','))
            .map(str::to_string)
            .collect(),
        os_env: std::env::vars().collect(),
        ..Default::default()
    })
}

/// The loaded project, for commands that need a model.
pub struct Loaded {
    pub name: String,
    pub json: serde_json::Value,
    pub loaded: compose::Loaded,
}

pub fn load(g: &Global, services: &[String]) -> Result<Loaded> {
    let mut opts = load_options(g)?;
    opts.services = services.to_vec();
    let loaded = compose::load(&opts)?;
    for w in &loaded.warnings {
        eprintln!("WARN[0000] {w}");
    }
    for s in services {
        if !loaded.project.services.contains_key(s) {
            bail!("no such service: {s}");
        }
    }
    let mut json = serde_json::to_value(&loaded.project)?;
    if let Some(o) = json.as_object_mut() {
        o.insert("name".into(), serde_json::Value::String(loaded.name.clone()));
    }
    let agent = loaded.environment.get("SSH_AUTH_SOCK").cloned();
    set_ssh(&mut json, &[], &BTreeMap::new(), agent.as_deref());
    Ok(Loaded {
        name: loaded.name.clone(),
        json,
        loaded,
    })
}

/// Fills in the services' `build.ssh` as the engine needs it: `extra` (`build --ssh`
/// entries, by id) over what `services` (all when empty) have, and `default` with no
/// path given the client's agent (`SSH_AUTH_SOCK`), which the engine cannot see.
pub fn set_ssh(
    json: &mut serde_json::Value,
    services: &[String],
    extra: &BTreeMap<String, Option<String>>,
    agent: Option<&str>,
) {
    let Some(all) = json.get_mut("services").and_then(|s| s.as_object_mut()) else {
        return;
    };
    for (name, svc) in all.iter_mut() {
        let Some(build) = svc.get_mut("build").and_then(|b| b.as_object_mut()) else {
            continue;
        };
        if !extra.is_empty() && (services.is_empty() || services.contains(name)) {
            let ssh = build.entry("ssh").or_insert_with(|| serde_json::json!({}));
            if let Some(m) = ssh.as_object_mut() {
                for (id, path) in extra {
                    m.insert(id.clone(), serde_json::json!(path));
                }
            }
        }
        let Some(m) = build.get_mut("ssh").and_then(|s| s.as_object_mut()) else {
            continue;
        };
        for (id, path) in m.iter_mut() {
            if id == "default" && path.as_str().is_none_or(str::is_empty) {
                if let Some(a) = agent {
                    *path = serde_json::json!(a);
                }
            }
        }
    }
}

/// `--ssh default`, `--ssh id=path` (several, or comma-separated), by id.
pub fn ssh_flags(flags: &[String]) -> BTreeMap<String, Option<String>> {
    flags
        .iter()
        .flat_map(|f| f.split(','))
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('=') {
            Some((id, p)) => (id.to_string(), Some(p.to_string())),
            None => (s.to_string(), None),
        })
        .collect()
}

/// The project's name (and model when a file is found): `-p` alone is enough for the
/// commands that act on what runs, as with Compose.
pub fn load_or_name(g: &Global, services: &[String]) -> Result<(String, Option<Loaded>)> {
    match load(g, services) {
        Ok(l) => Ok((l.name.clone(), Some(l))),
        Err(e) => match &g.project_name {
            Some(p)
                if g.files.is_empty()
                    && matches!(e.downcast_ref::<compose::Error>(), Some(compose::Error::NoConfigFile)) =>
            {
                Ok((p.clone(), None))
            }
            _ => Err(e),
        },
    }
}

/// The request of a plain `up -d` of `services` (all when empty): what `up` adds its
/// flags to, and what `up --watch` sends (with orphans removed) when the project's
/// files change.
pub fn up_request(l: &Loaded, services: &[String]) -> Result<UpRequest> {
    Ok(UpRequest {
        project: l.json.clone(),
        working_dir: l.loaded.project_dir.display().to_string(),
        config_files: l.loaded.files.iter().map(|f| f.display().to_string()).collect(),
        services: services.to_vec(),
        file_values: file_values(&l.loaded)?,
        auths: auths(&l.loaded.project),
        ..Default::default()
    })
}

/// The client's registry logins for the project's images, sent with what may pull.
pub fn auths(p: &compose::Project) -> BTreeMap<String, engine::api::Credentials> {
    crate::credentials::for_images(p.services.values().filter_map(|s| s.image.as_deref()))
}

/// Secrets and configs taken from environment variables: the engine does not see the
/// CLI's environment, so their values travel with the request.
pub fn file_values(l: &compose::Loaded) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let p = &l.project;
    let sources = p
        .secrets
        .iter()
        .map(|(k, v)| ("secret", k, v.environment.as_ref()))
        .chain(p.configs.iter().map(|(k, v)| ("config", k, v.environment.as_ref())));
    for (kind, key, env) in sources {
        if let Some(var) = env {
            let value = l
                .environment
                .get(var)
                .with_context(|| format!("{kind}s.{key}: environment variable {var} is not set"))?;
            out.insert(format!("{kind}:{key}"), value.clone());
        }
    }
    Ok(out)
}
