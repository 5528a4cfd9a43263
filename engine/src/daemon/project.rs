//! Projects: `up` as convergence (keep what is unchanged, recreate what changed by config
//! hash or image, scale up and down, remove orphans when asked), services started in
//! parallel as soon as their `depends_on` conditions hold, `--wait`. The other project
//! actions are in `actions`. Messages and their wording are Compose's.

use super::container::{self, ContainerError, NewContainer};
use super::state::{self, State};
use super::{network, volumes, Ctr, Engine};
use crate::api::{Progress, StreamMsg, UpRequest};
use compose::model::Service;
use compose::Project;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// A dependency as a service waits for it: its name, the condition, whether it is
/// `required`, and where its outcome arrives.
type Dependency = (String, Condition, bool, watch::Receiver<Option<Result<bool, OpError>>>);

/// Where an operation reports.
#[derive(Clone)]
pub struct Out(pub mpsc::UnboundedSender<StreamMsg>);

impl Out {
    pub fn progress(&self, kind: &str, name: &str, status: &str) {
        let _ = self.0.send(StreamMsg::Progress(Progress {
            kind: kind.into(),
            name: name.into(),
            status: status.into(),
            detail: None,
        }));
    }
    pub fn warn(&self, m: impl Into<String>) {
        let _ = self.0.send(StreamMsg::Warning(m.into()));
    }
    pub fn send(&self, m: StreamMsg) {
        let _ = self.0.send(m);
    }
}

/// An operation's failure: Compose's message and exit code.
#[derive(Debug, Clone, PartialEq)]
pub struct OpError {
    pub message: String,
    pub exit_code: i32,
}

impl From<String> for OpError {
    fn from(message: String) -> Self {
        OpError { message, exit_code: 1 }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The engine's errors as an operation's failure: their message, exit code 1.
macro_rules! op_errors {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for OpError {
            fn from(e: $t) -> Self {
                OpError { message: e.to_string(), exit_code: 1 }
            }
        })*
    };
}

op_errors!(
    super::network::NetError,
    super::volumes::VolumeError,
    super::container::ContainerError,
    super::state::DecodeError,
    super::state::RecordError,
    super::files::FilesError,
    super::admission::AdmissionError,
    super::supervise::PolicyError,
    super::image_actions::ImageError,
    compose::Error,
    tokio::task::JoinError,
    DependencyError,
);

pub type OpResult = Result<(), OpError>;

fn full_volume_name(p: &Project, name: &str, key: &str) -> String {
    p.volumes
        .get(key)
        .and_then(|v| v.name.clone())
        .unwrap_or_else(|| format!("{name}_{key}"))
}

fn full_network_name(p: &Project, name: &str, key: &str) -> String {
    p.networks
        .get(key)
        .and_then(|v| v.name.clone())
        .unwrap_or_else(|| format!("{name}_{key}"))
}

/// A dependency that did not get where its dependents wait for it, in Compose's words.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DependencyError {
    #[error("dependency failed to start: container {container} exited ({code})")]
    Exited { container: String, code: i32 },
    #[error("dependency failed to start: container {0} has no healthcheck configured")]
    NoHealthcheck(String),
    #[error("dependency failed to start: container {0} is unhealthy")]
    Unhealthy(String),
    #[error("service \"{service}\" didn't complete successfully: exit {code}")]
    Failed { service: String, code: i32 },
    #[error("engine shutting down")]
    ShuttingDown,
}

/// What a service needs of a dependency before it starts.
#[derive(Debug, Clone, PartialEq)]
enum Condition {
    Started,
    Healthy,
    Completed,
}

impl Engine {
    /// The ID of the service's image, which must be in the store.
    pub(super) fn image_id(&self, svc: &Service) -> Result<String, ContainerError> {
        let image = svc.image.clone().unwrap_or_default();
        Ok(self
            .store
            .resolve(&image)
            .map_err(|_| ContainerError::NoSuchImage(image.clone()))?
            .id()
            .to_string())
    }

    /// The service's own containers (not `run`'s one-off ones).
    pub(super) fn service_containers(&self, project: &str, service: &str) -> Vec<Arc<Ctr>> {
        self.project_containers(project)
            .into_iter()
            .filter(|c| {
                let r = c.rec();
                r.service == service && !r.oneoff
            })
            .collect()
    }

    pub async fn up(self: &Arc<Self>, req: UpRequest, out: Out) -> OpResult {
        let project = state::project_from_json(&req.project)?;
        let name = project.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err("project name missing".to_string().into());
        }
        let lock = self.project_lock(&name);
        let _guard = lock.lock().await;
        let graph = compose::Graph::new(&project).map_err(|e| e.to_string())?;
        let selected = graph.selection(&project, &req.services, req.no_deps);
        super::admission::check(&super::admission::Admission {
            project: &project,
            selected: &selected,
            named: &req.services,
            scale: &req.scale,
            file_values: &req.file_values,
        })?;
        out.send(StreamMsg::Services(selected.clone()));

