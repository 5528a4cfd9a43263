//! Image builds from Dockerfiles, in the engine: the file is parsed and its stages
//! planned as a graph (only those the target needs, independent ones in parallel), the
//! metadata instructions change the image config, `RUN`, `COPY`, `ADD` and `WORKDIR`
//! make layers (`exec`), each step is looked up in the cache first (`cache`), and the
//! result is stored as an OCI image with Docker's config and history. `service` maps
//! a Compose service's `build:` onto a [`BuildJob`]; progress goes out as
//! [`crate::api::BuildEvent`]s.

pub mod cache;
pub mod exec;
pub mod network;
pub mod reused;
pub mod run_mounts;
pub mod run_step;
pub mod service;
pub mod ssh;
pub mod stage;
pub mod step_log;

use crate::api::{BuildEvent, StreamMsg};
use images::context::Source;
use images::dockerfile::{Dockerfile, Instruction, Step};
use images::{ImageRecord, ImageRef, Store};
use stage::StageState;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// The id prefix of build steps' containers (and so of their cgroups), by which the
/// engine's start finds those an earlier engine left.
pub const STEP_PREFIX: &str = "build-";

#[derive(Debug, Clone, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile's own error, with its file.
    #[error("{file}:{message}")]
    Dockerfile { file: String, message: String },
    /// A step that could not be done, at its line.
    #[error("line {line}: {message}")]
    Step { line: usize, message: String },
    /// A `RUN` that failed (the message names the file and line once located).
    #[error("{message}")]
    Failed {
        line: usize,
        message: String,
        exit_code: i32,
    },
    #[error("{0}")]
    Io(String),
    #[error("build cancelled")]
    Cancelled,
    #[error("{0}")]
    Image(String),
}

impl BuildError {
    pub fn at(step: &Step, message: String) -> BuildError {
        BuildError::Step {
            line: step.line,
            message,
        }
    }
}

/// What one build is asked to make.
#[derive(Debug, Clone, Default)]
pub struct BuildJob {
    /// The Dockerfile's path as shown in messages (`Dockerfile`, or `<inline>`).
    pub dockerfile_name: String,
    pub dockerfile_path: Option<PathBuf>,
    pub dockerfile: String,
    pub context: PathBuf,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub tags: Vec<ImageRef>,
    pub labels: BTreeMap<String, String>,
    pub no_cache: bool,
    pub pull: bool,
    pub network: Option<String>,
    /// `RUN --network=host` is allowed (the `network.host` entitlement, or the build's
    /// own network is the host's): a Dockerfile alone never gets the host's network.
    pub allow_host_network: bool,
    /// `RUN --security=insecure` is allowed (the `security.insecure` entitlement, or
    /// `build.privileged`, as Compose grants it).
    pub allow_insecure: bool,
    pub extra_hosts: Vec<(String, String)>,
    pub shm_size: u64,
    /// `build.ulimits`: (name, soft, hard) for every `RUN`.
    pub ulimits: Vec<(String, u64, u64)>,
    /// SSH agents' sockets by id (`build.ssh`), for `RUN --mount=type=ssh`.
    pub ssh: BTreeMap<String, ssh::Agent>,
    /// Build secrets by id.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// `additional_contexts`: a directory, or an image (by reference or ID).
    pub contexts: BTreeMap<String, NamedContext>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NamedContext {
    Dir(PathBuf),
    Image(String),
}

/// What the steps of one build share.
pub struct Ctx {
    pub store: Arc<Store>,
    pub engine: Arc<super::Engine>,
    pub cache: cache::Cache,
    pub host_resolv: String,
    pub cancel: Arc<AtomicBool>,
    pub out: super::project::Out,
    /// The engine's tokio runtime, for pulls from the build's threads.
    pub rt: tokio::runtime::Handle,
    pub auths: BTreeMap<String, crate::api::Credentials>,
    /// Content hashes of files already read, for the engine's lifetime and saved.
    pub hashes: Arc<images::context::hashes::Hashes>,
    /// This build has joined the build network (`network::leave` when it ends).
    pub(super) on_network: AtomicBool,
    next_id: AtomicU32,
}

/// The engine's one set of content hashes (its store is one), opened at first use.
fn hashes_of(path: &std::path::Path) -> Arc<images::context::hashes::Hashes> {
    static HASHES: std::sync::OnceLock<Arc<images::context::hashes::Hashes>> = std::sync::OnceLock::new();
    HASHES
        .get_or_init(|| Arc::new(images::context::hashes::Hashes::open(path)))
        .clone()
}

impl Drop for Ctx {
    fn drop(&mut self) {
        if self.on_network.load(Ordering::Relaxed) {
            network::leave(self);
        }
    }
}

impl Ctx {
    /// Asked to stop: a stage failed, or the client went away (Ctrl-C).
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed) || self.out.0.is_closed()
    }
    pub fn new(
        engine: Arc<super::Engine>,
        out: super::project::Out,
        auths: BTreeMap<String, crate::api::Credentials>,
    ) -> Result<Ctx, BuildError> {
        let cache = cache::Cache::open(&engine.store).map_err(|e| BuildError::Io(format!("build cache: {e}")))?;
        let hashes = hashes_of(&cache.dir().join("hashes"));
        Ok(Ctx {
            store: engine.store.clone(),
            host_resolv: engine.host_resolv.clone(),
            engine,
            cache,
            cancel: Arc::default(),
            out,
            rt: tokio::runtime::Handle::current(),
            auths,
            hashes,
            on_network: AtomicBool::new(false),
            next_id: AtomicU32::new(1),
        })
    }

    pub fn event(&self, e: BuildEvent) {
        self.out.send(StreamMsg::Build(e));
    }
}

