//! One stage, step by step: its base (`scratch`, an earlier stage, or an image from the
//! store or the registry), the base's `ONBUILD` triggers, then each instruction, with
//! the cache consulted before any step that makes a layer.

use super::cache::{self, Entry};
use super::exec::{self, CopyJob, RunSpec, Scratch};
use super::run_mounts::{bind_inputs, run_mounts, Inputs};
use super::stage::{self, StageState};
use super::{BuildError, BuildJob, Ctx, NamedContext, Vertex};
use images::context::copy::{Chmod, CopyOptions};
use images::context::{glob, Source};
use images::dockerfile::expand;
use images::dockerfile::{CopyArgs, Dockerfile, Form, Instruction, Step};
use images::store::LayerRecord;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What a stage is built with.
struct StageRun<'a> {
    ctx: &'a Ctx,
    job: &'a BuildJob,
    d: &'a Dockerfile,
    index: usize,
    global: &'a BTreeMap<String, String>,
    context: &'a Source,
    built: &'a HashMap<usize, StageState>,
    label: String,
    total: usize,
    count: usize,
    /// Files `ADD` fetched, kept until the stage is done.
    fetched: std::cell::RefCell<Vec<Scratch>>,
}

fn creates_vertex(i: &Instruction) -> bool {
    matches!(
        i,
        Instruction::Run { .. } | Instruction::Copy(_) | Instruction::Add(_) | Instruction::Workdir(_)
    )
}

/// Builds stage `index` of `d`; `built` holds the stages it uses.
pub fn stage(
    ctx: &Ctx,
    job: &BuildJob,
    d: &Dockerfile,
    index: usize,
    global: &BTreeMap<String, String>,
    context: &Source,
    built: &HashMap<usize, StageState>,
) -> Result<StageState, BuildError> {
    let s = &d.stages[index];
    let label = match (&s.name, d.stages.len()) {
        (_, 1) => String::new(),
        (Some(n), _) => format!("{n} "),
        (None, _) => format!("stage-{index} "),
    };
    let total = 1 + s.steps.iter().filter(|st| creates_vertex(&st.instruction)).count();
    let mut r = StageRun {
        ctx,
        job,
        d,
        index,
        global,
        context,
        built,
        label,
        total,
        count: 1,
        fetched: Default::default(),
    };
    let escape = d.directives.escape;
    let base = expand::word(&s.base, global, escape).map_err(|e| BuildError::Step {
        line: s.line,
        message: e.to_string(),
    })?;
    let (mut st, triggers) = r.base(&base, s.line)?;
    let mut steps: Vec<Step> = Vec::new();
    for t in triggers {
        let parsed =
            images::dockerfile::Dockerfile::parse(&format!("FROM scratch\n{t}\n")).map_err(|e| BuildError::Step {
                line: s.line,
                message: format!("ONBUILD {t}: {e}"),
            })?;
        for mut step in parsed.stages.into_iter().flat_map(|x| x.steps) {
            step.line = s.line;
            steps.push(step);
        }
    }
    r.total += steps.iter().filter(|st| creates_vertex(&st.instruction)).count();
    steps.extend(s.steps.iter().cloned());
    for step in &steps {
        if ctx.cancelled() {
            return Err(BuildError::Cancelled);
        }
        r.step(&mut st, step)?;
    }
    Ok(st)
}

