//! A `RUN`'s `--mount=` flags: what each shows the step (a cache directory, a bind of
//! the context, a stage or an image, a tmpfs, a secret, the SSH agent) and what its
//! binds add to the step's cache key.

use super::cache;
use super::exec::{self, Scratch};
use super::run_step::image;
use super::ssh::SshMount;
use super::stage::{self, StageState};
use super::{BuildError, BuildJob, Ctx, NamedContext};
use images::context::copy::CopyOptions;
use images::context::Source;
use images::dockerfile::{Dockerfile, Step};
use runtime::spec::Mount;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What a step's mounts come to: the mounts, the secrets to write for them and the
/// SSH agents to serve.
#[derive(Default)]
pub(super) struct StepMounts {
    pub mounts: Vec<Mount>,
    pub secrets: Vec<exec::Secret>,
    pub ssh: Vec<SshMount>,
}

/// The directory a cache mount uses, by its `sharing`: `shared` (the default) with
/// every step at once; `locked`, one step at a time (the others wait); `private`,
/// the cache when no other step has it, else a directory of its own for this step.
/// The lock, when one is held, comes back as a scratch to keep until the step ends.
fn cache_mount_dir(
    ctx: &Ctx,
    shared: &Path,
    sharing: &str,
    views: &mut Vec<Scratch>,
) -> Result<(PathBuf, Option<Scratch>), String> {
    let open_lock = || {
        let mut p = shared.as_os_str().to_owned();
        p.push(".lock");
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(PathBuf::from(p))
            .map_err(|e| e.to_string())
    };
    // The lock lasts as long as the file is open, which the scratch keeps.
    let try_lock = |f: &std::fs::File| {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a descriptor we hold; the result is checked.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
    };
    let hold = |f: std::fs::File| -> Result<Scratch, String> {
        let mut s = Scratch::new(ctx, "cachelock").map_err(|e| e.to_string())?;
        s.lock = Some(f);
        Ok(s)
    };
    match sharing {
        "shared" => Ok((shared.to_path_buf(), None)),
        "locked" => {
            let file = open_lock()?;
            while !try_lock(&file) {
                if ctx.cancelled() {
                    return Err("cancelled while waiting for the cache mount".into());
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Ok((shared.to_path_buf(), Some(hold(file)?)))
        }
        "private" => {
            let file = open_lock()?;
            if try_lock(&file) {
                return Ok((shared.to_path_buf(), Some(hold(file)?)));
            }
            let s = Scratch::new(ctx, "cacheprivate").map_err(|e| e.to_string())?;
            let dir = s.dir.join("cache");
            views.push(s);
            Ok((dir, None))
        }
        other => Err(format!("sharing={other}: not one of shared, private, locked")),
    }
}

/// A `--mount=` flag's `key=value` list (a bare key is `true`).
fn mount_options(spec: &str) -> BTreeMap<String, String> {
    let mut o = BTreeMap::new();
    for kv in spec.split(',') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
        o.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    o
}

fn bind_src(o: &BTreeMap<String, String>) -> String {
    o.get("source").or(o.get("src")).cloned().unwrap_or_default()
}

/// What a `RUN`'s mounts may draw on: the build, the Dockerfile, the stage's index,
/// the stages built and the context.
#[derive(Clone, Copy)]
pub(super) struct Inputs<'a> {
    pub ctx: &'a Ctx,
    pub job: &'a BuildJob,
    pub d: &'a Dockerfile,
    pub index: usize,
    pub built: &'a HashMap<usize, StageState>,
    pub context: &'a Source,
}

/// What a `RUN`'s bind mounts show, for its cache key (as BuildKit keys a mount by
/// its input's content): a context's files by their digest, a stage by its key, an
/// image by its manifest.
pub(super) fn bind_inputs(inp: Inputs, step: &Step, specs: &[String]) -> Result<Vec<String>, BuildError> {
    let Inputs { ctx, job, d, built, .. } = inp;
    let (index, context) = (inp.index, inp.context);
    let mut keys = Vec::new();
    for spec in specs {
        let o = mount_options(spec);
        if o.get("type").is_some_and(|t| t != "bind") {
            continue;
        }
        let src = bind_src(&o);
        let rel = PathBuf::from(images::context::ignore::clean(&src));
        let bad = |m: String| BuildError::at(step, format!("--mount={spec}: {m}"));
        let key = match o.get("from") {
            None => context.digest(&[rel], &ctx.hashes).map_err(|e| bad(e.to_string()))?,
            Some(f) => match d.stage_named(f, index) {
                Some(i) => format!("{} {src}", built.get(&i).ok_or(BuildError::Cancelled)?.key),
                None => match job.contexts.get(f) {
                    Some(NamedContext::Dir(p)) => Source::context(p, None)
                        .and_then(|c| c.digest(&[rel], &ctx.hashes))
                        .map_err(|e| bad(e.to_string()))?,
                    Some(NamedContext::Image(r)) => format!("{} {src}", image(ctx, r, false).map_err(bad)?.manifest),
                    None => format!("{} {src}", image(ctx, f, job.pull).map_err(bad)?.manifest),
                },
            },
        };
        keys.push(key);
    }
    Ok(keys)
}

/// The mounts of a `RUN --mount=...` list, the secrets to write and the agents to serve.
pub(super) fn run_mounts(
    inp: Inputs,
    st: &StageState,
    step: &Step,
    specs: &[String],
    views: &mut Vec<Scratch>,
) -> Result<StepMounts, BuildError> {
    let workdir = st.config.config.working_dir.clone().unwrap_or_else(|| "/".into());
    let mut out = StepMounts::default();
    for spec in specs {
        let o = mount_options(spec);
        let kind = o.get("type").cloned().unwrap_or_else(|| "bind".into());
        // Relative to the working directory and cleaned, as BuildKit takes it: no
        // `..` reaches the mount-point clean-up, whatever the spec says.
        let target = o.get("target").or(o.get("dst")).or(o.get("destination")).map(|t| {
            let t = if t.starts_with('/') {
                t.clone()
            } else {
                format!("{workdir}/{t}")
            };
            stage::clean_abs(&t)
        });
        let bad = |m: String| BuildError::at(step, format!("--mount={spec}: {m}"));
        let needed = |what: &str| {
            target
                .clone()
                .ok_or_else(|| bad(format!("a {what} mount needs a target")))
        };
        match kind.as_str() {
            "cache" => out.mounts.push(cache_mount(inp, &o, needed("cache")?, views, &bad)?),
            "bind" => out.mounts.push(bind_mount(inp, &o, needed("bind")?, views, &bad)?),
            "tmpfs" => out.mounts.push(Mount {
                kind: "tmpfs".into(),
                target: needed("tmpfs")?.into(),
                data: o.get("size").map(|s| format!("size={s}")).unwrap_or_default(),
                ..Default::default()
            }),
            "secret" => {
                if let Some((secret, mount)) = secret_mount(inp.job, &o, target, &bad)? {
                    out.secrets.push(secret);
                    out.mounts.push(mount);
                }
            }
            "ssh" => {
                let n = out.ssh.len();
                if n >= super::ssh::MAX_MOUNTS {
                    return Err(bad(format!(
                        "more than {} ssh mounts in one RUN",
                        super::ssh::MAX_MOUNTS
                    )));
                }
                if let Some(m) = SshMount::new(&o, target, n, &inp.job.ssh).map_err(bad)? {
                    out.ssh.push(m);
                }
            }
            other => return Err(bad(format!("unknown mount type {other:?}"))),
        }
    }
    Ok(out)
}

type Bad<'a> = &'a dyn Fn(String) -> BuildError;

fn read_only(o: &BTreeMap<String, String>) -> bool {
    o.get("readonly").or(o.get("ro")).is_some_and(|v| v != "false")
}

/// `type=cache`: a directory kept between builds, by `id` (the target by default).
fn cache_mount(
    inp: Inputs,
    o: &BTreeMap<String, String>,
    target: String,
    views: &mut Vec<Scratch>,
    bad: Bad,
) -> Result<Mount, BuildError> {
    let ctx = inp.ctx;
    let io = |e: std::io::Error| BuildError::Io(e.to_string());
    let id = o.get("id").cloned().unwrap_or_else(|| target.clone());
    let shared = ctx.cache.mounts_dir().join(cache::key("cache-mount", &[&id]));
    std::fs::create_dir_all(ctx.cache.mounts_dir()).map_err(io)?;
    let sharing = o.get("sharing").map(String::as_str).unwrap_or("shared");
    let (dir, lock) = cache_mount_dir(ctx, &shared, sharing, views).map_err(bad)?;
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mode = o
            .get("mode")
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .unwrap_or(0o755);
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(mode)).map_err(io)?;
        let uid = o.get("uid").and_then(|m| m.parse().ok()).unwrap_or(0);
        let gid = o.get("gid").and_then(|m| m.parse().ok()).unwrap_or(0);
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(io)?;
        // `from=`: a new cache starts as that stage's or image's `source`.
        if let Some(f) = o.get("from") {
            let rel = PathBuf::from(images::context::ignore::clean(&bind_src(o)));
            let tree = match inp.d.stage_named(f, inp.index) {
                Some(i) => exec::view(ctx, &inp.built.get(&i).ok_or(BuildError::Cancelled)?.layers, views)?,
                None => exec::view(ctx, &image(ctx, f, inp.job.pull).map_err(bad)?.layers, views)?,
            };
            let src = Source::tree(&tree).map_err(|e| bad(e.to_string()))?;
            let root: std::os::unix::io::OwnedFd = std::fs::File::open(&dir).map_err(io)?.into();
            images::context::copy::copy(
                &src,
                &[rel],
                safefs::inroot::borrow(&root),
                "/",
                true,
                &CopyOptions::default(),
            )
            .map_err(|e| bad(e.to_string()))?;
        }
    }
    if let Some(l) = lock {
        views.push(l);
    }
    Ok(Mount {
        kind: "bind".into(),
        source: dir,
        target: target.into(),
        read_only: read_only(o),
        ..Default::default()
    })
}

