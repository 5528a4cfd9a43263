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
use std::io::{BufRead, Seek};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A step's scratch directory under the store's `tmp/`, removed (after unmounting
/// what is mounted in it) on every path out.
pub struct Scratch {
    pub dir: PathBuf,
    mounted: Option<PathBuf>,
}

impl Scratch {
    pub fn new(ctx: &Ctx, what: &str) -> Result<Scratch, BuildError> {
        let dir = ctx.store.tmp_file(what);
        std::fs::create_dir_all(&dir).map_err(|e| BuildError::Io(format!("{}: {e}", dir.display())))?;
        Ok(Scratch { dir, mounted: None })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(m) = self.mounted.take() {
            if let Err(e) = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH) {
                tracing::warn!("build: unmounting {}: {e}", m.display());
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("build: removing {}: {e}", self.dir.display());
            }
        }
    }
}

pub fn layer_dirs(ctx: &Ctx, layers: &[LayerRecord]) -> Vec<PathBuf> {
    layers.iter().map(|l| ctx.store.layer_dir(&l.diff_id)).collect()
}

/// Paths that did not exist in the layers below (checked top layer first, a whiteout
/// hiding what is under it).
fn missing_below(lowers: &[PathBuf], paths: &[PathBuf]) -> Vec<PathBuf> {
    paths
        .iter()
        .filter(|p| {
            let rel = p.strip_prefix("/").unwrap_or(p);
            !lowers
                .iter()
                .rev()
                .any(|l| std::fs::symlink_metadata(l.join(rel)).is_ok())
        })
        .cloned()
        .collect()
}

/// Takes mount-point stubs out of an upper directory: empty files and directories the
/// step's mounts made, and the parents made only for them.
fn remove_stubs(upper: &Path, stubs: &[PathBuf]) {
    for s in stubs {
        let mut p = upper.join(s.strip_prefix("/").unwrap_or(s));
        loop {
            let removed = match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => std::fs::remove_dir(&p).is_ok(),
                Ok(m) if m.is_file() && m.len() == 0 => std::fs::remove_file(&p).is_ok(),
                _ => false,
            };
            if !removed || !p.pop() || p == upper {
                break;
            }
        }
    }
}

/// The layer an upper directory makes, if it changed anything.
fn finish(ctx: &Ctx, upper: &Path) -> Result<Option<LayerRecord>, BuildError> {
    if images::layer::is_empty(upper) {
        return Ok(None);
    }
    images::layer::adopt_upper(&ctx.store, upper)
        .map(Some)
        .map_err(|e| BuildError::Io(e.to_string()))
}

/// What a `RUN` needs beyond the stage.
pub struct RunSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub network: String,
    pub mounts: Vec<Mount>,
    /// Secret files to write before the run: (file name in the scratch dir, content).
    pub secrets: Vec<(String, Vec<u8>, u32)>,
    pub extra_hosts: Vec<(String, String)>,
    pub shm_size: u64,
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
        std::fs::create_dir_all(&secrets_dir).map_err(|e| BuildError::Io(e.to_string()))?;
        let p = secrets_dir.join(name);
        std::fs::write(&p, data).map_err(|e| BuildError::Io(e.to_string()))?;
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(*mode))
            .map_err(|e| BuildError::Io(e.to_string()))?;
        for m in mounts
            .iter_mut()
            .filter(|m| m.kind == "secret" && m.source == Path::new(name))
        {
            m.kind = "bind".into();
            m.source = p.clone();
        }
    }
    let mut targets: Vec<PathBuf> = mounts.iter().map(|m| m.target.clone()).collect();
    targets.extend(
        [
            "/etc/hosts",
            "/etc/hostname",
            "/etc/resolv.conf",
            "/dev",
            "/proc",
            "/sys",
            "/dev/shm",
            "/dev/pts",
        ]
        .map(PathBuf::from),
    );
    let stubs = missing_below(&lowers, &targets);
    let cfg = &st.config.config;
    let mut hosts = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (h, ip) in &r.extra_hosts {
        hosts.push_str(&format!("{ip}\t{h}\n"));
    }
    let cdir = scratch.dir.join("c");
    let spec = ContainerSpec {
        id: format!("build-{}", super::super::random_hex(12)),
        name: format!("build step line {}", step.line),
        hostname: "buildkitsandbox".into(),
        layers: lowers,
        dir: cdir.clone(),
        mounts,
        process: Process {
            args: r.args.clone(),
            env: r.env,
            cwd: cfg.working_dir.clone().unwrap_or_else(|| "/".into()),
            user: cfg.user.clone().unwrap_or_default(),
            capabilities: runtime::process::capabilities(&[], &[], false).map_err(|e| BuildError::Io(e.to_string()))?,
            seccomp: "default".into(),
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
            max_size: 0,
            max_file: 1,
        },
        ..Default::default()
    };
    let c = ctx
        .engine
        .runtime
        .start(&spec, &runtime::cgroups::Limits::default())
        .map_err(|e| BuildError::at(step, format!("process {:?} could not start: {e}", r.args.join(" "))))?;
    let mut tail = LogTail::new(cdir.join(runtime::logs::LOG_FILE));
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