impl<'a> StageRun<'a> {
    fn vertex(&mut self, text: String) -> Vertex<'a> {
        self.count += 1;
        let name = format!("[{}{}/{}] {text}", self.label, self.count, self.total);
        Vertex::new(self.ctx, name)
    }

    /// The stage's base and its `ONBUILD` triggers.
    fn base(&mut self, base: &str, line: usize) -> Result<(StageState, Vec<String>), BuildError> {
        if base == "scratch" {
            return Ok((
                StageState {
                    layers: Vec::new(),
                    config: stage::scratch(),
                    args: Vec::new(),
                    key: cache::key("scratch", &[]),
                    cmd_set: false,
                },
                Vec::new(),
            ));
        }
        if let Some(i) = self.d.stage_named(base, self.index) {
            let st = self.built.get(&i).cloned().ok_or(BuildError::Cancelled)?;
            // The base stage's args come along, as BuildKit's child stages inherit them.
            let (config, triggers) = stage::from_base(st.config);
            return Ok((
                StageState {
                    config,
                    cmd_set: false,
                    ..st
                },
                triggers,
            ));
        }
        let name = format!("[{}1/{}] FROM {base}", self.label, self.total);
        let v = Vertex::new(self.ctx, name);
        let rec = match image(self.ctx, base, self.job.pull) {
            Ok(r) => r,
            Err(e) => {
                let e = BuildError::Step {
                    line,
                    message: e.to_string(),
                };
                v.failed(&e.to_string());
                return Err(e);
            }
        };
        let config = self
            .ctx
            .store
            .config(&rec)
            .map_err(|e| BuildError::Image(e.to_string()))?;
        v.done();
        let (config, triggers) = stage::from_base(config);
        Ok((
            StageState {
                layers: rec.layers.clone(),
                config,
                args: Vec::new(),
                key: cache::key(rec.manifest.as_str(), &[]),
                cmd_set: false,
            },
            triggers,
        ))
    }

    fn step(&mut self, st: &mut StageState, step: &Step) -> Result<(), BuildError> {
        let escape = self.d.directives.escape;
        match &step.instruction {
            Instruction::Run {
                form,
                mounts,
                network,
                security,
            } => self.run(st, step, form, mounts, network.as_deref(), security.as_deref()),
            Instruction::Copy(c) => self.copy(st, step, c, false),
            Instruction::Add(c) => self.copy(st, step, c, true),
            Instruction::Workdir(raw) => {
                let dir = stage::workdir(st, step, raw, escape)?;
                st.config.config.working_dir = Some(dir.clone());
                let by = format!("WORKDIR {dir}");
                let user = st.config.config.user.clone().filter(|u| !u.is_empty());
                let owner = match &user {
                    Some(u) => Some(resolve_owner(self.ctx, st, u).map_err(|m| BuildError::at(step, m))?),
                    None => None,
                };
                let key = cache::key(&st.key, &[&by, &format!("{owner:?}")]);
                let v = self.vertex(by.clone());
                let ctx = self.ctx;
                layer_step(ctx, self.job.no_cache, st, key, by, v, |st| {
                    exec::mkdir(ctx, st, step, &dir, owner)
                })
            }
            Instruction::From { .. } => Err(BuildError::at(step, "FROM inside a stage".into())),
            _ => {
                let by = stage::apply(st, step, escape, self.global, &self.job.args)?;
                st.key = cache::key(&st.key, &[&by]);
                // ONBUILD only stores its trigger: BuildKit writes no history for it.
                if !matches!(step.instruction, Instruction::Onbuild(_)) {
                    st.history(None, by, true);
                }
                Ok(())
            }
        }
    }

    fn run(
        &mut self,
        st: &mut StageState,
        step: &Step,
        form: &Form,
        mounts: &[String],
        network: Option<&str>,
        security: Option<&str>,
    ) -> Result<(), BuildError> {
        let insecure = match security.unwrap_or("sandbox") {
            "sandbox" => false,
            "insecure" if self.job.allow_insecure => true,
            "insecure" => {
                return Err(BuildError::at(
                    step,
                    "RUN --security=insecure: security.insecure is not allowed (build.entitlements: [security.insecure] or build.privileged: true allows it)".into(),
                ))
            }
            s => {
                return Err(BuildError::at(
                    step,
                    format!("RUN --security={s}: not one of sandbox, insecure"),
                ))
            }
        };
        let args = run_args(form, step, &st.shell());
        let run_args = st.run_args();
        let shown = st.history_args();
        let prefix = if shown.is_empty() {
            String::new()
        } else {
            format!("|{} {} ", shown.len(), shown.join(" "))
        };
        let by = format!("RUN {prefix}{} # buildkit", args.join(" "));
        let mut env: Vec<String> = st.config.config.env.clone().unwrap_or_default();
        env.extend(run_args.iter().cloned());
        for p in stage::PROXY_ARGS {
            if let Some(v) = self.job.args.get(*p) {
                if !env.iter().any(|e| e.starts_with(&format!("{p}="))) {
                    env.push(format!("{p}={v}"));
                }
            }
        }
        let network = network
            .map(str::to_string)
            .or_else(|| self.job.network.clone())
            .unwrap_or_else(|| "default".into());
        if !["default", "none", "host"].contains(&network.as_str()) {
            return Err(BuildError::at(
                step,
                format!("RUN --network={network}: not one of default, none, host"),
            ));
        }
        if network == "host" && !self.job.allow_host_network {
            return Err(BuildError::at(
                step,
                "RUN --network=host: network.host is not allowed (build.entitlements: [network.host] allows it)".into(),
            ));
        }

        let text = format!("RUN {}", step.text);
        let inp = Inputs {
            ctx: self.ctx,
            job: self.job,
            d: self.d,
            index: self.index,
            built: self.built,
            context: self.context,
        };
        let inputs = bind_inputs(inp, step, mounts)?;
        let key = cache::key(
            &st.key,
            &[
                "RUN",
                &by,
                &env.join("\0"),
                &network,
                if insecure { "insecure" } else { "sandbox" },
                &mounts.join("\0"),
                &inputs.join("\0"),
            ],
        );
        let (ctx, job) = (self.ctx, self.job);
        let v = self.vertex(text);
        layer_step(ctx, job.no_cache, st, key, by, v, |st| {
            let mut views = Vec::new();
            let m = run_mounts(inp, st, step, mounts, &mut views)?;
            let mut env = env.clone();
            // As BuildKit's exec: the first agent's socket, unless the stage set one.
            if let Some(first) = m.ssh.first() {
                if !env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK=")) {
                    env.push(format!("SSH_AUTH_SOCK={}", first.target));
                }
            }
            let spec = RunSpec {
                args: args.clone(),
                env,
                network: network.clone(),
                mounts: m.mounts,
                secrets: m.secrets,
                ssh: m.ssh,
                extra_hosts: job.extra_hosts.clone(),
                shm_size: job.shm_size,
                ulimits: job.ulimits.clone(),
                insecure,
            };
            let mut log = |l: &str| {
                let (id, elapsed) = current_vertex();
                ctx.event(crate::api::BuildEvent::Log {
                    id,
                    elapsed,
                    line: l.to_string(),
                });
            };
            exec::run(ctx, st, step, spec, &mut log)
        })
    }

    fn copy(&mut self, st: &mut StageState, step: &Step, c: &CopyArgs, add: bool) -> Result<(), BuildError> {
        let escape = self.d.directives.escape;
        let vars = st.vars();
        let w = |s: &str| expand::word(s, &vars, escape).map_err(|e| BuildError::at(step, e.to_string()));
        let kw = if add { "ADD" } else { "COPY" };
        let mut sources = Vec::new();
        let mut urls = Vec::new();
        let mut inline = Vec::new();
        for s in &c.sources {
            if let Some(h) = heredoc_of(step, s) {
                let body = if h.expand {
                    expand::word(&h.body, &vars, escape).unwrap_or_else(|_| h.body.clone())
                } else {
                    h.body.clone()
                };
                inline.push((h.name.clone(), body.into_bytes()));
                continue;
            }
            let s = w(s)?;
            if add && images::fetch::is_url(&s) {
                urls.push(s);
                continue;
            }
            if add && (s.starts_with("git@") || s.ends_with(".git")) && s.contains(':') {
                return Err(BuildError::at(
                    step,
                    format!("ADD {s}: adding a git repository is not implemented yet"),
                ));
            }
            sources.push(s);
        }
        if c.checksum.is_some() && (urls.is_empty() || !sources.is_empty()) {
            return Err(BuildError::at(step, "checksum requires HTTP(S) or Git sources".into()));
        }
        // Fetched now: the content is part of the step's key, as BuildKit keys it.
        let mut fetched = Vec::new();
        let mut remote = Vec::new();
        for u in &urls {
            let f = self.fetch(u, c.checksum.as_deref(), step)?;
            remote.push(format!("{u} {}", f.1));
            fetched.push(f);
        }
        let raw_dest = w(&c.dest)?;
        let workdir = st.config.config.working_dir.clone().unwrap_or_else(|| "/".into());
        let mut dest = if raw_dest.starts_with('/') {
            raw_dest.clone()
        } else {
            format!("{}/{raw_dest}", workdir.trim_end_matches('/'))
        };
        let wildcard = sources.iter().any(|s| glob::has_wildcards(s));
        let count = sources.len() + inline.len() + urls.len();
        let dest_is_dir = raw_dest.ends_with('/') || raw_dest == "." || count > 1 || wildcard;
        if count > 1 && !(raw_dest.ends_with('/') || raw_dest == ".") {
            return Err(BuildError::at(step, format!("When using {kw} with more than one source file, the destination must be a directory and end with a /")));
        }
        dest = stage::clean_abs(&dest);
        let from = c.from.as_deref().map(w).transpose()?;
        let input = self.input_of(from.as_deref(), step)?;
        // A stack of layers is the same tree for the same layers: the digest of what
        // is copied from it is remembered, and the tree mounted only when the step
        // must run.
        let memo = match &input {
            From::Layers { layers, .. } => {
                let ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
                Some(cache::key(&ids.join(" "), &["copy-src", &sources.join("\0")]))
            }
            _ => None,
        };
        let known = memo
            .as_ref()
            .filter(|_| !self.job.no_cache)
            .and_then(|k| self.ctx.cache.source_digest(k));
        let mut views = Vec::new();
        let mut opened: Option<Source> = None;
        if known.is_none() {
            opened = self.open_from(&input, &sources, step, &mut views)?;
        }
        let resolve = |source: &Source| -> Result<Vec<PathBuf>, BuildError> {
            let mut items = Vec::new();
            for s in &sources {
                items.extend(source.resolve(s).map_err(|e| BuildError::at(step, e.to_string()))?);
            }
            Ok(items)
        };
        let from_key = match &input {
            From::Context => String::new(),
            From::Dir(d) => format!("dir:{}", d.display()),
            From::Layers { key, .. } => key.clone(),
        };
        let chown = c.chown.as_deref().map(w).transpose()?;
        let ids = chown
            .as_deref()
            .map(|u| resolve_owner(self.ctx, st, u))
            .transpose()
            .map_err(|m| BuildError::at(step, m))?;
        let chmod = c
            .chmod
            .as_deref()
            .map(|m| Chmod::parse(m).map_err(|e| BuildError::at(step, e.to_string())))
            .transpose()?;
        let mut unpack = Vec::new();
        let mut items = Vec::new();
        let digest = match &known {
            Some(d) => d.clone(),
            None => {
                let source = opened.as_ref().unwrap_or(self.context);
                items = resolve(source)?;
                if add && source.is_context {
                    items.retain(|i| {
                        let archive = is_archive(source, i);
                        if archive {
                            unpack.push(i.clone());
                        }
                        !archive
                    });
                }
                let t0 = std::time::Instant::now();
                let d = source
                    .digest(&items, &self.ctx.hashes)
                    .map_err(|e| BuildError::at(step, e.to_string()))?;
                tracing::debug!("build: digest of {items:?} {:?}", t0.elapsed());
                if let Some(k) = &memo {
                    self.ctx.cache.put_source_digest(k, &d);
                }
                d
            }
        };
        let archives = if unpack.is_empty() {
            String::new()
        } else {
            self.context.digest(&unpack, &self.ctx.hashes).unwrap_or_default()
        };
        let inline_key: Vec<String> = inline
            .iter()
            .map(|(n, b)| format!("{n}={}", String::from_utf8_lossy(b)))
            .collect();
        let shown_sources: Vec<String> = c.sources.iter().map(|s| w(s).unwrap_or_else(|_| s.clone())).collect();
        // BuildKit's text: --parents, --chown, --chmod (never --from, --link, --exclude).
        let mut flags = String::new();
        if c.parents {
            flags.push_str(" --parents");
        }
        if let Some(u) = &chown {
            flags.push_str(&format!(" --chown={u}"));
        }
        if let Some(m) = &c.chmod {
            flags.push_str(&format!(" --chmod={}", w(m)?));
        }
        let by = format!("{kw}{flags} {} {raw_dest} # buildkit", shown_sources.join(" "));
        // --link: the layer is made on nothing, so its key leaves out the steps before
        // it and a change there reuses it (rebased, as BuildKit links it on top).
        let before = st.key.clone();
        let key = cache::key(
            if c.link { "link" } else { &before },
            &[
                kw,
                &by,
                &dest,
                &digest,
                &archives,
                &from_key,
                &format!("{ids:?} {:?} {}", c.chmod, c.parents),
                &inline_key.join("\0"),
                &c.exclude.join("\0"),
                &remote.join("\0"),
            ],
        );
        let ctx = self.ctx;
        let no_cache = self.job.no_cache;
        let v = self.vertex(format!("{kw} {}", step.text));
        let linked = c.link;
        layer_step(ctx, no_cache, st, key, by, v, |st| {
            // Onto an empty tree for --link: destination links of the image are not
            // followed, and nothing below shapes the layer.
            let bare;
            let st = if linked {
                bare = StageState {
                    layers: Vec::new(),
                    ..st.clone()
                };
                &bare
            } else {
                st
            };
            // Mounted now if the digest was remembered.
            let mut views = views;
            let opened = match known {
                None => opened,
                Some(_) => self.open_from(&input, &sources, step, &mut views)?,
            };
            let source = opened.as_ref().unwrap_or(self.context);
            let items = if known.is_some() { resolve(source)? } else { items };
            exec::copy(
                ctx,
                st,
                step,
                CopyJob {
                    source,
                    items,
                    inline: inline.clone(),
                    dest: dest.clone(),
                    dest_is_dir,
                    options: CopyOptions {
                        chown: ids,
                        chmod: chmod.clone(),
                        parents: c.parents,
                        exclude: c.exclude.clone(),
                        // A stage's or image's files are the store's, never written
                        // again: the same inode serves in the new layer.
                        link: matches!(input, From::Layers { .. }),
                        ..Default::default()
                    },
                    unpack: unpack.clone(),
                    remote: fetched.iter().map(|f| f.0.clone()).collect(),
                },
            )
        })?;
        if linked {
            // What follows still depends on everything before.
            st.key = cache::key(&before, &[&st.key]);
        }
        Ok(())
    }

    /// `ADD <url>`: the file fetched into a scratch directory held for the step, named
    /// as it goes (with `Last-Modified` as its time); its path and what identifies it.
    fn fetch(&self, url: &str, checksum: Option<&str>, step: &Step) -> Result<(PathBuf, String), BuildError> {
        let scratch = Scratch::new(self.ctx, "fetch")?;
        let dir = scratch.dir.clone();
        let url_owned = url.to_string();
        let sum = checksum.map(str::to_string);
        let got = self
            .ctx
            .rt
            .block_on(async move { images::fetch::fetch(&url_owned, &dir, sum.as_deref()).await })
            .map_err(|e| BuildError::at(step, e.to_string()))?;
        let named = scratch.dir.join("file");
        let io = |e: std::io::Error| BuildError::Io(format!("{}: {e}", named.display()));
        std::fs::create_dir(&named).map_err(io)?;
        let path = named.join(&got.name);
        std::fs::rename(&got.path, &path).map_err(io)?;
        if let Some(t) = got.last_modified {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(t))
                .map_err(io)?;
        }
        let when = got
            .last_modified
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        self.fetched.borrow_mut().push(scratch);
        Ok((path, format!("{} {} {when}", got.digest, got.name)))
    }

    /// What a `--from` names (an earlier stage, a named context, an image), not yet
    /// opened; the main context without one.
    fn input_of(&self, from: Option<&str>, step: &Step) -> Result<From, BuildError> {
        let Some(from) = from else {
            return Ok(From::Context);
        };
        if let Some(i) = self.d.stage_named(from, self.index) {
            let st = self.built.get(&i).ok_or(BuildError::Cancelled)?;
            return Ok(From::Layers {
                layers: st.layers.clone(),
                key: st.key.clone(),
            });
        }
        let rec = match self.job.contexts.get(from) {
            Some(NamedContext::Dir(d)) => return Ok(From::Dir(d.clone())),
            Some(NamedContext::Image(r)) => image(self.ctx, r, false),
            None => image(self.ctx, from, self.job.pull),
        }
        .map_err(|e| BuildError::at(step, e))?;
        Ok(From::Layers {
            layers: rec.layers.clone(),
            key: rec.manifest.to_string(),
        })
    }

    /// The tree of `input` to copy `sources` from, held in `views` while it is used
    /// (the one layer that has them, when one does, else an overlay of all); `None`
    /// is the main context.
    fn open_from(
        &self,
        input: &From,
        sources: &[String],
        step: &Step,
        views: &mut Vec<Scratch>,
    ) -> Result<Option<Source>, BuildError> {
        let at = |e: images::context::ContextError| BuildError::at(step, e.to_string());
        match input {
            From::Context => Ok(None),
            From::Dir(d) => Source::context(d, None).map(Some).map_err(at),
            From::Layers { layers, .. } => {
                let dir = match exec::single_layer(self.ctx, layers, sources) {
                    Some(d) => d,
                    None => exec::view(self.ctx, layers, views)?,
                };
                Source::tree(&dir).map(Some).map_err(at)
            }
        }
    }
}

