//! Cross-references and constraints that the schema alone cannot express: every service,
//! network, volume, secret and config a service names must exist; values drawn from a
//! fixed set must be one of it; `container_name` must be unique.

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::model::*;
use std::collections::HashMap;

const CONDITIONS: &[&str] = &["service_started", "service_healthy", "service_completed_successfully"];
const WATCH_ACTIONS: &[&str] = &["sync", "rebuild", "restart", "sync+restart", "sync+exec"];
const VOLUME_TYPES: &[&str] = &["bind", "volume", "tmpfs", "npipe", "cluster", "image"];

fn valid_restart(r: &str) -> bool {
    match r.split_once(':') {
        Some(("on-failure", n)) => n.parse::<u32>().is_ok(),
        None => matches!(r, "no" | "always" | "on-failure" | "unless-stopped"),
        _ => false,
    }
}

fn valid_pull_policy(p: &str) -> bool {
    matches!(
        p,
        "always" | "never" | "missing" | "if_not_present" | "build" | "daily" | "weekly" | "refresh"
    ) || p.strip_prefix("every_").is_some_and(|d| parse_duration(d).is_ok())
}

/// A `container_name` names one container: refused with more than one replica (the
/// file's, or as many as `up --scale` asks for).
pub fn container_name_unique(name: &str, s: &crate::model::Service, replicas: i64) -> std::result::Result<(), String> {
    match &s.container_name {
        Some(c) if replicas > 1 => Err(format!(
            "service {name:?} sets container_name {c:?} and has {replicas} replicas: container names must be unique"
        )),
        _ => Ok(()),
    }
}

