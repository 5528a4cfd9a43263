//! The exec helper: the rcompose binary started with [`super::init::EXEC_ARG`] to run a
//! process in a running container. The helper itself stays outside the container (its
//! PID namespace, its cgroup): it joins only the PID namespace for its children, forks
//! the process, reports that child to the engine (which moves it into the container's
//! cgroup), and lets it go. The child joins the container's other namespaces, resolves
//! its user and working directory inside the container's root as the first process
//! does (no magic link, no descriptor of the helper's), and executes the command.
//! The helper exits with its exit code.

use super::init::{fail, recv, send, SOCK_FD};
use super::process;
use super::spec::{Command, Report};
use nix::fcntl::OFlag;
use nix::sched::{setns, CloneFlags};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};
use safefs::{fds, inroot};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::io::{AsRawFd, OwnedFd};
use std::path::Path;

/// What an exec helper needs: the container's first process and the process to run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExecSpec {
    /// Host PID of the container's first process, and when it started: a PID that a
    /// host process has taken since the container ended is never joined.
    pub pid: i32,
    #[serde(default)]
    pub start_time: u64,
    pub process: super::spec::Process,
    /// The container's user namespace mapping, when it has one.
    #[serde(default)]
    pub userns: Option<super::spec::IdMap>,
    /// The engine gave the process standard streams (a terminal or pipes); otherwise it
    /// gets the container's `/dev/null`.
    #[serde(default)]
    pub stdio: bool,
}

