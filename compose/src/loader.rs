//! The loading pipeline: discover files and environment, parse, interpolate, apply
//! `include` and `extends`, merge, decode into the typed model, normalize, validate.

use crate::discovery::{self, absolute};
use crate::environment::{self, Env};
use crate::error::{At, Error, Result};
use crate::interpolate::substitute;
use crate::locate::join;
use crate::merge::{canonicalize, key_str, merge};
use crate::model::de::ValueDe;
use crate::model::Project;
use crate::source::{self, Source};
use serde_yaml_ng::{Mapping, Value};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

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
    warned: HashSet<String>,
    pub sources: Vec<Source>,
    /// Other files read (env_file, label_file), for `Loaded::inputs`.
    pub inputs: Vec<PathBuf>,
    pub home: Option<String>,
    interpolate: bool,
    stdin: Option<String>,
    cache: HashMap<PathBuf, Mapping>,
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

    /// One file with its includes and extends applied.
    pub fn process(&mut self, path: &Path, env: &Env, stack: &mut Vec<PathBuf>) -> Result<Mapping> {
        let mut tree = self.read(path, env)?;
        crate::include::apply(self, &mut tree, path, env, stack)?;
        crate::extends::apply(self, &mut tree, path, env)?;
        Ok(tree)
    }
}

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
        stdin: opts.stdin.clone(),
        cache: HashMap::new(),
        included_env: Env::new(),
        os_env: os.clone(),
    };
    let mut merged = Value::Mapping(Mapping::new());
    for f in &files {
        let mut stack = vec![f.clone()];
        let tree = ctx.process(f, &env, &mut stack)?;
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
