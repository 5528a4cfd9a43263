//! What `/sys/fs/cgroup` shows inside a container, as Docker's: the container's own
//! cgroup, read-only, so that a JVM, Go's or Node's runtime reads its limits there
//! (`memory.max` or `memory.limit_in_bytes`, `pids.max`, `cpu.max`).
//!
//! The cgroup namespace follows Docker's defaults: private on a unified (v2) host, the
//! host's on v1; Compose's `cgroup: host|private` chooses. In a private namespace the
//! kernel roots a cgroup file system mounted inside at the container's group; in the
//! host's, the container's own directories are bound instead (the rest of the host's
//! tree stays out of sight). On v1 each hierarchy the host mounts under
//! `/sys/fs/cgroup` gets a directory of a read-only tmpfs, as Docker lays them out.

use nix::mount::MsFlags;
use std::path::PathBuf;

/// One v1 hierarchy: its directory under `/sys/fs/cgroup`, the options that name it
/// (`memory`, `cpu,cpuacct`, `none,name=systemd`) and where the container is in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Hierarchy {
    pub dir: String,
    pub options: String,
    /// The host directory of the container's group in this hierarchy.
    pub own: PathBuf,
}

/// The plan for `/sys/fs/cgroup`.
#[derive(Debug, Clone, PartialEq)]
pub enum CgroupView {
    /// Left as it is (tests of the mount plan).
    Untouched,
    /// v2, namespace private: cgroup2 mounted (rooted at the container's group).
    Unified,
    /// v2, the host's namespace: the container's own directory bound.
    UnifiedBound(PathBuf),
    /// v1: a tmpfs with one read-only mount per hierarchy; `private` mounts them (the
    /// namespace roots them), else binds the container's directories.
    Hierarchies { list: Vec<Hierarchy>, private: bool },
}

/// Flags of every cgroup mount inside.
pub const FLAGS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// Whether the host's cgroups are unified (v2).
pub fn unified() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Whether the container gets a cgroup namespace of its own: `cgroup:` as given,
/// else Docker's default for the host.
pub fn private(wanted: Option<&str>) -> bool {
    match wanted {
        Some("host") => false,
        Some(_) => true,
        None => unified(),
    }
}

impl CgroupView {
    /// The plan for the calling process, from the host's `/proc/self/mountinfo` and
    /// `cgroup`, its `/proc/self/cgroup` as read in its cgroup before any cgroup
    /// namespace of its own (the host's paths).
    pub fn of_self(private: bool, cgroup: &str) -> CgroupView {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        if unified() {
            if private {
                return CgroupView::Unified;
            }
            // Where it is, or nothing: never the host's whole tree.
            let own = cgroup
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .map(|p| p.trim_start_matches('/'))
                .filter(|p| !p.is_empty());
            return match own {
                Some(own) => CgroupView::UnifiedBound(PathBuf::from("/sys/fs/cgroup").join(own)),
                None => CgroupView::Untouched,
            };
        }
        CgroupView::Hierarchies {
            list: hierarchies(&read("/proc/self/mountinfo"), cgroup),
            private,
        }
    }
}

/// The v1 hierarchies mounted under `/sys/fs/cgroup`, each with where `proc_cgroup`
/// (a `/proc/<pid>/cgroup`) puts the process in it.
pub fn hierarchies(mountinfo: &str, proc_cgroup: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(point), Some(&"cgroup"), Some(sup)) = (fields.get(4), right.first(), right.get(2)) else {
            continue;
        };
        let Some(dir) = point.strip_prefix("/sys/fs/cgroup/").filter(|d| !d.contains('/')) else {
            continue;
        };
        let mut names: Vec<&str> = sup
            .split(',')
            .filter(|o| {
                !matches!(*o, "rw" | "ro" | "xattr" | "clone_children" | "noprefix" | "none")
                    && !o.starts_with("release_agent=")
                    && !o.starts_with("cpuset_v2_mode")
            })
            .collect();
        names.sort_unstable();
        // Where the process is: the line of /proc/<pid>/cgroup naming the same set.
        let own = proc_cgroup.lines().find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
            let mut c: Vec<&str> = ctrls.split(',').filter(|c| !c.is_empty()).collect();
            c.sort_unstable();
            (c == names).then(|| path.to_string())
        });
        // A hierarchy the process is not placed in (its host root, as `name=systemd`
        // without systemd) stays out of sight: it would show the host's whole tree.
        let Some(own) = own.filter(|o| o.trim_start_matches('/') != "") else {
            continue;
        };
        let named = names.iter().all(|n| n.starts_with("name="));
        let options = if named {
            format!("none,{}", names.join(","))
        } else {
            names.join(",")
        };
        out.push(Hierarchy {
            dir: dir.to_string(),
            options,
            own: PathBuf::from(point).join(own.trim_start_matches('/')),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v1_hierarchies_and_where_the_container_is_in_each() {
        let mountinfo = "\
25 24 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
27 25 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
28 25 0:25 / /sys/fs/cgroup/memory rw,nosuid shared:9 - cgroup cgroup rw,memory
29 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
30 25 0:27 / /mnt/other rw - cgroup cgroup rw,pids
";
        let own = "5:memory:/rc/abc\n4:cpu,cpuacct:/rc/abc\n1:name=systemd:/rc/abc\n0::/\n";
        // Not placed in a hierarchy: left out.
        let unplaced = "5:memory:/rc/abc\n4:cpu,cpuacct:/\n1:name=systemd:/\n";
        let h = hierarchies(mountinfo, unplaced);
        assert_eq!(h.iter().map(|h| h.dir.as_str()).collect::<Vec<_>>(), ["memory"]);
        let h = hierarchies(mountinfo, own);
        let got: Vec<(&str, &str, &str)> = h
            .iter()
            .map(|h| (h.dir.as_str(), h.options.as_str(), h.own.to_str().unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("systemd", "none,name=systemd", "/sys/fs/cgroup/systemd/rc/abc"),
                ("cpu,cpuacct", "cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct/rc/abc"),
                ("memory", "memory", "/sys/fs/cgroup/memory/rc/abc"),
            ]
        );
    }

    #[test]
    fn dockers_default_namespace_is_private_on_v2_and_the_hosts_on_v1() {
        assert!(!private(Some("host")));
        assert!(private(Some("private")));
        assert_eq!(private(None), unified());
    }
}
