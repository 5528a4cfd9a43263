//! The `develop.watch` rules of the watched services, checked once: what each rule
//! watches, what it ignores, and what it does with a change.

use super::ignore::{is_editor_temp, Patterns};
use compose::model::Project;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Sync,
    SyncRestart,
    SyncExec(Exec),
    Restart,
    /// The service's image built again and its containers recreated.
    Rebuild,
}

/// `sync+exec`'s command.
#[derive(Debug, Clone, PartialEq)]
pub struct Exec {
    pub command: Vec<String>,
    pub user: Option<String>,
    pub privileged: bool,
    pub working_dir: Option<String>,
    pub env: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub service: String,
    /// `services.S.develop.watch[i]`, for messages.
    pub key: String,
    pub path: PathBuf,
    pub action: Action,
    /// The container path `path` maps to (sync actions).
    pub target: Option<String>,
    pub ignore: Patterns,
    pub include: Patterns,
    /// The build context's `.dockerignore`, with the context it is relative to.
    pub context_ignore: Option<(PathBuf, Patterns)>,
    pub initial_sync: bool,
}

impl Rule {
    pub fn syncs(&self) -> bool {
        matches!(self.action, Action::Sync | Action::SyncRestart | Action::SyncExec(_))
    }

    /// The path of `p` relative to the rule's path, when the rule cares about it.
    pub fn wants(&self, p: &Path) -> Option<PathBuf> {
        let rel = p.strip_prefix(&self.path).ok()?.to_path_buf();
        if is_editor_temp(p) {
            return None;
        }
        if !rel.as_os_str().is_empty() {
            if self.ignore.matches(&rel) {
                return None;
            }
            if !self.include.is_empty() && !self.include.matches(&rel) {
                return None;
            }
        }
        if let Some((ctx, pats)) = &self.context_ignore {
            if let Ok(r) = p.strip_prefix(ctx) {
                if pats.matches(r) {
                    return None;
                }
            }
        }
        Some(rel)
    }

    /// Whether a directory under the rule's path needs no watch at all.
    pub fn skips_dir(&self, dir: &Path) -> bool {
        let Ok(rel) = dir.strip_prefix(&self.path) else {
            return false;
        };
        if rel.as_os_str().is_empty() {
            return false;
        }
        if self.ignore.excludes_tree(rel) {
            return true;
        }
        match &self.context_ignore {
            Some((ctx, pats)) => dir.strip_prefix(ctx).is_ok_and(|r| pats.excludes_tree(r)),
            None => false,
        }
    }
}

