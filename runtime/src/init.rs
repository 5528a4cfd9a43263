//! The container helper and its handshake with the engine. The engine starts the
//! rcompose binary again (from a sealed memfd) with [`ARG`], single-threaded, the
//! engine's end of a socketpair at [`SOCK_FD`]. The helper reads the spec, forks the
//! container's monitor (see [`super::monitor`]) and exits at once, so the monitor
//! belongs to no engine and outlives every one of them.
//!
//! The shape, as containerd's shim and Podman's conmon have it: the monitor stays in
//! the host's PID and mount namespaces and keeps the logs and the exit status; the
//! container's first process (the workload itself, or with `init: true` a minimal init
//! of ours, see [`super::mini_init`]) is PID 1 of the container and holds nothing of the
//! host. Nothing in the container can see the monitor or reach what it holds.
//!
//! Messages, one per packet, as JSON: engine -> helper a [`ContainerSpec`]; monitor ->
//! engine [`Report::Created`] (the namespaces exist; the engine joins the cgroup and
//! plugs the network), engine -> monitor [`Command::Go`], monitor -> engine
//! [`Report::Started`] once the workload was executed, or [`Report::Failed`].

use super::spec::{ContainerSpec, Report};
use std::os::unix::io::RawFd;

/// The argument that makes the binary the helper.
pub const ARG: &str = "__rcompose_container_init";
/// The argument that makes the binary an exec helper (see [`super::exec_helper`]).
pub const EXEC_ARG: &str = "__rcompose_container_exec";
/// The socketpair end, placed at this descriptor by the engine.
pub const SOCK_FD: RawFd = 3;
/// The largest message either side sends.
const MAX_MESSAGE: usize = 4 << 20;

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
    let mut buf = vec![0u8; MAX_MESSAGE];
    let n = loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        break n;
    };
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

/// Reports a failure to the engine and exits with its code.
pub fn fail(exit_code: i32, message: String) -> ! {
    let _ = send(SOCK_FD, &Report::Failed { exit_code, message });
    std::process::exit(exit_code)
}

/// The helper's `main`. Never returns.
pub fn main() -> ! {
    // Whatever the engine's process held beyond its socket stays behind.
    if let Err(e) = safefs::fds::close_from(SOCK_FD + 1) {
        fail(1, format!("closing inherited descriptors: {e}"));
    }
    let spec: ContainerSpec = match recv(SOCK_FD) {
        Ok(s) => s,
        Err(e) => fail(1, format!("reading the container spec: {e}")),
    };
    // Taken here, while the engine is still this process's parent.
    let engine = if spec.ends_with_engine {
        Some(parent_pidfd().unwrap_or_else(|e| fail(1, format!("watching the engine: {e}"))))
    } else {
        None
    };
    // SAFETY: the helper is single-threaded (started fresh, no threads spawned).
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => std::process::exit(0),
        Ok(nix::unistd::ForkResult::Child) => super::monitor::main(spec, engine),
        Err(e) => fail(1, format!("fork: {e}")),
    }
}

/// A pidfd of this process's parent (the engine), readable once it has ended. Checked
/// against a second `getppid`: had the engine ended before the open, this process was
/// reparented and the pid may be another's.
fn parent_pidfd() -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let ppid = nix::unistd::getppid().as_raw();
    // SAFETY: pidfd_open takes a pid and flags; the result is checked. Its descriptor
    // is close-on-exec by the kernel's rule.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, ppid, 0) } as i32;
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor just returned to us, owned from here on.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    if nix::unistd::getppid().as_raw() != ppid || ppid == 1 {
        return Err(std::io::Error::other("the engine has ended"));
    }
    Ok(fd)
}

/// Exit code of a wait status as Docker reports it (128+signal when killed).
pub fn exit_code(ws: nix::sys::wait::WaitStatus) -> Option<(i32, Option<i32>)> {
    use nix::sys::wait::WaitStatus;
    match ws {
        WaitStatus::Exited(_, c) => Some((c, None)),
        WaitStatus::Signaled(_, s, _) => Some((128 + s as i32, Some(s as i32))),
        _ => None,
    }
}

/// `HOME` from the user's passwd entry and a standard `PATH`, unless already set.
pub fn default_env(p: &mut super::spec::Process, user: &super::process::User) {
    if !p.env.iter().any(|e| e.starts_with("HOME=")) {
        p.env.push(format!("HOME={}", user.home));
    }
    if !p.env.iter().any(|e| e.starts_with("PATH=")) {
        p.env
            .push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
}

/// Gives the terminal at `fd` to the process's user and the tty group (5) as the
/// container sees them, as a terminal made inside its user namespace would be.
pub fn terminal_owner(fd: RawFd, map: &super::spec::IdMap, user: &super::process::User) {
    if let (Some(uid), Some(gid)) = (map.host_uid(user.uid.into()), map.host_gid(5)) {
        // SAFETY: fchown on a descriptor we hold.
        unsafe { libc::fchown(fd, uid, gid) };
    }
}
