//! Finding the Compose files and the project directory, as Docker Compose does:
//! `-f` (repeatable, `-` for stdin), else `COMPOSE_FILE` split by `COMPOSE_PATH_SEPARATOR`,
//! else `compose.yaml`/`compose.yml`/`docker-compose.yml`/`docker-compose.yaml` in the
//! working directory or its nearest parent, plus the matching `*.override.y(a)ml`.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

pub const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// The standard input stands for a file named `-`.
pub const STDIN: &str = "-";

/// The files named by `COMPOSE_FILE` (`:` separated on Unix unless
/// `COMPOSE_PATH_SEPARATOR` says otherwise).
pub fn from_env(value: &str, separator: Option<&str>) -> Vec<PathBuf> {
    let sep = separator.filter(|s| !s.is_empty()).unwrap_or(":");
    value.split(sep).filter(|s| !s.is_empty()).map(PathBuf::from).collect()
}

/// Searches `dir` and its parents for the default file and its override.
pub fn find_default(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut d = Some(dir);
    while let Some(cur) = d {
        for name in DEFAULT_FILES {
            let candidate = cur.join(name);
            if candidate.is_file() {
                let stem = name.rsplit_once('.').map(|(s, _)| s).unwrap_or(name);
                let mut files = vec![candidate];
                for ext in ["yaml", "yml"] {
                    let o = cur.join(format!("{stem}.override.{ext}"));
                    if o.is_file() {
                        files.push(o);
                        break;
                    }
                }
                return Ok(files);
            }
        }
        d = cur.parent();
    }
    Err(Error::NoConfigFile)
}

/// Makes `p` absolute against `base`, without touching the filesystem.
pub fn absolute(base: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
    clean(&joined)
}

/// Lexical clean-up: removes `.` and resolves `..` (as Go's filepath.Clean).
pub fn clean(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Expands a leading `~` to the home directory, as Compose does for paths.
pub fn expand_home(p: &str, home: Option<&str>) -> String {
    match (p.strip_prefix('~'), home) {
        (Some(rest), Some(h)) if rest.is_empty() || rest.starts_with('/') => format!("{h}{rest}"),
        _ => p.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_in_parent_with_override() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("compose.yaml"), "services: {}").unwrap();
        std::fs::write(t.path().join("compose.override.yml"), "services: {}").unwrap();
        let sub = t.path().join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        let f = find_default(&sub).unwrap();
        assert_eq!(
            f,
            vec![t.path().join("compose.yaml"), t.path().join("compose.override.yml")]
        );
    }

    #[test]
    fn compose_yaml_wins_over_docker_compose() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("docker-compose.yml"), "").unwrap();
        std::fs::write(t.path().join("compose.yaml"), "").unwrap();
        assert_eq!(find_default(t.path()).unwrap(), vec![t.path().join("compose.yaml")]);
    }

    #[test]
    fn env_split_and_clean() {
        assert_eq!(
            from_env("a.yml:b.yml", None),
            vec![PathBuf::from("a.yml"), PathBuf::from("b.yml")]
        );
        assert_eq!(
            from_env("a.yml;b.yml", Some(";")),
            vec![PathBuf::from("a.yml"), PathBuf::from("b.yml")]
        );
        assert_eq!(clean(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(expand_home("~/x", Some("/root")), "/root/x");
        assert_eq!(expand_home("~x", Some("/root")), "~x");
    }
}
