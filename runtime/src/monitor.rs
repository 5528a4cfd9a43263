//! The container's monitor: the process outside the container that owns its output,
//! its attach socket and its exit status, as containerd's shim and Podman's conmon do.
//! It stays in the host's PID, mount and network namespaces (nothing in the container
//! can see it, signal it or open what it holds), forks the container's first process
//! into a new PID namespace, and relays the engine's handshake to it. Once the workload
//! runs, it writes the output to the json-file log and attached clients, feeds their
//! input, waits for the first process to end, and records `exit.json` atomically.
//! It is not dumpable and is a child subreaper, so nothing of the container's becomes
//! the host init's.

use super::logs::LogWriter;
use super::spec::{Command, ContainerSpec, ExitStatus, Report};
use super::{init, workload};
use init::{fail, send, SOCK_FD};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use safefs::fds;
use std::fs::File;
use std::os::unix::io::{AsRawFd, OwnedFd, RawFd};

/// The first process -> the monitor, over their control socket.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum Ctl {
    /// Its namespaces are made: the engine may join the cgroup and plug the network.
    Ready,
    /// The terminal's master end, attached to this message.
    Pty,
    /// Setting up or executing failed, with Docker's exit code.
    Failed { exit_code: i32, message: String },
}

/// The one message the monitor sends the first process: go on.
pub const GO: &[u8] = b"go";

/// What the first process is given at its fork.
pub struct Given {
    pub ctl: OwnedFd,
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// The user namespace and the namespaces made inside it, when it has one.
    pub userns: Option<(OwnedFd, Vec<(File, CloneFlags)>)>,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap_or_else(|e| fail(1, format!("pipe: {e}")))
}

/// The namespace kinds a user namespace makes for itself (its root has their
/// capabilities): those the container gets of its own.
fn owned_by_userns(spec: &ContainerSpec) -> CloneFlags {
    let ns = &spec.namespaces;
    let mut owned = CloneFlags::empty();
    for (want, flag) in [
        (&ns.net, CloneFlags::CLONE_NEWNET),
        (&ns.ipc, CloneFlags::CLONE_NEWIPC),
        (&ns.uts, CloneFlags::CLONE_NEWUTS),
    ] {
        if want.is_none() {
            owned |= flag;
        }
    }
    owned
}

