//! Normalization of a decoded project, as `docker compose config` shows it: profiles
//! applied, env files read into `environment`, resource names filled in
//! (`<project>_<name>`), the implicit default network, defaults of long syntaxes, and
//! warnings for what Linux or a single host cannot honour.

use crate::context::{Ctx, Loaded, Options};
use crate::environment;
use crate::error::{Error, Result};
use crate::model::*;
use indexmap::IndexMap;
use std::path::Path;

/// Keys parsed but meaningless on Linux or outside Swarm: named in a warning.
const WINDOWS_ONLY: &[&str] = &["credential_spec", "isolation", "cpu_count", "cpu_percent"];

pub(crate) fn run(l: &mut Loaded, opts: &Options, ctx: &mut Ctx) -> Result<()> {
    let p = &mut l.project;
    // Warned about per file as it is read.
    p.version = None;
    p.include = None;
    p.name = Some(l.name.clone());
    profiles(l, opts)?;
    let p = &mut l.project;
    let env = &l.environment;

    let mut uses_default = false;
    let names: Vec<String> = p.services.keys().cloned().collect();
    for name in names {
        let key = format!("services.{name}");
        let Some(s) = p.services.get_mut(&name) else { continue };
        env_files(s, env, &key, ctx)?;
        label_files(s, env, &key, ctx)?;
        if let Some(vars) = &mut s.environment {
            for (k, v) in vars.iter_mut() {
                if v.is_none() {
                    *v = env.get(k).cloned();
                }
            }
        }
        if let Some(b) = &mut s.build {
            if b.context.is_none() {
                b.context = Some(if opts.no_path_resolution {
                    ".".into()
                } else {
                    l.project_dir.to_string_lossy().into_owned()
                });
            }
            if b.dockerfile.is_none() && b.dockerfile_inline.is_none() {
                b.dockerfile = Some("Dockerfile".into());
            }
        }
        if s.network_mode.is_none() && s.networks.is_none() {
            s.networks = Some(IndexMap::from([("default".to_string(), None)]));
        }
        if s.networks.as_ref().is_some_and(|n| n.contains_key("default")) {
            uses_default = true;
        }
        for port in s.ports.iter_mut().flatten() {
            port.mode.get_or_insert_with(|| "ingress".into());
            port.protocol.get_or_insert_with(|| "tcp".into());
        }
        for d in s.depends_on.iter_mut().flat_map(|m| m.values_mut()) {
            let d = d.get_or_insert_with(Default::default);
            d.condition.get_or_insert_with(|| "service_started".into());
            d.required.get_or_insert(true);
        }
        if s.pull_policy.as_deref() == Some("if_not_present") {
            s.pull_policy = Some("missing".into());
        }
        if let (Some(scale), Some(r)) = (s.scale, s.deploy.as_ref().and_then(|d| d.replicas)) {
            if scale != r {
                return Err(Error::invalid(
                    ctx.at(&format!("{key}.scale")),
                    format!("scale ({scale}) and deploy.replicas ({r}) disagree"),
                ));
            }
        }
        for k in WINDOWS_ONLY {
            let set = match *k {
                "credential_spec" => s.credential_spec.is_some(),
                "isolation" => s.isolation.is_some(),
                "cpu_count" => s.cpu_count.is_some(),
                _ => s.cpu_percent.is_some(),
            };
            if set {
                ctx.warn(format!("{key}.{k} applies to Windows containers only and is ignored"));
            }
        }
        if let Some(d) = &s.deploy {
            let swarm = [
                ("mode", d.mode.as_deref().is_some_and(|m| m != "replicated")),
                ("endpoint_mode", d.endpoint_mode.is_some()),
                ("placement", d.placement.is_some()),
                ("update_config", d.update_config.is_some()),
                ("rollback_config", d.rollback_config.is_some()),
            ];
            for (k, set) in swarm {
                if set {
                    ctx.warn(format!("{key}.deploy.{k} applies to Swarm only and is ignored"));
                }
            }
        }
    }

    if uses_default && !p.networks.contains_key("default") {
        p.networks.insert("default".into(), Network::default());
    }
    let project = l.name.clone();
    for (k, n) in p.networks.iter_mut() {
        fill_name(&mut n.name, &mut n.external, k, &project, "networks", ctx);
        if n.attachable.is_some() {
            ctx.warn(format!("networks.{k}.attachable applies to Swarm only and is ignored"));
        }
    }
    for (k, v) in p.volumes.iter_mut() {
        fill_name(&mut v.name, &mut v.external, k, &project, "volumes", ctx);
    }
    for (k, s) in p.secrets.iter_mut() {
        fill_name(&mut s.name, &mut s.external, k, &project, "secrets", ctx);
        if s.driver.is_some() || s.template_driver.is_some() {
            ctx.warn(format!(
                "secrets.{k}: driver and template_driver apply to Swarm only and are ignored"
            ));
        }
    }
    for (k, c) in p.configs.iter_mut() {
        fill_name(&mut c.name, &mut c.external, k, &project, "configs", ctx);
        if c.template_driver.is_some() {
            ctx.warn(format!(
                "configs.{k}.template_driver applies to Swarm only and is ignored"
            ));
        }
    }
    for (k, m) in p.models.iter_mut() {
        m.name.get_or_insert_with(|| k.clone());
    }
    sort_maps(p);
    p.services.sort_keys();
    p.networks.sort_keys();
    p.volumes.sort_keys();
    p.secrets.sort_keys();
    p.configs.sort_keys();
    p.models.sort_keys();
    Ok(())
}

