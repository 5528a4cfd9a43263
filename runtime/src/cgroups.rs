//! Cgroups for containers, on v1 (and hybrid: v1 controllers beside an empty v2 mount,
//! as on this project's machines) and v2 hosts. A container's cgroup is made under the
//! engine's own cgroup, so the engine's limits also bound its containers.
//!
//! All file access goes through a root directory, so the writes are tested against a
//! temporary directory without root.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub use super::limits::{Limits, DEFAULT_DEVICE_RULES};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Version {
    /// One hierarchy per controller, each at `<root>/<controller>`.
    V1,
    /// The unified hierarchy at `<root>`.
    V2,
}

const V1_CONTROLLERS: &[&str] = &[
    "memory", "cpu", "cpuacct", "cpuset", "pids", "freezer", "devices", "blkio",
];

#[derive(Debug, Clone)]
pub struct Manager {
    root: PathBuf,
    version: Version,
    /// The engine's own cgroup path per controller ("" for v2), from /proc/self/cgroup.
    own: Vec<(String, String)>,
}

/// A container's cgroup: one directory per controller (v1) or one (v2).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cgroup {
    pub version: Version,
    /// (controller, directory); v2 has one entry with controller "".
    pub dirs: Vec<(String, PathBuf)>,
}

impl Manager {
    /// The host's cgroups at /sys/fs/cgroup.
    pub fn detect() -> Result<Manager, CgroupError> {
        let own = fs::read_to_string("/proc/self/cgroup").map_err(io_err(Path::new("/proc/self/cgroup")))?;
        Ok(Manager::with_root(Path::new("/sys/fs/cgroup"), &own))
    }

    /// Cgroups under `root`, the engine being where `proc_self_cgroup` says.
    pub fn with_root(root: &Path, proc_self_cgroup: &str) -> Manager {
        let version = if root.join("cgroup.controllers").exists() {
            Version::V2
        } else {
            Version::V1
        };
        let mut own = Vec::new();
        for line in proc_self_cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, ctrls, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
            // A process that an earlier engine moved into its leaf belongs to the group
            // above it (see `leave_room`).
            let path = path.trim_start_matches('/');
            let path = match path.rsplit_once('/') {
                Some((up, LEAF)) => up,
                _ if path == LEAF => "",
                _ => path,
            };
            for c in ctrls.split(',') {
                own.push((c.to_string(), path.to_string()));
            }
        }
        Manager {
            root: root.to_path_buf(),
            version,
            own,
        }
    }

    pub fn version(&self) -> &Version {
        &self.version
    }

    fn own(&self, controller: &str) -> &str {
        self.own
            .iter()
            .find(|(c, _)| c == controller)
            .map(|(_, p)| p.as_str())
            .unwrap_or("")
    }

    /// Creates `<own>/<parent>/<name>` and writes `limits` into it.
    pub fn create(&self, parent: &str, name: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        let cg = match self.version {
            Version::V2 => {
                let base = self.root.join(self.own("")).join(parent);
                fs::create_dir_all(&base).map_err(io_err(&base))?;
                // Controllers must be enabled down the path to the new group.
                let wanted = ["cpu", "cpuset", "memory", "pids"];
                let available = fs::read_to_string(self.root.join("cgroup.controllers")).unwrap_or_default();
                let enable: Vec<String> = wanted
                    .iter()
                    .filter(|c| available.split_whitespace().any(|a| a == **c))
                    .map(|c| format!("+{c}"))
                    .collect();
                let enable = enable.join(" ");
                let mut dir = self.root.join(self.own(""));
                leave_room(&dir, &enable);
                for comp in Path::new(parent).components() {
                    dir.push(comp);
                    let _ = fs::write(dir.join("cgroup.subtree_control"), &enable);
                }
                let d = base.join(name);
                fs::create_dir(&d).map_err(io_err(&d))?;
                Cgroup {
                    version: Version::V2,
                    dirs: vec![(String::new(), d)],
                }
            }
            Version::V1 => {
                let mut dirs = Vec::new();
                for c in V1_CONTROLLERS {
                    let mount = self.root.join(c);
                    if !mount.join("cgroup.procs").exists() {
                        continue;
                    }
                    let parent_dir = mount.join(self.own(c)).join(parent);
                    fs::create_dir_all(&parent_dir).map_err(io_err(&parent_dir))?;
                    if *c == "cpuset" {
                        inherit_cpuset(&mount.join(self.own(c)), &parent_dir)?;
                    }
                    let d = parent_dir.join(name);
                    fs::create_dir(&d).map_err(io_err(&d))?;
                    if *c == "cpuset" {
                        inherit_cpuset(&parent_dir, &d)?;
                    }
                    dirs.push((c.to_string(), d));
                }
                Cgroup {
                    version: Version::V1,
                    dirs,
                }
            }
        };
        if let Err(e) = cg.apply(limits) {
            let _ = cg.remove();
            return Err(e);
        }
        Ok(cg)
    }
}