/// Where a `COPY` copies from.
enum From {
    Context,
    /// A named context that is a directory.
    Dir(PathBuf),
    /// A stage's or image's layers, and what identifies them.
    Layers {
        layers: Vec<LayerRecord>,
        key: String,
    },
}

/// A step that may make a layer: the cached result when there is one (said `CACHED`),
/// else `make`'s, recorded.
fn layer_step(
    ctx: &Ctx,
    no_cache: bool,
    st: &mut StageState,
    key: String,
    by: String,
    v: Vertex,
    make: impl FnOnce(&StageState) -> Result<Option<LayerRecord>, BuildError>,
) -> Result<(), BuildError> {
    let hit = if no_cache {
        None
    } else {
        ctx.cache.get(&ctx.store, &key)
    };
    let entry = match hit {
        Some(e) => {
            v.cached();
            e
        }
        None => {
            let id = v.id;
            let made = {
                let _current = CurrentVertex::set(id, &v);
                make(st)
            };
            match made {
                Ok(layer) => {
                    let e = Entry {
                        created: images::import::rfc3339_now(),
                        layer,
                    };
                    ctx.cache.put(&key, &e);
                    v.done();
                    e
                }
                Err(e) => {
                    v.failed(&e.to_string());
                    return Err(e);
                }
            }
        }
    };
    st.key = key;
    let empty = entry.layer.is_none();
    if let Some(l) = entry.layer {
        st.layers.push(l);
    }
    st.history((!empty).then_some(entry.created.as_str()), by, empty);
    Ok(())
}