/// A step's vertex in the progress: its number, and when it started.
pub struct Vertex<'a> {
    ctx: &'a Ctx,
    pub id: u32,
    start: Instant,
}

impl<'a> Vertex<'a> {
    fn new(ctx: &'a Ctx, name: String) -> Vertex<'a> {
        let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
        ctx.event(BuildEvent::Step { id, name });
        Vertex {
            ctx,
            id,
            start: Instant::now(),
        }
    }
    pub fn log(&self, line: &str) {
        self.ctx.event(BuildEvent::Log {
            id: self.id,
            elapsed: self.start.elapsed().as_secs_f64(),
            line: line.to_string(),
        });
    }
    fn cached(self) {
        self.ctx.event(BuildEvent::Cached { id: self.id });
    }
    fn done(self) {
        self.ctx.event(BuildEvent::Done {
            id: self.id,
            secs: self.start.elapsed().as_secs_f64(),
        });
    }
    fn failed(self, message: &str) {
        self.ctx.event(BuildEvent::Error {
            id: self.id,
            message: message.to_string(),
        });
    }
}

/// The automatic platform args, as BuildKit defines them for the host's platform.
pub fn platform_args() -> BTreeMap<String, String> {
    let (os, arch, variant) = images::config::host_platform();
    let platform = match variant {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    };
    let mut m = BTreeMap::new();
    for p in ["TARGET", "BUILD"] {
        m.insert(format!("{p}PLATFORM"), platform.clone());
        m.insert(format!("{p}OS"), os.to_string());
        m.insert(format!("{p}ARCH"), arch.to_string());
        m.insert(format!("{p}VARIANT"), variant.unwrap_or("").to_string());
    }
    m
}

/// The global scope: the platform args, then the `ARG`s before the first `FROM`.
fn global_vars(d: &Dockerfile, job: &BuildJob) -> Result<BTreeMap<String, String>, BuildError> {
    let mut vars = platform_args();
    let escape = d.directives.escape;
    for step in &d.global_args {
        if let Instruction::Arg(list) = &step.instruction {
            for (k, default) in list {
                let v = match (job.args.get(k), default) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(d)) => Some(
                        images::dockerfile::expand::word(d, &vars, escape)
                            .map_err(|e| BuildError::at(step, e.to_string()))?,
                    ),
                    (None, None) => None,
                };
                if let Some(v) = v {
                    vars.insert(k.clone(), v);
                }
            }
        }
    }
    Ok(vars)
}

