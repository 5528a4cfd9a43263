//! The container's root filesystem, set up by its init in the new mount namespace:
//! overlayfs of the image layers under a per-container upper layer, `/proc`, `/sys`
//! (read-only), `/dev` (tmpfs with the standard nodes, `pts`, `shm`, `mqueue`), the
//! service's mounts, the generated `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`,
//! then `pivot_root`, Docker's masked and read-only paths, and a read-only root if asked.
//! With a user namespace, the layers and the engine's volumes are idmapped and the
//! tmpfs mounts owned by the container's root (see [`super::userns`]).
//! Every target inside the root is resolved with `resolve_in_root`, so an image's
//! symlinks cannot send a mount onto the host.

use super::spec::{ContainerSpec, IdMap, Mount};
use safefs::safepath::resolve_in_root;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::fs;
use std::os::unix::io::RawFd;
use std::path::{Path, PathBuf};

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

fn err(what: &str, path: &Path, e: impl std::fmt::Display) -> String {
    format!("{what} {}: {e}", path.display())
}

/// The host path of `target` inside `root`, created as a directory (or an empty file
/// when `file`) if missing.
fn target_in(root: &Path, target: &Path, file: bool) -> Result<PathBuf, String> {
    let rel = target.strip_prefix("/").unwrap_or(target);
    let p = resolve_in_root(root, rel).map_err(|e| err("resolving", target, e))?;
    if !p.exists() {
        if file {
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent).map_err(|e| err("creating", parent, e))?;
            }
            fs::write(&p, b"").map_err(|e| err("creating", &p, e))?;
        } else {
            fs::create_dir_all(&p).map_err(|e| err("creating", &p, e))?;
        }
    }
    Ok(p)
}

