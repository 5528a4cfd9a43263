//! What the engine hands the container helper, and the handshake messages between them.
//! Everything the helper needs is in the spec, resolved by the engine beforehand, so the
//! helper decides nothing and reads no configuration of its own.

pub use safefs::idmap::IdMap;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    /// `bind`, `tmpfs`, `proc`, `sysfs`, ...
    pub kind: String,
    /// Host path for binds; ignored for virtual filesystems.
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: PathBuf,
    pub read_only: bool,
    /// Extra filesystem data (`size=65536k,mode=1777`).
    #[serde(default)]
    pub data: String,
    /// `rprivate` (default), `private`, `rshared`, `shared`, `rslave`, `slave`.
    #[serde(default)]
    pub propagation: String,
    /// Owners seen through the container's user namespace mapping (the engine's own
    /// volumes and files), when it has one.
    #[serde(default)]
    pub idmap: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Process {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// `user`, `user:group`, `uid`, `uid:gid`, resolved in the container's /etc files.
    pub user: String,
    #[serde(default)]
    pub group_add: Vec<String>,
    #[serde(default)]
    pub tty: bool,
    /// `stdin_open`: standard input is a pipe (or the terminal) that attached clients
    /// write to; otherwise /dev/null (or the terminal, with nobody typing).
    #[serde(default)]
    pub stdin_open: bool,
    /// `run -i`: standard input closes when the attached client's input ends.
    #[serde(default)]
    pub stdin_once: bool,
    /// `run` attached: output made before the first client attaches is kept for it.
    #[serde(default)]
    pub attach_replay: bool,
    /// The terminal's first size (rows, columns), as the `run` client's.
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
    /// Capabilities kept (names as `CAP_CHOWN`); all others are dropped.
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub no_new_privileges: bool,
    /// `default`, `unconfined`, or a path to a Docker JSON profile.
    #[serde(default)]
    pub seccomp: String,
    /// (resource, soft, hard), e.g. ("nofile", 1024, 4096).
    #[serde(default)]
    pub rlimits: Vec<(String, u64, u64)>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Namespaces {
    /// Join an existing namespace (`/proc/<pid>/ns/net`) instead of creating one;
    /// `host` shares the engine's.
    #[serde(default)]
    pub net: Option<String>,
    #[serde(default)]
    pub ipc: Option<String>,
    #[serde(default)]
    pub pid: Option<String>,
    #[serde(default)]
    pub uts: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogConfig {
    /// Bytes per file before rotation; 0 = no rotation.
    #[serde(default)]
    pub max_size: u64,
    /// Files kept, including the current one (at least 1).
    #[serde(default)]
    pub max_file: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub id: String,
    pub name: String,
    pub hostname: String,
    #[serde(default)]
    pub domainname: String,
    /// Image layers, lowest first (overlayfs lower directories).
    pub layers: Vec<PathBuf>,
    /// The container's own directory: `upper/`, `work/`, `rootfs/`, logs, state.
    pub dir: PathBuf,
    pub read_only: bool,
    pub mounts: Vec<Mount>,
    pub process: Process,
    #[serde(default)]
    pub namespaces: Namespaces,
    /// Content of /etc/hosts, /etc/hostname, /etc/resolv.conf.
    pub hosts: String,
    pub resolv_conf: String,
    /// Size of /dev/shm in bytes.
    pub shm_size: u64,
    #[serde(default)]
    pub sysctls: Vec<(String, String)>,
    #[serde(default)]
    pub log: LogConfig,
    /// Everything Docker masks and makes read-only when not privileged.
    #[serde(default)]
    pub privileged: bool,
    /// Host devices made available (`devices:`).
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Extra device cgroup rules (`device_cgroup_rules:`, `c 1:3 rwm`).
    #[serde(default)]
    pub device_cgroup_rules: Vec<String>,
    /// `userns_mode: auto`: the workload runs in a user namespace with this mapping.
    #[serde(default)]
    pub userns: Option<IdMap>,
    /// Compose's `cgroup`: `host` or `private` cgroup namespace; else Docker's default
    /// for the host (see [`super::cgroup_view`]).
    #[serde(default)]
    pub cgroupns: Option<String>,
    /// `init: true`: a minimal init of ours is PID 1 and runs the workload.
    #[serde(default)]
    pub init: bool,
    /// The container is killed when the engine that started it ends, however it ends
    /// (a build step: nothing of a build outlives its builder, as runc's children die
    /// with buildkitd). Services' containers outlive the engine by design.
    #[serde(default)]
    pub ends_with_engine: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub host: PathBuf,
    pub container: PathBuf,
    /// Some of `r`, `w`, `m`.
    pub permissions: String,
}

/// Helper -> engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Report {
    /// The container's first process exists (host PID), its namespaces are made, and
    /// it waits for `Go`; `monitor` is the host PID of its monitor (0 for an exec).
    Created {
        pid: i32,
        #[serde(default)]
        monitor: i32,
    },
    /// The workload was executed.
    Started { pid_in_container: i32 },
    /// Setting up or executing failed; `exit_code` is Docker's (126, 127, 1).
    Failed { exit_code: i32, message: String },
}

/// Engine -> helper, after `Created`: the cgroup (and network) are in place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Go,
    Abort,
}

/// What the init writes when the workload ends (`exit.json` in the container's dir).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitStatus {
    pub exit_code: i32,
    /// Set when the workload died of a signal.
    pub signal: Option<i32>,
    pub finished_at: String,
    /// The kernel killed a process of the container for want of memory (from its
    /// cgroup; the init cannot see this itself).
    #[serde(default)]
    pub oom_killed: bool,
}
