//! The steps that change files. A `RUN` is a container of our own runtime on the
//! stage's layers, whose upper directory becomes the step's layer; a `COPY`/`ADD`
//! writes into an overlay of those layers mounted by the engine, resolved inside its
//! root, and its upper directory becomes the layer the same way. The mount points a
//! step needed and did not find (`/etc/hosts`, a secret's or cache's target) are taken
//! out of the layer, as BuildKit leaves them out.

use super::stage::StageState;
use super::{BuildError, Ctx};
use images::context::copy::{self, CopyOptions};
use images::context::Source;
use images::dockerfile::Step;
use images::store::LayerRecord;
use runtime::spec::{ContainerSpec, Mount, Process};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A step's scratch directory under the store's `tmp/`, removed (after unmounting
/// what is mounted in it) on every path out.
pub struct Scratch {
    pub dir: PathBuf,
    mounted: Option<PathBuf>,
    /// A lock held as long as the step uses what it guards (a cache mount).
    pub lock: Option<std::fs::File>,
}

impl Scratch {
    pub fn new(ctx: &Ctx, what: &str) -> Result<Scratch, BuildError> {
        let dir = ctx.store.tmp_file(what);
        std::fs::create_dir_all(&dir).map_err(|e| BuildError::Io(format!("{}: {e}", dir.display())))?;
        Ok(Scratch {
            dir,
            mounted: None,
            lock: None,
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(m) = self.mounted.take() {
            if let Err(e) = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH) {
                tracing::warn!("build: unmounting {}: {e}", m.display());
            }
        }
        // Never through a mount: a held bind shows the user's context.
        if let Err(e) = safefs::mounts::remove_tree(&self.dir) {
            tracing::warn!("build: removing {}: {e}", self.dir.display());
        }
    }
}

pub fn layer_dirs(ctx: &Ctx, layers: &[LayerRecord]) -> Vec<PathBuf> {
    ctx.store.layer_dirs(layers)
}

/// The mount points a step's container will make that the layers below lack: each
/// target and its missing parents, deepest first (BuildKit's stub cleaner takes the
/// same out of the layer). Looked up inside each layer's root.
fn stubs_below(lowers: &[PathBuf], targets: &[PathBuf]) -> Vec<PathBuf> {
    let roots: Vec<std::os::unix::io::OwnedFd> = lowers
        .iter()
        .rev()
        .filter_map(|l| std::fs::File::open(l).ok().map(Into::into))
        .collect();
    let missing = |p: &Path| {
        !roots
            .iter()
            .any(|r| safefs::inroot::open(safefs::inroot::borrow(r), p, libc::O_PATH | libc::O_NOFOLLOW, 0).is_ok())
    };
    let mut out: Vec<PathBuf> = Vec::new();
    for t in targets {
        let mut p = t.as_path();
        while p != Path::new("/") && !p.as_os_str().is_empty() && missing(p) {
            if !out.iter().any(|o| o == p) {
                out.push(p.to_path_buf());
            }
            match p.parent() {
                Some(parent) => p = parent,
                None => break,
            }
        }
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

/// Takes mount-point stubs out of an upper directory: each path, if it is an empty
/// directory or an empty file. Walked by descriptors with no link followed: the step's
/// container may have put links where the stubs were.
fn remove_stubs(upper: &Path, stubs: &[PathBuf]) {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::io::AsRawFd;
    let Ok(top) = std::fs::File::open(upper).map(std::os::unix::io::OwnedFd::from) else {
        return;
    };
    for s in stubs {
        let (Some(parent), Some(name)) = (s.parent(), s.file_name()) else {
            continue;
        };
        let rel = parent.strip_prefix("/").unwrap_or(parent);
        let Ok(dir) =
            safefs::inroot::open_beneath(safefs::inroot::borrow(&top), rel, libc::O_PATH | libc::O_DIRECTORY, 0)
        else {
            continue;
        };
        let Ok(c) = std::ffi::CString::new(name.as_bytes()) else {
            continue;
        };
        let Ok(st) = safefs::inroot::stat_at(safefs::inroot::borrow(&dir), Path::new(name)) else {
            continue;
        };
        let flag = match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => libc::AT_REMOVEDIR,
            libc::S_IFREG if st.st_size == 0 => 0,
            _ => continue,
        };
        // SAFETY: a held directory and a C string; a non-empty directory stays.
        unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flag) };
    }
}

/// The layer an upper directory makes: one for every `RUN`, `COPY` and `WORKDIR`,
/// an empty tar when nothing changed, as BuildKit keeps one per step.
fn finish(ctx: &Ctx, upper: &Path) -> Result<Option<LayerRecord>, BuildError> {
    images::layer::adopt_upper(&ctx.store, upper, Some(&ctx.hashes))
        .map(Some)
        .map_err(|e| BuildError::Io(e.to_string()))
}

/// A secret file to write for a `RUN`: its name in the scratch directory, its
/// content and its mode.
pub type Secret = (String, Vec<u8>, u32);

/// What a `RUN` needs beyond the stage.
pub struct RunSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub network: String,
    pub mounts: Vec<Mount>,
    /// Secret files to write before the run: (file name in the scratch dir, content).
    pub secrets: Vec<Secret>,
    pub extra_hosts: Vec<(String, String)>,
    pub shm_size: u64,
    pub ulimits: Vec<(String, u64, u64)>,
    /// `--security=insecure`: as a privileged container (every capability, every
    /// device, no seccomp filter, nothing masked), as BuildKit runs it.
    pub insecure: bool,
    /// SSH agents to relay for the step's `type=ssh` mounts.
    pub ssh: Vec<super::ssh::SshMount>,
}

