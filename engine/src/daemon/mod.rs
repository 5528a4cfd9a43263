//! The engine daemon (`rcompose daemon`): one per state root. It owns the containers,
//! networks, volumes, DNS servers, port proxies, health probes and restart policies of
//! every project, and serves the API (`server`) on a Unix socket.
//!
//! State is written to disk before it is acted on (`state::Record`, the runtime's own
//! `state.json`, netd's IPAM), so a restarted engine adopts the containers that kept
//! running while it was away (their monitor holds their logs and exit status) and applies
//! restart policies to those that ended meanwhile.
//!
//! The runtime directory (socket, pid file) is `RCOMPOSE_RUN`; when unset it is
//! `/run/rcompose` for the default state root and `<root>/run` for any other, so that
//! engines of different roots (tests run many) never share a socket.

pub mod actions;
mod admission;
pub mod attach;
pub mod build;
pub mod container;
mod copy;
mod embedded_dns;
pub mod exec;
pub mod files;
pub mod health;
mod image_actions;
pub mod image_routes;
pub mod logs;
pub mod nat;
pub mod network;
pub mod ports;
pub mod project;
mod pull_policy;
pub mod run;
pub mod server;
pub mod spec;
pub mod state;
pub mod supervise;
pub mod top;
pub mod volumes;

use crate::api::Event;
use images::Store;
use runtime::Runtime;
use state::{Record, State};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// The cgroup directory (under the engine's own) holding this root's containers.
pub fn cgroup_parent(root: &Path) -> String {
    let h = netd::links::stable_hash(root.as_os_str().as_encoded_bytes().iter().copied());
    format!("rcompose-{:08x}", h & 0xffff_ffff)
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `n` random bytes as hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let got = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if got < n as isize {
        // Never expected; fall back to time and pid, still unique enough for names.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seed = t ^ (u128::from(std::process::id()) << 64);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8 ^ i as u8;
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// One container as the engine holds it.
pub struct Ctr {
    pub id: String,
    pub dir: PathBuf,
    rec: Mutex<Record>,
    live: Mutex<Option<runtime::Container>>,
    health: Mutex<String>,
    restarting: AtomicBool,
    paused: AtomicBool,
    /// Milliseconds before the next automatic restart (Docker's doubling back-off).
    backoff_ms: AtomicU64,
    /// Held by whatever starts, stops or removes the container.
    op: tokio::sync::Mutex<()>,
    health_task: Mutex<Option<JoinHandle<()>>>,
    proxies: Mutex<network::Proxies>,
    /// What the engine could not record (a full disk: the change is kept in memory and
    /// carried on with) or undo (a cgroup that would not go): reported to the user with
    /// the action under way.
    problems: Mutex<Vec<String>>,
}

impl Ctr {
    fn new(dir: PathBuf, rec: Record) -> Ctr {
        Ctr {
            id: rec.id.clone(),
            dir,
            rec: Mutex::new(rec),
            live: Mutex::new(None),
            health: Mutex::new(String::new()),
            restarting: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            backoff_ms: AtomicU64::new(0),
            op: tokio::sync::Mutex::new(()),
            health_task: Mutex::new(None),
            proxies: Mutex::new(network::Proxies::default()),
            problems: Mutex::new(Vec::new()),
        }
    }

    pub fn rec(&self) -> Record {
        lock(&self.rec).clone()
    }

    /// Changes the record and writes it to disk. The change holds in memory even when
    /// the write fails; the failure is also kept for [`Ctr::take_problems`].
    pub fn update(&self, f: impl FnOnce(&mut Record)) -> Result<(), state::RecordError> {
        let mut r = lock(&self.rec);
        f(&mut r);
        r.save(&self.dir).map_err(|source| {
            let e = state::RecordError {
                name: r.name.clone(),
                source,
            };
            tracing::warn!("{e}");
            lock(&self.problems).push(e.to_string());
            e
        })
    }

    /// Keeps what teardown could not undo, for the action under way to report.
    pub fn note_left(&self, left: Vec<String>) {
        let name = lock(&self.rec).name.clone();
        for l in left {
            let m = format!("container {name}: {l}");
            tracing::warn!("{m}");
            lock(&self.problems).push(m);
        }
    }

    /// What could not be recorded or undone since the last call.
    pub fn take_problems(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.problems))
    }

    pub fn live(&self) -> Option<runtime::Container> {
        lock(&self.live).clone()
    }

    pub fn health(&self) -> String {
        lock(&self.health).clone()
    }

    pub fn state(&self) -> State {
        if lock(&self.live).is_some() {
            if self.paused.load(Ordering::SeqCst) {
                State::Paused
            } else {
                State::Running
            }
        } else if self.restarting.load(Ordering::SeqCst) {
            State::Restarting
        } else if lock(&self.rec).started_at.is_some() {
            State::Exited
        } else {
            State::Created
        }
    }
}