fn do_mount(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), String> {
    mount(src, target, fstype, flags, data)
        .map_err(|e| err(&format!("mounting {}", fstype.or(src).unwrap_or("")), target, e))
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

fn user_mount(root: &Path, m: &Mount, userns: Option<(RawFd, IdMap)>) -> Result<(), String> {
    match m.kind.as_str() {
        "bind" => {
            let meta = fs::metadata(&m.source).map_err(|e| err("bind source", &m.source, e))?;
            let target = target_in(root, &m.target, !meta.is_dir())?;
            let src = m.source.to_string_lossy();
            match userns {
                Some((fd, _)) if m.idmap => {
                    let tree = super::userns::idmapped_tree(&m.source, fd, false)?;
                    super::userns::attach(&tree, &target)?;
                }
                _ => do_mount(Some(&src), &target, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?,
            }
            do_mount(None, &target, None, propagation(&m.propagation), None)?;
            if m.read_only {
                do_mount(
                    None,
                    &target,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                    None,
                )?;
            }
        }
        "tmpfs" => {
            let target = target_in(root, &m.target, false)?;
            let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
            if m.read_only {
                flags |= MsFlags::MS_RDONLY;
            }
            do_mount(
                Some("tmpfs"),
                &target,
                Some("tmpfs"),
                flags,
                Some(&owned_by_root(&m.data, userns)),
            )?;
        }
        other => return Err(format!("mount type {other:?} is not supported")),
    }
    Ok(())
}

/// Everything up to and including `pivot_root`; afterwards `/` is the container's.
/// `userns`: the container's user namespace, open, when it has one.
pub fn setup(spec: &ContainerSpec, own_netns: bool, userns: Option<RawFd>) -> Result<(), String> {
    let userns = userns.zip(spec.userns);
    let root = spec.dir.join("rootfs");
    do_mount(None, Path::new("/"), None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)?;
    if spec.layers.is_empty() {
        return Err("the image has no layers".into());
    }
    let mut lower = Vec::new();
    for (i, l) in spec.layers.iter().rev().enumerate() {
        let Some((fd, _)) = userns else {
            lower.push(l.to_string_lossy().into_owned());
            continue;
        };
        // The layer seen through the mapping, at a directory of this mount namespace
        // (overlayfs takes paths); it goes with the old root below.
        let at = spec.dir.join("idmap").join(i.to_string());
        fs::create_dir_all(&at).map_err(|e| err("creating", &at, e))?;
        super::userns::attach(&super::userns::idmapped_tree(l, fd, false)?, &at)?;
        lower.push(at.to_string_lossy().into_owned());
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        spec.dir.join("upper").display(),
        spec.dir.join("work").display()
    );
    do_mount(Some("overlay"), &root, Some("overlay"), MsFlags::empty(), Some(&opts))?;

    let nosuid_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let proc_dir = target_in(&root, Path::new("/proc"), false)?;
    do_mount(Some("proc"), &proc_dir, Some("proc"), nosuid_noexec, None)?;
    for (key, value) in &spec.sysctls {
        // Only namespaced sysctls: anything else would change the host.
        if !namespaced_sysctl(key, own_netns) {
            return Err(format!("sysctl {key} is not namespaced (or the network namespace is shared) and would change the host: refused"));
        }
        if key.contains("..") || key.contains('/') {
            return Err(format!("invalid sysctl name {key:?}"));
        }
        let p = proc_dir.join("sys").join(key.replace('.', "/"));
        fs::write(&p, value).map_err(|e| format!("sysctl {key}={value}: {e}"))?;
    }

    let dev = target_in(&root, Path::new("/dev"), false)?;
    do_mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some(&owned_by_root("mode=755,size=65536k", userns)),
    )?;
    for (name, major, minor) in DEVICES {
        let p = dev.join(name);
        nix::sys::stat::mknod(
            &p,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(*major, *minor),
        )
        .map_err(|e| err("creating device", &p, e))?;
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            &p,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| err("chmod", &p, e))?;
    }
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(link)).map_err(|e| err("creating", &dev.join(link), e))?;
    }
    for d in ["pts", "shm", "mqueue"] {
        fs::create_dir(dev.join(d)).map_err(|e| err("creating", &dev.join(d), e))?;
    }
    do_mount(
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
    do_mount(
        Some("shm"),
        &dev.join("shm"),
        Some("tmpfs"),
        nosuid_noexec,
        Some(&owned_by_root(
            &format!("mode=1777,size={}", spec.shm_size.max(4096)),
            userns,
        )),
    )?;
    do_mount(Some("mqueue"), &dev.join("mqueue"), Some("mqueue"), nosuid_noexec, None)?;

    let sys = target_in(&root, Path::new("/sys"), false)?;
    if own_netns {
        do_mount(
            Some("sysfs"),
            &sys,
            Some("sysfs"),
            nosuid_noexec | MsFlags::MS_RDONLY,
            None,
        )?;
    } else {
        // sysfs of another network namespace cannot be mounted: bind the host's, read-only.
        do_mount(Some("/sys"), &sys, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
        do_mount(
            None,
            &sys,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
            None,
        )?;
    }

    let mut mounts = spec.mounts.clone();
    mounts.sort_by_key(|m| m.target.components().count());
    for m in &mounts {
        user_mount(&root, m, userns)?;
    }
    for (name, target) in [
        ("hosts", "/etc/hosts"),
        ("hostname", "/etc/hostname"),
        ("resolv.conf", "/etc/resolv.conf"),
    ] {
        let t = target_in(&root, Path::new(target), true)?;
        let src = spec.dir.join(name);
        do_mount(Some(&src.to_string_lossy()), &t, None, MsFlags::MS_BIND, None)?;
    }

    nix::unistd::chdir(&root).map_err(|e| err("chdir", &root, e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| err("pivot_root", &root, e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detaching the old root: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;

    if !spec.privileged {
        for p in MASKED {
            let path = Path::new(p);
            match fs::symlink_metadata(path) {
                Ok(m) if m.is_dir() => do_mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, None)?,
                Ok(_) => do_mount(Some("/dev/null"), path, None, MsFlags::MS_BIND, None)?,
                Err(_) => {}
            }
        }
        for p in READ_ONLY {
            let path = Path::new(p);
            if path.exists() {
                do_mount(Some(p), path, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
                do_mount(
                    None,
                    path,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
                    None,
                )?;
            }
        }
    }
    if spec.read_only {
        do_mount(
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
pub fn device_numbers(path: &Path) -> Result<(nix::sys::stat::SFlag, u64, u64), String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = fs::metadata(path).map_err(|e| err("device", path, e))?;
    let kind = if m.file_type().is_char_device() {
        nix::sys::stat::SFlag::S_IFCHR
    } else if m.file_type().is_block_device() {
        nix::sys::stat::SFlag::S_IFBLK
    } else {
        return Err(format!("device {}: not a device node", path.display()));
    };
    let rdev = m.rdev();
    Ok((kind, nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