/// Where a `RUN`'s output lines go while it runs (the vertex of this thread's step).
struct CurrentVertex;

thread_local! {
    static CURRENT: std::cell::Cell<Option<(u32, std::time::Instant)>> = const { std::cell::Cell::new(None) };
}

impl CurrentVertex {
    fn set(id: u32, _v: &Vertex) -> CurrentVertex {
        CURRENT.with(|c| c.set(Some((id, std::time::Instant::now()))));
        CurrentVertex
    }
}

impl Drop for CurrentVertex {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(None));
    }
}

/// The vertex a log line of this thread belongs to, and the seconds since it started.
pub fn current_vertex() -> (u32, f64) {
    CURRENT
        .with(|c| c.get())
        .map(|(id, t)| (id, t.elapsed().as_secs_f64()))
        .unwrap_or((0, 0.0))
}

/// An image by reference or ID: from the store, else pulled (`pull`: always pulled).
pub(super) fn image(ctx: &Ctx, reference: &str, pull: bool) -> Result<images::ImageRecord, String> {
    if !pull {
        if let Ok(rec) = ctx.store.resolve(reference) {
            return Ok(rec);
        }
        if let Ok(r) = images::ImageRef::parse(reference) {
            if let Ok(rec) = ctx.store.resolve(&r.full()) {
                return Ok(rec);
            }
        }
    }
    let r = images::ImageRef::parse(reference).map_err(|e| e.to_string())?;
    let auth = ctx.auths.get(r.registry()).cloned();
    let engine = ctx.engine.clone();
    let out = ctx.out.clone();
    let policy = if pull { "always" } else { "missing" };
    ctx.rt
        .block_on(async move { engine.pull(&r.full(), Some(policy), auth.as_ref(), &out).await })
        .map_err(|e| format!("failed to resolve source metadata for {reference}: {e}"))?;
    let r = images::ImageRef::parse(reference).map_err(|e| e.to_string())?;
    ctx.store.resolve(&r.full()).map_err(|e| e.to_string())
}