fn fill_name(
    name: &mut Option<String>,
    external: &mut Option<External>,
    key: &str,
    project: &str,
    section: &str,
    ctx: &mut Ctx,
) {
    if let Some(External::Named(legacy)) = external.clone() {
        ctx.warn(format!("{section}.{key}: external.name is deprecated, use name"));
        if let Some(n) = legacy {
            name.get_or_insert(n);
        }
        *external = Some(External::Flag(true));
    }
    if matches!(external, Some(External::Flag(false))) {
        *external = None;
    }
    let is_external = external.as_ref().is_some_and(External::is_external);
    name.get_or_insert_with(|| {
        if is_external {
            key.to_string()
        } else {
            format!("{project}_{key}")
        }
    });
}

/// Applies profiles: a service runs when it has no profile or one of its profiles is
/// active (`--profile`, else `COMPOSE_PROFILES`; `*` activates all), or when it is named
/// on the command line.
fn profiles(l: &mut Loaded, opts: &Options) -> Result<()> {
    let mut active: Vec<String> = opts.profiles.clone();
    if active.is_empty() {
        if let Some(v) = l.environment.get("COMPOSE_PROFILES") {
            active = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
        }
    }
    for name in &opts.services {
        if let Some(s) = l.project.services.get(name) {
            active.extend(s.profiles.iter().flatten().cloned());
        }
    }
    let all = active.iter().any(|a| a == "*");
    let mut seen = Vec::new();
    for s in l.project.services.values() {
        for p in s.profiles.iter().flatten() {
            if !seen.contains(p) {
                seen.push(p.clone());
            }
        }
    }
    seen.sort();
    l.all_profiles = seen;
    let disabled: Vec<String> = l
        .project
        .services
        .iter()
        .filter(|(_, s)| {
            let ps = s.profiles.as_deref().unwrap_or_default();
            !ps.is_empty() && !all && !ps.iter().any(|p| active.contains(p))
        })
        .map(|(n, _)| n.clone())
        .collect();
    for n in &disabled {
        l.project.services.shift_remove(n);
    }
    l.disabled = disabled;
    Ok(())
}

