//! The container's root filesystem, set up by its init in the new mount namespace:
//! overlayfs of the image layers under a per-container upper layer, `/proc`, `/sys`
//! (read-only), `/dev` (tmpfs with the standard nodes, `pts`, `shm`, `mqueue`), the
//! service's mounts, the generated `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`,
//! then `pivot_root`, Docker's masked and read-only paths, and a read-only root if asked.
//! With a user namespace, the layers and the engine's volumes are idmapped and the
//! tmpfs mounts owned by the container's root (see [`super::userns`]).
//! Every target inside the root is resolved by the kernel inside it (`openat2` with
//! `RESOLVE_IN_ROOT`) and held open while it is mounted on, so an image's
//! symlinks cannot send a mount onto the host.

use super::cgroup_view::{self, CgroupView};
use super::kernel::{Host, Kernel};
use super::spec::{ContainerSpec, IdMap, Mount};
use nix::mount::MsFlags;
use std::fs;
use std::os::unix::io::RawFd;
use std::path::{Path, PathBuf};

/// What can go wrong building a container's root.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("the image has no layers")]
    NoLayers,
    #[error("mount type {0:?} is not supported")]
    UnsupportedType(String),
    #[error("sysctl {0} is not namespaced (or the network namespace is shared) and would change the host: refused")]
    HostSysctl(String),
    #[error("invalid sysctl name {0:?}")]
    InvalidSysctl(String),
    #[error("device {}: not a device node", .0.display())]
    NotADevice(std::path::PathBuf),
    #[error(transparent)]
    Userns(#[from] super::userns::UsernsError),
    /// A system call or file operation failed: what was being done, and the system's words.
    #[error("{what}: {message}")]
    Os { what: String, message: String },
}

pub(super) fn os(what: impl Into<String>, e: impl std::fmt::Display) -> MountError {
    MountError::Os {
        what: what.into(),
        message: e.to_string(),
    }
}

/// Docker's masked paths (hidden unless privileged).
const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths (unless privileged).
const READ_ONLY: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// (name, major, minor) of the nodes every container's /dev has.
const DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

pub(super) fn err(what: &str, path: &Path, e: impl std::fmt::Display) -> MountError {
    os(format!("{what} {}", path.display()), e)
}

/// A mount point inside the container's root, held open: every mount onto it goes
/// through `/proc/self/fd/N` (as runc does since CVE-2021-30465), so what the path
/// named when it was resolved is what is mounted on, even if a process sharing a volume
/// swaps a component for a link in the meantime.
struct Target {
    fd: std::os::fd::OwnedFd,
}

impl Target {
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&self.fd)))
    }
}

/// `target` inside the root open at `root`, created as a directory (or an empty file
/// when `file`) if missing, every component resolved inside the root by the kernel.
fn target_in(root: std::os::fd::BorrowedFd, target: &Path, file: bool) -> Result<Target, MountError> {
    use safefs::inroot;
    let io = |e: std::io::Error| err("resolving", target, e);
    if !file {
        return Ok(Target {
            fd: inroot::mkdir_all(root, target).map_err(io)?,
        });
    }
    match inroot::open(root, target, libc::O_PATH, 0) {
        Ok(fd) => return Ok(Target { fd }),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(io(e)),
    }
    let parent = target.parent().unwrap_or(Path::new("/"));
    let name = target
        .file_name()
        .ok_or_else(|| err("resolving", target, "not a file name"))?;
    let dir = inroot::mkdir_all(root, parent).map_err(io)?;
    // Made beneath its directory's descriptor, never through a link.
    inroot::open_beneath(
        inroot::borrow(&dir),
        Path::new(name),
        libc::O_WRONLY | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        0o644,
    )
    .map_err(|e| err("creating", target, e))?;
    Ok(Target {
        fd: inroot::open(root, target, libc::O_PATH, 0).map_err(io)?,
    })
}

