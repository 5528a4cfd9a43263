//! The loading pipeline: discover files and environment, parse, interpolate, apply
//! `include` and `extends`, merge, decode into the typed model, normalize, validate.

use crate::context::Ctx;
pub use crate::context::{Loaded, Options};
use crate::discovery::{self, absolute};
use crate::environment::{self, Env};
use crate::error::{At, Error, Result};
use crate::interpolate::substitute;
use crate::locate::join;
use crate::merge::merge;
use crate::model::de::ValueDe;
use crate::model::Project;
use crate::source;
use serde_yaml_ng::{Mapping, Value};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Project names: lowercase letters, digits, `_` and `-`, starting with a letter or digit.
pub fn valid_project_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// A directory name made into a project name, as Compose does.
pub fn normalize_project_name(name: &str) -> String {
    let lower: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    lower.trim_start_matches(['_', '-']).to_string()
}

fn explicit_name(name: &str) -> Result<String> {
    let n = name.to_lowercase();
    if valid_project_name(&n) {
        Ok(n)
    } else {
        Err(Error::ProjectName { name: name.to_string() })
    }
}

/// The top-level `name:` of the files, the last one winning, interpolated.
fn name_from_files(opts: &Options, files: &[PathBuf], env: &Env) -> Option<String> {
    let mut name = None;
    for f in files {
        let text = if f == Path::new(discovery::STDIN) {
            opts.stdin.clone()
        } else {
            crate::read::text(f).ok()
        };
        // A file too deep to parse is reported when it is loaded for real.
        let Some(text) = text.filter(|t| source::too_deep(t).is_none()) else {
            continue;
        };
        let Ok(Value::Mapping(m)) = serde_yaml_ng::from_str::<Value>(&text) else {
            continue;
        };
        if let Some(Value::String(n)) = m.get("name") {
            let lookup = |k: &str| env.get(k).cloned();
            name = Some(if opts.no_interpolate {
                n.clone()
            } else {
                substitute(n, &lookup, &mut |_| {}).unwrap_or_else(|_| n.clone())
            });
        }
    }
    name.filter(|n| !n.is_empty())
}

/// Loads a project.
/// One file with its includes and extends applied.
pub(crate) fn process(ctx: &mut Ctx, path: &Path, env: &Env, stack: &mut Vec<PathBuf>) -> Result<Mapping> {
    let mut tree = ctx.read(path, env)?;
    crate::include::apply(ctx, &mut tree, path, env, stack, process)?;
    crate::extends::apply(ctx, &mut tree, path, env)?;
    Ok(tree)
}