/// Builds the job's image and stores it under its tags.
pub fn build(ctx: &Ctx, job: &BuildJob) -> Result<ImageRecord, BuildError> {
    let df_err = |e: images::dockerfile::DockerfileError| BuildError::Dockerfile {
        file: job.dockerfile_name.clone(),
        message: match e.line() {
            Some(_) => e.to_string().trim_start_matches("line ").to_string(),
            None => format!(" {e}"),
        },
    };
    let v = Vertex::new(
        ctx,
        "[internal] load build definition from ".to_string() + &job.dockerfile_name,
    );
    let d = match Dockerfile::parse(&job.dockerfile) {
        Ok(d) => d,
        Err(e) => {
            let e = df_err(e);
            v.failed(&e.to_string());
            return Err(e);
        }
    };
    v.done();
    let global = global_vars(&d, job)?;
    let target = d.target(job.target.as_deref()).map_err(df_err)?;
    let escape = d.directives.escape;
    let resolve = |w: &str| images::dockerfile::expand::word(w, &global, escape).unwrap_or_else(|_| w.to_string());
    let needed = d.needed(target, &resolve);
    let v = Vertex::new(ctx, "[internal] load .dockerignore".into());
    let context =
        Source::context(&job.context, job.dockerfile_path.as_deref()).map_err(|e| BuildError::Io(e.to_string()));
    let context = match context {
        Ok(c) => {
            v.done();
            c
        }
        Err(e) => {
            v.failed(&e.to_string());
            return Err(e);
        }
    };
    let locate = |e: BuildError| match e {
        BuildError::Step { line, message } => BuildError::Dockerfile {
            file: job.dockerfile_name.clone(),
            message: format!("{line}: {message}"),
        },
        BuildError::Failed {
            line,
            message,
            exit_code,
        } => BuildError::Failed {
            line,
            message: format!("{}:{line}: {message}", job.dockerfile_name),
            exit_code,
        },
        other => other,
    };
    let results = build_stages(ctx, job, &d, &needed, &global, &context).map_err(locate);
    if let Err(e) = ctx.hashes.save() {
        tracing::warn!("build: saving content hashes: {e}");
    }
    let st = results?.get(&target).cloned().ok_or(BuildError::Cancelled)?;
    commit(ctx, job, st)
}

