//! The container helper: the rcompose binary started again (from a sealed memfd) with
//! [`ARG`], single-threaded. It reads the spec from the engine over a socketpair (fd 3),
//! creates the namespaces and forks the container's init, which becomes PID 1 there;
//! the helper reports the init's PID and exits. The init waits for the engine's `Go`
//! (cgroup joined, network plugged), builds the root filesystem, forks and executes the
//! workload, then stays on: it reaps zombies, forwards stop signals to the workload,
//! writes its output to the json-file log and, when it exits, its status to `exit.json`.

use super::logs::LogWriter;
use super::process;
use super::spec::{Command, ContainerSpec, ExitStatus, Report};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The argument that makes the binary the helper.
pub const ARG: &str = "__rcompose_container_init";
/// The socketpair end, placed at this descriptor by the engine.
pub const SOCK_FD: RawFd = 3;

pub fn send<T: serde::Serialize>(fd: RawFd, msg: &T) -> std::io::Result<()> {
    let data = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    // SAFETY: `data` is a valid buffer; send does not keep it.
    let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

pub fn recv<T: serde::de::DeserializeOwned>(fd: RawFd) -> std::io::Result<T> {
    let mut buf = vec![0u8; 4 << 20];
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the other side closed the socket",
        ));
    }
    serde_json::from_slice(&buf[..n as usize]).map_err(std::io::Error::other)
}

fn fail(exit_code: i32, message: String) -> ! {
    let _ = send(SOCK_FD, &Report::Failed { exit_code, message });
    std::process::exit(exit_code)
}

/// The helper's `main`. Never returns.
pub fn main() -> ! {
    let spec: ContainerSpec = match recv(SOCK_FD) {
        Ok(s) => s,
        Err(e) => fail(1, format!("reading the container spec: {e}")),
    };
    let ns = &spec.namespaces;
    // First, while this process's children still get host PIDs (which the mapping is
    // written by); the init inherits it at USERNS_FD. The network, IPC and UTS
    // namespaces the container gets of its own are made inside it, so they are its.
    // The mount namespace stays the host's: the init builds the root there.
    let mut owned = CloneFlags::empty();
    if let Some(map) = &spec.userns {
        for (want, flag) in [
            (&ns.net, CloneFlags::CLONE_NEWNET),
            (&ns.ipc, CloneFlags::CLONE_NEWIPC),
            (&ns.uts, CloneFlags::CLONE_NEWUTS),
        ] {
            if want.is_none() {
                owned |= flag;
            }
        }
        let (userns, made) = super::userns::create(map, owned).unwrap_or_else(|e| fail(1, e));
        // SAFETY: dup3 onto a fixed descriptor number; `userns` is closed after.
        if unsafe { libc::dup3(userns.as_raw_fd(), super::userns::USERNS_FD, libc::O_CLOEXEC) } < 0 {
            fail(
                1,
                format!("keeping the user namespace: {}", std::io::Error::last_os_error()),
            );
        }
        for (f, flag) in made {
            setns(&f, flag).unwrap_or_else(|e| fail(1, format!("entering the container's namespaces: {e}")));
        }
    }
    let mut flags = CloneFlags::CLONE_NEWNS;
    for (want, flag, kind) in [
        (&ns.net, CloneFlags::CLONE_NEWNET, "net"),
        (&ns.ipc, CloneFlags::CLONE_NEWIPC, "ipc"),
        (&ns.pid, CloneFlags::CLONE_NEWPID, "pid"),
        (&ns.uts, CloneFlags::CLONE_NEWUTS, "uts"),
    ] {
        match want.as_deref() {
            None if owned.contains(flag) => {}
            None => flags |= flag,
            Some("host") => {}
            Some(path) => {
                let f =
                    File::open(path).unwrap_or_else(|e| fail(1, format!("joining the {kind} namespace {path}: {e}")));
                setns(&f, flag).unwrap_or_else(|e| fail(1, format!("joining the {kind} namespace {path}: {e}")));
            }
        }
    }
    if let Err(e) = unshare(flags) {
        fail(1, format!("creating namespaces: {e}"));
    }
    // SAFETY: the helper is single-threaded (started fresh, no threads spawned).
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => {
            let _ = send(SOCK_FD, &Report::Created { pid: child.as_raw() });
            std::process::exit(0)
        }
        Ok(ForkResult::Child) => container_init(spec),
        Err(e) => fail(1, format!("fork: {e}")),
    }
}