pub fn load(opts: &Options) -> Result<Loaded> {
    let wd = &opts.working_dir;
    let os = &opts.os_env;
    let explicit_dir = opts.project_directory.as_ref().map(|p| absolute(wd, p));
    let env_dir = explicit_dir.clone().unwrap_or_else(|| wd.clone());

    let explicit_env: Vec<PathBuf> = if !opts.env_files.is_empty() {
        opts.env_files.iter().map(|f| absolute(wd, f)).collect()
    } else if let Some(v) = os.get("COMPOSE_ENV_FILES").filter(|v| !v.is_empty()) {
        v.split(',').map(|f| absolute(wd, Path::new(f))).collect()
    } else {
        Vec::new()
    };
    let mut env = if explicit_env.is_empty() {
        environment::load(os, &[env_dir.join(".env")], false)?
    } else {
        environment::load(os, &explicit_env, true)?
    };

    let files: Vec<PathBuf> = if !opts.files.is_empty() {
        opts.files
            .iter()
            .map(|f| {
                if f == Path::new(discovery::STDIN) {
                    f.clone()
                } else {
                    absolute(wd, f)
                }
            })
            .collect()
    } else if let Some(cf) = env.get("COMPOSE_FILE").filter(|v| !v.is_empty()) {
        let sep = env.get("COMPOSE_PATH_SEPARATOR").map(String::as_str);
        discovery::from_env(cf, sep)
            .iter()
            .map(|f| absolute(&env_dir, f))
            .collect()
    } else {
        discovery::find_default(&env_dir)?
    };
    let Some(first) = files.first() else {
        return Err(Error::NoConfigFile);
    };
    let project_dir = explicit_dir.unwrap_or_else(|| {
        if first == Path::new(discovery::STDIN) {
            wd.clone()
        } else {
            first.parent().map(Path::to_path_buf).unwrap_or_else(|| wd.clone())
        }
    });
    if explicit_env.is_empty() && project_dir != env_dir {
        env = environment::load(os, &[project_dir.join(".env")], false)?;
    }

    let name = if let Some(n) = opts.project_name.as_deref().filter(|n| !n.is_empty()) {
        explicit_name(n)?
    } else if let Some(n) = env.get("COMPOSE_PROJECT_NAME").filter(|n| !n.is_empty()) {
        explicit_name(n)?
    } else if let Some(n) = name_from_files(opts, &files, &env) {
        explicit_name(&n)?
    } else {
        let base = project_dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let n = normalize_project_name(&base);
        if n.is_empty() {
            return Err(Error::ProjectName { name: base });
        }
        n
    };
    env.entry("COMPOSE_PROJECT_NAME".into()).or_insert_with(|| name.clone());

    let mut ctx = Ctx {
        warnings: Vec::new(),
        warned: HashSet::new(),
        sources: Vec::new(),
        inputs: Vec::new(),
        home: os.get("HOME").cloned(),
        interpolate: !opts.no_interpolate,
        interpolated: 0,
        stdin: opts.stdin.clone(),
        cache: HashMap::new(),
        included_env: Env::new(),
        os_env: os.clone(),
    };
    let mut merged = Value::Mapping(Mapping::new());
    for f in &files {
        let mut stack = vec![f.clone()];
        let tree = process(&mut ctx, f, &env, &mut stack)?;
        merged = merge(merged, Value::Mapping(tree), &mut vec![]).unwrap_or(Value::Mapping(Mapping::new()));
    }
    let Value::Mapping(mut root) = merged else {
        return Err(Error::invalid(At::default(), "empty compose file"));
    };
    if !opts.no_path_resolution {
        crate::paths::resolve_tree(&mut root, &project_dir, ctx.home.as_deref());
    }
    let project = decode(&Value::Mapping(root)).map_err(|(path, message)| Error::Invalid {
        at: ctx.at(&path),
        message,
    })?;

    for (k, v) in std::mem::take(&mut ctx.included_env) {
        env.entry(k).or_insert(v);
    }
    let mut loaded = Loaded {
        project,
        name,
        project_dir,
        files,
        environment: env,
        all_profiles: Vec::new(),
        disabled: Vec::new(),
        warnings: Vec::new(),
        inputs: Vec::new(),
    };
    crate::normalize::run(&mut loaded, opts, &mut ctx)?;
    let env_inputs = if explicit_env.is_empty() {
        vec![loaded.project_dir.join(".env")]
    } else {
        explicit_env.clone()
    };
    let mut inputs: Vec<PathBuf> = loaded.files.clone();
    inputs.extend(ctx.sources.iter().map(|s| s.path.clone()));
    inputs.extend(env_inputs);
    inputs.extend(ctx.inputs.iter().cloned());
    inputs.retain(|p| p != Path::new(discovery::STDIN));
    let mut seen = HashSet::new();
    inputs.retain(|p| seen.insert(p.clone()));
    loaded.inputs = inputs;
    crate::validate::run(&loaded.project, &ctx)?;
    // A cycle is reported at the `depends_on` of the first service on it.
    crate::graph::Graph::new(&loaded.project).map_err(|e| match e {
        Error::Cycle(cycle) => {
            let first = cycle.split(" -> ").next().unwrap_or_default().to_string();
            let key = format!("services.{first}.depends_on");
            Error::Invalid {
                at: ctx.at(&key),
                message: format!("dependency cycle detected: {cycle}"),
            }
        }
        other => other,
    })?;
    loaded.warnings = ctx.warnings;
    Ok(loaded)
}

/// Decodes a merged tree into the typed model. On error, returns the key path and the
/// message (an unknown key's path ends with the key itself).
pub fn decode(v: &Value) -> std::result::Result<Project, (String, String)> {
    serde_path_to_error::deserialize(ValueDe(v)).map_err(|e| {
        let mut path = e.path().to_string();
        if path == "." {
            path.clear();
        }
        let message = e.inner().0.clone();
        if let Some(rest) = message.strip_prefix("unknown key `") {
            if let Some(key) = rest.split('`').next() {
                path = join(&path, key);
            }
        }
        (path, message)
    })
}
