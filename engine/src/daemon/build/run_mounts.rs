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
    let Inputs {
        ctx,
        job,
        d,
        index,
        built,
        context,
    } = inp;
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
    let Inputs {
        ctx,
        job,
        d,
        index,
        built,
        context,
    } = inp;
    let workdir = st.config.config.working_dir.clone().unwrap_or_else(|| "/".into());
    let mut mounts = Vec::new();
    let mut secrets = Vec::new();
    let mut ssh = Vec::new();
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
        let ro = |o: &BTreeMap<String, String>| o.get("readonly").or(o.get("ro")).is_some_and(|v| v != "false");
        let bad = |m: String| BuildError::at(step, format!("--mount={spec}: {m}"));
        match kind.as_str() {
            "cache" => {
                let target = target.ok_or_else(|| bad("a cache mount needs a target".into()))?;
                let id = o.get("id").cloned().unwrap_or_else(|| target.clone());
                let shared = ctx.cache.mounts_dir().join(cache::key("cache-mount", &[&id]));
                std::fs::create_dir_all(ctx.cache.mounts_dir()).map_err(|e| BuildError::Io(e.to_string()))?;
                let sharing = o.get("sharing").map(String::as_str).unwrap_or("shared");
                let (dir, lock) = cache_mount_dir(ctx, &shared, sharing, views).map_err(&bad)?;
                if !dir.is_dir() {
                    std::fs::create_dir_all(&dir).map_err(|e| BuildError::Io(e.to_string()))?;
                    let mode = o
                        .get("mode")
                        .and_then(|m| u32::from_str_radix(m, 8).ok())
                        .unwrap_or(0o755);
                    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(mode))
                        .map_err(|e| BuildError::Io(e.to_string()))?;
                    let uid = o.get("uid").and_then(|m| m.parse().ok()).unwrap_or(0);
                    let gid = o.get("gid").and_then(|m| m.parse().ok()).unwrap_or(0);
                    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| BuildError::Io(e.to_string()))?;
                    // `from=`: a new cache starts as that stage's or image's `source`.
                    if let Some(f) = o.get("from") {
                        let rel = PathBuf::from(images::context::ignore::clean(&bind_src(&o)));
                        let tree = match d.stage_named(f, index) {
                            Some(i) => exec::view(ctx, &built.get(&i).ok_or(BuildError::Cancelled)?.layers, views)?,
                            None => exec::view(ctx, &image(ctx, f, job.pull).map_err(&bad)?.layers, views)?,
                        };
                        let src = Source::tree(&tree).map_err(|e| bad(e.to_string()))?;
                        let root: std::os::unix::io::OwnedFd = std::fs::File::open(&dir)
                            .map_err(|e| BuildError::Io(e.to_string()))?
                            .into();
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
                mounts.push(Mount {
                    kind: "bind".into(),
                    source: dir,
                    target: target.into(),
                    read_only: ro(&o),
                    ..Default::default()
                });
            }
            "bind" => {
                let target = target.ok_or_else(|| bad("a bind mount needs a target".into()))?;
                let rel = PathBuf::from(images::context::ignore::clean(&bind_src(&o)));
                let writable = o.get("rw").or(o.get("readwrite")).is_some_and(|v| v != "false");
                let named;
                let (root, filter): (PathBuf, Option<&Source>) = match o.get("from") {
                    None => (context.path.clone(), Some(context)),
                    Some(f) => match d.stage_named(f, index) {
                        Some(i) => (
                            exec::view(ctx, &built.get(&i).ok_or(BuildError::Cancelled)?.layers, views)?,
                            None,
                        ),
                        None => match job.contexts.get(f) {
                            Some(NamedContext::Dir(p)) => {
                                named = Source::context(p, None).map_err(|e| bad(e.to_string()))?;
                                (p.clone(), Some(&named))
                            }
                            Some(NamedContext::Image(r)) => (
                                exec::view(ctx, &image(ctx, r, false).map_err(bad)?.layers, views)?,
                                None,
                            ),
                            None => (
                                exec::view(ctx, &image(ctx, f, job.pull).map_err(bad)?.layers, views)?,
                                None,
                            ),
                        },
                    },
                };
                // A context is seen as the build transfers it: without what
                // .dockerignore leaves out (in a copy, which may be written to).
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
                mounts.push(Mount {
                    kind: "bind".into(),
                    source: host,
                    target: target.into(),
                    read_only: !writable,
                    ..Default::default()
                });
            }
            "tmpfs" => {
                let target = target.ok_or_else(|| bad("a tmpfs mount needs a target".into()))?;
                let data = o.get("size").map(|s| format!("size={s}")).unwrap_or_default();
                mounts.push(Mount {
                    kind: "tmpfs".into(),
                    target: target.into(),
                    data,
                    ..Default::default()
                });
            }
            "secret" => {
                let id = o.get("id").cloned().or_else(|| {
                    target
                        .as_ref()
                        .and_then(|t| Path::new(t).file_name().map(|n| n.to_string_lossy().into_owned()))
                });
                let id = id.ok_or_else(|| bad("a secret mount needs an id or a target".into()))?;
                let required = o.get("required").is_some_and(|v| v != "false");
                let Some(value) = job.secrets.get(&id) else {
                    if required {
                        return Err(bad(format!("secret {id} not found")));
                    }
                    continue;
                };
                let target = target.unwrap_or_else(|| format!("/run/secrets/{id}"));
                let mode = o
                    .get("mode")
                    .and_then(|m| u32::from_str_radix(m, 8).ok())
                    .unwrap_or(0o400);
                let name = cache::key("secret", &[&id]);
                secrets.push((name.clone(), value.clone(), mode));
                mounts.push(Mount {
                    kind: "secret".into(),
                    source: name.into(),
                    target: target.into(),
                    read_only: true,
                    ..Default::default()
                });
            }
            "ssh" => {
                let n = ssh.len();
                if let Some(m) = SshMount::new(&o, target, n, &job.ssh).map_err(bad)? {
                    ssh.push(m);
                }
            }
            other => return Err(bad(format!("unknown mount type {other:?}"))),
        }
    }
    Ok(StepMounts { mounts, secrets, ssh })
}