fn propagation(p: &str) -> MsFlags {
    match p {
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "private" => MsFlags::MS_PRIVATE,
        _ => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
    }
}

/// `data` with the owner set to the container's root when it has a user namespace
/// and the entry names no owner (a tmpfs mounted here is otherwise the host root's).
fn owned_by_root(data: &str, userns: Option<(RawFd, IdMap)>) -> String {
    match userns {
        Some((_, map)) if !data.split(',').any(|o| o.starts_with("uid=") || o.starts_with("gid=")) => {
            let owner = format!("uid={},gid={}", map.uid, map.gid);
            if data.is_empty() {
                owner
            } else {
                format!("{data},{owner}")
            }
        }
        _ => data.to_string(),
    }
}

fn user_mount(
    k: &mut dyn Kernel,
    root: std::os::fd::BorrowedFd,
    m: &Mount,
    userns: Option<(RawFd, IdMap)>,
) -> Result<(), MountError> {
    match m.kind.as_str() {
        "bind" => {
            let meta = fs::metadata(&m.source).map_err(|e| err("bind source", &m.source, e))?;
            let held = target_in(root, &m.target, !meta.is_dir())?;
            let target = held.path();
            let src = m.source.to_string_lossy();
            match userns {
                Some((fd, _)) if m.idmap => k.bind_idmapped(&m.source, &target, fd)?,
                _ => k.mount(Some(&src), &target, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?,
            }
            // The new mount itself (the descriptor held names what it covers).
            let bound = target_in(root, &m.target, !meta.is_dir())?;
            let target = bound.path();
            k.mount(None, &target, None, propagation(&m.propagation), None)?;
            if m.read_only {
                k.readonly_tree(&target)?;
            }
        }
        "tmpfs" => {
            let held = target_in(root, &m.target, false)?;
            let target = held.path();
            let (flags, data) = tmpfs_options(&m.data, m.read_only);
            k.mount(
                Some("tmpfs"),
                &target,
                Some("tmpfs"),
                flags,
                Some(&owned_by_root(&data, userns)),
            )?;
        }
        other => return Err(MountError::UnsupportedType(other.to_string())),
    }
    Ok(())
}

/// `/sys/fs/cgroup` as [`CgroupView`] plans it (read-only unless privileged).
/// `hosts_sys`: `/sys` is the host's, bound (another network namespace's sysfs cannot
/// be mounted), with the host's cgroups on `/sys/fs/cgroup`.
fn cgroup_mounts(
    k: &mut dyn Kernel,
    rfd: std::os::fd::BorrowedFd,
    view: &CgroupView,
    privileged: bool,
    hosts_sys: bool,
) -> Result<(), MountError> {
    let at = || target_in(rfd, Path::new("/sys/fs/cgroup"), false);
    if hosts_sys && *view != CgroupView::Untouched {
        // The host's tree goes (and the kernel refuses cgroup2 right on top of itself).
        k.umount_detach(&at()?.path())?;
    }
    let mut flags = cgroup_view::FLAGS;
    if privileged {
        flags.remove(MsFlags::MS_RDONLY);
    }
    let bind_own = |k: &mut dyn Kernel, own: &Path, target: &Path| -> Result<(), MountError> {
        k.mount(Some(&own.to_string_lossy()), target, None, MsFlags::MS_BIND, None)?;
        k.mount(None, target, None, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags, None)
    };
    match view {
        CgroupView::Untouched => {}
        CgroupView::Unified => k.mount(Some("cgroup"), &at()?.path(), Some("cgroup2"), flags, None)?,
        CgroupView::UnifiedBound(own) => bind_own(k, own, &at()?.path())?,
        CgroupView::Hierarchies { list, private } => {
            let tmpfs_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            k.mount(
                Some("tmpfs"),
                &at()?.path(),
                Some("tmpfs"),
                tmpfs_flags,
                Some("mode=755"),
            )?;
            let base = at()?;
            for h in list {
                let dir = base.path().join(&h.dir);
                fs::create_dir(&dir).map_err(|e| err("creating", &dir, e))?;
                if *private {
                    k.mount(Some("cgroup"), &dir, Some("cgroup"), flags, Some(&h.options))?;
                } else {
                    bind_own(k, &h.own, &dir)?;
                }
                // `cpu` and `cpuacct` lead to `cpu,cpuacct`, as on the host.
                for part in h.dir.split(',').filter(|p| *p != h.dir) {
                    let link = base.path().join(part);
                    std::os::unix::fs::symlink(&h.dir, &link).map_err(|e| err("creating", &link, e))?;
                }
            }
            k.mount(
                None,
                &at()?.path(),
                None,
                MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | tmpfs_flags,
                Some("mode=755"),
            )?;
        }
    }
    Ok(())
}

/// A tmpfs entry's options split as mount(8) splits them: the flags (`ro`, `exec`,
/// `nosuid`...) and the file system's own (`size`, `mode`, `uid`...). Docker's
/// defaults are `nosuid`, `nodev` and `noexec`; `exec`, `suid` and `dev` lift them.
pub(super) fn tmpfs_options(options: &str, read_only: bool) -> (MsFlags, String) {
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mut data = Vec::new();
    for o in options.split(',').filter(|o| !o.is_empty()) {
        let (flag, set) = match o {
            "ro" => (MsFlags::MS_RDONLY, true),
            "rw" => (MsFlags::MS_RDONLY, false),
            "exec" => (MsFlags::MS_NOEXEC, false),
            "noexec" => (MsFlags::MS_NOEXEC, true),
            "suid" => (MsFlags::MS_NOSUID, false),
            "nosuid" => (MsFlags::MS_NOSUID, true),
            "dev" => (MsFlags::MS_NODEV, false),
            "nodev" => (MsFlags::MS_NODEV, true),
            "sync" => (MsFlags::MS_SYNCHRONOUS, true),
            "async" => (MsFlags::MS_SYNCHRONOUS, false),
            "noatime" => (MsFlags::MS_NOATIME, true),
            "atime" => (MsFlags::MS_NOATIME, false),
            "nodiratime" => (MsFlags::MS_NODIRATIME, true),
            "diratime" => (MsFlags::MS_NODIRATIME, false),
            "strictatime" => (MsFlags::MS_STRICTATIME, true),
            "relatime" => (MsFlags::MS_RELATIME, true),
            _ => {
                data.push(o);
                continue;
            }
        };
        flags.set(flag, set);
    }
    if read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    (flags, data.join(","))
}

/// Everything up to and including `pivot_root`; afterwards `/` is the container's.
/// `userns`: the container's user namespace, open, when it has one.
pub fn setup(
    spec: &ContainerSpec,
    own_netns: bool,
    userns: Option<RawFd>,
    cgroups: &CgroupView,
) -> Result<(), MountError> {
    setup_with(&mut Host, spec, own_netns, userns, cgroups)
}

/// [`setup`] through the kernel `k`: the container's mount plan.
pub fn setup_with(
    k: &mut dyn Kernel,
    spec: &ContainerSpec,
    own_netns: bool,
    userns: Option<RawFd>,
    cgroups: &CgroupView,
) -> Result<(), MountError> {
    let userns = userns.zip(spec.userns);
    let root = spec.dir.join("rootfs");
    k.mount(None, Path::new("/"), None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)?;
    if spec.layers.is_empty() {
        return Err(MountError::NoLayers);
    }
    let mut lower: Vec<std::path::PathBuf> = Vec::new();
    for (i, l) in spec.layers.iter().rev().enumerate() {
        let Some((fd, _)) = userns else {
            lower.push(l.clone());
            continue;
        };
        // The layer seen through the mapping, at a directory of this mount namespace
        // (overlayfs takes paths); it goes with the old root below.
        let at = spec.dir.join("idmap").join(i.to_string());
        fs::create_dir_all(&at).map_err(|e| err("creating", &at, e))?;
        k.bind_idmapped(l, &at, fd)?;
        lower.push(at);
    }
    let (upper, work) = (spec.dir.join("upper"), spec.dir.join("work"));
    let stack = super::overlay::Stack {
        lowers: &lower,
        upper: Some(&upper),
        work: Some(&work),
    };
    k.overlay(&stack, &root)?;
    // The root as mounted: every target below is resolved from it.
    let root_dir = std::fs::File::open(&root).map_err(|e| err("opening", &root, e))?;
    let rfd = std::os::fd::AsFd::as_fd(&root_dir);
    // A mount point again after something was mounted on it: the descriptor held before
    // still names the directory underneath.
    let mounted = |target: &str| target_in(rfd, Path::new(target), false);

    let nosuid_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    k.mount(
        Some("proc"),
        &mounted("/proc")?.path(),
        Some("proc"),
        nosuid_noexec,
        None,
    )?;
    let proc_fs = mounted("/proc")?;
    let proc_dir = proc_fs.path();
    for (key, value) in &spec.sysctls {
        // Only namespaced sysctls: anything else would change the host.
        if !namespaced_sysctl(key, own_netns) {
            return Err(MountError::HostSysctl(key.clone()));
        }
        if key.contains("..") || key.contains('/') {
            return Err(MountError::InvalidSysctl(key.clone()));
        }
        let p = proc_dir.join("sys").join(key.replace('.', "/"));
        k.write(&p, value).map_err(|e| os(format!("sysctl {key}={value}"), e))?;
    }

    k.mount(
        Some("tmpfs"),
        &mounted("/dev")?.path(),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some(&owned_by_root("mode=755,size=65536k", userns)),
    )?;
    let dev_fs = mounted("/dev")?;
    let dev = dev_fs.path();
    for (name, major, minor) in DEVICES {
        let p = dev.join(name);
        k.mknod_char(&p, *major, *minor)?;
    }
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(link)).map_err(|e| err("creating", &dev.join(link), e))?;
    }
    for d in ["pts", "shm", "mqueue"] {
        fs::create_dir(dev.join(d)).map_err(|e| err("creating", &dev.join(d), e))?;
    }
    k.mount(
        Some("devpts"),
        &dev.join("pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        // The container's group 5 (tty), whichever host group that is.
        Some(&format!(
            "newinstance,ptmxmode=0666,mode=0620,gid={}",
            userns.map_or(0, |(_, m)| m.gid) + 5
        )),
    )?;
    k.mount(
        Some("shm"),
        &dev.join("shm"),
        Some("tmpfs"),
        nosuid_noexec,
        Some(&owned_by_root(
            &format!("mode=1777,size={}", spec.shm_size.max(4096)),
            userns,
        )),
    )?;
    k.mount(Some("mqueue"), &dev.join("mqueue"), Some("mqueue"), nosuid_noexec, None)?;

    let sys_dir = mounted("/sys")?;
    let sys = sys_dir.path();
    if own_netns {
        k.mount(
            Some("sysfs"),
            &sys,
            Some("sysfs"),
            nosuid_noexec | MsFlags::MS_RDONLY,
            None,
        )?;
    } else {
        // sysfs of another network namespace cannot be mounted: bind the host's,
        // read-only with every mount below it (a remount alone leaves debugfs,
        // tracefs or securityfs there writable).
        k.mount(Some("/sys"), &sys, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
        k.readonly_tree(&mounted("/sys")?.path())?;
    }

    cgroup_mounts(k, rfd, cgroups, spec.privileged, !own_netns)?;

    let mut mounts = spec.mounts.clone();
    mounts.sort_by_key(|m| m.target.components().count());
    for m in &mounts {
        user_mount(k, rfd, m, userns)?;
    }
    for (name, target) in [
        ("hosts", "/etc/hosts"),
        ("hostname", "/etc/hostname"),
        ("resolv.conf", "/etc/resolv.conf"),
    ] {
        let t = target_in(rfd, Path::new(target), true)?;
        let src = spec.dir.join(name);
        k.mount(Some(&src.to_string_lossy()), &t.path(), None, MsFlags::MS_BIND, None)?;
        if spec.read_only {
            // Read-only with the root, as Docker's.
            let bound = target_in(rfd, Path::new(target), true)?;
            k.mount(
                None,
                &bound.path(),
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None,
            )?;
        }
    }

    drop((root_dir, proc_fs, dev_fs, sys_dir));
    k.chdir(&root)?;
    k.pivot_root()?;
    k.umount_detach(Path::new("."))?;
    k.chdir(Path::new("/"))?;

    if !spec.privileged {
        for p in MASKED {
            let path = Path::new(p);
            match k.kind(path) {
                Some(true) => k.mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, None)?,
                Some(false) => k.mount(Some("/dev/null"), path, None, MsFlags::MS_BIND, None)?,
                None => {}
            }
        }
        for p in READ_ONLY {
            let path = Path::new(p);
            if k.kind(path).is_some() {
                k.mount(Some(p), path, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
                k.mount(
                    None,
                    path,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC | nosuid_noexec,
                    None,
                )?;
            }
        }
    }
    if spec.read_only {
        k.mount(
            None,
            Path::new("/"),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
        )?;
    }
    Ok(())
}

/// Whether a sysctl belongs to the container's own namespaces (as Docker's allow-list).
pub fn namespaced_sysctl(key: &str, own_netns: bool) -> bool {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    IPC.contains(&key) || key.starts_with("fs.mqueue.") || (own_netns && key.starts_with("net."))
}

/// The type and numbers of a host device node.
pub fn device_numbers(path: &Path) -> Result<(nix::sys::stat::SFlag, u64, u64), MountError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = fs::metadata(path).map_err(|e| err("device", path, e))?;
    let kind = if m.file_type().is_char_device() {
        nix::sys::stat::SFlag::S_IFCHR
    } else if m.file_type().is_block_device() {
        nix::sys::stat::SFlag::S_IFBLK
    } else {
        return Err(MountError::NotADevice(path.to_path_buf()));
    };
    let rdev = m.rdev();
    Ok((kind, nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev)))
}

