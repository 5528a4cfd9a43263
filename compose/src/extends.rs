//! `extends`: a service built on another, from the same file or another one, chained,
//! with cycles refused. The extended service's relative paths are resolved against its
//! own file's directory; the extending service then merges over it by the usual rules.

use crate::context::Ctx;
use crate::discovery::absolute;
use crate::environment::Env;
use crate::error::{Error, Result};
use crate::merge::{merge, scalar_str};
use serde_yaml_ng::{Mapping, Value};
use std::path::{Path, PathBuf};

pub(crate) fn apply(ctx: &mut Ctx, tree: &mut Mapping, file: &Path, env: &Env) -> Result<()> {
    let Some(Value::Mapping(services)) = tree.get("services") else {
        return Ok(());
    };
    let services = services.clone();
    let mut out = Mapping::with_capacity(services.len());
    for (name, _) in &services {
        let n = crate::merge::key_str(name);
        let mut stack = Vec::new();
        let resolved = resolve(ctx, file, &services, &n, env, &mut stack)?;
        out.insert(name.clone(), resolved);
    }
    tree.insert("services".into(), Value::Mapping(out));
    Ok(())
}

fn resolve(
    ctx: &mut Ctx,
    file: &Path,
    services: &Mapping,
    name: &str,
    env: &Env,
    stack: &mut Vec<(PathBuf, String)>,
) -> Result<Value> {
    let key = format!("services.{name}");
    let svc = match services.get(name) {
        Some(Value::Mapping(m)) => m.clone(),
        Some(Value::Null) => Mapping::new(),
        // Not a mapping: left for the typed stage to report with its position.
        Some(other) => return Ok(other.clone()),
        None => {
            let (from_file, from) = stack.last().cloned().unwrap_or_default();
            return Err(Error::invalid(
                ctx.at(&format!("services.{from}.extends")),
                format!(
                    "cannot extend service {name:?} of {}: no such service (extended by {from} in {})",
                    file.display(),
                    from_file.display()
                ),
            ));
        }
    };
    let Some(ext) = svc.get("extends").cloned() else {
        return Ok(Value::Mapping(svc));
    };
    let me = (file.to_path_buf(), name.to_string());
    if let Some(pos) = stack.iter().position(|s| *s == me) {
        let mut chain: Vec<String> = stack[pos..].iter().map(|(_, s)| s.clone()).collect();
        chain.push(name.to_string());
        return Err(Error::invalid(
            ctx.at(&format!("{key}.extends")),
            format!("extends cycle detected: {}", chain.join(" -> ")),
        ));
    }
    let (base_name, base_file) = match &ext {
        Value::Mapping(m) => (
            m.get("service").and_then(scalar_str),
            m.get("file").and_then(scalar_str),
        ),
        other => (scalar_str(other), None),
    };
    let Some(base_name) = base_name.filter(|s| !s.is_empty()) else {
        return Err(Error::invalid(
            ctx.at(&format!("{key}.extends")),
            "extends requires a service name",
        ));
    };
    stack.push(me);
    let base = match base_file {
        Some(f) => {
            let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
            let other = absolute(&dir, Path::new(&f));
            if !other.is_file() {
                return Err(Error::invalid(
                    ctx.at(&format!("{key}.extends.file")),
                    format!("extended file {} not found", other.display()),
                ));
            }
            let tree = ctx.read_cached(&other, env)?;
            let other_services = match tree.get("services") {
                Some(Value::Mapping(m)) => m.clone(),
                _ => Mapping::new(),
            };
            let mut b = resolve(ctx, &other, &other_services, &base_name, env, stack)?;
            if let Value::Mapping(m) = &mut b {
                let other_dir = other.parent().map(Path::to_path_buf).unwrap_or_default();
                crate::paths::resolve_service(m, &other_dir, ctx.home.as_deref());
            }
            b
        }
        None => resolve(ctx, file, services, &base_name, env, stack)?,
    };
    stack.pop();
    let mut base = match base {
        Value::Mapping(m) => m,
        _ => Mapping::new(),
    };
    base.shift_remove("extends");
    let mut local = svc;
    local.shift_remove("extends");
    let mut wrapped_base = Mapping::new();
    wrapped_base.insert(Value::String(name.to_string()), Value::Mapping(base));
    let mut wrapped_local = Mapping::new();
    wrapped_local.insert(Value::String(name.to_string()), Value::Mapping(local));
    let mut path = vec!["services".to_string()];
    let merged = merge(Value::Mapping(wrapped_base), Value::Mapping(wrapped_local), &mut path);
    Ok(match merged {
        Some(Value::Mapping(mut m)) => m.shift_remove(name).unwrap_or(Value::Null),
        _ => Value::Null,
    })
}