/// Runs a `RUN` step; its output goes to `log` line by line.
pub fn run(
    ctx: &Ctx,
    st: &StageState,
    step: &Step,
    r: RunSpec,
    log: &mut dyn FnMut(&str),
) -> Result<Option<LayerRecord>, BuildError> {
    let scratch = Scratch::new(ctx, "run")?;
    let mut lowers = layer_dirs(ctx, &st.layers);
    if lowers.is_empty() {
        let empty = scratch.dir.join("empty");
        std::fs::create_dir_all(&empty).map_err(|e| BuildError::Io(e.to_string()))?;
        lowers.push(empty);
    }
    let mut mounts = r.mounts;
    let secrets_dir = scratch.dir.join("secrets");
    for (name, data, mode) in &r.secrets {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        match std::fs::DirBuilder::new().mode(0o700).create(&secrets_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(BuildError::Io(e.to_string())),
            _ => {}
        }
        let p = secrets_dir.join(name);
        // Made with its mode, never readable by others between creation and a chmod.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&p)
            .and_then(|mut f| {
                f.write_all(data)?;
                f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(*mode & 0o7777))
            })
            .map_err(|e| BuildError::Io(e.to_string()))?;
        for m in mounts
            .iter_mut()
            .filter(|m| m.kind == "secret" && m.source == Path::new(name))
        {
            m.kind = "bind".into();
            m.source = p.clone();
        }
    }
    // Each agent behind a socket of the step's own, relayed until the step ends.
    let mut relays = Vec::new();
    for (i, m) in r.ssh.iter().enumerate() {
        let dir = scratch.dir.join("ssh");
        std::fs::create_dir_all(&dir).map_err(|e| BuildError::Io(e.to_string()))?;
        let socket = dir.join(format!("{i}.sock"));
        relays.push(
            super::ssh::Relay::start(&socket, m)
                .map_err(|e| BuildError::at(step, format!("the SSH agent relay: {e}")))?,
        );
        mounts.push(Mount {
            kind: "bind".into(),
            source: socket,
            target: m.target.clone().into(),
            ..Default::default()
        });
    }
    // The files the engine binds and the step's own mounts; /dev, /proc and /sys stay
    // in the layer when the image lacks them, as runc leaves them under BuildKit.
    let mut targets: Vec<PathBuf> = mounts.iter().map(|m| m.target.clone()).collect();
    targets.extend(["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"].map(PathBuf::from));
    let stubs = stubs_below(&lowers, &targets);
    let cfg = &st.config.config;
    let mut hosts = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (h, ip) in &r.extra_hosts {
        hosts.push_str(&format!("{ip}\t{h}\n"));
    }
    let cdir = scratch.dir.join("c");
    let spec = ContainerSpec {
        id: format!("{}{}", super::STEP_PREFIX, super::super::random_hex(12)),
        name: format!("build step line {}", step.line),
        hostname: "buildkitsandbox".into(),
        ends_with_engine: true,
        privileged: r.insecure,
        layers: lowers,
        dir: cdir.clone(),
        mounts,
        process: Process {
            args: r.args.clone(),
            env: r.env,
            cwd: cfg.working_dir.clone().unwrap_or_else(|| "/".into()),
            user: cfg.user.clone().unwrap_or_default(),
            capabilities: runtime::process::capabilities(&[], &[], r.insecure)
                .map_err(|e| BuildError::Io(e.to_string()))?,
            seccomp: if r.insecure { "unconfined" } else { "default" }.into(),
            rlimits: r.ulimits.clone(),
            ..Default::default()
        },
        namespaces: runtime::spec::Namespaces {
            net: (r.network == "host").then(|| "host".to_string()),
            ..Default::default()
        },
        hosts,
        resolv_conf: ctx.host_resolv.clone(),
        shm_size: if r.shm_size > 0 { r.shm_size } else { 64 << 20 },
        log: runtime::spec::LogConfig {
            max_size: super::step_log::STEP_LOG_FILE_MAX,
            max_file: 1,
        },
        ..Default::default()
    };
    // The default network: a veth on the build bridge, plugged before the step runs.
    let lease = match r.network.as_str() {
        "default" => Some(super::network::lease(ctx, &spec.id)?),
        _ => None,
    };
    let mut spec = spec;
    if let Some(l) = &lease {
        spec.resolv_conf = l.resolv_conf(&ctx.host_resolv);
    }
    let spec_id = spec.id.clone();
    let mut plug = |pid: i32| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if let Some(l) = &lease {
            ctx.engine.net.attach_blocking(&ctx.rt, pid, &spec_id, &l.plug())?;
        }
        Ok(())
    };
    let c = ctx
        .engine
        .runtime
        .start_with(&spec, &runtime::cgroups::Limits::default(), &mut plug)
        .map_err(|e| BuildError::at(step, format!("process {:?} could not start: {e}", r.args.join(" "))))?;
    let mut tail = super::step_log::LogTail::new(cdir.join(runtime::logs::LOG_FILE));
    let mut cancelled = false;
    while !ctx.engine.runtime.wait(&c, Duration::from_millis(100)) {
        tail.read(log);
        if ctx.cancelled() && !cancelled {
            cancelled = true;
            let _ = ctx.engine.runtime.stop(&c, libc::SIGKILL, Duration::from_secs(5));
        }
    }
    tail.read(log);
    let status = ctx.engine.runtime.status(&c);
    for l in ctx.engine.runtime.cleanup(&c) {
        tracing::warn!("build: {l}");
    }
    if cancelled {
        return Err(BuildError::Cancelled);
    }
    let code = status.map(|s| s.exit_code).unwrap_or(-1);
    if code != 0 {
        return Err(BuildError::Failed {
            line: step.line,
            message: format!(
                "process {:?} did not complete successfully: exit code: {code}",
                r.args.join(" ")
            ),
            exit_code: code,
        });
    }
    let upper = cdir.join("upper");
    remove_stubs(&upper, &stubs);
    finish(ctx, &upper)
}

