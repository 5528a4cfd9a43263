//! One container's life in the engine: create (a record on disk, nothing running),
//! start (addresses, volumes, ports, the runtime, DNS names, supervisor and health
//! probe), stop (the stop signal, the grace period, then everything killed), remove.
//! Every step is taken with the container's `op` lock held by the caller.

use super::files::{write_files, FileMount};
use super::network::{NetError, Proxies};
use super::ports::{bind_ports, spawn_proxy};
use super::spec::{self, SpecContext};
use super::state::{NetAttach, Record};
use super::{lock, volumes, Ctr, Engine};
use compose::model::Service;
use runtime::spec::IdMap;
use runtime::userns;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// What can go wrong in a container's life, in Docker's words where Docker has them.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// A name the engine never puts on disk (see `compose::names`).
    #[error("{0}")]
    Refused(String),
    #[error("Error response from daemon: Conflict. The container name \"/{0}\" is already in use")]
    NameInUse(String),
    #[error("Error response from daemon: No such image: {0}")]
    NoSuchImage(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("links {link:?}: {target} is not running")]
    LinkNotRunning { link: String, target: String },
    #[error("userns_mode: no free range of {size} IDs left in the pool ({file})")]
    NoIdRange { size: u32, file: String },
    #[error("Error response from daemon: failed to create task for container: {0}")]
    Start(runtime::RuntimeError),
    #[error("container {name}: post_start hook: {message}")]
    Hook { name: String, message: String },
    #[error("service {service:?}: {source}")]
    Net { service: String, source: NetError },
    #[error(transparent)]
    Network(#[from] NetError),
    #[error(transparent)]
    Volume(#[from] super::volumes::VolumeError),
    #[error(transparent)]
    Spec(#[from] super::spec::SpecError),
    #[error(transparent)]
    Record(#[from] super::state::RecordError),
    #[error(transparent)]
    Image(#[from] images::store::StoreError),
    #[error(transparent)]
    Cgroup(#[from] runtime::cgroups::CgroupError),
    #[error(transparent)]
    Files(#[from] super::files::FilesError),
    #[error(transparent)]
    Ports(#[from] super::ports::PortError),
    #[error(transparent)]
    UsernsMode(#[from] super::spec::userns::UsernsModeError),
    #[error("{0}")]
    Join(#[from] tokio::task::JoinError),
    /// A file or system call of the engine's.
    #[error("{what}: {source}")]
    Os { what: String, source: std::io::Error },
}

fn os(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContainerError {
    let what = what.into();
    move |source| ContainerError::Os { what, source }
}

/// What a new container is made from.
pub struct NewContainer<'a> {
    pub project: &'a compose::Project,
    pub project_name: &'a str,
    pub service_name: &'a str,
    pub service: &'a Service,
    pub number: u32,
    pub image_id: String,
    pub working_dir: &'a str,
    pub config_files: &'a [String],
    /// Secrets and configs, resolved.
    pub files: Vec<FileMount>,
    /// For `run`: the one-off container's name and whether it takes the service's aliases.
    pub oneoff: Option<(String, bool)>,
    /// For `run`: its client attaches (see `Record::attached_run`), with a terminal of
    /// this size.
    pub attached_run: bool,
    pub console_size: Option<(u16, u16)>,
}

pub fn container_name(project: &str, service: &str, svc: &Service, number: u32) -> String {
    svc.container_name
        .clone()
        .unwrap_or_else(|| format!("{project}-{service}-{number}"))
}

impl Engine {
    /// Creates a container: its record and directory, nothing running.
    pub fn create(&self, n: &NewContainer) -> Result<Arc<Ctr>, ContainerError> {
        let svc = n.service;
        let name = match &n.oneoff {
            Some((name, _)) => name.clone(),
            None => container_name(n.project_name, n.service_name, svc, n.number),
        };
        // However the request was made, the name is Docker's kind before it is a path.
        compose::names::container(&name).map_err(ContainerError::Refused)?;
        if self.container(&name).is_some() {
            return Err(ContainerError::NameInUse(name));
        }
        let id = super::random_hex(32);
        let mut labels = svc.labels.clone().unwrap_or_default();
        labels.insert(conventions::labels::LABEL_PROJECT.into(), n.project_name.into());
        labels.insert(conventions::labels::LABEL_SERVICE.into(), n.service_name.into());
        labels.insert(conventions::labels::LABEL_NUMBER.into(), n.number.to_string());
        labels.insert(conventions::labels::LABEL_HASH.into(), compose::service_hash(svc));
        let oneoff = if n.oneoff.is_some() { "True" } else { "False" };
        labels.insert(conventions::labels::LABEL_ONEOFF.into(), oneoff.into());
        labels.insert(conventions::labels::LABEL_WORKDIR.into(), n.working_dir.into());
        labels.insert(conventions::labels::LABEL_FILES.into(), n.config_files.join(","));
        labels.insert(
            conventions::labels::LABEL_VERSION.into(),
            env!("CARGO_PKG_VERSION").into(),
        );
        let mode = svc.network_mode.clone().unwrap_or_default();
        let networks = if mode.is_empty() || mode == "bridge" || mode == "default" {
            let mut v: Vec<(i64, NetAttach)> = Vec::new();
            for (key, opts) in svc.networks.iter().flatten() {
                let top = n.project.networks.get(key);
                let full = top
                    .and_then(|t| t.name.clone())
                    .unwrap_or_else(|| format!("{}_{key}", n.project_name));
                let o = opts.clone().unwrap_or_default();
                let prio = o.priority.unwrap_or(0);
                v.push((
                    prio,
                    NetAttach {
                        key: key.clone(),
                        network: full,
                        aliases: o.aliases.clone().unwrap_or_default(),
                        ipv4_address: o.ipv4_address.clone(),
                        ip: None,
                        internal: top.and_then(|t| t.internal) == Some(true),
                        ipv6_address: o.ipv6_address.clone(),
                        ip6: None,
                    },
                ));
            }
            // Higher priority first, as Docker orders them (stable for equal ones).
            v.sort_by_key(|a| std::cmp::Reverse(a.0));
            v.into_iter().map(|(_, a)| a).collect()
        } else {
            Vec::new()
        };
        let mut vols = BTreeMap::new();
        for v in svc.volumes.iter().flatten() {
            if v.r#type.as_deref().unwrap_or("volume") == "volume" {
                if let Some(key) = v.source.clone().filter(|k| !k.is_empty()) {
                    let full = n
                        .project
                        .volumes
                        .get(&key)
                        .and_then(|t| t.name.clone())
                        .unwrap_or_else(|| format!("{}_{key}", n.project_name));
                    vols.insert(key, full);
                }
            }
        }
        let rec = Record {
            id: id.clone(),
            name,
            project: n.project_name.into(),
            service: n.service_name.into(),
            number: n.number,
            image: svc.image.clone().unwrap_or_default(),
            image_id: n.image_id.clone(),
            config_hash: compose::service_hash(svc),
            labels,
            created: conventions::durations::now(),
            model: svc.clone(),
            networks,
            network_mode: mode,
            volumes: vols,
            oneoff: n.oneoff.is_some(),
            use_aliases: n.oneoff.as_ref().is_some_and(|o| o.1),
            attached_run: n.attached_run,
            console_size: n.console_size,
            ..Default::default()
        };
        let dir = self.root.join("containers").join(&id);
        std::fs::create_dir_all(&dir).map_err(os(format!("creating {}", dir.display())))?;
        let mut rec = rec;
        if let Err(e) = write_files(&dir, &n.files).map(|f| rec.files = f) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.into());
        }
        if let Err(e) = rec.save(&dir) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(os(format!("saving container {}", rec.name))(e));
        }
        let ctr = Arc::new(Ctr::new(dir, rec.clone()));
        self.insert(ctr.clone());
        self.emit(&rec, "create", &[]);
        Ok(ctr)
    }

    /// `/proc/<pid>/ns/<kind>` of a running container of `project` named by service or
    /// container name.
    fn namespace_of(&self, project: &str, target: &str, kind: &str) -> Option<String> {
        self.containers().into_iter().find_map(|c| {
            let r = c.rec();
            let hit = r.name == target || (r.project == project && r.service == target);
            let live = c.live()?;
            hit.then(|| format!("/proc/{}/ns/{kind}", live.pid))
        })
    }

    /// The container's host ID range (`userns_mode: auto`): the one it has, or the
    /// lowest free one of the pools (`rcompose` in /etc/subuid and /etc/subgid, else
    /// [`userns::DEFAULT_POOL`]), recorded before it is used.
    fn userns_range(&self, ctr: &Arc<Ctr>, size: u32) -> Result<IdMap, ContainerError> {
        // One allocation at a time, or two starts could take the same range.
        static ALLOC: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = ALLOC.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = ctr.rec().userns.filter(|m| m.size == size) {
            return Ok(m);
        }
        let taken: Vec<IdMap> = self
            .containers()
            .into_iter()
            .filter(|c| !Arc::ptr_eq(c, ctr))
            .filter_map(|c| c.rec().userns)
            .collect();
        let pick = |file: &str, used: Vec<(u32, u32)>| {
            userns::pick_base(userns::pool(file), &used, size).ok_or_else(|| ContainerError::NoIdRange {
                size,
                file: file.to_string(),
            })
        };
        let map = IdMap {
            uid: pick("/etc/subuid", taken.iter().map(|m| (m.uid, m.size)).collect())?,
            gid: pick("/etc/subgid", taken.iter().map(|m| (m.gid, m.size)).collect())?,
            size,
        };
        ctr.update(|r| r.userns = Some(map))?;
        Ok(map)
    }

    /// Starts a created or exited container.
    pub async fn start(self: &Arc<Self>, ctr: &Arc<Ctr>) -> Result<(), ContainerError> {
        if ctr.live().is_some() {
            return Ok(());
        }
        let t0 = std::time::Instant::now();
        let rec = ctr.rec();
        let svc = rec.model.clone();
        let image = self
            .store
            .resolve(&rec.image)
            .map_err(|_| ContainerError::NoSuchImage(rec.image.clone()))?;
        let config = self.store.config(&image)?;
        let layers = spec::layer_dirs(&self.store, &image);

        // Addresses, kept for the container's life.
        let mut nets = rec.networks.clone();
        for n in &mut nets {
            let ip = self.net.allocate(&n.network, &rec.id, n.ipv4_address.as_deref())?;
            n.ip = Some(ip.to_string());
            let ip6 = self
                .net
                .allocate6(&n.network, &rec.id, n.ipv6_address.as_deref())
                .map_err(|source| ContainerError::Net {
                    service: rec.service.clone(),
                    source,
                })?;
            n.ip6 = ip6.map(|a| a.to_string());
        }
        ctr.update(|r| r.networks = nets.clone())?;

        // Named volumes: exist (made by `up`), and are filled from the image when new.
        for v in svc.volumes.iter().flatten() {
            if let (Some(key), Some(target)) = (v.source.as_ref(), v.target.as_ref()) {
                if let Some(full) = rec.volumes.get(key) {
                    let data = volumes::data_dir(&self.root, full);
                    let nocopy = v.volume.as_ref().and_then(|o| o.nocopy) == Some(true);
                    if !nocopy {
                        volumes::fill_from_image(&self.root.join("tmp"), &layers, target, &data)?;
                    }
                }
            }
        }

        // What the spec takes of the engine's: the legacy links' addresses, the files
        // written for it, `volumes_from`, the user-namespace range, the network's DNS.
        let mut links = Vec::new();
        for l in svc.links.iter().flatten() {
            let (target, alias) = l.split_once(':').unwrap_or((l, l));
            let ip = self
                .containers()
                .into_iter()
                .filter(|c| c.live().is_some())
                .map(|c| c.rec())
                .find(|r| r.name == target || (r.project == rec.project && r.service == target))
                .and_then(|r| r.networks.iter().find_map(|n| n.ip.clone()));
            match ip {
                Some(ip) => links.push((ip, alias.to_string())),
                None => {
                    return Err(ContainerError::LinkNotRunning {
                        link: l.clone(),
                        target: target.to_string(),
                    })
                }
            }
        }
        let userns = match spec::userns::check_service(&svc)? {
            Some(size) => Some(self.userns_range(ctr, size)?),
            None => None,
        };
        let allocated = spec::Allocated {
            files: rec.files.clone(),
            volumes_from: self.volumes_from(&rec.project, &svc)?,
            userns,
            links,
            own_ips: nets
                .iter()
                .flat_map(|n| [n.ip.clone(), n.ip6.clone()])
                .flatten()
                .collect(),
            // Served in the container's own network namespace once it is plugged.
            dns_server: (!nets.is_empty()).then_some(IpAddr::V4(spec::hosts::EMBEDDED_DNS)),
            attached_run: rec.attached_run,
            console_size: rec.console_size,
        };
        // In a block of its own: the context's closures are not `Sync`, so they must be
        // gone before the next await.
        let (spec, limits, _stop) = {
            let root = self.root.clone();
            let vmap = rec.volumes.clone();
            let volume_dir = move |key: &str| vmap.get(key).map(|full| volumes::data_dir(&root, full));
            let project = rec.project.clone();
            let ns_of = |target: &str, kind: &str| self.namespace_of(&project, target, kind);
            let ctx = SpecContext {
                service: &rec.service,
                container_id: &rec.id,
                container_name: &rec.name,
                layers,
                dir: ctr.dir.clone(),
                volume_dir: &volume_dir,
                namespace_of: &ns_of,
                host_resolv_conf: &self.host_resolv,
                allocated,
            };
            spec::container_spec(&ctx, &svc, &config)?
        };

        // Published ports are bound before anything runs: a port in use fails the start
        // with nothing left behind.
        let target_ip = nets
            .iter()
            .find_map(|n| n.ip.as_deref()?.parse::<Ipv4Addr>().ok())
            .map(IpAddr::V4);
        let (proxies, bindings) = if rec.network_mode == "host" {
            (Proxies::default(), Vec::new())
        } else {
            bind_ports(&svc, target_ip, &rec.name, &rec.ports).await?
        };

        let t_prep = t0.elapsed();
        let me = self.clone();
        let attach: Vec<super::network::Plug> = {
            let mut first_external = true;
            let mut plugs = Vec::new();
            for (i, n) in nets.iter().enumerate() {
                let Some(ip) = n.ip.as_deref().and_then(|ip| ip.parse().ok()) else {
                    continue;
                };
                let route = !n.internal && first_external;
                if route {
                    first_external = false;
                }
                let svc_net = svc.networks.as_ref().and_then(|m| m.get(&n.key)).cloned().flatten();
                let mac = super::network::mac_address(&svc, &n.key, i == 0)?;
                let ifname = svc_net
                    .and_then(|o| o.interface_name)
                    .unwrap_or_else(|| format!("eth{i}"));
                plugs.push(super::network::Plug {
                    network: n.network.clone(),
                    ifname,
                    ip,
                    default_route: route,
                    mac,
                    ip6: n.ip6.as_deref().and_then(|a| a.parse().ok()),
                });
            }
            plugs
        };
        let id = rec.id.clone();
        let rt = tokio::runtime::Handle::current();
        // With the addresses just allocated (`rec` predates them).
        let now = ctr.rec();
        let entries = dns_entries(&now);
        let (dns_nets, internal_only) = (network_names(&now), internal_only(&now));
        let dns_upstreams = rec.model.dns.clone();
        let started = tokio::task::spawn_blocking(move || {
            let mut plug = |pid: i32| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
                for plug in &attach {
                    me.net.attach_blocking(&rt, pid, &id, plug)?;
                }
                // Known to the DNS servers before its first instruction: a query from an
                // unknown address is dropped, and the asker would wait out its resolver's
                // retry (seconds) for nothing.
                me.net.register(&id, &entries);
                if !attach.is_empty() {
                    let dns = dns_upstreams.as_deref();
                    me.net
                        .serve_embedded_dns(&rt, (pid, None), &id, dns_nets.clone(), dns, internal_only)?;
                }
                Ok(())
            };
            me.runtime.start_with(&spec, &limits, &mut plug)
        })
        .await?;
        let c = match started {
            Ok(c) => c,
            Err(e) => {
                let nets = network_names(&rec);
                self.net.unregister(&rec.id, &dns_addresses(&rec));
                ctr.note_left(self.net.detach(&rec.id, &nets).await);
                let _ = ctr.update(|r| {
                    r.exit_code = Some(match &e {
                        runtime::RuntimeError::Start { exit_code, .. } => *exit_code,
                        _ => 128,
                    });
                    r.finished_at = Some(conventions::durations::now());
                });
                return Err(ContainerError::Start(e));
            }
        };
        let t_run = t0.elapsed();
        *lock(&ctr.proxies) = proxies;
        ctr.update(|r| {
            r.ports = bindings;
            r.desired_running = true;
            r.started_at = Some(conventions::durations::now());
            r.finished_at = None;
            r.exit_code = None;
            r.oom_killed = false;
        })?;
        let check = super::health::effective(&svc, config.config.healthcheck.as_ref());
        let mut r = self.resume(ctr, c, check).await;
        if r.is_ok() {
            for hook in svc.post_start.iter().flatten() {
                if let Err(e) = self.run_hook(ctr, hook).await {
                    r = Err(ContainerError::Hook {
                        name: rec.name.clone(),
                        message: e.to_string(),
                    });
                    break;
                }
            }
        }
        tracing::debug!(
            "started {} in {:?} (prepared {:?}, running {:?})",
            rec.name,
            t0.elapsed(),
            t_prep,
            t_run
        );
        r
    }

    /// Takes a running container under supervision: health probe, exit watcher (its
    /// DNS names are registered before it runs, by `start`, or by `adopt_all`). Used
    /// after `start` and when adopting after an engine restart.
    /// `check` is the container's health check, if any (`start` has it at hand).
    pub async fn resume(
        self: &Arc<Self>,
        ctr: &Arc<Ctr>,
        c: runtime::Container,
        check: Option<super::health::Check>,
    ) -> Result<(), ContainerError> {
        let rec = ctr.rec();
        let (pid, start_time) = (c.monitor, c.monitor_start);
        *lock(&ctr.live) = Some(c);
        ctr.paused.store(false, Ordering::SeqCst);
        ctr.restarting.store(false, Ordering::SeqCst);
        if lock(&ctr.proxies).0.is_empty() && !rec.ports.is_empty() {
            // Adopted: bind the ports it had again.
            let mut p = Proxies::default();
            for b in &rec.ports {
                if let Some(t) = rec
                    .networks
                    .iter()
                    .find_map(|n| n.ip.as_deref()?.parse::<IpAddr>().ok())
                {
                    if let Ok(h) = spawn_proxy(b, t).await {
                        p.0.push(h);
                    }
                }
            }
            *lock(&ctr.proxies) = p;
        }
        if !rec.ports.is_empty() {
            self.sync_nat().await;
        }
        if let Some(hc) = check {
            *lock(&ctr.health) = "starting".into();
            let me = self.clone();
            let c2 = ctr.clone();
            let task = tokio::spawn(async move { me.probe_loop(c2, hc).await });
            if let Some(old) = lock(&ctr.health_task).replace(task) {
                old.abort();
            }
        } else {
            lock(&ctr.health).clear();
        }
        self.emit(&rec, "start", &[]);
        let me = self.clone();
        let c2 = ctr.clone();
        tokio::spawn(async move { me.supervise(c2, pid, start_time).await });
        Ok(())
    }

    /// The health check of a container made earlier: its service's over its image's.
    pub(super) fn health_check(&self, rec: &Record) -> Option<super::health::Check> {
        let svc = &rec.model;
        let image = self
            .store
            .resolve(&rec.image)
            .ok()
            .and_then(|i| self.store.config(&i).ok())
            .and_then(|c| c.config.healthcheck);
        super::health::effective(svc, image.as_ref())
    }

    /// Stops a running container: the stop signal, `grace`, then everything killed.
    /// `keep_wanted` leaves it wanted (a restart); otherwise restart policies leave it.
    pub async fn stop(
        self: &Arc<Self>,
        ctr: &Arc<Ctr>,
        grace: Option<Duration>,
        keep_wanted: bool,
    ) -> Result<(), ContainerError> {
        if !keep_wanted {
            // A record that cannot be written (a full disk) never keeps a container
            // from stopping: the failure is reported with the action.
            let _ = ctr.update(|r| r.desired_running = false);
        }
        ctr.restarting.store(false, Ordering::SeqCst);
        let Some(c) = ctr.live() else {
            return Ok(());
        };
        let rec = ctr.rec();
        let svc = &rec.model;
        let signal = svc
            .stop_signal
            .as_deref()
            .and_then(conventions::signals::number)
            .unwrap_or(libc::SIGTERM);
        let grace = grace
            .or_else(|| svc.stop_grace_period.map(|d| d.as_std()))
            .unwrap_or(Duration::from_secs(10));
        if ctr.paused.swap(false, Ordering::SeqCst) {
            let _ = c.cgroup.thaw();
        }
        for hook in svc.pre_stop.iter().flatten() {
            // A failing hook does not keep the container from stopping, as with Compose.
            if let Err(e) = self.run_hook(ctr, hook).await {
                tracing::warn!("container {}: pre_stop hook: {e}", rec.name);
            }
        }
        self.emit(&rec, "kill", &[("signal", signal.to_string())]);
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.runtime.stop(&c, signal, grace)).await?;
        self.finish_exit(ctr).await;
        self.emit(&rec, "stop", &[]);
        Ok(())
    }

    /// Sends a signal to a running container's workload.
    pub fn kill(&self, ctr: &Arc<Ctr>, signal: i32) -> Result<(), ContainerError> {
        let c = ctr.live().ok_or_else(|| ContainerError::NotRunning(ctr.rec().name))?;
        // As for stop: the signal goes whether or not the record can be written.
        let _ = ctr.update(|r| r.desired_running = false);
        // SAFETY: kill has no memory-safety preconditions.
        if unsafe { libc::kill(c.pid, signal) } != 0 {
            return Err(os("kill")(std::io::Error::last_os_error()));
        }
        self.emit(&ctr.rec(), "kill", &[("signal", signal.to_string())]);
        Ok(())
    }

    pub fn pause(&self, ctr: &Arc<Ctr>, pause: bool) -> Result<(), ContainerError> {
        let c = ctr.live().ok_or_else(|| ContainerError::NotRunning(ctr.rec().name))?;
        if pause {
            c.cgroup.freeze()?;
        } else {
            c.cgroup.thaw()?;
        }
        ctr.paused.store(pause, Ordering::SeqCst);
        self.emit(&ctr.rec(), if pause { "pause" } else { "unpause" }, &[]);
        Ok(())
    }

    /// Removes a stopped container: its addresses, files and record.
    pub async fn remove(self: &Arc<Self>, ctr: &Arc<Ctr>) -> Result<(), ContainerError> {
        if ctr.live().is_some() {
            self.stop(ctr, None, false).await?;
        }
        let rec = ctr.rec();
        let nets = network_names(&rec);
        ctr.note_left(self.net.detach(&rec.id, &nets).await);
        for n in &nets {
            self.net.release(n, &rec.id);
        }
        // The record goes first: a crash midway leaves a directory that the next start
        // recognizes as unfinished and removes.
        let _ = std::fs::remove_file(Record::path(&ctr.dir));
        std::fs::remove_dir_all(&ctr.dir).map_err(os(format!("removing container {}", rec.name)))?;
        self.forget(&ctr.id);
        self.emit(&rec, "destroy", &[]);
        Ok(())
    }
}

/// The container's networks, in its order.
pub(super) fn network_names(rec: &Record) -> Vec<String> {
    rec.networks.iter().map(|n| n.network.clone()).collect()
}

/// Whether every network of the container is `internal: true` (none has a way out).
pub(super) fn internal_only(rec: &Record) -> bool {
    !rec.networks.is_empty() && rec.networks.iter().all(|n| n.internal)
}

pub(super) fn dns_entries(rec: &Record) -> Vec<(String, IpAddr, Vec<String>)> {
    rec.networks
        .iter()
        .flat_map(|n| {
            let mut names = vec![rec.name.clone(), rec.id[..12.min(rec.id.len())].to_string()];
            if !rec.oneoff || rec.use_aliases {
                names.insert(1, rec.service.clone());
            }
            names.extend(n.aliases.iter().cloned());
            // A custom hostname resolves too, and every name as `name.<network>`, as
            // from Docker's resolver.
            names.extend(rec.model.hostname.iter().filter(|h| !h.is_empty()).cloned());
            let qualified: Vec<String> = names.iter().map(|name| format!("{name}.{}", n.network)).collect();
            names.extend(qualified);
            let mut seen = std::collections::HashSet::new();
            names.retain(|name| seen.insert(name.clone()));
            // A (and AAAA, with `enable_ipv6`) records of every name.
            [n.ip.as_deref(), n.ip6.as_deref()]
                .into_iter()
                .flatten()
                .filter_map(|ip| ip.parse::<IpAddr>().ok())
                .map(|ip| (n.network.clone(), ip, names.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

pub(super) fn dns_addresses(rec: &Record) -> Vec<(String, IpAddr)> {
    dns_entries(rec).into_iter().map(|(n, ip, _)| (n, ip)).collect()
}
