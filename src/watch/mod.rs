//! `rcompose watch` and `up --watch`: the rules' paths watched with notify (inotify,
//! one watch per directory, none in ignored trees), changes batched until the files
//! are quiet for a moment, then applied per service: synced into its containers,
//! followed by a restart or a command where the rule says so. With `up --watch` the
//! project's own files (Compose files, included and extended ones, `.env`, env files)
//! are watched too: an edit is loaded and applied as a convergence, and one that does
//! not load is reported while everything keeps running.

pub mod ignore;
pub mod rules;
pub mod session;
mod sync;

use crate::client::Client;
use anyhow::{anyhow, Result};
use notify::{EventKind, RecursiveMode, Watcher};
use rules::{Action, Rule};
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A batch is applied once no change has come for this long (a burst of saves is one
/// batch), or at the latest after [`LONGEST`].
const QUIET: Duration = Duration::from_millis(50);
const LONGEST: Duration = Duration::from_millis(1000);

/// The project as loaded again after an edit of its files.
pub type Reload = Box<dyn Fn() -> Result<crate::project::Loaded> + Send>;

pub struct Session {
    pub project: String,
    pub model: serde_json::Value,
    /// Services named on the command line (all with rules when empty).
    pub services: Vec<String>,
    pub rules: Vec<Rule>,
    /// The project's own files, watched when `reload` is set.
    pub inputs: Vec<PathBuf>,
    pub reload: Option<Reload>,
}

struct Watches {
    watcher: notify::RecommendedWatcher,
    dirs: HashSet<PathBuf>,
}

impl Watches {
    fn add(&mut self, dir: &Path) -> Result<()> {
        if self.dirs.contains(dir) {
            return Ok(());
        }
        match self.watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.dirs.insert(dir.to_path_buf());
                Ok(())
            }
            Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                let max = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches").unwrap_or_default();
                Err(anyhow!(
                    "watching {}: the inotify watch limit is reached (fs.inotify.max_user_watches = {}, {} watched \
                     here); ignore large trees in the rules, or raise the limit",
                    dir.display(),
                    max.trim(),
                    self.dirs.len()
                ))
            }
            // Gone before it could be watched: its deletion is an event of its parent.
            Err(e) if matches!(&e.kind, notify::ErrorKind::PathNotFound) => Ok(()),
            Err(e) if matches!(&e.kind, notify::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::NotFound) => {
                Ok(())
            }
            Err(e) => Err(anyhow!("watching {}: {e}", dir.display())),
        }
    }

    /// `dir` and the directories under it that some rule covers and does not skip.
    fn add_tree(&mut self, rules: &[Rule], dir: &Path) -> Result<()> {
        let covering: Vec<&Rule> = rules.iter().filter(|r| dir.starts_with(&r.path)).collect();
        if covering.is_empty() || covering.iter().all(|r| r.skips_dir(dir)) {
            return Ok(());
        }
        self.add(dir)?;
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    self.add_tree(rules, &e.path())?;
                }
            }
        }
        Ok(())
    }

    fn add_rules(&mut self, rules: &[Rule]) -> Result<()> {
        for r in rules {
            if r.path.is_dir() {
                self.add_tree(rules, &r.path)?;
            } else if let Some(parent) = r.path.parent() {
                // A file is watched through its directory: editors replace files.
                self.add(parent)?;
            }
        }
        Ok(())
    }
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 change was".into()
    } else {
        format!("{n} changes were")
    }
}

/// Watches until the process is stopped (or the watcher fails).
pub async fn run(c: &Client, mut s: Session) -> Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<notify::Result<notify::Event>>();
    let watcher = notify::recommended_watcher(move |ev| {
        let _ = tx.send(ev);
    })
    .map_err(|e| anyhow!("starting the file watcher: {e}"))?;
    let mut w = Watches {
        watcher,
        dirs: HashSet::new(),
    };
    w.add_rules(&s.rules)?;
    if s.reload.is_some() {
        for f in &s.inputs {
            if let Some(parent) = f.parent() {
                w.add(parent)?;
            }
        }
    }
    // initial_sync: the whole tree first.
    for r in s.rules.iter().filter(|r| r.initial_sync && r.syncs()) {
        let mut all = Vec::new();
        if r.path.is_dir() {
            sync::walk(r, &r.path, &mut all);
        } else {
            all.push(r.path.clone());
        }
        eprintln!(
            "Syncing service {:?} after initial sync of {} files",
            r.service,
            all.len()
        );
        if let Err(e) = sync::sync(c, &s.project, r, &all).await {
            eprintln!("Error syncing service {:?}: {e}", r.service);
        }
    }
    eprintln!("Watch enabled");
    loop {
        let Some(first) = rx.recv().await else {
            return Err(anyhow!("the file watcher stopped"));
        };
        let mut changed = BTreeSet::new();
        let mut created_dirs = Vec::new();
        let mut rescan = false;
        let mut take = |ev: notify::Result<notify::Event>| match ev {
            Ok(ev) => {
                if ev.need_rescan() {
                    rescan = true;
                }
                if matches!(ev.kind, EventKind::Access(_)) {
                    return;
                }
                for p in ev.paths {
                    if matches!(ev.kind, EventKind::Create(_)) && p.is_dir() {
                        created_dirs.push(p.clone());
                    }
                    changed.insert(p);
                }
            }
            Err(e) => eprintln!("watch: {e}"),
        };
        take(first);
        let started = Instant::now();
        while started.elapsed() < LONGEST {
            match tokio::time::timeout(QUIET, rx.recv()).await {
                Ok(Some(ev)) => take(ev),
                Ok(None) => return Err(anyhow!("the file watcher stopped")),
                Err(_) => break,
            }
        }
        // A new directory: watched from now on, and whatever it already holds is new.
        for d in created_dirs {
            w.add_tree(&s.rules, &d)?;
            for r in s.rules.iter().filter(|r| d.starts_with(&r.path)) {
                let mut inside = Vec::new();
                sync::walk(r, &d, &mut inside);
                changed.extend(inside);
            }
        }
        if rescan {
            // The kernel's queue overflowed: some changes are unknown, so all is sent.
            for r in &s.rules {
                let mut all = Vec::new();
                sync::walk(r, &r.path, &mut all);
                changed.extend(all);
            }
        }
        if s.reload.is_some() && changed.iter().any(|p| s.inputs.contains(p)) {
            reload(c, &mut s, &mut w).await;
        }
        apply(c, &s, &changed).await;
    }
}