/// What one `COPY`/`ADD` copies: from where, which items, to where.
pub struct CopyJob<'a> {
    pub source: &'a Source,
    pub items: Vec<PathBuf>,
    /// Heredoc files: (name, content).
    pub inline: Vec<(String, Vec<u8>)>,
    pub dest: String,
    pub dest_is_dir: bool,
    pub options: CopyOptions,
    /// `ADD` of a local tar archive: unpacked at the destination.
    pub unpack: Vec<PathBuf>,
    /// `ADD` of URLs: the files fetched, each in a directory of its own under the
    /// name it goes by (mode 0600 unless `--chmod`, as BuildKit writes them).
    pub remote: Vec<PathBuf>,
}

fn overlay(lowers: &[PathBuf], upper: &Path, work: &Path, merged: &Path) -> Result<(), BuildError> {
    let all: Vec<&Path> = lowers.iter().map(|p| p.as_path()).chain([upper, work]).collect();
    // overlayfs splits its options at ',' and ':' and takes a backslash as an escape
    // (so `.\.` would climb as `..`): only engine paths without them are ever given.
    if all.iter().any(|p| p.to_string_lossy().contains([',', ':', '\\'])) {
        return Err(BuildError::Io(
            "a build overlay's path has a ',', ':' or '\\', which overlayfs cannot take".into(),
        ));
    }
    let low: Vec<PathBuf> = lowers.iter().rev().cloned().collect();
    let stack = runtime::overlay::Stack {
        lowers: &low,
        upper: Some(upper),
        work: Some(work),
    };
    runtime::overlay::mount(&stack, merged).map_err(|e| BuildError::Io(format!("mounting the build overlay: {e}")))
}