/// `type=bind`: the context (as the build transfers it), a stage, a named context or
/// an image, read-only unless `rw` (then writes go to a copy, dropped after the step).
fn bind_mount(
    inp: Inputs,
    o: &BTreeMap<String, String>,
    target: String,
    views: &mut Vec<Scratch>,
    bad: Bad,
) -> Result<Mount, BuildError> {
    let ctx = inp.ctx;
    let rel = PathBuf::from(images::context::ignore::clean(&bind_src(o)));
    let writable = o.get("rw").or(o.get("readwrite")).is_some_and(|v| v != "false");
    let named;
    let layers = |views: &mut Vec<Scratch>, l: &[images::store::LayerRecord]| exec::view(ctx, l, views);
    let (root, filter): (PathBuf, Option<&Source>) = match o.get("from") {
        None => (inp.context.path.clone(), Some(inp.context)),
        Some(f) => match inp.d.stage_named(f, inp.index) {
            Some(i) => (
                layers(views, &inp.built.get(&i).ok_or(BuildError::Cancelled)?.layers)?,
                None,
            ),
            None => match inp.job.contexts.get(f) {
                Some(NamedContext::Dir(p)) => {
                    named = Source::context(p, None).map_err(|e| bad(e.to_string()))?;
                    (p.clone(), Some(&named))
                }
                Some(NamedContext::Image(r)) => (layers(views, &image(ctx, r, false).map_err(bad)?.layers)?, None),
                None => (layers(views, &image(ctx, f, inp.job.pull).map_err(bad)?.layers)?, None),
            },
        },
    };
    // A context is seen as the build transfers it: without what .dockerignore leaves
    // out (in a copy, which may be written to).
    let (host, copied) = match filter {
        Some(src) if src.filters() => (
            exec::filtered_copy(ctx, src, &rel, views).map_err(|e| bad(e.to_string()))?,
            true,
        ),
        _ => (
            exec::held_bind(ctx, &root, &rel, views).map_err(|e| bad(e.to_string()))?,
            false,
        ),
    };
    let host = if writable && !copied {
        exec::writable_copy_view(ctx, &host, views)?
    } else {
        host
    };
    Ok(Mount {
        kind: "bind".into(),
        source: host,
        target: target.into(),
        read_only: !writable,
        ..Default::default()
    })
}