fn env_files(s: &mut Service, env: &environment::Env, key: &str, ctx: &mut Ctx) -> Result<()> {
    let Some(files) = s.env_file.take() else { return Ok(()) };
    let mut vars: IndexMap<String, String> = IndexMap::new();
    for (i, f) in files.iter().enumerate() {
        let Some(path) = f.path.as_deref() else {
            return Err(Error::invalid(
                ctx.at(&format!("{key}.env_file[{i}]")),
                "env_file entry needs a path",
            ));
        };
        let path = Path::new(path);
        ctx.inputs.push(path.to_path_buf());
        if !path.exists() {
            if f.required.unwrap_or(true) {
                return Err(Error::invalid(
                    ctx.at(&format!("{key}.env_file")),
                    format!("env file {} not found", path.display()),
                ));
            }
            continue;
        }
        // The project environment, then values from earlier env files, fill `${VAR}`.
        let lookup = |n: &str| env.get(n).cloned().or_else(|| vars.get(n).cloned());
        let read = environment::read_env_file(path, f.format.as_deref(), &lookup).map_err(|e| match e {
            Error::Invalid { message, .. } => Error::invalid(ctx.at(&format!("{key}.env_file[{i}]")), message),
            other => other,
        })?;
        vars.extend(read);
    }
    let target = s.environment.get_or_insert_with(Default::default);
    for (k, v) in vars {
        target.entry(k).or_insert(Some(v));
    }
    Ok(())
}

fn label_files(s: &mut Service, env: &environment::Env, key: &str, ctx: &mut Ctx) -> Result<()> {
    let Some(files) = s.label_file.take() else {
        return Ok(());
    };
    for f in files {
        let path = Path::new(&f);
        ctx.inputs.push(path.to_path_buf());
        if !path.exists() {
            return Err(Error::invalid(
                ctx.at(&format!("{key}.label_file")),
                format!("label file {f} not found"),
            ));
        }
        let lookup = |n: &str| env.get(n).cloned();
        let read = environment::read_env_file(path, None, &lookup)?;
        let target = s.labels.get_or_insert_with(Default::default);
        for (k, v) in read {
            target.entry(k).or_insert(v);
        }
    }
    Ok(())
}

/// Compose prints every map with its keys sorted (Go's encoders sort map keys); struct
/// fields keep their order. Lists keep theirs.
fn sort_maps(p: &mut Project) {
    fn sort_value(v: &mut serde_yaml_ng::Value) {
        match v {
            serde_yaml_ng::Value::Mapping(m) => {
                let mut entries: Vec<_> = std::mem::take(m).into_iter().collect();
                entries.sort_by_key(|(k, _)| crate::merge::key_str(k));
                for (k, mut val) in entries {
                    sort_value(&mut val);
                    m.insert(k, val);
                }
            }
            serde_yaml_ng::Value::Sequence(s) => s.iter_mut().for_each(sort_value),
            _ => {}
        }
    }
    fn sort_ext(e: &mut Extensions) {
        e.0.sort_keys();
        e.0.values_mut().for_each(sort_value);
    }
    sort_ext(&mut p.extensions);
    for s in p.services.values_mut() {
        sort_ext(&mut s.extensions);
        if let Some(m) = &mut s.depends_on {
            m.sort_keys();
        }
        if let Some(m) = &mut s.networks {
            m.sort_keys();
        }
        if let Some(m) = &mut s.models {
            m.sort_keys();
        }
        if let Some(m) = &mut s.ulimits {
            m.sort_keys();
        }
        if let Some(m) = &mut s.storage_opt {
            m.sort_keys();
        }
        if let Some(m) = s.build.as_mut().and_then(|b| b.ulimits.as_mut()) {
            m.sort_keys();
        }
        if let Some(m) = s.provider.as_mut().and_then(|p| p.options.as_mut()) {
            m.sort_keys();
        }
    }
    for n in p.networks.values_mut() {
        sort_ext(&mut n.extensions);
    }
    for v in p.volumes.values_mut() {
        sort_ext(&mut v.extensions);
    }
    for v in p.secrets.values_mut() {
        sort_ext(&mut v.extensions);
    }
    for v in p.configs.values_mut() {
        sort_ext(&mut v.extensions);
    }
}