/// Runs a `COPY`/`ADD` step on the stage's layers.
pub fn copy(ctx: &Ctx, st: &StageState, step: &Step, job: CopyJob) -> Result<Option<LayerRecord>, BuildError> {
    let mut scratch = Scratch::new(ctx, "copy")?;
    let (upper, work, merged, empty) = (
        scratch.dir.join("upper"),
        scratch.dir.join("work"),
        scratch.dir.join("merged"),
        scratch.dir.join("empty"),
    );
    for d in [&upper, &work, &merged, &empty] {
        std::fs::create_dir_all(d).map_err(|e| BuildError::Io(e.to_string()))?;
    }
    let mut lowers = layer_dirs(ctx, &st.layers);
    if lowers.is_empty() {
        lowers.push(empty);
    }
    // Into a path the layers lack, the copy goes straight into the upper directory
    // (half the cost of going through overlayfs); else through the overlay, which
    // resolves the image's links and replaces what is there.
    // (An archive's entries may climb through the image's links: those go through
    // the overlay.)
    let direct = if job.unpack.is_empty() {
        new_path_parents(&lowers, &job.dest)
    } else {
        None
    };
    let root_dir = match direct {
        Some(parents) => {
            make_parents(&upper, &parents).map_err(|e| BuildError::Io(format!("{}: {e}", job.dest)))?;
            upper.clone()
        }
        None => {
            overlay(&lowers, &upper, &work, &merged)?;
            scratch.mounted = Some(merged.clone());
            merged.clone()
        }
    };
    let root: std::os::unix::io::OwnedFd = std::fs::File::open(&root_dir)
        .map_err(|e| BuildError::Io(e.to_string()))?
        .into();
    let at = |e: images::context::ContextError| BuildError::at(step, e.to_string());
    let t0 = std::time::Instant::now();
    let reuse = super::reused::Reused::begin(ctx, st, step, &job);
    let t_reuse = t0.elapsed();
    let mut options = job.options.clone();
    options.reuse = reuse.earlier.clone();
    options.record = reuse.record.clone();
    copy::copy(
        job.source,
        &job.items,
        safefs::inroot::borrow(&root),
        &job.dest,
        job.dest_is_dir,
        &options,
    )
    .map_err(at)?;
    for r in &job.remote {
        let (Some(dir), Some(name)) = (r.parent(), r.file_name()) else {
            continue;
        };
        let src = Source::context(dir, None).map_err(at)?;
        let mut o = job.options.clone();
        if o.chmod.is_none() {
            o.chmod = Some(copy::Chmod::Octal(0o600));
        }
        copy::copy(
            &src,
            &[PathBuf::from(name)],
            safefs::inroot::borrow(&root),
            &job.dest,
            job.dest_is_dir,
            &o,
        )
        .map_err(at)?;
    }
    if !job.inline.is_empty() {
        let tmp = Scratch::new(ctx, "heredoc")?;
        for (name, data) in &job.inline {
            std::fs::write(tmp.dir.join(name), data).map_err(|e| BuildError::Io(e.to_string()))?;
        }
        let src = Source::context(&tmp.dir, None).map_err(at)?;
        let names: Vec<PathBuf> = job.inline.iter().map(|(n, _)| PathBuf::from(n)).collect();
        let mut o = job.options.clone();
        if o.chmod.is_none() {
            o.chmod = Some(copy::Chmod::Octal(0o644));
        }
        copy::copy(
            &src,
            &names,
            safefs::inroot::borrow(&root),
            &job.dest,
            job.dest_is_dir,
            &o,
        )
        .map_err(at)?;
    }
    for archive in &job.unpack {
        let e = job.source.open(archive).map_err(at)?;
        if e.stat.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(BuildError::at(
                step,
                format!("{}: not a regular file", archive.display()),
            ));
        }
        let f = e
            .fd()
            .and_then(safefs::inroot::reopen_regular)
            .map_err(|e| BuildError::at(step, e.to_string()))?;
        let r = images::unpack::decompress(f).map_err(|e| BuildError::at(step, e.to_string()))?;
        safefs::archive::unpack_at(
            r,
            safefs::inroot::borrow(&root),
            Path::new(&job.dest),
            safefs::archive::Unpack {
                owners: true,
                mkdir: true,
                ..Default::default()
            },
        )
        .map_err(|e| BuildError::at(step, format!("unpacking {}: {e}", archive.display())))?;
    }
    drop(root);
    if let Some(m) = scratch.mounted.clone() {
        // Forgotten only once it is gone: a failed unmount is retried (detached) by
        // the drop, and nothing is removed through a live overlay.
        nix::mount::umount2(&m, nix::mount::MntFlags::empty())
            .map_err(|e| BuildError::Io(format!("unmounting the build overlay: {e}")))?;
        scratch.mounted = None;
    }
    let t_copy = t0.elapsed();
    let layer = finish(ctx, &upper)?;
    let t_layer = t0.elapsed();
    reuse.save(layer.as_ref());
    tracing::debug!(
        "build: {}: earlier copy {:?}, copy {:?}, layer {:?}, record {:?}",
        job.dest,
        t_reuse,
        t_copy - t_reuse,
        t_layer - t_copy,
        t0.elapsed() - t_layer
    );
    Ok(layer)
}

