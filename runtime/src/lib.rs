//! The container runtime: containers as DESIGN.md describes them. The engine never forks
//! itself: it executes a sealed memfd copy of the rcompose binary as a single-threaded
//! helper (see [`init`]), hands it the container's [`spec::ContainerSpec`] over a
//! socketpair, puts the container's first process into its cgroup while it waits, then
//! lets it go. A monitor outside the container ([`monitor`]) keeps the logs and the
//! exit status, so the engine can go away and come back without the container noticing;
//! the workload itself is the container's PID 1 ([`workload`]).
//!
//! It knows no Compose: the engine turns a service into a [`spec::ContainerSpec`] (its
//! `daemon/spec` room), as an OCI runtime takes a bundle. The root filesystem's mount
//! plan ([`mounts`]) goes through the [`kernel::Kernel`] seam, which tests replace with a
//! recording fake.

pub mod attach;
pub mod cgroup_view;
pub mod cgroups;
pub mod devices_bpf;
pub mod exec_helper;
pub mod init;
pub mod kernel;
pub mod limits;
pub mod logs;
pub mod memfd;
pub mod mini_init;
pub mod monitor;
pub mod mounts;
pub mod overlay;
pub mod process;
pub mod seccomp;
pub mod spec;
pub mod userns;
pub mod workload;

use cgroups::{Cgroup, Limits, Manager};
use safefs::fds;
use spec::{Command, ContainerSpec, ExitStatus, Report};
use std::os::unix::io::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Cgroup(#[from] cgroups::CgroupError),
    /// The container could not be started; `exit_code` as Docker reports it.
    #[error("{message}")]
    Start { exit_code: i32, message: String },
}

pub struct Runtime {
    exe: memfd::SealedExe,
    cgroups: Manager,
    /// Directory, under the engine's cgroup, holding the containers' cgroups.
    cgroup_parent: String,
}

/// A started container.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Container {
    pub id: String,
    /// Host PID of the container's first process (its PID 1): what is signalled, and
    /// whose namespaces an exec joins.
    pub pid: i32,
    pub dir: PathBuf,
    pub cgroup: Cgroup,
    /// The first process's start time (clock ticks since boot), which tells it from a
    /// later process that reuses its PID.
    pub start_time: u64,
    /// Host PID of its monitor, which records the exit and ends after it (0 in the
    /// state of a container started before monitors were: it is not adopted).
    #[serde(default)]
    pub monitor: i32,
    /// The monitor's start time.
    #[serde(default)]
    pub monitor_start: u64,
    /// Its user namespace's mapping, when it has one.
    #[serde(default)]
    pub userns: Option<spec::IdMap>,
}

