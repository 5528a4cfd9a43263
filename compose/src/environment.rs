//! The variables a project is interpolated with: the OS environment over the project's
//! env files (`--env-file`, `COMPOSE_ENV_FILES`, else `<project dir>/.env`).

use crate::dotenv;
use crate::error::{Error, Result};
use indexmap::IndexMap;
use std::path::{Path, PathBuf};

pub type Env = IndexMap<String, String>;

/// Reads env files in order (later ones override earlier ones; each may use the values
/// of the ones before and of the OS environment), then lays the OS environment over them.
pub fn load(os: &Env, files: &[PathBuf], required: bool) -> Result<Env> {
    let mut from_files = Env::new();
    for f in files {
        let text = match crate::read::text(f) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(f, e)),
        };
        let lookup = |n: &str| os.get(n).or_else(|| from_files.get(n)).cloned();
        let vars = dotenv::parse(&text, &lookup).map_err(|e| Error::DotEnv {
            file: f.clone(),
            line: e.line,
            message: e.message,
        })?;
        from_files.extend(vars);
    }
    let mut env = from_files;
    for (k, v) in os {
        env.insert(k.clone(), v.clone());
    }
    Ok(env)
}

/// Reads one env file for a service's `env_file`: `dotenv` format, or `raw` (each line
/// `KEY=VALUE` taken verbatim, no quotes, no interpolation).
pub fn read_env_file(path: &Path, format: Option<&str>, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Env> {
    let text = crate::read::text(path).map_err(|e| Error::io(path, e))?;
    match format.unwrap_or("dotenv") {
        "raw" => Ok(text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.trim().to_string(), v.to_string()),
                None => (l.trim().to_string(), String::new()),
            })
            .collect()),
        "dotenv" => dotenv::parse(&text, &lookup).map_err(|e| Error::DotEnv {
            file: path.to_path_buf(),
            line: e.line,
            message: e.message,
        }),
        other => Err(Error::Invalid {
            at: Default::default(),
            message: format!(
                "{}: unsupported env_file format {other:?} (dotenv or raw)",
                path.display()
            ),
        }),
    }
}
