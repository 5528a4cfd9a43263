//! `rcompose config`: the canonical, resolved model, as `docker compose config` prints it.

use crate::args::{ConfigArgs, Format};
use crate::global::Global;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub fn run(g: &Global, a: ConfigArgs) -> Result<ExitCode> {
    for (set, flag) in [
        (a.no_normalize, "--no-normalize"),
        (a.resolve_image_digests, "--resolve-image-digests"),
        (a.lock_image_digests, "--lock-image-digests"),
        (a.variables, "--variables"),
        (a.no_env_resolution, "--no-env-resolution"),
        (a.no_consistency, "--no-consistency"),
    ] {
        if set {
            bail!("rcompose config {flag}: not implemented yet");
        }
    }
    let mut opts = crate::project::load_options(g)?;
    opts.no_interpolate = a.no_interpolate;
    opts.no_path_resolution = a.no_path_resolution;
    opts.services = a.service.clone();
    if opts.files.iter().any(|f| f == Path::new("-")) {
        let s = compose::read::from_reader(std::io::stdin(), compose::read::LIMIT)
            .context("reading the Compose file from standard input")?;
        opts.stdin = Some(s);
    }
    let mut loaded = compose::load(&opts)?;
    for w in &loaded.warnings {
        eprintln!("WARN[0000] {w}");
    }
    if !a.service.is_empty() {
        select(&mut loaded, &a.service)?;
    }
    let p = &loaded.project;
    let lines = |v: Vec<String>| v.into_iter().map(|s| s + "\n").collect::<String>();
    let out: String = if a.services {
        lines(p.services.keys().cloned().collect())
    } else if a.volumes {
        lines(p.volumes.keys().cloned().collect())
    } else if a.networks {
        lines(p.networks.keys().cloned().collect())
    } else if a.profiles {
        lines(loaded.all_profiles.clone())
    } else if a.models {
        lines(p.models.keys().cloned().collect())
    } else if a.images {
        lines(
            p.services
                .iter()
                .map(|(n, s)| s.image.clone().unwrap_or_else(|| format!("{}-{n}", loaded.name)))
                .collect(),
        )
    } else if let Some(h) = &a.hash {
        let wanted: Vec<String> = if h.trim() == "*" {
            p.services.keys().cloned().collect()
        } else {
            h.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let mut out = Vec::new();
        for name in wanted {
            let s = p
                .services
                .get(&name)
                .with_context(|| format!("no such service: {name}"))?;
            out.push(format!("{name} {}", compose::service_hash(s)));
        }
        lines(out)
    } else if a.environment {
        lines(loaded.environment.iter().map(|(k, v)| format!("{k}={v}")).collect())
    } else {
        match a.format {
            Format::Yaml => crate::render::to_yaml(&serde_json::to_value(p)?),
            Format::Json => serde_json::to_string_pretty(p)? + "\n",
        }
    };
    if a.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    match &a.output {
        Some(path) => {
            safefs::atomic::write(path, out.as_bytes()).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::stdout().write_all(out.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Keeps the named services and what they depend on.
fn select(l: &mut compose::Loaded, names: &[String]) -> Result<()> {
    for n in names {
        if !l.project.services.contains_key(n) {
            bail!("no such service: {n}");
        }
    }
    let keep = compose::Graph::new(&l.project)?.with_dependencies(names);
    l.project.services.retain(|k, _| keep.contains(k));
    Ok(())
}