/// For a destination no layer has: its parents that some layer has, with the stat of
/// the highest one's (what overlayfs would copy up), shallowest first. `None` when
/// the destination or anything on its way is not a plain directory in some layer (a
/// link, a file, a whiteout), which only the overlay resolves as the image shows it.
fn new_path_parents(lowers: &[PathBuf], dest: &str) -> Option<Vec<(PathBuf, libc::stat)>> {
    let roots: Vec<std::os::unix::io::OwnedFd> = lowers
        .iter()
        .rev()
        .map(|l| std::fs::File::open(l).ok().map(Into::into))
        .collect::<Option<_>>()?;
    let rel = Path::new(dest.trim_start_matches('/'));
    let mut parents = Vec::new();
    let mut prefix = PathBuf::new();
    let comps: Vec<_> = rel.components().collect();
    for (i, c) in comps.iter().enumerate() {
        let std::path::Component::Normal(n) = c else {
            return None;
        };
        prefix.push(n);
        let last = i + 1 == comps.len();
        let mut highest: Option<libc::stat> = None;
        for r in &roots {
            match safefs::inroot::open_beneath(safefs::inroot::borrow(r), &prefix, libc::O_PATH | libc::O_NOFOLLOW, 0) {
                Ok(fd) => {
                    let st = nix::sys::stat::fstat(&fd).ok()?;
                    if last || st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                        return None;
                    }
                    highest.get_or_insert(st);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(_) => return None,
            }
        }
        match highest {
            Some(st) => parents.push((prefix.clone(), st)),
            // Missing everywhere: the copy makes it and all below.
            None => break,
        }
    }
    Some(parents)
}

/// Makes the parents in `upper` as overlayfs copies them up: the layer's mode, owner
/// and times.
fn make_parents(upper: &Path, parents: &[(PathBuf, libc::stat)]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    for (rel, st) in parents {
        let p = upper.join(rel);
        std::fs::DirBuilder::new().mode(0o700).create(&p)?;
        std::os::unix::fs::lchown(&p, Some(st.st_uid), Some(st.st_gid))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(st.st_mode & 0o7777))?;
        let t = |s: i64, ns: i64| nix::sys::time::TimeSpec::new(s, ns);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &p,
            &t(st.st_atime, st.st_atime_nsec),
            &t(st.st_mtime, st.st_mtime_nsec),
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )?;
    }
    Ok(())
}

