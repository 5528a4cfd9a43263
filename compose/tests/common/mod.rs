//! Helpers shared by the loader's integration tests.
#![allow(dead_code)]

use compose::{Loaded, Options};
use std::path::{Path, PathBuf};

/// `../shared/conformance` beside the project. Missing: skipped with a message, except in
/// CI (`CI=true`), where the corpus is always present and its absence is a failure.
pub fn corpus() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance");
    if p.is_dir() {
        return Some(p.canonicalize().unwrap());
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the conformance corpus is missing at {}", p.display());
    }
    eprintln!("skipped: the conformance corpus is not at {}", p.display());
    None
}

pub fn opts(dir: &Path, files: &[&str], env: &[(&str, &str)]) -> Options {
    Options {
        working_dir: dir.to_path_buf(),
        files: files.iter().map(PathBuf::from).collect(),
        os_env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    }
}

pub fn load(dir: &Path, files: &[&str], env: &[(&str, &str)]) -> Loaded {
    let o = opts(dir, files, env);
    match compose::load(&o) {
        Ok(l) => l,
        Err(e) => panic!("loading {files:?} in {}: {e}", dir.display()),
    }
}

pub fn load_err(dir: &Path, files: &[&str], env: &[(&str, &str)]) -> String {
    match compose::load(&opts(dir, files, env)) {
        Ok(_) => panic!("loading {files:?} in {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// A temporary directory holding `files` (name, content).
pub fn temp(files: &[(&str, &str)]) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for (name, content) in files {
        let p = t.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    t
}

pub fn s(v: &str) -> String {
    v.to_string()
}

pub fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