/// Applies one batch of changes, service by service.
async fn apply(c: &Client, s: &Session, changed: &BTreeSet<PathBuf>) {
    let mut services: Vec<&str> = Vec::new();
    for r in &s.rules {
        if !services.contains(&r.service.as_str()) {
            services.push(&r.service);
        }
    }
    for svc in services {
        let rules: Vec<(usize, &Rule)> = s.rules.iter().enumerate().filter(|(_, r)| r.service == svc).collect();
        // Each path goes to the first of the service's rules that wants it.
        let mut per_rule: Vec<(usize, Vec<PathBuf>)> = Vec::new();
        for p in changed {
            if let Some((i, _)) = rules.iter().find(|(_, r)| r.wants(p).is_some()) {
                match per_rule.iter_mut().find(|(j, _)| j == i) {
                    Some((_, v)) => v.push(p.clone()),
                    None => per_rule.push((*i, vec![p.clone()])),
                }
            }
        }
        if per_rule.is_empty() {
            continue;
        }
        let n: usize = per_rule.iter().map(|(_, v)| v.len()).sum();
        let mut restart = false;
        let mut rebuild = false;
        let mut execs = Vec::new();
        let mut synced = false;
        for (i, paths) in &per_rule {
            let r = &s.rules[*i];
            match &r.action {
                Action::Restart => restart = true,
                Action::Rebuild => rebuild = true,
                a => {
                    if !synced {
                        eprintln!("Syncing service {svc:?} after {} detected", plural(n));
                        synced = true;
                    }
                    if let Err(e) = sync::sync(c, &s.project, r, paths).await {
                        eprintln!("Error syncing service {svc:?} ({}): {e:#}", r.key);
                        continue;
                    }
                    match a {
                        Action::SyncRestart => restart = true,
                        Action::SyncExec(x) => execs.push(x.clone()),
                        _ => {}
                    }
                }
            }
        }
        if rebuild {
            // A new image is a new container: what a restart or sync would do is moot.
            eprintln!("Rebuilding service {svc:?} after changes were detected...");
            match sync::rebuild(c, &s.project, &s.model, svc).await {
                Ok(()) => eprintln!("service {svc:?} successfully built"),
                Err(e) => eprintln!("Error rebuilding service {svc:?}: {e:#}"),
            }
            continue;
        }
        if restart {
            eprintln!("Restarting service {svc:?} after {} detected", plural(n));
            if let Err(e) = sync::restart(c, &s.project, &s.model, svc).await {
                eprintln!("Error restarting service {svc:?}: {e}");
            }
        }
        for x in execs {
            eprintln!("Running {:?} in service {svc:?}", x.command.join(" "));
            if let Err(e) = sync::exec(c, &s.project, svc, &x).await {
                eprintln!("Error running the sync+exec command of service {svc:?}: {e}");
            }
        }
    }
}

/// An edit of the project's files: load them again and converge, or say why not.
async fn reload(c: &Client, s: &mut Session, w: &mut Watches) {
    let Some(load) = &s.reload else {
        return;
    };
    let l = match load() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("The project's files changed but do not load; nothing running was touched:\n{e}");
            return;
        }
    };
    eprintln!("The project's files changed: applying them");
    let req = match crate::project::up_request(&l, &s.services) {
        Ok(r) => engine::api::UpRequest {
            remove_orphans: true,
            ..r
        },
        Err(e) => {
            eprintln!("{e}");
            return;
        }
    };
    let applied = async {
        let lines = c
            .stream(hyper::Method::POST, &format!("/v1/projects/{}/up", l.name), Some(&req))
            .await?;
        crate::progress::follow_operation(lines).await
    }
    .await;
    match applied {
        Ok(0) => {}
        Ok(code) => eprintln!("applying the project's files failed ({code})"),
        Err(e) => eprintln!("applying the project's files failed: {e:#}"),
    }
    s.model = l.json.clone();
    s.inputs = l.loaded.inputs.clone();
    match rules::rules(&l.loaded.project, &s.services) {
        Ok(r) => s.rules = r,
        Err(e) => eprintln!("the watch rules are kept as they were: {e}"),
    }
    let dirs: Vec<PathBuf> = s
        .inputs
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    for d in dirs {
        if let Err(e) = w.add(&d) {
            eprintln!("{e}");
        }
    }
    if let Err(e) = w.add_rules(&s.rules) {
        eprintln!("{e}");
    }
}