/// The rules of `services` (all services with a `develop` section when empty).
pub fn rules(project: &Project, services: &[String]) -> Result<Vec<Rule>, String> {
    let mut out = Vec::new();
    let wanted: Vec<String> = if services.is_empty() {
        project.services.keys().cloned().collect()
    } else {
        services.to_vec()
    };
    for name in &wanted {
        let Some(s) = project.services.get(name) else {
            return Err(format!("no such service: {name}"));
        };
        let Some(list) = s.develop.as_ref().and_then(|d| d.watch.as_ref()) else {
            if !services.is_empty() {
                return Err(format!(
                    "service {name:?} has no develop.watch section: nothing of it can be watched"
                ));
            }
            continue;
        };
        let context_ignore = match s.build.as_ref().and_then(|b| b.context.as_deref()) {
            Some(ctx) if !ctx.contains("://") => {
                let ctx = PathBuf::from(ctx);
                let pats = Patterns::from_file(&ctx.join(".dockerignore"))?;
                (!pats.is_empty()).then_some((ctx, pats))
            }
            _ => None,
        };
        for (i, w) in list.iter().enumerate() {
            let key = format!("services.{name}.develop.watch[{i}]");
            let path = PathBuf::from(
                w.path
                    .as_deref()
                    .ok_or_else(|| format!("{key}: a watch rule needs a path"))?,
            );
            let action = match w.action.as_deref().unwrap_or("") {
                "sync" => Action::Sync,
                "sync+restart" => Action::SyncRestart,
                "restart" => Action::Restart,
                "sync+exec" => {
                    let e = w.exec.as_ref();
                    let command = e
                        .and_then(|e| e.command.clone())
                        .filter(|c| !c.is_empty())
                        .ok_or_else(|| format!("{key}.exec.command: sync+exec needs a command"))?;
                    Action::SyncExec(Exec {
                        command,
                        user: e.and_then(|e| e.user.clone()),
                        privileged: e.and_then(|e| e.privileged).unwrap_or(false),
                        working_dir: e.and_then(|e| e.working_dir.clone()),
                        env: e
                            .and_then(|e| e.environment.as_ref())
                            .map(|m| {
                                m.iter()
                                    .map(|(k, v)| format!("{k}={}", v.clone().unwrap_or_default()))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                }
                "rebuild" if s.build.is_none() => {
                    return Err(format!(
                        "{key}.action: rebuild needs the service to have a build section"
                    ))
                }
                "rebuild" => Action::Rebuild,
                other => return Err(format!("{key}.action: invalid watch action {other:?}")),
            };
            if !path.exists() {
                return Err(format!("{key}.path: {} does not exist", path.display()));
            }
            let target = w.target.clone();
            if matches!(action, Action::Sync | Action::SyncRestart | Action::SyncExec(_)) {
                let t = target
                    .as_deref()
                    .ok_or_else(|| format!("{key}.target: a sync rule needs a target"))?;
                let p = Path::new(t);
                if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
                    return Err(format!(
                        "{key}.target: {t:?} is not a path inside the container (it must be absolute, without ..)"
                    ));
                }
            }
            let ignore =
                Patterns::new(w.ignore.as_deref().unwrap_or_default()).map_err(|e| format!("{key}.ignore: {e}"))?;
            let include =
                Patterns::new(w.include.as_deref().unwrap_or_default()).map_err(|e| format!("{key}.include: {e}"))?;
            out.push(Rule {
                service: name.clone(),
                key,
                path,
                action,
                target,
                ignore,
                include,
                context_ignore: context_ignore.clone(),
                initial_sync: w.initial_sync.unwrap_or(false),
            });
        }
    }
    if out.is_empty() {
        return Err(
            "none of the selected services is configured for watch, consider setting a 'develop' section".into(),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(dir: &Path, yaml: &str) -> Result<Project, String> {
        std::fs::write(dir.join("compose.yaml"), yaml).unwrap();
        let opts = compose::Options {
            working_dir: dir.to_path_buf(),
            ..Default::default()
        };
        compose::load(&opts).map(|l| l.project).map_err(|e| e.to_string())
    }

    fn setup() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("src/node_modules")).unwrap();
        t
    }

    #[test]
    fn rules_map_paths_to_targets_and_ignore_what_they_must() {
        let t = setup();
        let p = project(
            t.path(),
            "services:\n  web:\n    image: x\n    develop:\n      watch:\n        - {path: ./src, action: sync, target: /app, ignore: [node_modules, '*.tmp']}\n        - {path: ./compose.yaml, action: restart}\n  db:\n    image: y\n",
        )
        .unwrap();
        let r = rules(&p, &[]).unwrap();
        assert_eq!(r.len(), 2);
        let sync = &r[0];
        let src = t.path().join("src");
        assert_eq!(sync.wants(&src.join("a/b.js")), Some(PathBuf::from("a/b.js")));
        assert_eq!(sync.wants(&src.join("node_modules/x.js")), None);
        assert_eq!(sync.wants(&src.join("x.tmp")), None);
        assert_eq!(sync.wants(&src.join(".x.js.swp")), None);
        assert_eq!(sync.wants(&t.path().join("elsewhere")), None);
        assert!(sync.skips_dir(&src.join("node_modules")));
        assert!(!sync.skips_dir(&src.join("lib")));
        assert_eq!(r[1].action, Action::Restart);
    }

    #[test]
    fn the_build_context_dockerignore_applies() {
        let t = setup();
        std::fs::write(t.path().join(".dockerignore"), "**/*.log\nsrc/generated\n").unwrap();
        let p = project(
            t.path(),
            "services:\n  web:\n    build: .\n    develop:\n      watch:\n        - {path: ./src, action: sync, target: /app}\n",
        )
        .unwrap();
        let r = &rules(&p, &[]).unwrap()[0];
        let src = t.path().join("src");
        assert_eq!(r.wants(&src.join("x/a.log")), None);
        assert_eq!(r.wants(&src.join("generated/x.js")), None);
        assert!(r.skips_dir(&src.join("generated")));
        assert_eq!(r.wants(&src.join("x/a.js")), Some(PathBuf::from("x/a.js")));
    }

    #[test]
    fn bad_rules_are_refused_with_their_key() {
        let t = setup();
        let cases = [
            ("{path: ./nope, action: sync, target: /app}", "watch[0].path"),
            ("{path: ./src, action: sync, target: app}", "watch[0].target"),
            ("{path: ./src, action: sync, target: /app/../etc}", "watch[0].target"),
            (
                "{path: ./src, action: rebuild}",
                "needs the service to have a build section",
            ),
        ];
        for (rule, want) in cases {
            let p = project(
                t.path(),
                &format!("services:\n  web:\n    image: x\n    develop:\n      watch:\n        - {rule}\n"),
            )
            .unwrap();
            let e = rules(&p, &[]).unwrap_err();
            assert!(e.contains(want), "{rule}: {e}");
        }
        let p = project(t.path(), "services:\n  web:\n    image: x\n").unwrap();
        assert!(rules(&p, &[])
            .unwrap_err()
            .contains("consider setting a 'develop' section"));
        assert!(rules(&p, &["web".into()]).unwrap_err().contains("no develop.watch"));
    }
}
