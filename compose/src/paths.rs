//! Relative paths in a Compose tree made absolute against a base directory: build
//! contexts, bind mount sources, env/label files, secret and config files, watch paths.
//! Works on the untyped tree so that `extends` and `include` can rebase a piece of a
//! model against its own file's directory before it is merged into another.

use crate::discovery::{absolute, expand_home};
use crate::model::is_path;
use serde_yaml_ng::{Mapping, Value};
use std::path::Path;

fn resolve(s: &str, base: &Path, home: Option<&str>) -> String {
    let s = expand_home(s, home);
    absolute(base, Path::new(&s)).to_string_lossy().into_owned()
}

fn map_str(v: &mut Value, f: &dyn Fn(&str) -> Option<String>) {
    match v {
        Value::String(s) => {
            if let Some(n) = f(s) {
                *s = n;
            }
        }
        Value::Tagged(t) => map_str(&mut t.value, f),
        _ => {}
    }
}

fn field<'a>(m: &'a mut Mapping, k: &str) -> Option<&'a mut Value> {
    m.get_mut(k)
}

fn seq(v: &mut Value) -> impl Iterator<Item = &mut Value> {
    let items: Vec<&mut Value> = match v {
        Value::Sequence(s) => s.iter_mut().collect(),
        Value::Tagged(t) => match &mut t.value {
            Value::Sequence(s) => s.iter_mut().collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    items.into_iter()
}

/// Whether a build context is a remote source, not a directory.
fn is_remote(s: &str) -> bool {
    s.contains("://") || s.starts_with("git@") || s.starts_with("github.com/")
}

/// Rewrites relative paths in one service (a canonical mapping) against `base`.
pub fn resolve_service(svc: &mut Mapping, base: &Path, home: Option<&str>) {
    let r = |s: &str| Some(resolve(s, base, home));
    if let Some(Value::Mapping(b)) = field(svc, "build") {
        // No context means this file's project directory.
        if !b.contains_key("context") {
            b.insert("context".into(), Value::String(base.to_string_lossy().into_owned()));
        }
        if let Some(c) = field(b, "context") {
            map_str(c, &|s| (!is_remote(s)).then(|| resolve(s, base, home)));
        }
        if let Some(Value::Mapping(ac)) = field(b, "additional_contexts") {
            for (_, v) in ac.iter_mut() {
                map_str(v, &|s| {
                    (!s.contains(':') || s.starts_with('.')).then(|| resolve(s, base, home))
                });
            }
        }
    }
    if let Some(v) = field(svc, "volumes") {
        for item in seq(v) {
            match item {
                Value::String(s) => {
                    let mut parts: Vec<String> = s.split(':').map(str::to_string).collect();
                    if parts.len() >= 2 && is_path(&parts[0]) {
                        parts[0] = resolve(&parts[0], base, home);
                        *s = parts.join(":");
                    }
                }
                Value::Mapping(m) => {
                    let is_bind = m.get("type").and_then(Value::as_str) == Some("bind");
                    if is_bind {
                        if let Some(src) = field(m, "source") {
                            map_str(src, &r);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    for key in ["env_file", "label_file"] {
        if let Some(v) = field(svc, key) {
            match v {
                Value::String(_) => map_str(v, &r),
                _ => {
                    for item in seq(v) {
                        match item {
                            Value::Mapping(m) => {
                                if let Some(p) = field(m, "path") {
                                    map_str(p, &r)
                                }
                            }
                            other => map_str(other, &r),
                        }
                    }
                }
            }
        }
    }
    if let Some(Value::Mapping(d)) = field(svc, "develop") {
        if let Some(w) = field(d, "watch") {
            for item in seq(w) {
                if let Value::Mapping(m) = item {
                    if let Some(p) = field(m, "path") {
                        map_str(p, &r);
                    }
                }
            }
        }
    }
    if let Some(Value::Mapping(e)) = field(svc, "extends") {
        if let Some(f) = field(e, "file") {
            map_str(f, &r);
        }
    }
}

/// Rewrites every relative path of a canonical project tree against `base`.
pub fn resolve_tree(root: &mut Mapping, base: &Path, home: Option<&str>) {
    if let Some(Value::Mapping(services)) = root.get_mut("services") {
        for (_, svc) in services.iter_mut() {
            if let Value::Mapping(s) = svc {
                resolve_service(s, base, home);
            }
        }
    }
    for section in ["secrets", "configs"] {
        if let Some(Value::Mapping(items)) = root.get_mut(section) {
            for (_, item) in items.iter_mut() {
                if let Value::Mapping(m) = item {
                    if let Some(f) = m.get_mut("file") {
                        map_str(f, &|s| Some(resolve(s, base, home)));
                    }
                }
            }
        }
    }
}