/// `WORKDIR`: the directory made when missing (a layer only then), owned by the
/// stage's `USER` as BuildKit makes it.
pub fn mkdir(
    ctx: &Ctx,
    st: &StageState,
    step: &Step,
    dir: &str,
    owner: Option<(u32, u32)>,
) -> Result<Option<LayerRecord>, BuildError> {
    let lowers = layer_dirs(ctx, &st.layers);
    if dir.trim_start_matches('/').is_empty() {
        return Ok(None);
    }
    if stubs_below(&lowers, &[PathBuf::from(dir)]).is_empty() {
        // There already: BuildKit's mkdir still makes a layer, with nothing in it.
        let scratch = Scratch::new(ctx, "workdir")?;
        let upper = scratch.dir.join("upper");
        std::fs::create_dir(&upper).map_err(|e| BuildError::Io(e.to_string()))?;
        return finish(ctx, &upper);
    }
    let empty = Scratch::new(ctx, "workdir")?;
    let src = Source::tree(&empty.dir).map_err(|e| BuildError::at(step, e.to_string()))?;
    copy(
        ctx,
        st,
        step,
        CopyJob {
            source: &src,
            items: vec![PathBuf::new()],
            inline: Vec::new(),
            dest: dir.to_string(),
            dest_is_dir: true,
            options: CopyOptions {
                chmod: Some(copy::Chmod::Octal(0o755)),
                chown: owner,
                ..Default::default()
            },
            unpack: Vec::new(),
            remote: Vec::new(),
        },
    )
}

/// For a `COPY --from` of plain paths that only one of `layers` has, that layer's
/// directory: the tree to copy from without mounting an overlay, on the store's own
/// file system (so its files can be linked, not copied). Only when nothing else in
/// the stack could change what the paths show: no other layer has them, and on the
/// way to them every layer has plain directories (no link, no whiteout) and those
/// above are not opaque.
pub fn single_layer(ctx: &Ctx, layers: &[LayerRecord], sources: &[String]) -> Option<PathBuf> {
    let dirs = layer_dirs(ctx, layers);
    let roots: Vec<std::os::unix::io::OwnedFd> = dirs
        .iter()
        .map(|l| std::fs::File::open(l).ok().map(Into::into))
        .collect::<Option<_>>()?;
    let mut found: Option<usize> = None;
    for src in sources {
        if images::context::glob::has_wildcards(src) {
            return None;
        }
        let rel = PathBuf::from(images::context::ignore::clean(src));
        if rel.as_os_str().is_empty() {
            return None;
        }
        let ancestors: Vec<&Path> = rel.ancestors().skip(1).filter(|a| !a.as_os_str().is_empty()).collect();
        let mut has = Vec::new();
        for (i, r) in roots.iter().enumerate() {
            let root = safefs::inroot::borrow(r);
            for a in &ancestors {
                match lstat_beneath(root, a) {
                    Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {}
                    Some(_) => return None,
                    None => {}
                }
            }
            match lstat_beneath(root, &rel) {
                Some(st) if matches!(st.st_mode & libc::S_IFMT, libc::S_IFDIR | libc::S_IFREG) => has.push(i),
                Some(_) => return None,
                None => {}
            }
        }
        let [l] = has[..] else { return None };
        if found.is_some_and(|f| f != l) {
            return None;
        }
        // An opaque directory above it on the way would hide it.
        for r in &roots[l + 1..] {
            if ancestors.iter().any(|a| opaque_at(&dirs[0], r, a)) {
                return None;
            }
        }
        found = Some(l);
    }
    found.map(|l| dirs[l].clone())
}

fn lstat_beneath(root: std::os::fd::BorrowedFd, rel: &Path) -> Option<libc::stat> {
    let fd = safefs::inroot::open_beneath(root, rel, libc::O_PATH | libc::O_NOFOLLOW, 0).ok()?;
    nix::sys::stat::fstat(&fd).ok()
}

