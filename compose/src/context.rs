//! What the loader's stages share: its options, its result, and the context every stage
//! reads and writes (positions of every file read, warnings, the cache of files read for
//! `extends`). In a file of its own so that the stages (`include`, `extends`,
//! `normalize`, `validate`) depend on it and not on the loader or on each other.

use crate::discovery;
use crate::environment::Env;
use crate::error::{At, Error, Result};
use crate::interpolate::substitute;
use crate::locate::join;
use crate::merge::{canonicalize, key_str};
use crate::model::Project;
use crate::source::{self, Source};
use serde_yaml_ng::{Mapping, Value};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The most text interpolation may make, all files together.
pub(crate) const MAX_INTERPOLATED: usize = 64 << 20;

/// How one file becomes a tree with its includes and extends applied: the loader's,
/// handed to `include` for the files it includes.
pub(crate) type Process = fn(&mut Ctx, &Path, &Env, &mut Vec<PathBuf>) -> Result<Mapping>;

/// What the command line and the process environment say about the project.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where relative `-f`, `--env-file` and `--project-directory` are taken from.
    pub working_dir: PathBuf,
    /// `-f`, in order; `-` reads the standard input (given in `stdin`).
    pub files: Vec<PathBuf>,
    pub project_directory: Option<PathBuf>,
    /// `-p`.
    pub project_name: Option<String>,
    /// `--env-file`, in order.
    pub env_files: Vec<PathBuf>,
    /// `--profile`.
    pub profiles: Vec<String>,
    /// Services named on the command line: their profiles are activated.
    pub services: Vec<String>,
    /// The process environment.
    pub os_env: Env,
    /// `false` for `config --no-interpolate`.
    pub no_interpolate: bool,
    /// `false` for `config --no-path-resolution`.
    pub no_path_resolution: bool,
    /// Text standing for the file `-`.
    pub stdin: Option<String>,
}

/// A loaded project and what was learnt on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub project: Project,
    pub name: String,
    pub project_dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub environment: Env,
    /// Every profile named by any service, enabled or not.
    pub all_profiles: Vec<String>,
    /// Services left out because none of their profiles is active.
    pub disabled: Vec<String>,
    pub warnings: Vec<String>,
    /// Every file the project was read from, or would be read from if it appeared (the
    /// `.env` file): Compose files, included and extended ones, env and label files.
    /// What `up --watch` watches to reload the project.
    pub inputs: Vec<PathBuf>,
}

/// State shared by the stages: positions of every file read, warnings, a cache of files
/// read for `extends`.
pub(crate) struct Ctx {
    pub warnings: Vec<String>,
    pub(crate) warned: HashSet<String>,
    pub sources: Vec<Source>,
    /// Other files read (env_file, label_file), for `Loaded::inputs`.
    pub inputs: Vec<PathBuf>,
    pub home: Option<String>,
    pub(crate) interpolate: bool,
    /// Bytes of strings made by interpolation so far.
    pub(crate) interpolated: usize,
    pub(crate) stdin: Option<String>,
    pub(crate) cache: HashMap<PathBuf, Mapping>,
    /// Variables that included projects read from their own env files: a secret or
    /// config of theirs may name one (`environment: VAR`), so they join the project's
    /// environment where it does not set them itself.
    pub included_env: Env,
    /// The process environment, which wins over every env file.
    pub os_env: Env,
}

impl Ctx {
    pub fn warn(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        if self.warned.insert(msg.clone()) {
            self.warnings.push(msg);
        }
    }

    /// The best place for an error about `key` in the merged model: the last file that
    /// writes that exact key, else the first file's closest ancestor of it.
    pub fn at(&self, key: &str) -> At {
        if let Some(s) = self.sources.iter().rev().find(|s| s.locator.has(key)) {
            return s.at(key);
        }
        match self.sources.first() {
            Some(s) => s.at(key),
            None => At {
                location: None,
                key: Some(key.to_string()),
            },
        }
    }

    /// Reads, parses, interpolates and canonicalizes one file.
    pub fn read(&mut self, path: &Path, env: &Env) -> Result<Mapping> {
        let text = if path == Path::new(discovery::STDIN) {
            self.stdin.clone().unwrap_or_default()
        } else {
            crate::read::text(path).map_err(|e| Error::io(path, e))?
        };
        let (src, value) = source::parse(path, &text)?;
        if matches!(&value, Value::Mapping(m) if m.contains_key("version")) {
            self.warn(format!(
                "{}: the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion",
                path.display()
            ));
        }
        let value = if self.interpolate {
            self.interpolate_tree(value, "", env, &src)?
        } else {
            value
        };
        self.sources.push(src);
        match canonicalize(value, &mut vec![]) {
            Value::Mapping(m) => Ok(m),
            _ => Ok(Mapping::new()),
        }
    }

    /// Reads a file for `extends`, once.
    pub fn read_cached(&mut self, path: &Path, env: &Env) -> Result<Mapping> {
        if let Some(m) = self.cache.get(path) {
            return Ok(m.clone());
        }
        let m = self.read(path, env)?;
        self.cache.insert(path.to_path_buf(), m.clone());
        Ok(m)
    }

    fn interpolate_tree(&mut self, v: Value, path: &str, env: &Env, src: &Source) -> Result<Value> {
        Ok(match v {
            Value::String(s) if s.contains('$') => {
                let mut unset = Vec::new();
                let lookup = |n: &str| env.get(n).cloned();
                let out = substitute(&s, &lookup, &mut |n: &str| unset.push(n.to_string())).map_err(|e| {
                    Error::Interpolation {
                        at: src.at(path),
                        message: e.to_string(),
                    }
                })?;
                for n in unset {
                    self.warn(format!(
                        "The \"{n}\" variable is not set. Defaulting to a blank string."
                    ));
                }
                // Aliases repeat a node before it is interpolated: a long variable in
                // one repeated string is bounded here, as the aliases are by size.
                self.interpolated = self.interpolated.saturating_add(out.len());
                if self.interpolated > MAX_INTERPOLATED {
                    return Err(Error::Interpolation {
                        at: src.at(path),
                        message: format!(
                            "interpolation makes the project larger than {} MiB",
                            MAX_INTERPOLATED >> 20
                        ),
                    });
                }
                Value::String(out)
            }
            Value::Mapping(m) => {
                let mut out = Mapping::with_capacity(m.len());
                for (k, val) in m {
                    let p = join(path, &key_str(&k));
                    let val = self.interpolate_tree(val, &p, env, src)?;
                    out.insert(k, val);
                }
                Value::Mapping(out)
            }
            Value::Sequence(s) => {
                let mut out = Vec::with_capacity(s.len());
                for (i, val) in s.into_iter().enumerate() {
                    out.push(self.interpolate_tree(val, &format!("{path}[{i}]"), env, src)?);
                }
                Value::Sequence(out)
            }
            Value::Tagged(mut t) => {
                t.value = self.interpolate_tree(t.value, path, env, src)?;
                Value::Tagged(t)
            }
            other => other,
        })
    }
}