/// Field 22 of /proc/<pid>/stat: when the process started.
pub fn start_time(pid: i32) -> Option<u64> {
    stat_start_time(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The start time in the text of a `/proc/<pid>/stat`.
fn stat_start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The start time of the process whose `/proc/<pid>` directory `dir` is: read through
/// the descriptor, so it is that process's even if its PID has been reused since.
pub fn start_time_at(dir: &std::fs::File) -> Option<u64> {
    use std::io::Read;
    let fd = safefs::inroot::open_beneath(
        std::os::fd::AsFd::as_fd(dir),
        Path::new("stat"),
        libc::O_RDONLY | libc::O_CLOEXEC,
        0,
    )
    .ok()?;
    let mut text = String::new();
    std::fs::File::from(fd).read_to_string(&mut text).ok()?;
    stat_start_time(&text)
}

impl Runtime {
    /// `helper` is the rcompose binary (the engine's own, `/proc/self/exe`).
    pub fn new(helper: &Path, cgroup_parent: &str) -> Result<Runtime, RuntimeError> {
        Ok(Runtime {
            exe: memfd::SealedExe::new(helper)?,
            cgroups: Manager::detect()?,
            cgroup_parent: cgroup_parent.to_string(),
        })
    }

    /// Creates and starts a container; on any failure nothing of it is left running.
    pub fn start(&self, spec: &ContainerSpec, limits: &Limits) -> Result<Container, RuntimeError> {
        self.start_with(spec, limits, &mut |_| Ok(()))
    }

    /// As [`Runtime::start`], with `plug` called (with the init's host PID) once the
    /// namespaces and cgroup exist and before the workload runs: where the network is
    /// attached. An error from it aborts the start.
    pub fn start_with(
        &self,
        spec: &ContainerSpec,
        limits: &Limits,
        plug: &mut dyn FnMut(i32) -> Result<(), Box<dyn std::error::Error + Send + Sync>>,
    ) -> Result<Container, RuntimeError> {
        // Device access: Docker's defaults (everything when privileged), the service's
        // devices and its extra rules.
        let mut limits = limits.clone();
        if limits.devices.is_none() {
            let mut rules: Vec<String> = if spec.privileged {
                vec!["a *:* rwm".into()]
            } else {
                cgroups::DEFAULT_DEVICE_RULES.iter().map(|s| s.to_string()).collect()
            };
            for d in &spec.devices {
                let (kind, major, minor) = mounts::device_numbers(&d.host).map_err(|e| RuntimeError::Start {
                    exit_code: 1,
                    message: e.to_string(),
                })?;
                let t = if kind == nix::sys::stat::SFlag::S_IFBLK {
                    'b'
                } else {
                    'c'
                };
                let perms = if d.permissions.is_empty() {
                    "rwm"
                } else {
                    d.permissions.as_str()
                };
                rules.push(format!("{t} {major}:{minor} {perms}"));
            }
            rules.extend(spec.device_cgroup_rules.iter().cloned());
            limits.devices = Some(rules);
        }
        let limits = &limits;
        for d in ["upper", "work", "rootfs"] {
            std::fs::create_dir_all(spec.dir.join(d))?;
        }
        // Written again at each start: atomically, so that a full disk leaves the last
        // ones whole.
        for (name, data) in [
            ("hosts", spec.hosts.clone()),
            ("hostname", format!("{}\n", spec.hostname)),
            ("resolv.conf", spec.resolv_conf.clone()),
        ] {
            safefs::atomic::write(&spec.dir.join(name), data.as_bytes())
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        if let Some(map) = spec.userns {
            // The container's root owns its root directory and generated files.
            for f in ["upper", "hosts", "hostname", "resolv.conf"] {
                std::os::unix::fs::chown(spec.dir.join(f), Some(map.uid), Some(map.gid))?;
            }
        }
        let _ = std::fs::remove_file(spec.dir.join("exit.json"));
        safefs::atomic::write(
            &spec.dir.join("config.json"),
            &serde_json::to_vec_pretty(spec).map_err(std::io::Error::other)?,
        )
        .map_err(|e| std::io::Error::other(e.to_string()))?;

        let (mut helper, ours) = self.spawn_helper(init::ARG, None, &spec.dir.join("helper.log"))?;
        let fd = ours.as_raw_fd();
        let fail = |e: std::io::Error| RuntimeError::Start {
            exit_code: 1,
            message: format!("container helper: {e}"),
        };
        // The helper exits once it has reported; reap it on every path.
        let report = init::send(fd, spec).and_then(|_| init::recv::<Report>(fd));
        if report.is_err() {
            let _ = helper.kill();
        }
        let _ = helper.wait();
        let report = report.map_err(fail)?;
        let (pid, monitor) = match report {
            Report::Created { pid, monitor } => (pid, monitor),
            Report::Failed { exit_code, message } => return Err(RuntimeError::Start { exit_code, message }),
            other => {
                return Err(RuntimeError::Start {
                    exit_code: 1,
                    message: format!("unexpected report {other:?}"),
                })
            }
        };
        let kill = || {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            wait_gone(monitor, Duration::from_secs(5));
        };
        let cgroup = match self
            .cgroups
            .create(&self.cgroup_parent, &spec.id, limits)
            .and_then(|cg| cg.add(pid).map(|_| cg))
        {
            Ok(cg) => cg,
            Err(e) => {
                let _ = init::send(fd, &Command::Abort);
                kill();
                return Err(e.into());
            }
        };
        let c = Container {
            id: spec.id.clone(),
            pid,
            dir: spec.dir.clone(),
            cgroup,
            start_time: start_time(pid).unwrap_or(0),
            monitor,
            monitor_start: start_time(monitor).unwrap_or(0),
            userns: spec.userns,
        };
        // Written before the workload starts: from here on the container outlives us.
        let state = serde_json::to_vec(&c).map_err(std::io::Error::other)?;
        if let Err(e) = safefs::atomic::write(&spec.dir.join("state.json"), &state) {
            kill();
            log_left(&spec.name, self.cleanup(&c));
            return Err(RuntimeError::Start {
                exit_code: 1,
                message: e.to_string(),
            });
        }
        if let Err(message) = plug(pid) {
            let _ = init::send(fd, &Command::Abort);
            kill();
            log_left(&spec.name, self.cleanup(&c));
            let _ = std::fs::remove_file(spec.dir.join("state.json"));
            return Err(RuntimeError::Start {
                exit_code: 1,
                message: message.to_string(),
            });
        }
        let started = init::send(fd, &Command::Go)
            .map_err(fail)
            .and_then(|_| init::recv::<Report>(fd).map_err(fail));
        match started {
            Ok(Report::Started { .. }) => Ok(c),
            Ok(Report::Failed { exit_code, message }) => {
                log_left(&spec.name, self.cleanup(&c));
                Err(RuntimeError::Start { exit_code, message })
            }
            Ok(other) => {
                kill();
                log_left(&spec.name, self.cleanup(&c));
                Err(RuntimeError::Start {
                    exit_code: 1,
                    message: format!("unexpected report {other:?}"),
                })
            }
            Err(e) => {
                kill();
                log_left(&spec.name, self.cleanup(&c));
                Err(e)
            }
        }
    }

    /// Runs a process in a running container: its namespaces, cgroup, capabilities,
    /// seccomp, user, environment and working directory. The process gets `stdio`
    /// (`None`: none; a pty's slave end for a terminal). Returns its exit code.
    pub fn exec(
        &self,
        c: &Container,
        process: &spec::Process,
        stdio: Option<[std::process::Stdio; 3]>,
    ) -> Result<i32, RuntimeError> {
        self.exec_with(c, process, stdio, None)
    }

    /// As [`Runtime::exec`]; past `timeout` the process is killed and the result is an
    /// error saying so (health probes).
    pub fn exec_with(
        &self,
        c: &Container,
        process: &spec::Process,
        stdio: Option<[std::process::Stdio; 3]>,
        timeout: Option<Duration>,
    ) -> Result<i32, RuntimeError> {
        let has_stdio = stdio.is_some();
        let (mut helper, sock) = self.spawn_helper(init::EXEC_ARG, stdio, &c.dir.join("exec-helper.log"))?;
        let session = (|| -> Result<(), RuntimeError> {
            let fd = sock.as_raw_fd();
            let fail = |e: std::io::Error| RuntimeError::Start {
                exit_code: 126,
                message: format!("exec helper: {e}"),
            };
            init::send(
                fd,
                &exec_helper::ExecSpec {
                    pid: c.pid,
                    start_time: c.start_time,
                    process: process.clone(),
                    userns: c.userns,
                    stdio: has_stdio,
                },
            )
            .map_err(fail)?;
            let child = match init::recv::<Report>(fd).map_err(fail)? {
                Report::Created { pid, .. } => pid,
                Report::Failed { exit_code, message } => return Err(RuntimeError::Start { exit_code, message }),
                other => {
                    return Err(RuntimeError::Start {
                        exit_code: 126,
                        message: format!("unexpected report {other:?}"),
                    })
                }
            };
            // Into the container's cgroup before anything runs inside (the helper itself
            // stays out: it counts against no limit of the container's).
            c.cgroup.add(child)?;
            init::send(fd, &Command::Go).map_err(fail)?;
            match init::recv::<Report>(fd).map_err(fail)? {
                Report::Started { .. } => {}
                Report::Failed { exit_code, message } => {
                    return Err(RuntimeError::Start { exit_code, message });
                }
                other => {
                    return Err(RuntimeError::Start {
                        exit_code: 126,
                        message: format!("unexpected report {other:?}"),
                    })
                }
            }
            Ok(())
        })();
        if let Err(e) = session {
            // Nothing of it may linger: close its socket, end it, reap it.
            drop(sock);
            let _ = helper.kill();
            let _ = helper.wait();
            return Err(e);
        }
        if let Some(t) = timeout {
            if !wait_gone(helper.id() as i32, t) {
                let _ = helper.kill();
                let _ = helper.wait();
                return Err(RuntimeError::Start {
                    exit_code: 124,
                    message: format!("command timed out after {t:?}"),
                });
            }
        }
        let status = helper.wait()?;
        use std::os::unix::process::ExitStatusExt;
        Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(9)))
    }

    /// Starts the helper binary with `arg`, the socket at fd 3.
    fn spawn_helper(
        &self,
        arg: &str,
        stdio: Option<[std::process::Stdio; 3]>,
        log: &Path,
    ) -> Result<(std::process::Child, OwnedFd), RuntimeError> {
        let (ours, theirs) = fds::socketpair()?;
        let theirs_fd = theirs.as_raw_fd();
        let mut cmd = std::process::Command::new(self.exe.path());
        cmd.arg(arg);
        match stdio {
            Some([i, o, e]) => {
                cmd.stdin(i).stdout(o).stderr(e);
            }
            None => {
                cmd.stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::fs::File::create(log)?);
            }
        }
        // SAFETY: only async-signal-safe calls (fcntl, dup2, close_range) between fork
        // and exec.
        unsafe {
            cmd.pre_exec(move || {
                if theirs_fd == init::SOCK_FD {
                    // Already in place: dup2 would do nothing, so clear close-on-exec.
                    if libc::fcntl(theirs_fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(theirs_fd, init::SOCK_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Nothing else the engine holds (or inherited) reaches the helper.
                fds::cloexec_from(init::SOCK_FD + 1)
            });
        }
        let child = cmd.spawn()?;
        drop(theirs);
        Ok((child, ours))
    }

    /// Finds a container started earlier (by this or a previous engine) from its
    /// directory: `Some` while its monitor still runs, the very process that was started.
    pub fn adopt(&self, dir: &Path) -> Option<Container> {
        let c: Container = serde_json::from_slice(&std::fs::read(dir.join("state.json")).ok()?).ok()?;
        let running = start_time(c.monitor) == Some(c.monitor_start) && !wait_gone(c.monitor, Duration::ZERO);
        running.then_some(c)
    }

    /// Kills and removes every container cgroup under this runtime's parent.
    pub fn remove_all_cgroups(&self) {
        self.cgroups.remove_tree(&self.cgroup_parent);
    }

    /// Kills and removes the cgroups of containers whose id starts with `prefix`: those
    /// an engine that ended left of its own (build steps), which no record adopts.
    pub fn remove_cgroups_named(&self, prefix: &str) {
        for name in self.cgroups.children(&self.cgroup_parent) {
            if name.starts_with(prefix) {
                self.cgroups.remove_tree(&format!("{}/{name}", self.cgroup_parent));
            }
        }
    }

    /// Sends `signal` to the container's PID 1 (which, as with Docker, ignores it
    /// without a handler), waits up to `grace` for the exit to be recorded, then kills
    /// everything in the container. Returns the exit status.
    pub fn stop(&self, c: &Container, signal: i32, grace: Duration) -> Option<ExitStatus> {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(c.pid, signal) };
        if !wait_gone(c.monitor, grace) {
            let _ = c.cgroup.kill_all();
            // SAFETY: as above.
            unsafe { libc::kill(c.pid, libc::SIGKILL) };
            wait_gone(c.monitor, Duration::from_secs(10));
        }
        self.status(c)
    }

    /// Whether the container has ended and its exit is recorded, waiting up to `timeout`.
    pub fn wait(&self, c: &Container, timeout: Duration) -> bool {
        wait_gone(c.monitor, timeout)
    }

    /// Kills whatever is left and removes the container's cgroup, carrying on past each
    /// failure; returns what could not be undone.
    #[must_use = "what teardown could not undo is to be reported"]
    pub fn cleanup(&self, c: &Container) -> Vec<String> {
        let mut left = Vec::new();
        if let Err(e) = c.cgroup.kill_all() {
            left.push(format!("killing the container's processes: {e}"));
        }
        if !wait_gone(c.monitor, Duration::from_secs(10)) {
            left.push(format!("the container's monitor (pid {}) did not end", c.monitor));
        }
        if let Err(e) = c.cgroup.remove() {
            left.push(format!("removing the container's cgroup: {e}"));
        }
        c.cgroup.remove_parent_if_empty();
        left
    }
}

/// A failed start's teardown: what it could not undo goes to the log (the start's own
/// error is what the caller reports).
fn log_left(name: &str, left: Vec<String>) {
    for l in left {
        tracing::warn!("container {name}: after a failed start: {l}");
    }
}

/// Whether `pid` is gone (or a zombie), waiting up to `timeout`: woken by a pidfd the
/// moment it exits, with a `/proc` check as the fallback.
pub fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
            .unwrap_or(false)
    };
    // SAFETY: pidfd_open takes a pid and flags; the result is checked and closed.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if pidfd >= 0 {
        let mut pfd = libc::pollfd {
            fd: pidfd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd; then the descriptor is closed.
        let ready = unsafe {
            let n = libc::poll(&mut pfd, 1, ms);
            libc::close(pidfd);
            n
        };
        return ready > 0 || !alive();
    }
    let deadline = Instant::now() + timeout;
    while alive() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

impl Runtime {
    /// The exit status of a container that has exited, with the OOM kill (if any) taken
    /// from its cgroup; `None` while it runs.
    pub fn status(&self, c: &Container) -> Option<ExitStatus> {
        let mut s = exit_status(&c.dir)?;
        s.oom_killed = c.cgroup.oom_killed();
        Some(s)
    }
}

/// The exit status the init recorded, once it has.
pub fn exit_status(dir: &Path) -> Option<ExitStatus> {
    serde_json::from_slice(&std::fs::read(dir.join("exit.json")).ok()?).ok()
}