/// Exit code of a wait status as Docker reports it (128+signal when killed).
fn exit_code(ws: WaitStatus) -> Option<(i32, Option<i32>)> {
    match ws {
        WaitStatus::Exited(_, c) => Some((c, None)),
        WaitStatus::Signaled(_, s, _) => Some((128 + s as i32, Some(s as i32))),
        _ => None,
    }
}

fn write_exit(dir: RawFd, status: &ExitStatus) {
    let Ok(data) = serde_json::to_vec(status) else { return };
    let (tmp, fin) = (
        CString::new("exit.json.tmp").unwrap_or_default(),
        CString::new("exit.json").unwrap_or_default(),
    );
    // SAFETY: valid C strings; the descriptor is closed below.
    let fd = unsafe {
        libc::openat(
            dir,
            tmp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        return;
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    let mut f = unsafe { File::from_raw_fd(fd) };
    let _ = f.write_all(&data);
    let _ = f.sync_all();
    drop(f);
    // SAFETY: valid C strings.
    unsafe { libc::renameat(dir, tmp.as_ptr(), dir, fin.as_ptr()) };
}

/// `HOME` from the user's passwd entry and a standard `PATH`, unless already set.
fn default_env(p: &mut super::spec::Process, user: &process::User) {
    if !p.env.iter().any(|e| e.starts_with("HOME=")) {
        p.env.push(format!("HOME={}", user.home));
    }
    if !p.env.iter().any(|e| e.starts_with("PATH=")) {
        p.env
            .push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap_or_else(|e| fail(1, format!("pipe: {e}")))
}

fn container_init(spec: ContainerSpec) -> ! {
    match recv::<Command>(SOCK_FD) {
        Ok(Command::Go) => {}
        _ => std::process::exit(1),
    }
    // Now in its cgroup: the cgroup namespace is rooted there.
    let _ = unshare(CloneFlags::CLONE_NEWCGROUP);
    // Not dumpable: the host's view of this process stays root-only, no ptrace.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let dir = File::open(&spec.dir).unwrap_or_else(|e| fail(1, format!("{}: {e}", spec.dir.display())));
    let mut log = LogWriter::open(dir.as_raw_fd(), spec.log.max_size, spec.log.max_file)
        .unwrap_or_else(|e| fail(1, format!("opening the log: {e}")));
    // Bound while the host's /proc is still there to reach the directory by.
    let listener = super::attach::listen_in(dir.as_raw_fd()).ok();
    let own_netns = spec.namespaces.net.is_none();
    let userns = spec.userns.map(|_| super::userns::USERNS_FD);
    if let Err(e) = super::mounts::setup(&spec, own_netns, userns) {
        fail(1, e);
    }
    if spec.namespaces.uts.is_none() {
        let _ = nix::unistd::sethostname(&spec.hostname);
        if !spec.domainname.is_empty() {
            let d = CString::new(spec.domainname.clone()).unwrap_or_default();
            // SAFETY: `d` is valid for its length.
            unsafe { libc::setdomainname(d.as_ptr(), spec.domainname.len()) };
        }
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let user = process::resolve_user(&spec.process.user, &spec.process.group_add, &passwd, &group)
        .unwrap_or_else(|e| fail(1, e));
    let mut proc_spec = spec.process.clone();
    default_env(&mut proc_spec, &user);
    let cwd = if proc_spec.cwd.is_empty() {
        "/".to_string()
    } else {
        proc_spec.cwd.clone()
    };
    if std::fs::create_dir_all(&cwd).is_err() && !std::path::Path::new(&cwd).is_dir() {
        fail(1, format!("working directory {cwd} cannot be created"));
    }

    // Output: a pty (tty: true) or two pipes; the init reads them all.
    let (out_r, out_w, err_r, err_w) = if proc_spec.tty {
        let ws = proc_spec.console_size.map(|(rows, cols)| nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        });
        let pty = nix::pty::openpty(ws.as_ref(), None).unwrap_or_else(|e| fail(1, format!("openpty: {e}")));
        if let Some(map) = &spec.userns {
            terminal_owner(pty.slave.as_raw_fd(), map, &user);
        }
        let slave2 = pty.slave.try_clone().unwrap_or_else(|e| fail(1, format!("dup: {e}")));
        (pty.master, pty.slave, None, slave2)
    } else {
        let (or, ow) = pipe();
        let (er, ew) = pipe();
        (or, ow, Some(er), ew)
    };
    let (exec_r, exec_w) = pipe();
    // Input: the terminal when there is one (as Docker's), a pipe for attached clients
    // with `stdin_open`, or nothing.
    let stdin_pipe = (proc_spec.stdin_open && !proc_spec.tty).then(pipe);

    // Signals are taken through a signalfd, so they are blocked before the fork.
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCONT,
        Signal::SIGPIPE,
    ] {
        mask.add(s);
    }
    let _ = mask.thread_block();

    // SAFETY: the init is single-threaded.
    let workload = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let _ = SigSet::all().thread_unblock();
            let _ = nix::unistd::setsid();
            match (&stdin_pipe, proc_spec.tty) {
                (_, true) => {
                    let _ = nix::unistd::dup2_stdin(&out_w);
                }
                (Some((r, _)), false) => {
                    let _ = nix::unistd::dup2_stdin(r);
                }
                (None, false) => {
                    let devnull = File::open("/dev/null").unwrap_or_else(|_| std::process::exit(1));
                    let _ = nix::unistd::dup2_stdin(&devnull);
                }
            }
            let _ = nix::unistd::dup2_stdout(&out_w);
            let _ = nix::unistd::dup2_stderr(&err_w);
            if proc_spec.tty {
                // SAFETY: ioctl on our stdin-turned-terminal.
                unsafe { libc::ioctl(1, libc::TIOCSCTTY, 0) };
            }
            let _ = nix::unistd::chdir(cwd.as_str());
            let (code, msg) = process::exec(&proc_spec, &user, userns);
            let mut w = File::from(exec_w);
            let _ = w.write_all(format!("{code} {msg}").as_bytes());
            std::process::exit(code);
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => fail(1, format!("fork: {e}")),
    };
    drop(out_w);
    drop(err_w);
    drop(exec_w);
    let stdin_w = stdin_pipe.map(|(_, w)| w);
    let mut failed = String::new();
    let _ = File::from(exec_r).read_to_string(&mut failed);
    if let Some((code, msg)) = failed.split_once(' ') {
        drop(listener);
        super::attach::unlink(dir.as_raw_fd());
        let code: i32 = code.parse().unwrap_or(1);
        let _ = waitpid(workload, None);
        write_exit(
            dir.as_raw_fd(),
            &ExitStatus {
                exit_code: code,
                signal: None,
                finished_at: super::logs::timestamp_now(),
                oom_killed: false,
            },
        );
        let _ = log.write(1, format!("{msg}\n").as_bytes());
        let _ = log.flush();
        fail(code, msg.to_string());
    }
    let _ = send(
        SOCK_FD,
        &Report::Started {
            pid_in_container: workload.as_raw(),
        },
    );
    // SAFETY: closing the engine's socket; it is not used again.
    unsafe { libc::close(SOCK_FD) };
    let input = if proc_spec.tty { out_r.try_clone().ok() } else { stdin_w };
    let opts = super::attach::Opts {
        input: proc_spec.stdin_open,
        tty: proc_spec.tty,
        stdin_once: proc_spec.stdin_once,
        replay: proc_spec.attach_replay,
    };
    let mut attach = super::attach::Attach::new(dir.as_raw_fd(), listener, input, opts);
    supervise(workload, out_r, err_r, mask, &mut log, &mut attach, dir.as_raw_fd())
}

/// PID 1's loop: output to the log and attached clients, their input to the workload,
/// signals to the workload, zombies reaped. Returns (exits) when the workload has exited.
fn supervise(
    workload: Pid,
    out: OwnedFd,
    err: Option<OwnedFd>,
    mask: SigSet,
    log: &mut LogWriter,
    attach: &mut super::attach::Attach,
    dir: RawFd,
) -> ! {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .unwrap_or_else(|_| std::process::exit(1));
    let mut streams: Vec<(Option<OwnedFd>, usize)> = vec![(Some(out), 0), (err, 1)];
    let mut status: Option<(i32, Option<i32>)> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let open: Vec<(usize, RawFd)> = streams
            .iter()
            .enumerate()
            .filter_map(|(i, (fd, _))| fd.as_ref().map(|f| (i, f.as_raw_fd())))
            .collect();
        if status.is_some() && open.is_empty() {
            break;
        }
        let sig_fd = sfd.as_raw_fd();
        let attach_set = attach.poll_set();
        // SAFETY: the descriptors stay open while polled.
        let mut fds: Vec<PollFd> = std::iter::once((sig_fd, PollFlags::POLLIN))
            .chain(open.iter().map(|(_, f)| (*f, PollFlags::POLLIN)))
            .chain(attach_set.iter().map(|(f, w, _)| (*f, *w)))
            .map(|(f, w)| PollFd::new(unsafe { std::os::fd::BorrowedFd::borrow_raw(f) }, w))
            .collect();
        // Once the workload is gone, other processes holding the pipes get a moment.
        let timeout = if status.is_some() {
            PollTimeout::from(200u16)
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Ok(0) => break,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let revents: Vec<PollFlags> = fds.iter().map(|f| f.revents().unwrap_or(PollFlags::empty())).collect();
        if !revents[0].is_empty() {
            while let Ok(Some(si)) = sfd.read_signal() {
                let signo = si.ssi_signo as i32;
                if signo == libc::SIGCHLD {
                    loop {
                        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                            Ok(WaitStatus::StillAlive) | Err(_) => break,
                            Ok(ws) => {
                                if ws.pid() == Some(workload) {
                                    status = exit_code(ws);
                                }
                            }
                        }
                    }
                } else if status.is_none() {
                    // SAFETY: kill has no memory-safety preconditions.
                    unsafe { libc::kill(workload.as_raw(), signo) };
                }
            }
        }
        for (k, (i, fd)) in open.iter().enumerate() {
            if revents[k + 1].is_empty() {
                continue;
            }
            // SAFETY: `buf` is writable; `fd` is open.
            let n = unsafe { libc::read(*fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0
                && matches!(
                    nix::errno::Errno::last(),
                    nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR
                )
            {
                // A terminal's master is non-blocking (its input side is written so).
                continue;
            }
            if n <= 0 {
                streams[*i].0 = None;
            } else {
                let data = &buf[..n as usize];
                let _ = log.write(streams[*i].1, data);
                let kind = if streams[*i].1 == 0 {
                    super::attach::STDOUT
                } else {
                    super::attach::STDERR
                };
                attach.output(kind, data);
            }
        }
        let base = 1 + open.len();
        for (k, (_, _, slot)) in attach_set.iter().enumerate() {
            if !revents[base + k].is_empty() {
                attach.ready(*slot, revents[base + k]);
            }
        }
        attach.reap();
    }
    let _ = log.flush();
    attach.finish();
    let (code, signal) = status.unwrap_or((137, Some(9)));
    write_exit(
        dir,
        &ExitStatus {
            exit_code: code,
            signal,
            finished_at: super::logs::timestamp_now(),
            oom_killed: false,
        },
    );
    std::process::exit(code)
}

/// The argument that makes the binary an exec helper (a process joining a container).
pub const EXEC_ARG: &str = "__rcompose_container_exec";

/// What an exec helper needs: the container's init and the process to run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExecSpec {
    /// Host PID of the container's init.
    pub pid: i32,
    pub process: super::spec::Process,
    /// The container's user namespace mapping, when it has one.
    #[serde(default)]
    pub userns: Option<super::spec::IdMap>,
}

/// Gives the terminal at `fd` to the process's user and the tty group (5) as the
/// container sees them, as a terminal made inside its user namespace would be.
fn terminal_owner(fd: RawFd, map: &super::spec::IdMap, user: &process::User) {
    if let (Some(uid), Some(gid)) = (map.host_uid(user.uid.into()), map.host_gid(5)) {
        // SAFETY: fchown on a descriptor we hold.
        unsafe { libc::fchown(fd, uid, gid) };
    }
}

/// The exec helper's `main`: joins every namespace of the container (its cgroup was
/// joined by the engine while this waited), forks the process inside, relays nothing
/// (the process has this helper's stdio, a pty when asked), and exits with its code.
pub fn exec_main() -> ! {
    let spec: ExecSpec = match recv(SOCK_FD) {
        Ok(s) => s,
        Err(e) => fail(1, format!("reading the exec spec: {e}")),
    };
    let _ = send(
        SOCK_FD,
        &Report::Created {
            pid: std::process::id() as i32,
        },
    );
    match recv::<Command>(SOCK_FD) {
        Ok(Command::Go) => {}
        _ => std::process::exit(1),
    }
    // The mount namespace last: joining it moves the root, after which /proc/<pid> of
    // the host is no longer reachable.
    let mut files = Vec::new();
    for (ns, flag) in [
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        let path = format!("/proc/{}/ns/{ns}", spec.pid);
        let f = File::open(&path).unwrap_or_else(|e| fail(126, format!("container is not running ({path}: {e})")));
        files.push((f, flag, ns));
    }
    // Opened while the host's /proc is reachable, joined by the process itself.
    let userns = super::userns::of_init(spec.pid)
        .map(|path| File::open(&path).unwrap_or_else(|e| fail(126, format!("container is not running ({path}: {e})"))));
    for (f, flag, ns) in &files {
        // Joining our own namespace (shared with the host) fails harmlessly for some kinds.
        if let Err(e) = setns(f, *flag) {
            if *ns != "cgroup" {
                fail(126, format!("joining the container's {ns} namespace: {e}"));
            }
        }
    }
    let _ = nix::unistd::chdir("/");
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let user = process::resolve_user(&spec.process.user, &spec.process.group_add, &passwd, &group)
        .unwrap_or_else(|e| fail(126, e));
    let mut p = spec.process.clone();
    default_env(&mut p, &user);
    if let (true, Some(map)) = (p.tty, &spec.userns) {
        terminal_owner(0, map, &user);
    }
    let (exec_r, exec_w) = pipe();
    // SAFETY: the helper is single-threaded.
    let child = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            if p.tty {
                let _ = nix::unistd::setsid();
                // SAFETY: ioctl on our stdin, a terminal when tty is asked.
                unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
            }
            let cwd = if p.cwd.is_empty() {
                "/".to_string()
            } else {
                p.cwd.clone()
            };
            if let Err(e) = nix::unistd::chdir(cwd.as_str()) {
                let mut w = File::from(exec_w);
                let _ = w.write_all(format!("126 chdir to {cwd}: {e}").as_bytes());
                std::process::exit(126);
            }
            let (code, msg) = process::exec(&p, &user, userns.as_ref().map(|f| f.as_raw_fd()));
            let mut w = File::from(exec_w);
            let _ = w.write_all(format!("{code} {msg}").as_bytes());
            std::process::exit(code);
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => fail(1, format!("fork: {e}")),
    };
    drop(exec_w);
    let mut failed = String::new();
    let _ = File::from(exec_r).read_to_string(&mut failed);
    if let Some((code, msg)) = failed.split_once(' ') {
        let _ = waitpid(child, None);
        fail(code.parse().unwrap_or(126), msg.to_string());
    }
    let _ = send(
        SOCK_FD,
        &Report::Started {
            pid_in_container: child.as_raw(),
        },
    );
    // Stop signals reach the process; the helper waits for its end.
    loop {
        match waitpid(child, None) {
            Ok(ws) => {
                if let Some((code, _)) = exit_code(ws) {
                    std::process::exit(code);
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => std::process::exit(1),
        }
    }
}