impl Manager {
    /// The names of the groups directly under `<own>/<parent>`.
    pub fn children(&self, parent: &str) -> Vec<String> {
        let top = match self.version {
            Version::V2 => self.root.join(self.own("")).join(parent),
            Version::V1 => self.root.join("pids").join(self.own("pids")).join(parent),
        };
        let Ok(rd) = fs::read_dir(top) else { return Vec::new() };
        rd.flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    }

    /// Kills every process under `<own>/<parent>` and removes that whole subtree: the
    /// sweep after a crash, or after a test, whatever state it left.
    pub fn remove_tree(&self, parent: &str) {
        let tops: Vec<PathBuf> = match self.version {
            Version::V2 => vec![self.root.join(self.own("")).join(parent)],
            Version::V1 => V1_CONTROLLERS
                .iter()
                .map(|c| self.root.join(c).join(self.own(c)).join(parent))
                .collect(),
        };
        fn dirs(p: &Path, out: &mut Vec<PathBuf>) {
            if let Ok(rd) = fs::read_dir(p) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        dirs(&e.path(), out);
                    }
                }
            }
            out.push(p.to_path_buf());
        }
        for top in tops.iter().filter(|t| t.is_dir()) {
            let mut all = Vec::new();
            dirs(top, &mut all);
            for d in &all {
                for pid in fs::read_to_string(d.join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.trim().parse::<i32>().ok())
                {
                    // SAFETY: kill has no memory-safety preconditions.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            // Deepest first; the kernel needs a moment for killed processes to leave.
            for d in &all {
                for _ in 0..200 {
                    if fs::remove_dir(d).is_ok() || !d.exists() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
    }
}

/// The leaf that the processes of the engine's own v2 group are moved into.
const LEAF: &str = "rcompose-supervisor";

/// Makes the engine's own v2 group `dir` able to hand `controllers` to the containers'
/// groups below it. The unified hierarchy lets no group but the root both hold
/// processes and enable controllers for its children, and the engine's group (a
/// systemd service's, say) holds the engine: so its processes move into a leaf of
/// their own first, as systemd's delegation rules ask of a manager.
fn leave_room(dir: &Path, controllers: &str) {
    let control = dir.join("cgroup.subtree_control");
    if controllers.is_empty() || fs::write(&control, controllers).is_ok() {
        return;
    }
    let leaf = dir.join(LEAF);
    if fs::create_dir(&leaf).is_err() && !leaf.is_dir() {
        return;
    }
    // Processes can appear while moving (forks): a few rounds.
    for _ in 0..5 {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        if procs.trim().is_empty() {
            break;
        }
        for pid in procs.split_whitespace() {
            // One that exits meanwhile is no matter.
            let _ = fs::write(leaf.join("cgroup.procs"), pid);
        }
    }
    let _ = fs::write(&control, controllers);
}

/// A new v1 cpuset group starts empty; it needs its parent's CPUs and memory nodes.
fn inherit_cpuset(from: &Path, to: &Path) -> Result<(), CgroupError> {
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let cur = fs::read_to_string(to.join(f)).unwrap_or_default();
        if cur.trim().is_empty() {
            let v = fs::read_to_string(from.join(f)).map_err(io_err(&from.join(f)))?;
            fs::write(to.join(f), v.trim()).map_err(io_err(&to.join(f)))?;
        }
    }
    Ok(())
}

impl Cgroup {
    pub(super) fn dir(&self, controller: &str) -> Option<&Path> {
        match self.version {
            Version::V2 => self.dirs.first().map(|(_, d)| d.as_path()),
            Version::V1 => self
                .dirs
                .iter()
                .find(|(c, _)| c == controller)
                .map(|(_, d)| d.as_path()),
        }
    }

    /// Why a v2 file cannot be written, when it is because the group was not given its
    /// controller (it then has no such file, and making one is EACCES): which, and the
    /// highest group without it, whose parent is where it must be enabled.
    fn undelegated(&self, dir: &Path, file: &str) -> Option<CgroupError> {
        let kind = file.split('.').next().unwrap_or_default();
        let lacks = |d: &Path| {
            fs::read_to_string(d.join("cgroup.controllers")).is_ok_and(|g| !g.split_whitespace().any(|c| c == kind))
        };
        if self.version != Version::V2 || kind == "cgroup" || !lacks(dir) {
            return None;
        }
        let mut top = dir;
        while let Some(up) = top.parent().filter(|u| lacks(u)) {
            top = up;
        }
        Some(CgroupError::Unsupported(format!(
            "the {kind} cgroup controller is not delegated to {}: enable it in {}/cgroup.subtree_control (for a systemd unit, Delegate=yes)",
            top.display(),
            top.parent().unwrap_or(top).display()
        )))
    }

    pub(super) fn write(&self, controller: &str, file: &str, value: &str) -> Result<(), CgroupError> {
        let dir = self.dir(controller).ok_or_else(|| {
            CgroupError::Unsupported(format!(
                "the {controller} cgroup controller is not available on this host"
            ))
        })?;
        let p = dir.join(file);
        fs::write(&p, value).map_err(|e| {
            if let Some(missing) = self.undelegated(dir, file) {
                missing
            } else if e.kind() == io::ErrorKind::NotFound {
                CgroupError::Unsupported(format!(
                    "{file} is not supported by this host's kernel (is swap accounting enabled?)"
                ))
            } else {
                io_err(&p)(e)
            }
        })
    }

    fn read(&self, controller: &str, file: &str) -> Option<String> {
        fs::read_to_string(self.dir(controller)?.join(file)).ok()
    }

    /// Moves a process in (every controller).
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        for (_, d) in &self.dirs {
            let p = d.join("cgroup.procs");
            fs::write(&p, pid.to_string()).map_err(io_err(&p))?;
        }
        Ok(())
    }

    /// The processes in it.
    pub fn pids(&self) -> Vec<i32> {
        let dir = match self.version {
            Version::V2 => self.dirs.first(),
            Version::V1 => self
                .dirs
                .iter()
                .find(|(c, _)| c == "pids" || c == "memory")
                .or(self.dirs.first()),
        };
        dir.and_then(|(_, d)| fs::read_to_string(d.join("cgroup.procs")).ok())
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    pub fn freeze(&self) -> Result<(), CgroupError> {
        match self.version {
            Version::V2 => self.write("", "cgroup.freeze", "1"),
            Version::V1 => self.write("freezer", "freezer.state", "FROZEN"),
        }
    }

    pub fn thaw(&self) -> Result<(), CgroupError> {
        match self.version {
            Version::V2 => self.write("", "cgroup.freeze", "0"),
            Version::V1 => self.write("freezer", "freezer.state", "THAWED"),
        }
    }

    /// SIGKILL to every process in it (`cgroup.kill` on v2; frozen, killed, thawed on v1
    /// so that nothing forks away meanwhile).
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        if self.pids().is_empty() {
            return Ok(());
        }
        if self.version == Version::V2 && self.dir("").is_some_and(|d| d.join("cgroup.kill").exists()) {
            return self.write("", "cgroup.kill", "1");
        }
        let frozen = self.freeze().is_ok();
        for pid in self.pids() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if frozen {
            self.thaw()?;
        }
        Ok(())
    }

    /// Whether the kernel OOM-killed a process in it.
    pub fn oom_killed(&self) -> bool {
        let file = if self.version == Version::V2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        self.read("memory", file)
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse::<u64>().ok()))
            })
            .is_some_and(|n| n > 0)
    }

    /// How many forks the pids limit refused (`pids.events` `max`).
    pub fn pids_limit_hits(&self) -> u64 {
        self.read("pids", "pids.events")
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("max ").and_then(|n| n.trim().parse().ok()))
            })
            .unwrap_or(0)
    }

    /// CPU time used, in nanoseconds.
    pub fn cpu_usage_ns(&self) -> Option<u64> {
        match self.version {
            Version::V2 => self
                .read("", "cpu.stat")?
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse::<u64>().ok())
                .map(|u| u * 1000),
            Version::V1 => self.read("cpuacct", "cpuacct.usage")?.trim().parse().ok(),
        }
    }

    /// Current memory use in bytes.
    /// The memory limit in bytes; `None` when unlimited.
    pub fn memory_limit(&self) -> Option<u64> {
        let file = if self.version == Version::V2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        let v: u64 = self.read("memory", file)?.trim().parse().ok()?;
        // v1 writes "unlimited" as a huge page-rounded number.
        (v < (1 << 62)).then_some(v)
    }

    /// Bytes read from and written to block devices.
    pub fn block_io(&self) -> (u64, u64) {
        let (mut r, mut w) = (0, 0);
        match self.version {
            Version::V2 => {
                for line in self.read("", "io.stat").unwrap_or_default().lines() {
                    for kv in line.split_whitespace() {
                        match kv.split_once('=') {
                            Some(("rbytes", v)) => r += v.parse::<u64>().unwrap_or(0),
                            Some(("wbytes", v)) => w += v.parse::<u64>().unwrap_or(0),
                            _ => {}
                        }
                    }
                }
            }
            Version::V1 => {
                let text = self
                    .read("blkio", "blkio.throttle.io_service_bytes")
                    .unwrap_or_default();
                for line in text.lines() {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    if let [_, op, v] = f.as_slice() {
                        match *op {
                            "Read" => r += v.parse::<u64>().unwrap_or(0),
                            "Write" => w += v.parse::<u64>().unwrap_or(0),
                            _ => {}
                        }
                    }
                }
            }
        }
        (r, w)
    }

    pub fn memory_usage(&self) -> Option<u64> {
        let file = if self.version == Version::V2 {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        };
        self.read("memory", file).and_then(|s| s.trim().parse().ok())
    }

    /// Removes its directories (they must be empty of processes), retrying briefly
    /// while the kernel finishes with exiting processes.
    pub fn remove(&self) -> Result<(), CgroupError> {
        for (_, d) in &self.dirs {
            let mut last = None;
            // The last processes leave the cgroup a moment after they are killed: retry
            // quickly at first, then every 10 ms, for about a second in all.
            for attempt in 0..110u32 {
                if attempt > 0 {
                    std::thread::sleep(std::time::Duration::from_micros(if attempt <= 10 {
                        500
                    } else {
                        10_000
                    }));
                }
                match fs::remove_dir(d) {
                    Ok(()) => {
                        last = None;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        last = None;
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            if let Some(e) = last {
                return Err(io_err(d)(e));
            }
        }
        Ok(())
    }

    /// Removes `parent` directories left empty above this group (best effort).
    pub fn remove_parent_if_empty(&self) {
        for (_, d) in &self.dirs {
            if let Some(p) = d.parent() {
                let _ = fs::remove_dir(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_v1(root: &Path) {
        for c in ["memory", "cpu", "cpuset", "pids", "freezer"] {
            let d = root.join(c).join("engine");
            fs::create_dir_all(&d).unwrap();
            fs::write(root.join(c).join("cgroup.procs"), "").unwrap();
        }
        fs::write(root.join("cpuset/engine/cpuset.cpus"), "0-1\n").unwrap();
        fs::write(root.join("cpuset/engine/cpuset.mems"), "0\n").unwrap();
    }

    #[test]
    fn v1_writes_limits_under_the_engine_cgroup() {
        let t = tempfile::tempdir().unwrap();
        fake_v1(t.path());
        let m = Manager::with_root(
            t.path(),
            "4:memory:/engine\n3:cpuset:/engine\n2:cpu,cpuacct:/engine\n1:pids:/engine\n5:freezer:/engine\n0::/\n",
        );
        assert_eq!(m.version(), &Version::V1);
        let mut l = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            pids: Some(20),
            cpu_shares: Some(512),
            ..Default::default()
        };
        l.set_cpus(0.5);
        // The fake hierarchy has no kernel: pre-create files the kernel would provide.
        let cg = m.create("proj", "c1", &Limits::default()).unwrap();
        cg.apply(&l).unwrap();
        let r = |p: &str| fs::read_to_string(t.path().join(p)).unwrap();
        assert_eq!(
            r("memory/engine/proj/c1/memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            r("memory/engine/proj/c1/memory.memsw.limit_in_bytes"),
            (128u64 << 20).to_string()
        );
        assert_eq!(r("cpu/engine/proj/c1/cpu.cfs_quota_us"), "50000");
        assert_eq!(r("cpu/engine/proj/c1/cpu.cfs_period_us"), "100000");
        assert_eq!(r("cpu/engine/proj/c1/cpu.shares"), "512");
        assert_eq!(r("pids/engine/proj/c1/pids.max"), "20");
        assert_eq!(r("cpuset/engine/proj/c1/cpuset.cpus"), "0-1");
        cg.add(42).unwrap();
        assert_eq!(r("memory/engine/proj/c1/cgroup.procs"), "42");
        cg.freeze().unwrap();
        assert_eq!(r("freezer/engine/proj/c1/freezer.state"), "FROZEN");
        fs::write(
            t.path().join("memory/engine/proj/c1/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        )
        .unwrap();
        assert!(cg.oom_killed());
    }

    #[test]
    fn v2_engine_moved_into_its_leaf_keeps_its_group() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let m = Manager::with_root(t.path(), "0::/system.slice/x.service/rcompose-supervisor\n");
        assert_eq!(m.own(""), "system.slice/x.service");
        assert_eq!(Manager::with_root(t.path(), "0::/rcompose-supervisor\n").own(""), "");
        assert_eq!(Manager::with_root(t.path(), "0::/a/b\n").own(""), "a/b");
        // A controller the group was not given is named, with where to enable it.
        let g = t.path().join("system.slice/x.service/p/c");
        fs::create_dir_all(&g).unwrap();
        for (d, given) in [
            ("system.slice", "cpu memory pids\n"),
            ("system.slice/x.service", "memory pids\n"),
            ("system.slice/x.service/p", "memory pids\n"),
            ("system.slice/x.service/p/c", "memory pids\n"),
        ] {
            fs::write(t.path().join(d).join("cgroup.controllers"), given).unwrap();
        }
        let cg = Cgroup {
            version: Version::V2,
            dirs: vec![(String::new(), g.clone())],
        };
        // cgroupfs refuses to make a file it lacks; a directory in its place refuses here.
        fs::create_dir(g.join("cpu.max")).unwrap();
        let e = cg.write("cpu", "cpu.max", "1000 100000").unwrap_err().to_string();
        assert!(
            e.contains("the cpu cgroup controller is not delegated to")
                && e.contains("system.slice/x.service: enable it in ")
                && e.ends_with("system.slice/cgroup.subtree_control (for a systemd unit, Delegate=yes)")
                && e.contains("Delegate=yes"),
            "{e}"
        );
        cg.write("memory", "memory.max", "1").unwrap();
    }

    #[test]
    fn v2_writes_unified_files() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        fs::create_dir_all(t.path().join("engine.slice")).unwrap();
        let m = Manager::with_root(t.path(), "0::/engine.slice\n");
        assert_eq!(m.version(), &Version::V2);
        let l = Limits {
            memory: Some(1 << 30),
            memory_swap: Some(-1),
            cpu_quota: Some(150_000),
            cpu_period: Some(100_000),
            cpu_shares: Some(1024),
            pids: Some(0),
            ..Default::default()
        };
        let cg = m.create("proj", "c2", &l).unwrap();
        let r = |p: &str| fs::read_to_string(t.path().join("engine.slice/proj/c2").join(p)).unwrap();
        assert_eq!(r("memory.max"), (1u64 << 30).to_string());
        assert_eq!(r("memory.swap.max"), "max");
        assert_eq!(r("cpu.max"), "150000 100000");
        assert_eq!(r("cpu.weight"), "39");
        assert_eq!(r("pids.max"), "max");
        assert_eq!(
            fs::read_to_string(t.path().join("engine.slice/proj/cgroup.subtree_control")).unwrap(),
            "+cpu +cpuset +memory +pids"
        );
        fs::write(
            t.path().join("engine.slice/proj/c2/memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n",
        )
        .unwrap();
        assert!(!cg.oom_killed());
    }
}