/// The longest output line held before it is shown anyway.
const MAX_LINE: usize = 64 * 1024;

/// Follows a container's json-file log as it grows.
struct LogTail {
    path: PathBuf,
    pos: u64,
    partial: String,
}

impl LogTail {
    fn new(path: PathBuf) -> LogTail {
        LogTail {
            path,
            pos: 0,
            partial: String::new(),
        }
    }

    fn read(&mut self, log: &mut dyn FnMut(&str)) {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return;
        };
        if f.seek(std::io::SeekFrom::Start(self.pos)).is_err() {
            return;
        }
        let mut r = std::io::BufReader::new(f);
        let mut line = String::new();
        while let Ok(n) = r.read_line(&mut line) {
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            self.pos += n as u64;
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                self.partial.push_str(v["log"].as_str().unwrap_or_default());
                while let Some(i) = self.partial.find('\n') {
                    let l: String = self.partial.drain(..=i).collect();
                    log(l.trim_end_matches('\n'));
                }
                // Output that never ends a line is shown in pieces, not held whole.
                if self.partial.len() > MAX_LINE {
                    let l = std::mem::take(&mut self.partial);
                    log(&l);
                }
            }
            line.clear();
        }
    }
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
}

fn overlay(lowers: &[PathBuf], upper: &Path, work: &Path, merged: &Path) -> Result<(), BuildError> {
    let all: Vec<&Path> = lowers.iter().map(|p| p.as_path()).chain([upper, work]).collect();
    if all.iter().any(|p| p.to_string_lossy().contains([',', ':'])) {
        return Err(BuildError::Io(
            "the state directory's path has a ',' or ':', which overlayfs cannot take".into(),
        ));
    }
    let low: Vec<String> = lowers.iter().rev().map(|p| p.display().to_string()).collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        low.join(":"),
        upper.display(),
        work.display()
    );
    nix::mount::mount(
        Some("overlay"),
        merged,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| BuildError::Io(format!("mounting the build overlay: {e}")))
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
    overlay(&lowers, &upper, &work, &merged)?;
    scratch.mounted = Some(merged.clone());
    let root: std::os::unix::io::OwnedFd = std::fs::File::open(&merged)
        .map_err(|e| BuildError::Io(e.to_string()))?
        .into();
    let at = |e: images::context::ContextError| BuildError::at(step, e.to_string());
    copy::copy(
        job.source,
        &job.items,
        safefs::inroot::borrow(&root),
        &job.dest,
        job.dest_is_dir,
        &job.options,
    )
    .map_err(at)?;
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
        let f = std::fs::File::open(format!(
            "/proc/self/fd/{}",
            std::os::unix::io::AsRawFd::as_raw_fd(&e.fd)
        ))
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
    if let Some(m) = scratch.mounted.take() {
        nix::mount::umount2(&m, nix::mount::MntFlags::empty())
            .map_err(|e| BuildError::Io(format!("unmounting the build overlay: {e}")))?;
    }
    finish(ctx, &upper)
}

/// `WORKDIR`: the directory made when missing (a layer only then).
pub fn mkdir(ctx: &Ctx, st: &StageState, step: &Step, dir: &str) -> Result<Option<LayerRecord>, BuildError> {
    let lowers = layer_dirs(ctx, &st.layers);
    let rel = dir.trim_start_matches('/');
    if rel.is_empty() || lowers.iter().rev().any(|l| l.join(rel).is_dir()) {
        return Ok(None);
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
                ..Default::default()
            },
            unpack: Vec::new(),
        },
    )
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
    nix::mount::mount(
        None::<&str>,
        &merged,
        None::<&str>,
        nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(|e| BuildError::Io(format!("making the build view read-only: {e}")))?;
    scratch.mounted = Some(merged.clone());
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
