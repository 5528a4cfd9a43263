//! `include`: other Compose projects imported into this one, each loaded with its own
//! project directory and env files, its relative paths resolved against that directory.
//! A resource defined by both sides differently is an error; include cycles are refused.

use crate::context::{Ctx, Process};
use crate::discovery::absolute;
use crate::environment::{self, Env};
use crate::error::{Error, Result};
use crate::merge::{key_str, merge, scalar_str};
use serde_yaml_ng::{Mapping, Value};
use std::path::{Path, PathBuf};

const SECTIONS: &[&str] = &["services", "networks", "volumes", "secrets", "configs", "models"];

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Sequence(s)) => s.iter().filter_map(scalar_str).collect(),
        Some(other) => scalar_str(other).into_iter().filter(|s| !s.is_empty()).collect(),
        None => Vec::new(),
    }
}

pub(crate) fn apply(
    ctx: &mut Ctx,
    tree: &mut Mapping,
    file: &Path,
    env: &Env,
    stack: &mut Vec<PathBuf>,
    process: Process,
) -> Result<()> {
    let Some(includes) = tree.shift_remove("include") else {
        return Ok(());
    };
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let entries = match includes {
        Value::Sequence(s) => s,
        Value::Null => Vec::new(),
        _ => return Err(Error::invalid(ctx.at("include"), "include must be a list")),
    };
    for (i, entry) in entries.into_iter().enumerate() {
        let key = format!("include[{i}]");
        let (paths, env_files, project_directory) = match &entry {
            Value::Mapping(m) => {
                for k in m.keys() {
                    let k = key_str(k);
                    if !["path", "env_file", "project_directory"].contains(&k.as_str()) {
                        let msg = crate::model::unknown_key(&k, &["path", "env_file", "project_directory"]);
                        return Err(Error::invalid(ctx.at(&format!("{key}.{k}")), msg));
                    }
                }
                (
                    strings(m.get("path")),
                    strings(m.get("env_file")),
                    m.get("project_directory").and_then(scalar_str),
                )
            }
            other => (strings(Some(other)), Vec::new(), None),
        };
        if paths.is_empty() {
            return Err(Error::invalid(ctx.at(&key), "include requires a path"));
        }
        let paths: Vec<PathBuf> = paths.iter().map(|p| absolute(&dir, Path::new(p))).collect();
        let project_dir = match project_directory {
            Some(p) => absolute(&dir, Path::new(&p)),
            None => paths[0].parent().map(Path::to_path_buf).unwrap_or_else(|| dir.clone()),
        };
        // The included project's variables: its env files over ours, the OS on top.
        let sub_env = if env_files.is_empty() {
            let mut e = env.clone();
            let own = environment::load(&Env::new(), &[project_dir.join(".env")], false)?;
            for (k, v) in own {
                e.entry(k).or_insert(v);
            }
            e
        } else {
            let files: Vec<PathBuf> = env_files.iter().map(|f| absolute(&dir, Path::new(f))).collect();
            let own = environment::load(&Env::new(), &files, true)?;
            let mut e = env.clone();
            for (k, v) in own {
                if ctx.os_env.contains_key(&k) {
                    continue;
                }
                ctx.included_env.entry(k.clone()).or_insert_with(|| v.clone());
                e.insert(k, v);
            }
            e
        };
        let mut sub = Value::Mapping(Mapping::new());
        for p in &paths {
            if let Some(pos) = stack.iter().position(|s| s == p) {
                let mut chain: Vec<String> = stack[pos..].iter().map(|s| s.display().to_string()).collect();
                chain.push(p.display().to_string());
                return Err(Error::invalid(
                    ctx.at(&key),
                    format!("include cycle detected: {}", chain.join(" -> ")),
                ));
            }
            if !p.is_file() {
                return Err(Error::invalid(
                    ctx.at(&key),
                    format!("included file {} not found", p.display()),
                ));
            }
            stack.push(p.clone());
            let t = process(ctx, p, &sub_env, stack)?;
            stack.pop();
            sub = merge(sub, Value::Mapping(t), &mut vec![]).unwrap_or(Value::Mapping(Mapping::new()));
        }
        let Value::Mapping(mut sub) = sub else { continue };
        crate::paths::resolve_tree(&mut sub, &project_dir, ctx.home.as_deref());
        for section in SECTIONS {
            let Some(Value::Mapping(items)) = sub.shift_remove(*section) else {
                continue;
            };
            let target = tree
                .entry((*section).into())
                .or_insert_with(|| Value::Mapping(Mapping::new()));
            if target.is_null() {
                *target = Value::Mapping(Mapping::new());
            }
            let Value::Mapping(target) = target else { continue };
            for (k, v) in items {
                match target.get(&k) {
                    Some(existing) if *existing != v => {
                        let name = key_str(&k);
                        return Err(Error::invalid(
                            ctx.at(&format!("{section}.{name}")),
                            format!(
                                "{} defines {section}.{name} differently from the including file",
                                paths[0].display()
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        target.insert(k, v);
                    }
                }
            }
        }
    }
    Ok(())
}