/// Builds the needed stages, each in a thread of its own once the stages it uses are
/// built; the first failure stops the others.
fn build_stages(
    ctx: &Ctx,
    job: &BuildJob,
    d: &Dockerfile,
    needed: &BTreeSet<usize>,
    global: &BTreeMap<String, String>,
    context: &Source,
) -> Result<HashMap<usize, StageState>, BuildError> {
    let done: Mutex<HashMap<usize, Result<StageState, BuildError>>> = Mutex::default();
    let started: Mutex<BTreeSet<usize>> = Mutex::default();
    let cv = Condvar::new();
    let escape = d.directives.escape;
    let resolve = |w: &str| images::dockerfile::expand::word(w, global, escape).unwrap_or_else(|_| w.to_string());
    let uses: HashMap<usize, BTreeSet<usize>> = needed
        .iter()
        .map(|&i| {
            (
                i,
                d.uses(i, &resolve).into_iter().filter(|u| needed.contains(u)).collect(),
            )
        })
        .collect();
    // A few workers take the stages whose inputs are built: independent stages run in
    // parallel, and a file of thousands of stages never runs thousands at once.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8);
    let next = || -> Option<(usize, Option<HashMap<usize, StageState>>)> {
        let mut g = super::lock(&done);
        loop {
            let mut s = super::lock(&started);
            let pending: Vec<usize> = needed.iter().copied().filter(|i| !s.contains(i)).collect();
            if pending.is_empty() {
                return None;
            }
            for i in pending {
                let u = &uses[&i];
                if ctx.cancelled() || u.iter().any(|u| matches!(g.get(u), Some(Err(_)))) {
                    s.insert(i);
                    return Some((i, None));
                }
                if u.iter().all(|u| g.contains_key(u)) {
                    s.insert(i);
                    let m = u
                        .iter()
                        .filter_map(|u| g.get(u).and_then(|r| r.as_ref().ok()).map(|st| (*u, st.clone())))
                        .collect();
                    return Some((i, Some(m)));
                }
            }
            drop(s);
            g = cv
                .wait_timeout(g, std::time::Duration::from_millis(200))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    };
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while let Some((i, ready)) = next() {
                    let r = match ready {
                        Some(built) => run_step::stage(ctx, job, d, i, global, context, &built),
                        None => Err(BuildError::Cancelled),
                    };
                    if r.is_err() {
                        // The others stop at their next step.
                        ctx.cancel.store(true, Ordering::Relaxed);
                    }
                    super::lock(&done).insert(i, r);
                    cv.notify_all();
                }
            });
        }
    });
    let mut out = HashMap::new();
    let mut first: Option<BuildError> = None;
    for (i, r) in done.into_inner().unwrap_or_else(|p| p.into_inner()) {
        match r {
            Ok(st) => {
                out.insert(i, st);
            }
            Err(BuildError::Cancelled) => {
                first.get_or_insert(BuildError::Cancelled);
            }
            Err(e) => {
                if matches!(first, None | Some(BuildError::Cancelled)) {
                    first = Some(e);
                }
            }
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Stores the target stage as an image: config, manifest, tags.
/// Gives every history entry without a time one, as BuildKit's exporter does: those
/// before the first new layer get that layer's time, the later ones the time of the
/// entry before them; with no new layer, the base's last time.
fn fill_times(history: &mut [serde_json::Value]) {
    let time = |h: &serde_json::Value| h.get("created").and_then(|t| t.as_str()).map(str::to_string);
    let mut created: Option<String> = None;
    let mut seen_untimed = false;
    for h in history.iter() {
        match time(h) {
            Some(t) => {
                created = Some(t);
                if seen_untimed {
                    break;
                }
            }
            None => seen_untimed = true,
        }
    }
    let mut seen_untimed = false;
    for h in history.iter_mut() {
        match time(h) {
            Some(t) => {
                if seen_untimed {
                    created = Some(t);
                }
            }
            None => {
                seen_untimed = true;
                if let Some(t) = &created {
                    h["created"] = serde_json::Value::String(t.clone());
                }
            }
        }
    }
}

fn commit(ctx: &Ctx, job: &BuildJob, mut st: StageState) -> Result<ImageRecord, BuildError> {
    let v = Vertex::new(ctx, "exporting to image".into());
    let err = |e: images::StoreError| BuildError::Image(e.to_string());
    for (k, val) in &job.labels {
        st.config
            .config
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(k.clone(), val.clone());
    }
    st.config.rootfs = images::config::RootFs {
        kind: "layers".into(),
        diff_ids: st.layers.iter().map(|l| l.diff_id.to_string()).collect(),
    };
    fill_times(&mut st.config.history);
    st.config.created = st
        .config
        .history
        .last()
        .and_then(|h| h["created"].as_str().map(str::to_string))
        .or_else(|| Some(images::import::rfc3339_now()));
    let cbytes = serde_json::to_vec(&st.config).map_err(|e| BuildError::Image(e.to_string()))?;
    let config = ctx.store.put_blob(&cbytes, None).map_err(err)?;
    let layers: Vec<(images::Digest, String, u64)> = st
        .layers
        .iter()
        .map(|l| (l.blob.clone(), l.media_type.clone(), l.size))
        .collect();
    let m = images::manifest::Manifest::oci(&config, cbytes.len() as u64, &layers);
    let mbytes = serde_json::to_vec(&m).map_err(|e| BuildError::Image(e.to_string()))?;
    let manifest = ctx.store.put_blob(&mbytes, None).map_err(err)?;
    let rec = ctx.store.commit(&manifest, &config, &layers, &job.tags).map_err(err)?;
    v.log(&format!("writing image {config}"));
    for t in &job.tags {
        v.log(&format!("naming to {}", t.full()));
    }
    v.done();
    Ok(rec)
}