pub(crate) fn run(p: &Project, ctx: &Ctx) -> Result<()> {
    let err = |key: &str, msg: String| Err(Error::invalid(ctx.at(key), msg));
    let mut container_names: HashMap<&str, &str> = HashMap::new();
    for (name, s) in &p.services {
        let key = format!("services.{name}");
        if s.image.is_none() && s.build.is_none() && s.provider.is_none() {
            return err(
                &key,
                format!("service {name:?} has neither an image nor a build context specified"),
            );
        }
        if let Some(c) = &s.container_name {
            if let Err(m) = container_name_unique(name, s, s.replicas()) {
                return err(&format!("{key}.container_name"), m);
            }
            if let Some(other) = container_names.insert(c, name) {
                return err(
                    &format!("{key}.container_name"),
                    format!("services {other:?} and {name:?} both use container_name {c:?}"),
                );
            }
        }
        if s.network_mode.is_some() && s.networks.as_ref().is_some_and(|n| !n.is_empty()) {
            return err(
                &format!("{key}.network_mode"),
                format!("service {name:?} declares both network_mode and networks"),
            );
        }
        for n in s.networks.iter().flat_map(|n| n.keys()) {
            if !p.networks.contains_key(n) {
                return err(
                    &format!("{key}.networks.{n}"),
                    format!("service {name:?} refers to undefined network {n}"),
                );
            }
        }
        for (i, v) in s.volumes.iter().flatten().enumerate() {
            let vkey = format!("{key}.volumes[{i}]");
            let ty = v.r#type.as_deref().unwrap_or("volume");
            if !VOLUME_TYPES.contains(&ty) {
                return err(
                    &vkey,
                    format!("invalid volume type {ty:?} (one of {})", VOLUME_TYPES.join(", ")),
                );
            }
            if v.target.as_deref().unwrap_or("").is_empty() && ty != "npipe" {
                return err(&vkey, "volume needs a target".into());
            }
            match (ty, v.source.as_deref()) {
                ("volume", Some(src)) if !src.is_empty() && !p.volumes.contains_key(src) => {
                    return err(&vkey, format!("service {name:?} refers to undefined volume {src}"));
                }
                ("bind" | "image", None) => return err(&vkey, format!("a {ty} mount needs a source")),
                _ => {}
            }
        }
        for (kind, refs) in [("secret", &s.secrets), ("config", &s.configs)] {
            for (i, r) in refs.iter().flatten().enumerate() {
                let src = r.source.as_deref().unwrap_or("");
                let defined = if kind == "secret" {
                    p.secrets.contains_key(src)
                } else {
                    p.configs.contains_key(src)
                };
                if !defined {
                    return err(
                        &format!("{key}.{kind}s[{i}]"),
                        format!("service {name:?} refers to undefined {kind} {src}"),
                    );
                }
            }
        }
        for (dep, d) in s.depends_on.iter().flatten() {
            let dkey = format!("{key}.depends_on.{dep}");
            let cond = d
                .as_ref()
                .and_then(|d| d.condition.as_deref())
                .unwrap_or("service_started");
            if !CONDITIONS.contains(&cond) {
                return err(
                    &dkey,
                    format!("invalid condition {cond:?} (one of {})", CONDITIONS.join(", ")),
                );
            }
        }
        for (dep, kind) in s.dependencies() {
            if p.services.contains_key(&dep) || !kind.required() {
                continue;
            }
            let why = match kind {
                DependencyKind::DependsOn { .. } => "depends on".to_string(),
                DependencyKind::Link => "links to".to_string(),
                DependencyKind::VolumesFrom => "mounts volumes from".to_string(),
                DependencyKind::Namespace(k) => format!("uses in {k}"),
            };
            return err(&key, format!("service {name:?} {why} undefined service {dep:?}"));
        }
        if let Some(r) = &s.restart {
            if !valid_restart(r) {
                return err(
                    &format!("{key}.restart"),
                    format!("invalid restart policy {r:?} (no, always, on-failure[:N] or unless-stopped)"),
                );
            }
        }
        if let Some(pp) = &s.pull_policy {
            if !valid_pull_policy(pp) {
                return err(
                    &format!("{key}.pull_policy"),
                    format!(
                        "invalid pull_policy {pp:?} (always, never, missing, build, daily, weekly or every_<duration>)"
                    ),
                );
            }
        }
        for (i, port) in s.ports.iter().flatten().enumerate() {
            if port.target.is_none() {
                return err(&format!("{key}.ports[{i}]"), "port needs a target".into());
            }
            if let Some(t) = port.target.filter(|t| *t == 0 || *t > 65535) {
                return err(&format!("{key}.ports[{i}].target"), format!("invalid port {t}"));
            }
        }
        for (i, w) in s.develop.iter().flat_map(|d| d.watch.iter().flatten()).enumerate() {
            let wkey = format!("{key}.develop.watch[{i}]");
            let action = w.action.as_deref().unwrap_or("");
            if !WATCH_ACTIONS.contains(&action) {
                return err(
                    &wkey,
                    format!("invalid watch action {action:?} (one of {})", WATCH_ACTIONS.join(", ")),
                );
            }
            if w.path.is_none() {
                return err(&wkey, "watch rule needs a path".into());
            }
            if action.starts_with("sync") && w.target.is_none() {
                return err(&wkey, format!("watch action {action} needs a target"));
            }
            if action == "sync+exec" && w.exec.as_ref().and_then(|e| e.command.as_ref()).is_none() {
                return err(&wkey, "watch action sync+exec needs exec.command".into());
            }
        }
    }
    for (name, s) in &p.secrets {
        let sources = [
            s.file.is_some(),
            s.environment.is_some(),
            s.external.as_ref().is_some_and(External::is_external),
        ];
        if sources.iter().filter(|x| **x).count() != 1 {
            return err(
                &format!("secrets.{name}"),
                format!("secret {name:?} must set exactly one of file, environment or external"),
            );
        }
    }
    for (name, c) in &p.configs {
        let sources = [
            c.file.is_some(),
            c.environment.is_some(),
            c.content.is_some(),
            c.external.as_ref().is_some_and(External::is_external),
        ];
        if sources.iter().filter(|x| **x).count() != 1 {
            return err(
                &format!("configs.{name}"),
                format!("config {name:?} must set exactly one of file, environment, content or external"),
            );
        }
    }
    if let Err((key, msg)) = crate::names::check(p) {
        return err(&key, msg);
    }
    Ok(())
}