/// The monitor's `main`, in the process the helper forked. Never returns.
pub fn main(spec: ContainerSpec, engine: Option<OwnedFd>) -> ! {
    // Its own session: the engine's terminal and process group are not its.
    let _ = nix::unistd::setsid();
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let dir = File::open(&spec.dir).unwrap_or_else(|e| fail(1, format!("{}: {e}", spec.dir.display())));
    let mut log = LogWriter::open(dir.as_raw_fd(), spec.log.max_size, spec.log.max_file)
        .unwrap_or_else(|e| fail(1, format!("opening the log: {e}")));
    let listener = super::attach::listen_in(dir.as_raw_fd()).ok();
    // The user namespace first, while this process's children still get host PIDs (its
    // maps are written by them).
    let userns = spec
        .userns
        .as_ref()
        .map(|map| super::userns::create(map, owned_by_userns(&spec)).unwrap_or_else(|e| fail(1, e.to_string())));
    match spec.namespaces.pid.as_deref() {
        None => {
            unshare(CloneFlags::CLONE_NEWPID).unwrap_or_else(|e| fail(1, format!("creating the PID namespace: {e}")))
        }
        Some("host") => {}
        Some(path) => {
            let f = File::open(path).unwrap_or_else(|e| fail(1, format!("joining the pid namespace {path}: {e}")));
            setns(&f, CloneFlags::CLONE_NEWPID)
                .unwrap_or_else(|e| fail(1, format!("joining the pid namespace {path}: {e}")));
        }
    }
    let (ctl, ctl_child) = fds::socketpair().unwrap_or_else(|e| fail(1, format!("socketpair: {e}")));
    let tty = spec.process.tty;
    let (out_r, out_w) = if tty { (None, None) } else { split(pipe()) };
    let (err_r, err_w) = if tty { (None, None) } else { split(pipe()) };
    let (stdin_r, stdin_w) = if spec.process.stdin_open && !tty {
        split(pipe())
    } else {
        (None, None)
    };
    // Signals are taken through a signalfd, so they are blocked before the fork (the
    // first process resets its mask).
    let mask = SigSet::all();
    let _ = mask.thread_block();

    // SAFETY: the monitor is single-threaded.
    let child = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop((ctl, out_r, err_r, stdin_w, listener, log, dir, engine));
            workload::main(
                spec,
                Given {
                    ctl: ctl_child,
                    stdin: stdin_r,
                    stdout: out_w,
                    stderr: err_w,
                    userns,
                },
            )
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => fail(1, format!("fork: {e}")),
    };
    drop((ctl_child, out_w, err_w, stdin_r, userns));
    let abandon = |code: i32, message: String| -> ! {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(child.as_raw(), libc::SIGKILL) };
        let _ = waitpid(child, None);
        fail(code, message)
    };
    match next(&ctl) {
        Some((Ctl::Ready, _)) => {}
        Some((Ctl::Failed { exit_code, message }, _)) => abandon(exit_code, message),
        _ => abandon(1, "the container's first process ended while it was set up".into()),
    }
    let _ = send(
        SOCK_FD,
        &Report::Created {
            pid: child.as_raw(),
            monitor: std::process::id() as i32,
        },
    );
    match init::recv::<Command>(SOCK_FD) {
        Ok(Command::Go) => {}
        _ => abandon(1, "aborted".into()),
    }
    // SAFETY: a valid buffer; send does not keep it.
    unsafe { libc::send(ctl.as_raw_fd(), GO.as_ptr().cast(), GO.len(), libc::MSG_NOSIGNAL) };
    // Until the workload is executed: a terminal, or a failure; the end of the socket
    // (closed on exec) says it runs.
    let mut master = None;
    loop {
        match next(&ctl) {
            Some((Ctl::Pty, Some(fd))) => master = Some(fd),
            Some((Ctl::Failed { exit_code, message }, _)) => {
                let _ = waitpid(child, None);
                drop(listener);
                super::attach::unlink(dir.as_raw_fd());
                record_exit(dir.as_raw_fd(), exit_code, None);
                let _ = log.write(1, format!("{message}\n").as_bytes());
                let _ = log.flush();
                fail(exit_code, message)
            }
            Some(_) => {}
            None => break,
        }
    }
    drop(ctl);
    let _ = send(
        SOCK_FD,
        &Report::Started {
            pid_in_container: child.as_raw(),
        },
    );
    // SAFETY: closing the engine's socket; it is not used again.
    unsafe { libc::close(SOCK_FD) };
    let (out, input) = match master {
        Some(m) => {
            let input = m.try_clone().ok();
            (m, input)
        }
        None => match out_r {
            Some(o) => (o, stdin_w),
            None => abandon(1, "no terminal was made".into()),
        },
    };
    let opts = super::attach::Opts {
        input: spec.process.stdin_open,
        tty,
        stdin_once: spec.process.stdin_once,
        replay: spec.process.attach_replay,
    };
    let mut attach = super::attach::Attach::new(dir.as_raw_fd(), listener, input, opts);
    let status = supervise(child, out, err_r, engine, mask, &mut log, &mut attach);
    let (code, signal) = status.unwrap_or((137, Some(9)));
    record_exit(dir.as_raw_fd(), code, signal);
    std::process::exit(0)
}

fn split((r, w): (OwnedFd, OwnedFd)) -> (Option<OwnedFd>, Option<OwnedFd>) {
    (Some(r), Some(w))
}

/// The next control message (and its descriptor); `None` once the socket is closed.
fn next(ctl: &OwnedFd) -> Option<(Ctl, Option<OwnedFd>)> {
    let (data, fd) = fds::recv_with_fd(ctl.as_raw_fd()).ok()?;
    if data.is_empty() {
        return None;
    }
    let msg = serde_json::from_slice(&data).unwrap_or(Ctl::Failed {
        exit_code: 1,
        message: "a malformed message from the container's first process".into(),
    });
    Some((msg, fd))
}