/// The exec helper's `main`. Never returns.
pub fn main() -> ! {
    if let Err(e) = fds::close_from(SOCK_FD + 1) {
        fail(126, format!("closing inherited descriptors: {e}"));
    }
    let spec: ExecSpec = match recv(SOCK_FD) {
        Ok(s) => s,
        Err(e) => fail(1, format!("reading the exec spec: {e}")),
    };
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // Opened while the host's /proc is reachable.
    let mut kinds = vec![
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        // The mount namespace last: joining it moves the root.
        ("mnt", CloneFlags::CLONE_NEWNS),
    ];
    if spec.userns.is_some() {
        kinds.push(("user", CloneFlags::CLONE_NEWUSER));
    }
    // Every namespace through one descriptor of the process's /proc directory, and the
    // process checked to be the container's (its start time) before any is joined: a
    // directory descriptor stays that process's, so nothing opened through it can be
    // another's, whatever took the PID meanwhile.
    let not_running = |what: String| -> ! { fail(126, format!("container is not running ({what})")) };
    let proc_dir =
        File::open(format!("/proc/{}", spec.pid)).unwrap_or_else(|e| not_running(format!("/proc/{}: {e}", spec.pid)));
    let open = |ns: &str| -> File {
        let rel = format!("ns/{ns}");
        // The namespace files are magic links, which openat follows (and openat2 with
        // the resolve restrictions would refuse); the directory is the trusted part.
        nix::fcntl::openat(
            &proc_dir,
            rel.as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map(File::from)
        .unwrap_or_else(|e| not_running(format!("/proc/{}/{rel}: {e}", spec.pid)))
    };
    let pid_ns = open("pid");
    let files: Vec<(File, CloneFlags, &str)> = kinds.into_iter().map(|(ns, flag)| (open(ns), flag, ns)).collect();
    if super::start_time_at(&proc_dir) != Some(spec.start_time) {
        not_running(format!("process {} is not the container's any more", spec.pid));
    }
    drop(proc_dir);
    setns(pid_ns, CloneFlags::CLONE_NEWPID)
        .unwrap_or_else(|e| fail(126, format!("joining the container's pid namespace: {e}")));
    let (go_r, go_w) = pipe();
    let (status_r, status_w) = pipe();
    // SAFETY: the helper is single-threaded.
    let child = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop((go_w, status_r));
            // SAFETY: the engine's socket is the parent's to use, not the child's.
            unsafe { libc::close(SOCK_FD) };
            let mut b = [0u8; 1];
            if !File::from(go_r).read(&mut b).is_ok_and(|n| n == 1) {
                std::process::exit(1);
            }
            let (code, msg) = run(&spec, files);
            let _ = File::from(status_w).write_all(format!("{code} {msg}").as_bytes());
            std::process::exit(code);
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => fail(1, format!("fork: {e}")),
    };
    drop((go_r, status_w, files));
    let _ = send(
        SOCK_FD,
        &Report::Created {
            pid: child.as_raw(),
            monitor: 0,
        },
    );
    match recv::<Command>(SOCK_FD) {
        Ok(Command::Go) => {}
        _ => {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(child.as_raw(), libc::SIGKILL) };
            let _ = waitpid(child, None);
            std::process::exit(1)
        }
    }
    let _ = File::from(go_w).write_all(b"g");
    let mut failed = String::new();
    let _ = File::from(status_r).read_to_string(&mut failed);
    if let Some((_code, msg)) = failed.split_once(' ') {
        let _ = waitpid(child, None);
        // Docker's exec: 126 for every process that could not be started, a command
        // not found included (`docker run` says 127 for that one).
        fail(126, msg.to_string());
    }
    let _ = send(
        SOCK_FD,
        &Report::Started {
            pid_in_container: child.as_raw(),
        },
    );
    loop {
        match waitpid(child, None) {
            Ok(ws) => {
                if let Some((code, _)) = super::init::exit_code(ws) {
                    std::process::exit(code);
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => std::process::exit(1),
        }
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap_or_else(|e| fail(1, format!("pipe: {e}")))
}

/// The child's part: into the container, then the command. Returns only on failure.
fn run(spec: &ExecSpec, files: Vec<(File, CloneFlags, &str)>) -> (i32, String) {
    fds::reset_signals();
    let mut userns = None;
    for (f, flag, ns) in files {
        if flag == CloneFlags::CLONE_NEWUSER {
            // Joined just before the command, after the limits are set.
            userns = Some(f);
            continue;
        }
        // Joining our own namespace (shared with the host) fails harmlessly for some kinds.
        if let Err(e) = setns(&f, flag) {
            if ns != "cgroup" {
                return (126, format!("joining the container's {ns} namespace: {e}"));
            }
        }
    }
    let root = match inroot::own_root() {
        Ok(r) => r,
        Err(e) => return (126, format!("opening the container's root: {e}")),
    };
    let user = match super::workload::user_of(inroot::borrow(&root), &spec.process) {
        Ok(u) => u,
        Err(e) => return (126, e.to_string()),
    };
    let mut p = spec.process.clone();
    super::init::default_env(&mut p, &user);
    if !spec.stdio {
        match super::workload::open_null(&root) {
            Ok(null) => {
                for n in 0..3 {
                    // SAFETY: dup2 onto the standard descriptors.
                    unsafe { libc::dup2(null.as_raw_fd(), n) };
                }
            }
            Err(e) => return (126, format!("/dev/null: {e}")),
        }
    }
    if p.tty {
        if let Some(map) = &spec.userns {
            super::init::terminal_owner(0, map, &user);
        }
        let _ = nix::unistd::setsid();
        // SAFETY: ioctl on our stdin, a terminal when tty is asked.
        unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
    }
    let cwd = if p.cwd.is_empty() { "/" } else { p.cwd.as_str() };
    let dir = match inroot::open(
        inroot::borrow(&root),
        Path::new(cwd),
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    ) {
        Ok(d) => d,
        Err(e) => return (126, format!("chdir to {cwd}: {e}")),
    };
    if let Err(e) = nix::unistd::fchdir(&dir) {
        return (126, format!("chdir to {cwd}: {e}"));
    }
    drop((dir, root));
    if let Err(e) = fds::cloexec_from(3) {
        return (126, format!("closing descriptors: {e}"));
    }
    process::exec(&p, &user, userns.as_ref().map(|f| f.as_raw_fd()))
}