#[cfg(test)]
mod tests {
    use super::super::kernel::{Call, Recording};
    use super::*;

    /// A container's directory as the runtime lays it out, with two layers, a volume,
    /// a secret, and the files the masks find; the spec with volumes, tmpfs, a secret
    /// and a read-only root.
    fn service_spec(t: &Path) -> ContainerSpec {
        for d in [
            "c/rootfs/proc",
            "c/rootfs/sys/firmware",
            "c/upper",
            "c/work",
            "l1",
            "l2",
            "vol",
        ] {
            fs::create_dir_all(t.join(d)).unwrap();
        }
        fs::write(t.join("c/rootfs/proc/kcore"), "").unwrap();
        fs::write(t.join("c/secret-db"), "s3cret").unwrap();
        ContainerSpec {
            dir: t.join("c"),
            layers: vec![t.join("l1"), t.join("l2")],
            read_only: true,
            shm_size: 1 << 20,
            sysctls: vec![("net.core.somaxconn".into(), "1024".into())],
            mounts: vec![
                Mount {
                    kind: "bind".into(),
                    source: t.join("vol"),
                    target: "/var/lib/data".into(),
                    idmap: true,
                    ..Default::default()
                },
                Mount {
                    kind: "tmpfs".into(),
                    target: "/run".into(),
                    data: "size=1m".into(),
                    ..Default::default()
                },
                Mount {
                    kind: "bind".into(),
                    source: t.join("c/secret-db"),
                    target: "/run/secrets/db".into(),
                    read_only: true,
                    idmap: true,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn the_mount_plan_of_a_service_with_volumes_tmpfs_secrets_and_a_read_only_root() {
        let t = tempfile::tempdir().unwrap();
        let spec = service_spec(t.path());
        let root = t.path().join("c/rootfs");
        let mut k = Recording::new(&root);
        setup_with(&mut k, &spec, true, None, &CgroupView::Untouched).unwrap();
        let (rec, bind, ro, nosuid, nodev, noexec) = (
            MsFlags::MS_REC,
            MsFlags::MS_BIND,
            MsFlags::MS_RDONLY,
            MsFlags::MS_NOSUID,
            MsFlags::MS_NODEV,
            MsFlags::MS_NOEXEC,
        );
        let remount_ro = bind | MsFlags::MS_REMOUNT | ro;
        let d = t.path().display();
        let overlay = format!("lowerdir={d}/l2:{d}/l1,upperdir={d}/c/upper,workdir={d}/c/work");
        let want: Vec<(String, String, String, MsFlags)> = [
            // Nothing propagates back to the host; then the layers, highest first.
            ("", "/", "", rec | MsFlags::MS_PRIVATE),
            ("overlay", "/", overlay.as_str(), MsFlags::empty()),
            ("proc", "/proc", "", nosuid | nodev | noexec),
            (
                "tmpfs",
                "/dev",
                "mode=755,size=65536k",
                nosuid | MsFlags::MS_STRICTATIME,
            ),
            (
                "devpts",
                "/dev/pts",
                "newinstance,ptmxmode=0666,mode=0620,gid=5",
                nosuid | noexec,
            ),
            ("tmpfs", "/dev/shm", "mode=1777,size=1048576", nosuid | nodev | noexec),
            ("mqueue", "/dev/mqueue", "", nosuid | nodev | noexec),
            ("sysfs", "/sys", "", nosuid | nodev | noexec | ro),
            // The service's mounts, shallowest first: the tmpfs before the secret in it.
            ("tmpfs", "/run", "size=1m", nosuid | nodev | noexec),
            (&format!("{d}/vol"), "/var/lib/data", "", bind | rec),
            ("", "/var/lib/data", "", MsFlags::MS_PRIVATE | rec),
            (&format!("{d}/c/secret-db"), "/run/secrets/db", "", bind | rec),
            ("", "/run/secrets/db", "", MsFlags::MS_PRIVATE | rec),
            ("", "/run/secrets/db", "", remount_ro | rec),
            // Read-only with the root.
            (&format!("{d}/c/hosts"), "/etc/hosts", "", bind),
            ("", "/etc/hosts", "", remount_ro),
            (&format!("{d}/c/hostname"), "/etc/hostname", "", bind),
            ("", "/etc/hostname", "", remount_ro),
            (&format!("{d}/c/resolv.conf"), "/etc/resolv.conf", "", bind),
            ("", "/etc/resolv.conf", "", remount_ro),
            // After pivot_root: Docker's masks over what the image has, then read-only.
            ("/dev/null", "/proc/kcore", "", bind),
            ("tmpfs", "/sys/firmware", "", ro),
            ("", "/", "", remount_ro),
        ]
        .iter()
        .map(|(a, b, c, f)| (a.to_string(), b.to_string(), c.to_string(), *f))
        .collect();
        assert_eq!(k.mounts(), want);
        // The root's last word is read-only, after the masks.
        assert_eq!(k.mounts().last().map(|m| m.3), Some(remount_ro));
        // The pivot, between the plan's two halves, and the sysctl written through /proc.
        let pivot = k.calls.iter().position(|c| *c == Call::PivotRoot).unwrap();
        let first_mask = k
            .calls
            .iter()
            .position(|c| matches!(c, Call::Mount { target, .. } if target == "/proc/kcore"))
            .unwrap();
        assert!(pivot < first_mask);
        assert!(k
            .calls
            .contains(&Call::Write("/proc/sys/net/core/somaxconn".into(), "1024".into())));
        assert!(k.calls.contains(&Call::Mknod("/dev/null".into(), 1, 3)));
        // Mount points made inside the root, the secret's as a file.
        assert!(root.join("var/lib/data").is_dir() && root.join("run/secrets/db").is_file());
    }

    #[test]
    fn a_privileged_container_has_no_masks_and_a_user_namespace_idmaps_the_engine_files() {
        let t = tempfile::tempdir().unwrap();
        let mut spec = service_spec(t.path());
        spec.privileged = true;
        spec.read_only = false;
        spec.userns = Some(IdMap {
            uid: 100_000,
            gid: 100_000,
            size: 65536,
        });
        let root = t.path().join("c/rootfs");
        let mut k = Recording::new(&root);
        setup_with(&mut k, &spec, true, Some(7), &CgroupView::Untouched).unwrap();
        let after_pivot: Vec<&Call> = k.calls.iter().skip_while(|c| **c != Call::PivotRoot).collect();
        assert!(
            !after_pivot.iter().any(|c| matches!(c, Call::Mount { .. })),
            "{after_pivot:?}"
        );
        let d = t.path().display();
        let idmapped: Vec<(String, String)> = k
            .calls
            .iter()
            .filter_map(|c| match c {
                Call::BindIdmapped { source, target } => Some((source.clone(), target.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            idmapped,
            [
                (format!("{d}/l2"), format!("{d}/c/idmap/0")),
                (format!("{d}/l1"), format!("{d}/c/idmap/1")),
                (format!("{d}/vol"), "/var/lib/data".to_string()),
                (format!("{d}/c/secret-db"), "/run/secrets/db".to_string()),
            ]
        );
        // tmpfs mounts belong to the container's root, its terminals to its tty group.
        let data: Vec<String> = k.mounts().into_iter().map(|m| m.2).collect();
        assert!(data.contains(&"size=1m,uid=100000,gid=100000".to_string()), "{data:?}");
        assert!(data.contains(&"newinstance,ptmxmode=0666,mode=0620,gid=100005".to_string()));
    }

    #[test]
    fn tmpfs_flags_are_split_from_its_data_with_dockers_defaults() {
        let (nosuid, nodev, noexec, ro) = (
            MsFlags::MS_NOSUID,
            MsFlags::MS_NODEV,
            MsFlags::MS_NOEXEC,
            MsFlags::MS_RDONLY,
        );
        assert_eq!(tmpfs_options("", false), (nosuid | nodev | noexec, String::new()));
        assert_eq!(
            tmpfs_options("rw,noexec,nosuid,size=65536k", false),
            (nosuid | nodev | noexec, "size=65536k".into())
        );
        assert_eq!(
            tmpfs_options("exec,mode=1770,uid=1000", true),
            (nosuid | nodev | ro, "mode=1770,uid=1000".into())
        );
        assert_eq!(tmpfs_options("ro,suid,dev", false), (noexec | ro, String::new()));
    }

    #[test]
    fn tmpfs_owned_by_the_container_root() {
        let map = IdMap {
            uid: 200000,
            gid: 300000,
            size: 65536,
        };
        assert_eq!(owned_by_root("mode=1777", None), "mode=1777");
        assert_eq!(owned_by_root("", Some((3, map))), "uid=200000,gid=300000");
        assert_eq!(
            owned_by_root("size=1m", Some((3, map))),
            "size=1m,uid=200000,gid=300000"
        );
        // An owner the service set is kept.
        assert_eq!(owned_by_root("uid=5", Some((3, map))), "uid=5");
    }

    #[test]
    fn only_namespaced_sysctls() {
        assert!(namespaced_sysctl("net.ipv4.ip_forward", true));
        assert!(!namespaced_sysctl("net.ipv4.ip_forward", false));
        assert!(namespaced_sysctl("kernel.shmmax", false));
        assert!(namespaced_sysctl("fs.mqueue.msg_max", false));
        for host_wide in ["kernel.panic", "vm.overcommit_memory", "kernel.hostname", "fs.file-max"] {
            assert!(!namespaced_sysctl(host_wide, true), "{host_wide}");
        }
    }
}