/// `type=secret`: the build secret `id` (the target's file name by default), written
/// for the step only; `None` when the build has no such secret and it is not required.
fn secret_mount(
    job: &BuildJob,
    o: &BTreeMap<String, String>,
    target: Option<String>,
    bad: Bad,
) -> Result<Option<(exec::Secret, Mount)>, BuildError> {
    let id = o.get("id").cloned().or_else(|| {
        target
            .as_ref()
            .and_then(|t| Path::new(t).file_name().map(|n| n.to_string_lossy().into_owned()))
    });
    let id = id.ok_or_else(|| bad("a secret mount needs an id or a target".into()))?;
    let Some(value) = job.secrets.get(&id) else {
        if o.get("required").is_some_and(|v| v != "false") {
            return Err(bad(format!("secret {id} not found")));
        }
        return Ok(None);
    };
    let target = target.unwrap_or_else(|| format!("/run/secrets/{id}"));
    let mode = o
        .get("mode")
        .and_then(|m| u32::from_str_radix(m, 8).ok())
        .unwrap_or(0o400);
    let name = cache::key("secret", &[&id]);
    let mount = Mount {
        kind: "secret".into(),
        source: name.clone().into(),
        target: target.into(),
        read_only: true,
        ..Default::default()
    };
    Ok(Some(((name, value.clone(), mode), mount)))
}