        // Image ready: built, or pulled as `--pull` or the services' policies say.
        let builds =
            super::build::service::Builds::for_up(&project, &req.working_dir, &selected, &req.file_values, &req.auths);
        self.build_for_up(builds, req.build, req.no_build, &out).await?;
        self.pull_for_services(
            &project,
            &selected,
            req.pull.as_deref(),
            req.quiet_pull,
            &req.auths,
            &out,
        )
        .await?;
        let services: Vec<&compose::model::Service> = selected.iter().map(|s| &project.services[s]).collect();
        self.ensure_resources(&project, &name, &services, &out).await?;

        // Orphans: containers of services the file no longer has.
        let orphans: Vec<Arc<Ctr>> = self
            .project_containers(&name)
            .into_iter()
            .filter(|c| !project.services.contains_key(&c.rec().service))
            .collect();
        if !orphans.is_empty() {
            if req.remove_orphans {
                for c in orphans {
                    self.stop_and_remove(&c, req.timeout, &out).await?;
                }
            } else {
                let names: Vec<String> = orphans.iter().map(|c| c.rec().name).collect();
                out.warn(format!("Found orphan containers ([{}]) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.", names.join(" ")));
            }
        }

        // One task per service, each waiting for what it depends on.
        let mut done: HashMap<String, watch::Sender<Option<Result<bool, OpError>>>> = HashMap::new();
        for s in &selected {
            done.insert(s.clone(), watch::channel(None).0);
        }
        let receivers: HashMap<String, watch::Receiver<Option<Result<bool, OpError>>>> =
            done.iter().map(|(k, v)| (k.clone(), v.subscribe())).collect();
        let project = Arc::new(project);
        let req = Arc::new(req);
        let mut tasks = Vec::new();
        for s in &selected {
            let me = self.clone();
            let (project, req, out, name) = (project.clone(), req.clone(), out.clone(), name.clone());
            let tx = done.remove(s).unwrap_or_else(|| watch::channel(None).0);
            let deps: Vec<Dependency> = project.services[s]
                .depends_on
                .iter()
                .flatten()
                .filter_map(|(d, opts)| {
                    let o = opts.clone().unwrap_or_default();
                    let cond = match o.condition.as_deref() {
                        Some("service_healthy") => Condition::Healthy,
                        Some("service_completed_successfully") => Condition::Completed,
                        _ => Condition::Started,
                    };
                    let rx = receivers.get(d)?.clone();
                    Some((d.clone(), cond, o.required.unwrap_or(true), rx))
                })
                .collect();
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let r = me.up_service(&project, &name, &s, &req, deps, &out).await;
                let _ = tx.send(Some(r.clone()));
                r.map(|_| ())
            }));
        }
        let mut first_err: Option<OpError> = None;
        for t in tasks {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(e) => {
                    first_err.get_or_insert(e.into());
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        if req.wait && !req.no_start {
            self.wait_ready(&project, &name, &selected, req.wait_timeout, &out)
                .await?;
        }
        Ok(())
    }

    fn replicas(&self, req: &UpRequest, s: &str, svc: &Service) -> u32 {
        req.scale
            .get(s)
            .copied()
            .unwrap_or_else(|| svc.replicas().max(0) as u32)
    }

    /// Converges one service once its dependencies allow. `Ok(recreated)`.
    async fn up_service(
        self: &Arc<Self>,
        project: &Project,
        name: &str,
        s: &str,
        req: &UpRequest,
        deps: Vec<Dependency>,
        out: &Out,
    ) -> Result<bool, OpError> {
        let svc = &project.services[s];
        let mut dep_recreated = false;
        for (d, cond, required, mut rx) in deps {
            let r = match rx.wait_for(|v| v.is_some()).await {
                Ok(v) => v.clone().unwrap_or(Ok(false)),
                Err(_) => Ok(false),
            };
            match r {
                Ok(recreated) => dep_recreated |= recreated,
                Err(e) if required => return Err(e),
                Err(_) => continue,
            }
            if req.no_start {
                continue;
            }
            if let Err(e) = self.wait_condition(name, &d, &cond, out).await {
                if required {
                    return Err(e.into());
                }
                out.warn(e.to_string());
            }
        }

        let image_id = self.image_id(svc)?;
        let hash = compose::service_hash(svc);
        let want = self.replicas(req, s, svc);
        let existing = self.service_containers(name, s);
        let mut recreated = false;
        // Scale down: highest numbers first.
        let mut keep: BTreeMap<u32, Arc<Ctr>> = BTreeMap::new();
        for c in existing {
            let n = c.rec().number;
            if n > want || keep.contains_key(&n) {
                self.stop_and_remove(&c, req.timeout, out).await?;
            } else {
                keep.insert(n, c);
            }
        }
        let files = super::files::file_mounts(project, svc, &req.file_values)?;
        let mut to_start = Vec::new();
        for number in 1..=want {
            let new = NewContainer {
                project,
                project_name: name,
                service_name: s,
                service: svc,
                number,
                image_id: image_id.clone(),
                working_dir: &req.working_dir,
                config_files: &req.config_files,
                files: files.clone(),
                oneoff: None,
                attached_run: false,
                console_size: None,
            };
            match keep.remove(&number) {
                Some(c) => {
                    let rec = c.rec();
                    let diverged = req.force_recreate
                        || (!req.no_recreate
                            && (rec.config_hash != hash
                                || rec.image_id != image_id
                                || (req.always_recreate_deps && dep_recreated)));
                    if diverged {
                        out.progress("Container", &rec.name, "Recreate");
                        // Anonymous volumes go to the new container, as Compose carries
                        // them over, unless -V asks for new ones.
                        let anon = self.root.join("tmp").join(format!("anon-{}", rec.id));
                        {
                            let _op = c.op.lock().await;
                            self.stop(&c, req.timeout.map(Duration::from_secs), false).await?;
                            let old = c.dir.join("anonymous");
                            if !req.renew_anon_volumes && old.exists() {
                                std::fs::rename(&old, &anon).map_err(|e| format!("keeping anonymous volumes: {e}"))?;
                            }
                            self.remove(&c).await?;
                        }
                        let c = self.create(&new)?;
                        if anon.exists() {
                            std::fs::rename(&anon, c.dir.join("anonymous"))
                                .map_err(|e| format!("keeping anonymous volumes: {e}"))?;
                        }
                        out.progress("Container", &rec.name, "Recreated");
                        recreated = true;
                        to_start.push(c);
                    } else {
                        to_start.push(c);
                    }
                }
                None => {
                    let cname = container::container_name(name, s, svc, number);
                    out.progress("Container", &cname, "Creating");
                    let c = self.create(&new)?;
                    out.progress("Container", &cname, "Created");
                    recreated = true;
                    to_start.push(c);
                }
            }
        }
        if req.no_start {
            return Ok(recreated);
        }
        let mut starts = Vec::new();
        for c in to_start {
            let me = self.clone();
            let out = out.clone();
            starts.push(tokio::spawn(async move {
                let _op = c.op.lock().await;
                let rec = c.rec();
                if c.live().is_some() {
                    out.progress("Container", &rec.name, "Running");
                    return Ok(());
                }
                out.progress("Container", &rec.name, "Starting");
                me.start(&c).await?;
                out.progress("Container", &rec.name, "Started");
                Ok::<(), ContainerError>(())
            }));
        }
        for t in starts {
            t.await??;
        }
        Ok(recreated)
    }

    /// The networks and volumes `services` use, created where missing (with progress).
    pub(super) async fn ensure_resources(
        &self,
        project: &Project,
        name: &str,
        services: &[&compose::model::Service],
        out: &Out,
    ) -> Result<(), OpError> {
        // Networks and volumes the selected services use.
        let mut nets: BTreeSet<String> = BTreeSet::new();
        let mut vols: BTreeSet<String> = BTreeSet::new();
        for svc in services {
            let mode = svc.network_mode.as_deref().unwrap_or("");
            if mode.is_empty() || mode == "bridge" {
                nets.extend(svc.networks.iter().flatten().map(|(k, _)| k.clone()));
            }
            for v in svc.volumes.iter().flatten() {
                if v.r#type.as_deref().unwrap_or("volume") == "volume" {
                    if let Some(k) = v.source.clone().filter(|k| !k.is_empty()) {
                        vols.insert(k);
                    }
                }
            }
        }
        for key in &nets {
            let full = full_network_name(project, name, key);
            let n = project.networks.get(key).cloned().unwrap_or_default();
            if n.driver.as_deref().is_some_and(|d| d != "bridge") {
                return Err(format!(
                    "network {full}: driver {:?} is not implemented yet (bridge is)",
                    n.driver.unwrap_or_default()
                )
                .into());
            }
            let spec = network::net_spec(name, key, &n);
            let exists = self.net.record(&full).is_some();
            if !exists && !spec.external {
                out.progress("Network", &full, "Creating");
            }
            self.net.ensure(&full, &spec).await?;
            if !exists && !spec.external {
                self.sync_nat().await;
                out.progress("Network", &full, "Created");
            }
        }
        for key in &vols {
            let full = full_volume_name(project, name, key);
            let external = project
                .volumes
                .get(key)
                .and_then(|v| v.external.as_ref())
                .is_some_and(|e| e.is_external());
            if !volumes::exists(&self.root, &full) && !external {
                out.progress("Volume", &format!("\"{full}\""), "Creating");
            }
            if volumes::ensure(&self.root, &full, name, key, external)? {
                out.progress("Volume", &format!("\"{full}\""), "Created");
            }
        }

        Ok(())
    }

    /// Waits until `service`'s containers satisfy `cond`, with Compose's messages.
    async fn wait_condition(
        &self,
        project: &str,
        service: &str,
        cond: &Condition,
        out: &Out,
    ) -> Result<(), DependencyError> {
        if *cond == Condition::Started {
            return Ok(());
        }
        let mut changes = self.watch_changes();
        let ctrs = self.service_containers(project, service);
        for c in &ctrs {
            out.progress("Container", &c.rec().name, "Waiting");
        }
        loop {
            let mut all = true;
            for c in &ctrs {
                let rec = c.rec();
                match cond {
                    Condition::Healthy => {
                        let st = c.state();
                        let h = c.health();
                        if st == State::Exited || st == State::Created {
                            return Err(DependencyError::Exited {
                                container: rec.name,
                                code: rec.exit_code.unwrap_or(0),
                            });
                        }
                        if h.is_empty() && st == State::Running {
                            return Err(DependencyError::NoHealthcheck(rec.name));
                        }
                        if h == "unhealthy" {
                            return Err(DependencyError::Unhealthy(rec.name));
                        }
                        all &= h == "healthy";
                    }
                    Condition::Completed => {
                        let st = c.state();
                        if st == State::Exited {
                            let code = rec.exit_code.unwrap_or(0);
                            if code != 0 {
                                return Err(DependencyError::Failed {
                                    service: service.to_string(),
                                    code,
                                });
                            }
                        } else {
                            all = false;
                        }
                    }
                    Condition::Started => {}
                }
            }
            if all {
                for c in &ctrs {
                    let what = if *cond == Condition::Healthy {
                        "Healthy"
                    } else {
                        "Exited"
                    };
                    out.progress("Container", &c.rec().name, what);
                }
                return Ok(());
            }
            if changes.changed().await.is_err() {
                return Err(DependencyError::ShuttingDown);
            }
        }
    }

    /// `up --wait`: every selected container running (and healthy where it has a check).
    async fn wait_ready(
        &self,
        project: &Project,
        name: &str,
        selected: &[String],
        timeout: Option<u64>,
        out: &Out,
    ) -> OpResult {
        let work = async {
            for s in selected {
                // As Compose: a one-shot service that another awaits with
                // `service_completed_successfully` is waited for to complete, not to run.
                let one_shot = project.services.values().any(|other| {
                    other.depends_on.as_ref().and_then(|d| d.get(s)).is_some_and(|d| {
                        d.as_ref().and_then(|d| d.condition.as_deref()) == Some("service_completed_successfully")
                    })
                });
                let ctrs = self.service_containers(name, s);
                let cond = if one_shot {
                    Condition::Completed
                } else if ctrs.iter().any(|c| !c.health().is_empty()) {
                    // The service's healthcheck or the image's HEALTHCHECK.
                    Condition::Healthy
                } else {
                    Condition::Started
                };
                for c in &ctrs {
                    out.progress("Container", &c.rec().name, "Waiting");
                }
                if cond != Condition::Started {
                    self.wait_condition(name, s, &cond, &Out(mpsc::unbounded_channel().0))
                        .await?;
                }
                for c in self.service_containers(name, s) {
                    let st = c.state();
                    if cond == Condition::Completed {
                        out.progress("Container", &c.rec().name, "Exited");
                        continue;
                    }
                    if st != State::Running {
                        return Err(OpError::from(format!(
                            "container {} exited ({})",
                            c.rec().name,
                            c.rec().exit_code.unwrap_or(0)
                        )));
                    }
                    out.progress(
                        "Container",
                        &c.rec().name,
                        if cond == Condition::Healthy {
                            "Healthy"
                        } else {
                            "Started"
                        },
                    );
                }
            }
            Ok::<(), OpError>(())
        };
        match timeout {
            Some(t) => tokio::time::timeout(Duration::from_secs(t), work)
                .await
                .map_err(|_| OpError {
                    message: format!("timeout waiting for the project to be running and healthy ({t}s)"),
                    exit_code: 1,
                })?,
            None => work.await,
        }
    }

    async fn stop_and_remove(
        self: &Arc<Self>,
        c: &Arc<Ctr>,
        timeout: Option<u64>,
        out: &Out,
    ) -> Result<(), ContainerError> {
        self.stop_reporting(c, timeout, out).await?;
        self.remove_reporting(c, out).await
    }
}
