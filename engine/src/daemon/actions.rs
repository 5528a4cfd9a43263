//! The project actions besides `up`: `down` (stops level by level, dependents first,
//! then networks and, with `-v`, volumes), `start`/`stop`/`restart`/`kill`/`rm`/
//! `pause`/`unpause`, and the listings behind `ps` and `ls`.

use super::container::ContainerError;
use super::project::{OpError, OpResult, Out};
use super::state::{self, State};
use super::{volumes, Ctr, Engine};
use crate::api::{ActionRequest, DownRequest};
use compose::Project;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Says what could not be recorded (a full disk) or undone while the action went ahead.
fn report_problems(c: &Ctr, out: &Out) {
    for m in c.take_problems() {
        out.warn(m);
    }
}

impl Engine {
    pub(super) async fn stop_reporting(
        self: &Arc<Self>,
        c: &Arc<Ctr>,
        timeout: Option<u64>,
        out: &Out,
    ) -> Result<(), ContainerError> {
        let _op = c.op.lock().await;
        let name = c.rec().name;
        if c.live().is_some() || c.state() == State::Restarting {
            out.progress("Container", &name, "Stopping");
            let r = self.stop(c, timeout.map(Duration::from_secs), false).await;
            report_problems(c, out);
            r?;
            out.progress("Container", &name, "Stopped");
        }
        Ok(())
    }

    pub(super) async fn remove_reporting(self: &Arc<Self>, c: &Arc<Ctr>, out: &Out) -> Result<(), ContainerError> {
        let _op = c.op.lock().await;
        let name = c.rec().name;
        out.progress("Container", &name, "Removing");
        let r = self.remove(c).await;
        report_problems(c, out);
        r?;
        out.progress("Container", &name, "Removed");
        Ok(())
    }

    /// Containers in stop order (dependents first), grouped into levels that may go in
    /// parallel; without a model, everything at once.
    fn stop_levels(&self, name: &str, project: Option<&Project>, services: &[String]) -> Vec<Vec<Arc<Ctr>>> {
        let all: Vec<Arc<Ctr>> = self
            .project_containers(name)
            .into_iter()
            .filter(|c| services.is_empty() || services.contains(&c.rec().service))
            .collect();
        let Some(levels) = project
            .and_then(|p| compose::Graph::new(p).ok())
            .map(|g| g.stop_levels())
        else {
            return vec![all];
        };
        let mut out: Vec<Vec<Arc<Ctr>>> = Vec::new();
        let mut placed: BTreeSet<String> = BTreeSet::new();
        // Orphans (not in the model) go first.
        let known: BTreeSet<&String> = levels.iter().flatten().collect();
        out.push(
            all.iter()
                .filter(|c| !known.contains(&c.rec().service))
                .cloned()
                .collect(),
        );
        for level in &levels {
            out.push(
                all.iter()
                    .filter(|c| level.contains(&c.rec().service) && placed.insert(c.id.clone()))
                    .cloned()
                    .collect(),
            );
        }
        out.retain(|l| !l.is_empty());
        out
    }

    pub async fn down(self: &Arc<Self>, name: &str, req: DownRequest, out: Out) -> OpResult {
        let lock = self.project_lock(name);
        let _guard = lock.lock().await;
        let project = match &req.project {
            Some(p) => Some(state::project_from_json(p)?),
            None => None,
        };
        // Stops go level by level (dependents first); a stopped container's removal runs
        // alongside the next level's stops, since nothing waits on it.
        let mut removals = Vec::new();
        for level in self.stop_levels(name, project.as_ref(), &[]) {
            let mut stops = Vec::new();
            for c in level {
                let orphan = project
                    .as_ref()
                    .is_some_and(|p| !p.services.contains_key(&c.rec().service));
                if orphan && !req.remove_orphans {
                    continue;
                }
                let (me, out) = (self.clone(), out.clone());
                let t = req.timeout;
                stops.push(tokio::spawn(
                    async move { me.stop_reporting(&c, t, &out).await.map(|_| c) },
                ));
            }
            for t in stops {
                let c = t.await.map_err(|e| e.to_string())??;
                let (me, out) = (self.clone(), out.clone());
                removals.push(tokio::spawn(async move { me.remove_reporting(&c, &out).await }));
            }
        }
        for r in removals {
            r.await.map_err(|e| e.to_string())??;
        }
        // Networks of the project that nothing uses any more.
        let in_use: BTreeSet<String> = self
            .containers()
            .iter()
            .flat_map(|c| c.rec().networks.into_iter().map(|n| n.network))
            .collect();
        for n in self.net.records() {
            let external = project.as_ref().is_some_and(|p| {
                p.networks
                    .get(&n.key)
                    .and_then(|x| x.external.as_ref())
                    .is_some_and(|e| e.is_external())
            });
            if n.project != name || external || in_use.contains(&n.name) {
                continue;
            }
            out.progress("Network", &n.name, "Removing");
            let removed = self.net.remove(&n.name).await;
            self.sync_nat().await;
            removed?;
            out.progress("Network", &n.name, "Removed");
        }
        if req.volumes {
            for v in volumes::list(&self.root) {
                let external = project.as_ref().is_some_and(|p| {
                    p.volumes
                        .get(&v.key)
                        .and_then(|x| x.external.as_ref())
                        .is_some_and(|e| e.is_external())
                });
                if v.project != name || external {
                    continue;
                }
                out.progress("Volume", &v.name, "Removing");
                volumes::remove(&self.root, &v.name)?;
                out.progress("Volume", &v.name, "Removed");
            }
        }
        match (req.rmi.as_deref(), &project) {
            (None, _) => {}
            (Some("all"), Some(p)) => self.remove_images(p, &out).await,
            (Some("all"), None) => return Err("down --rmi needs the Compose file".to_string().into()),
            // Only builds make the images `local` removes (none without a custom tag).
            (Some("local"), _) => {}
            (Some(other), _) => return Err(format!("invalid --rmi {other:?}: all or local").into()),
        }
        Ok(())
    }