pub struct Engine {
    pub root: PathBuf,
    pub store: Arc<Store>,
    pub runtime: Runtime,
    pub net: network::Net,
    nat: nat::Nat,
    ctrs: Mutex<BTreeMap<String, Arc<Ctr>>>,
    project_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    events: broadcast::Sender<Event>,
    /// Bumped on every change of any container's state or health.
    changed: watch::Sender<u64>,
    pub host_resolv: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Setup(String),
    #[error("another engine is already running for {0}")]
    AlreadyRunning(PathBuf),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Engine {
    /// Opens the state root; must run inside the tokio runtime.
    pub fn open(root: &Path, helper: &Path) -> Result<Arc<Engine>, DaemonError> {
        let setup = |what: &str, e: String| DaemonError::Setup(format!("{what}: {e}"));
        let store = Store::open(root).map_err(|e| setup("image store", e.to_string()))?;
        // What a crashed engine was still receiving.
        let _ = std::fs::remove_dir_all(image_routes::uploads(store.root()));
        let runtime = Runtime::new(helper, &cgroup_parent(root)).map_err(|e| setup("runtime", e.to_string()))?;
        let net = network::Net::open(root).map_err(|e| setup("networks", e.to_string()))?;
        std::fs::create_dir_all(root.join("containers"))?;
        std::fs::create_dir_all(root.join("volumes"))?;
        std::fs::create_dir_all(root.join("tmp"))?;
        Ok(Arc::new(Engine {
            root: root.to_path_buf(),
            store: Arc::new(store),
            runtime,
            net,
            nat: nat::Nat::new(root),
            ctrs: Mutex::default(),
            project_locks: Mutex::default(),
            events: broadcast::channel(1024).0,
            changed: watch::channel(0).0,
            host_resolv: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        }))
    }

    pub fn containers(&self) -> Vec<Arc<Ctr>> {
        lock(&self.ctrs).values().cloned().collect()
    }

    pub fn container(&self, id_or_name: &str) -> Option<Arc<Ctr>> {
        let map = lock(&self.ctrs);
        map.get(id_or_name).cloned().or_else(|| {
            map.values()
                .find(|c| {
                    let r = lock(&c.rec);
                    r.name == id_or_name || (id_or_name.len() >= 12 && r.id.starts_with(id_or_name))
                })
                .cloned()
        })
    }

    /// The project's containers (one-off ones too), by service then number.
    pub fn project_containers(&self, project: &str) -> Vec<Arc<Ctr>> {
        let mut v: Vec<Arc<Ctr>> = self
            .containers()
            .into_iter()
            .filter(|c| lock(&c.rec).project == project)
            .collect();
        v.sort_by_key(|c| {
            let r = lock(&c.rec);
            (r.service.clone(), r.number)
        });
        v
    }

    pub fn project_lock(&self, project: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.project_locks)
            .entry(project.to_string())
            .or_default()
            .clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub fn watch_changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    pub fn emit(&self, rec: &Record, action: &str, attrs: &[(&str, String)]) {
        let mut attributes: BTreeMap<String, String> = attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        attributes.insert("name".into(), rec.name.clone());
        attributes.insert("image".into(), rec.image.clone());
        let _ = self.events.send(Event {
            time: conventions::timefmt::rfc3339(true),
            kind: "container".into(),
            action: action.into(),
            id: rec.id.clone(),
            service: rec.service.clone(),
            project: rec.project.clone(),
            attributes,
        });
        self.bump();
    }

    fn insert(&self, ctr: Arc<Ctr>) {
        lock(&self.ctrs).insert(ctr.id.clone(), ctr);
    }

    fn forget(&self, id: &str) {
        lock(&self.ctrs).remove(id);
    }

    /// Reads every container record back: running ones are adopted (their supervisor,
    /// DNS names, port proxies and health probes come back), ended ones get their
    /// restart policy, and half-created ones (no record) are removed.
    pub async fn adopt_all(self: &Arc<Self>) {
        // Every network made again as recorded: its DNS server back, and whatever a crash
        // (or a reboot) left half-made or took away (bridge, addresses) put right.
        for nr in self.net.records() {
            if let Err(e) = self.net.ensure(&nr.name, &nr.spec()).await {
                tracing::warn!("{e}");
            }
        }
        let dirs: Vec<PathBuf> = std::fs::read_dir(self.root.join("containers"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        for dir in dirs {
            let Some(rec) = Record::load(&dir) else {
                tracing::warn!("removing {}: no record (a create that never finished)", dir.display());
                if let Some(c) = self.runtime.adopt(&dir) {
                    for l in self.runtime.cleanup(&c) {
                        tracing::warn!("{}: {l}", dir.display());
                    }
                }
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!("removing {}: {e}", dir.display());
                }
                continue;
            };
            let ctr = Arc::new(Ctr::new(dir.clone(), rec));
            self.insert(ctr.clone());
            match self.runtime.adopt(&dir) {
                Some(c) => {
                    let rec = ctr.rec();
                    self.net.register(&rec.id, &container::dns_entries(&rec));
                    if !rec.networks.is_empty() {
                        let rt = tokio::runtime::Handle::current();
                        let process = (c.pid, Some(c.start_time));
                        let internal = container::internal_only(&rec);
                        let dns = rec.model.dns.as_deref();
                        let nets = container::network_names(&rec);
                        if let Err(e) = self.net.serve_embedded_dns(&rt, process, &rec.id, nets, dns, internal) {
                            tracing::warn!("adopting {}: {e}", rec.name);
                        }
                    }
                    let check = self.health_check(&rec);
                    if let Err(e) = self.resume(&ctr, c, check).await {
                        tracing::warn!("adopting {}: {e}", ctr.rec().name);
                    }
                }
                None => {
                    let rec = ctr.rec();
                    if rec.started_at.is_some() && rec.finished_at.is_none() {
                        // It ended while we were away: record how, then apply its policy.
                        let state = std::fs::read(dir.join("state.json")).unwrap_or_default();
                        if let Ok(old) = serde_json::from_slice::<runtime::Container>(&state) {
                            let status = self.runtime.status(&old);
                            ctr.note_left(self.runtime.cleanup(&old));
                            let _ = ctr.update(|r| {
                                r.finished_at = Some(conventions::durations::now());
                                r.exit_code = Some(status.as_ref().map(|s| s.exit_code).unwrap_or(137));
                                r.oom_killed = status.is_some_and(|s| s.oom_killed);
                            });
                        }
                        let me = self.clone();
                        tokio::spawn(async move { me.after_exit(ctr).await });
                    }
                }
            }
        }
    }
}

/// The daemon's main: takes the root's lock, adopts, serves until SIGTERM/SIGINT.
/// Containers keep running when it ends.
pub async fn run(root: PathBuf, run_dir: PathBuf, helper: PathBuf) -> Result<(), DaemonError> {
    std::fs::create_dir_all(&root)?;
    // Closed to other users, as Docker keeps /var/lib/docker: layers hold setuid files
    // and builds' scratch space holds secrets for a moment.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&root)?.permissions().mode() & 0o7777;
        if mode & 0o007 != 0 {
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(mode & 0o750))?;
        }
    }
    std::fs::create_dir_all(&run_dir)?;
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join("engine.lock"))?;
    // Held until this function returns.
    let _guard = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| DaemonError::AlreadyRunning(root.clone()))?;
    let engine = Engine::open(&root, &helper)?;
    engine.adopt_all().await;
    // Build steps end with the engine that ran them; their groups and network go now.
    engine.runtime.remove_cgroups_named(build::STEP_PREFIX);
    build::network::sweep(&engine).await;
    // Taking the store's lock clears its tmp/ of what no live writer holds: a build's
    // scratch, with any bind it held detached first.
    match engine.store.lock() {
        Ok(l) => drop(l),
        Err(e) => tracing::warn!("clearing the image store's tmp/: {e}"),
    }
    // What a crashed engine left in the NAT table goes now.
    engine.sync_nat().await;
    let sock = run_dir.join(crate::api::SOCKET);
    let _ = std::fs::remove_file(&sock);
    let listener = tokio::net::UnixListener::bind(&sock)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))?;
    }
    // Informational only: a full disk must not keep the engine from serving.
    let pid_file = run_dir.join("rcompose.pid");
    if let Err(e) = images::store::write_atomic(&pid_file, format!("{}\n", std::process::id()).as_bytes()) {
        tracing::warn!("could not write {}: {e}", pid_file.display());
    }
    tracing::info!("engine ready on {}", sock.display());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    tokio::select! {
        r = server::serve(listener, engine.clone()) => r?,
        _ = term.recv() => tracing::info!("SIGTERM: shutting down, containers keep running"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down, containers keep running"),
    }
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(run_dir.join("rcompose.pid"));
    Ok(())
}