/// Whether `rel` in the layer open at `root` is a directory marked opaque.
fn opaque_at(_any: &Path, root: &std::os::unix::io::OwnedFd, rel: &Path) -> bool {
    use std::os::unix::io::AsRawFd;
    let Ok(fd) = safefs::inroot::open_beneath(
        safefs::inroot::borrow(root),
        rel,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    ) else {
        return false;
    };
    let mut buf = [0u8; 4];
    // SAFETY: a valid descriptor, a C name and a buffer of the given length.
    let n = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

/// A read-only view of `layers` as one tree (for `COPY --from` and bind mounts): the
/// layer itself when there is one, else an overlay held in `views`. Writes through an
/// overlay land in its scratch upper, never in the store.
pub fn view(ctx: &Ctx, layers: &[LayerRecord], views: &mut Vec<Scratch>) -> Result<PathBuf, BuildError> {
    let mut scratch = Scratch::new(ctx, "view")?;
    let (upper, work, merged, empty) = (
        scratch.dir.join("upper"),
        scratch.dir.join("work"),
        scratch.dir.join("merged"),
        scratch.dir.join("empty"),
    );
    for d in [&upper, &work, &merged, &empty] {
        std::fs::create_dir_all(d).map_err(|e| BuildError::Io(e.to_string()))?;
    }
    let mut lowers = layer_dirs(ctx, layers);
    if lowers.is_empty() {
        lowers.push(empty);
    }
    overlay(&lowers, &upper, &work, &merged)?;
    scratch.mounted = Some(merged.clone());
    nix::mount::mount(
        None::<&str>,
        &merged,
        None::<&str>,
        nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(|e| BuildError::Io(format!("making the build view read-only: {e}")))?;
    views.push(scratch);
    Ok(merged)
}

/// A writable copy of a host directory for `RUN --mount=type=bind,rw`: an overlay whose
/// writes are thrown away after the step.
pub fn writable_copy_view(ctx: &Ctx, dir: &Path, views: &mut Vec<Scratch>) -> Result<PathBuf, BuildError> {
    let mut scratch = Scratch::new(ctx, "rwbind")?;
    let (upper, work, merged) = (
        scratch.dir.join("upper"),
        scratch.dir.join("work"),
        scratch.dir.join("merged"),
    );
    for d in [&upper, &work, &merged] {
        std::fs::create_dir_all(d).map_err(|e| BuildError::Io(e.to_string()))?;
    }
    overlay(&[dir.to_path_buf()], &upper, &work, &merged)?;
    scratch.mounted = Some(merged.clone());
    views.push(scratch);
    Ok(merged)
}

/// `rel` inside `root`, bind-mounted on a scratch mount point from a descriptor opened
/// with `RESOLVE_IN_ROOT`: what the container gets is what was resolved, however the
/// tree changes afterwards (a path handed on would be resolved again, through links).
pub fn held_bind(ctx: &Ctx, root: &Path, rel: &Path, views: &mut Vec<Scratch>) -> Result<PathBuf, BuildError> {
    use std::os::unix::io::AsRawFd;
    let dir: std::os::unix::io::OwnedFd = std::fs::File::open(root)
        .map_err(|e| BuildError::Io(format!("{}: {e}", root.display())))?
        .into();
    let fd = safefs::inroot::open(safefs::inroot::borrow(&dir), rel, libc::O_PATH, 0)
        .map_err(|e| BuildError::Io(format!("{}: {e}", rel.display())))?;
    let meta = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| BuildError::Io(format!("{}: {e}", rel.display())))?;
    let mut scratch = Scratch::new(ctx, "bind")?;
    let point = scratch.dir.join("src");
    let made = if meta.is_dir() {
        std::fs::create_dir(&point)
    } else {
        std::fs::File::create(&point).map(drop)
    };
    made.map_err(|e| BuildError::Io(e.to_string()))?;
    nix::mount::mount(
        Some(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str()),
        &point,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| BuildError::Io(format!("binding {}: {e}", rel.display())))?;
    scratch.mounted = Some(point.clone());
    views.push(scratch);
    Ok(point)
}

/// `rel` of a context as the build sees it, `.dockerignore` applied: a copy in a
/// scratch directory (the container may write to it; nothing goes back).
pub fn filtered_copy(ctx: &Ctx, src: &Source, rel: &Path, views: &mut Vec<Scratch>) -> Result<PathBuf, BuildError> {
    let scratch = Scratch::new(ctx, "bindctx")?;
    let tree = scratch.dir.join("tree");
    std::fs::create_dir(&tree).map_err(|e| BuildError::Io(e.to_string()))?;
    let root: std::os::unix::io::OwnedFd = std::fs::File::open(&tree)
        .map_err(|e| BuildError::Io(e.to_string()))?
        .into();
    let e = src.open(rel).map_err(|e| BuildError::Io(e.to_string()))?;
    let is_dir = e.stat.st_mode & libc::S_IFMT == libc::S_IFDIR;
    copy::copy(
        src,
        &[rel.to_path_buf()],
        safefs::inroot::borrow(&root),
        "/",
        true,
        &CopyOptions::default(),
    )
    .map_err(|e| BuildError::Io(e.to_string()))?;
    let shown = if is_dir {
        tree.clone()
    } else {
        tree.join(rel.file_name().unwrap_or_default())
    };
    views.push(scratch);
    Ok(shown)
}