fn heredoc_of<'a>(step: &'a Step, word: &str) -> Option<&'a images::dockerfile::Heredoc> {
    let name = word
        .strip_prefix("<<")?
        .trim_start_matches('-')
        .trim_matches(['"', '\'']);
    step.heredocs.iter().find(|h| h.name == name)
}

/// A `RUN`'s argv: the exec form as written; the shell form through the stage's shell,
/// with its heredocs (a lone heredoc is the script itself).
fn run_args(form: &Form, step: &Step, shell: &[String]) -> Vec<String> {
    match form {
        Form::Exec(v) => v.clone(),
        Form::Shell(_) if step.heredocs.is_empty() => stage::command(form, shell),
        Form::Shell(s) => {
            let lone = step.heredocs.len() == 1 && heredoc_of(step, s.trim()).is_some();
            if lone {
                // The script as written, its last newline too (BuildKit's `-c` word).
                let body = &step.heredocs[0].body;
                return shell.iter().cloned().chain([body.clone()]).collect();
            }
            let mut script = s.clone();
            script.push('\n');
            for h in &step.heredocs {
                script.push_str(&h.body);
                script.push_str(&h.name);
                script.push('\n');
            }
            shell.iter().cloned().chain([script]).collect()
        }
    }
}

/// `--chown=user:group` to IDs: numbers as they are, names from the stage's
/// /etc/passwd and /etc/group.
fn resolve_owner(ctx: &Ctx, st: &StageState, spec: &str) -> Result<(u32, u32), String> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lowers = exec::layer_dirs(ctx, &st.layers);
    let file = |name: &str| -> String {
        for l in lowers.iter().rev() {
            let Ok(root) = std::fs::File::open(l) else { continue };
            let root: std::os::unix::io::OwnedFd = root.into();
            if let Ok(data) = safefs::inroot::read_file(safefs::inroot::borrow(&root), Path::new(name), 4 << 20) {
                return String::from_utf8_lossy(&data).into_owned();
            }
        }
        String::new()
    };
    let lookup = |text: &str, name: &str, field: usize| -> Option<(u32, Option<u32>)> {
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name))
                .then(|| {
                    (
                        f.get(field).and_then(|x| x.parse().ok()),
                        f.get(3).and_then(|x| x.parse().ok()),
                    )
                })
                .and_then(|(id, gid)| id.map(|id| (id, gid)))
        })
    };
    let (uid, primary) = match u.parse::<u32>() {
        Ok(n) => (n, None),
        Err(_) => lookup(&file("/etc/passwd"), u, 2)
            .ok_or_else(|| format!("unable to find user {u}: no matching entries in passwd file"))?,
    };
    let gid = match g {
        None => primary.unwrap_or(uid),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup(&file("/etc/group"), g, 2)
                .map(|(id, _)| id)
                .ok_or_else(|| format!("unable to find group {g}: no matching entries in group file"))?,
        },
    };
    Ok((uid, gid))
}

/// Whether a context file is a tar archive (plain or compressed), which `ADD` unpacks.
fn is_archive(src: &Source, rel: &Path) -> bool {
    let Ok(e) = src.open(rel) else { return false };
    if e.stat.st_mode & libc::S_IFMT != libc::S_IFREG {
        return false;
    }
    let Ok(fd) = e.fd() else { return false };
    let Ok(mut f) = std::fs::File::open(format!("/proc/self/fd/{}", std::os::unix::io::AsRawFd::as_raw_fd(fd))) else {
        return false;
    };
    let mut head = vec![0u8; 512];
    let n = std::io::Read::read(&mut f, &mut head).unwrap_or(0);
    head.truncate(n);
    if !matches!(images::unpack::sniff(&head), images::unpack::Compression::None) {
        return true;
    }
    head.len() >= 262 && &head[257..262] == b"ustar"
}