fn record_exit(dir: RawFd, exit_code: i32, signal: Option<i32>) {
    let status = ExitStatus {
        exit_code,
        signal,
        finished_at: super::logs::timestamp_now(),
        oom_killed: false,
    };
    if let Ok(data) = serde_json::to_vec(&status) {
        // Nowhere to report a failure to: the engine finds no exit.json and records 137.
        let _ = safefs::atomic::write_at(dir, "exit.json", &data);
    }
}

/// The loop: output to the log and attached clients, their input to the workload,
/// zombies reaped (the first process's and, as a subreaper, orphans'). Returns the
/// first process's status once it has ended and its output is drained. When `engine`
/// (a pidfd) becomes readable, the engine has ended and the container is killed.
fn supervise(
    first: Pid,
    out: OwnedFd,
    err: Option<OwnedFd>,
    mut engine: Option<OwnedFd>,
    mask: SigSet,
    log: &mut LogWriter,
    attach: &mut super::attach::Attach,
) -> Option<(i32, Option<i32>)> {
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
        let attach_set = attach.poll_set();
        // SAFETY: the descriptors stay open while polled.
        let engine_fd = engine.as_ref().map(|f| f.as_raw_fd());
        let mut pfds: Vec<PollFd> = std::iter::once((sfd.as_raw_fd(), PollFlags::POLLIN))
            .chain(engine_fd.map(|f| (f, PollFlags::POLLIN)))
            .chain(open.iter().map(|(_, f)| (*f, PollFlags::POLLIN)))
            .chain(attach_set.iter().map(|(f, w, _)| (*f, *w)))
            .map(|(f, w)| PollFd::new(unsafe { std::os::fd::BorrowedFd::borrow_raw(f) }, w))
            .collect();
        // Once the first process is gone, others still holding the pipes get a moment.
        let timeout = if status.is_some() {
            PollTimeout::from(200u16)
        } else {
            PollTimeout::NONE
        };
        match poll(&mut pfds, timeout) {
            Ok(0) => break,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let revents: Vec<PollFlags> = pfds.iter().map(|f| f.revents().unwrap_or(PollFlags::empty())).collect();
        if !revents[0].is_empty() {
            while let Ok(Some(si)) = sfd.read_signal() {
                // Only SIGCHLD means anything here; the engine signals the container
                // itself, and a stray signal must not end its monitor.
                if si.ssi_signo as i32 == Signal::SIGCHLD as i32 {
                    reap(first, &mut status);
                }
            }
        }
        let first_stream = 1 + usize::from(engine_fd.is_some());
        if engine_fd.is_some() && !revents[1].is_empty() {
            // PID 1 of its namespace: the kernel kills the rest of it too. Once reaped
            // its pid may be another's, so only while it is not.
            if status.is_none() {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(first.as_raw(), libc::SIGKILL) };
            }
            engine = None;
        }
        for (k, (i, fd)) in open.iter().enumerate() {
            if revents[k + first_stream].is_empty() {
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
        let base = first_stream + open.len();
        for (k, (_, _, slot)) in attach_set.iter().enumerate() {
            if !revents[base + k].is_empty() {
                attach.ready(*slot, revents[base + k]);
            }
        }
        attach.reap();
    }
    if status.is_none() {
        // The output ended first (a broken poll): wait for the end itself.
        while status.is_none() {
            match waitpid(None, None) {
                Ok(ws) if ws.pid() == Some(first) => status = init::exit_code(ws),
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break,
            }
        }
    }
    let _ = log.flush();
    attach.finish();
    status
}

fn reap(first: Pid, status: &mut Option<(i32, Option<i32>)>) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(ws) => {
                if ws.pid() == Some(first) {
                    *status = init::exit_code(ws);
                }
            }
        }
    }
}