    /// `start`, `stop`, `restart`, `kill`, `rm`, `pause`, `unpause`.
    pub async fn action(self: &Arc<Self>, name: &str, verb: &str, req: ActionRequest, out: Out) -> OpResult {
        let project = match &req.project {
            Some(p) => Some(state::project_from_json(p)?),
            None => None,
        };
        if let Some(p) = &project {
            for s in &req.services {
                if !p.services.contains_key(s) {
                    return Err(format!("no such service: {s}").into());
                }
            }
        }
        let lock = self.project_lock(name);
        let _guard = lock.lock().await;
        let grace = req.timeout.map(Duration::from_secs);
        let mut levels = self.stop_levels(name, project.as_ref(), &req.services);
        if matches!(verb, "start" | "unpause") {
            levels.reverse();
        }
        if levels.iter().all(|l| l.is_empty()) {
            return match verb {
                "rm" => {
                    out.warn("No stopped containers");
                    Ok(())
                }
                "start" | "restart" | "stop" | "kill" | "pause" | "unpause" if !req.services.is_empty() => {
                    Err(format!("service {:?} has no container to {verb}", req.services[0]).into())
                }
                _ => Ok(()),
            };
        }
        let signal = match &req.signal {
            Some(s) => conventions::signals::number(s).ok_or_else(|| format!("invalid signal {s:?}"))?,
            None => libc::SIGKILL,
        };
        for level in levels {
            let mut tasks = Vec::new();
            for c in level {
                let (me, out, verb) = (self.clone(), out.clone(), verb.to_string());
                let req = req.clone();
                tasks.push(tokio::spawn(async move {
                    let _op = c.op.lock().await;
                    let n = c.rec().name;
                    let running = c.live().is_some();
                    match verb.as_str() {
                        "stop" => {
                            if running || c.state() == State::Restarting {
                                out.progress("Container", &n, "Stopping");
                                me.stop(&c, grace, false).await?;
                                out.progress("Container", &n, "Stopped");
                            }
                        }
                        "start" => {
                            if !running {
                                out.progress("Container", &n, "Starting");
                                me.start(&c).await?;
                                out.progress("Container", &n, "Started");
                            }
                        }
                        "restart" => {
                            out.progress("Container", &n, "Restarting");
                            me.stop(&c, grace, true).await?;
                            me.start(&c).await?;
                            out.progress("Container", &n, "Started");
                        }
                        "kill" => {
                            if running {
                                out.progress("Container", &n, "Killing");
                                me.kill(&c, signal)?;
                                out.progress("Container", &n, "Killed");
                            }
                        }
                        "pause" | "unpause" => {
                            let p = verb == "pause";
                            out.progress("Container", &n, if p { "Pausing" } else { "Unpausing" });
                            me.pause(&c, p)?;
                            out.progress("Container", &n, if p { "Paused" } else { "Unpaused" });
                        }
                        "rm" => {
                            if running && !req.stop {
                                return Ok(());
                            }
                            if running {
                                out.progress("Container", &n, "Stopping");
                                me.stop(&c, grace, false).await?;
                                out.progress("Container", &n, "Stopped");
                            }
                            out.progress("Container", &n, "Removing");
                            me.remove(&c).await?;
                            out.progress("Container", &n, "Removed");
                        }
                        other => return Err(OpError::from(format!("unknown action {other}"))),
                    }
                    report_problems(&c, &out);
                    Ok::<(), OpError>(())
                }));
            }
            for t in tasks {
                t.await??;
            }
        }
        Ok(())
    }

    pub fn summaries(&self, project: Option<&str>, all: bool) -> Vec<crate::api::ContainerSummary> {
        self.containers()
            .into_iter()
            .filter(|c| project.is_none_or(|p| c.rec().project == p))
            .map(|c| state::summary(&c.rec(), c.state(), &c.health()))
            .filter(|s| all || s.state == "running" || s.state == "restarting" || s.state == "paused")
            .collect()
    }

    pub fn projects(&self) -> Vec<crate::api::ProjectSummary> {
        let mut by: BTreeMap<String, (BTreeMap<String, usize>, String)> = BTreeMap::new();
        for c in self.containers() {
            let r = c.rec();
            let e = by.entry(r.project.clone()).or_default();
            *e.0.entry(c.state().as_str().to_string()).or_default() += 1;
            e.1 = r
                .labels
                .get(conventions::labels::LABEL_FILES)
                .cloned()
                .unwrap_or_default();
        }
        by.into_iter()
            .map(|(name, (states, files))| crate::api::ProjectSummary {
                name,
                status: states
                    .iter()
                    .map(|(s, n)| format!("{s}({n})"))
                    .collect::<Vec<_>>()
                    .join(", "),
                config_files: files,
            })
            .collect()
    }
}
