//! `init: true`: a minimal init of ours is the container's PID 1, as Docker's
//! `docker-init` (tini) is. It has what the workload has (limits, user namespace,
//! seccomp, capabilities, user), forks the workload, forwards every signal it gets to
//! it, reaps every orphan of the container, and exits with the workload's status
//! (128 + the signal when it was killed). Written here because it is a dozen calls,
//! and a binary of its own would have to be put into every container.

use super::process::{self, User};
use super::spec::Process;
use super::workload::die;
use std::os::unix::io::RawFd;

pub fn run(p: &Process, user: &User, userns: Option<RawFd>, ctl: RawFd) -> ! {
    let ready = process::prepare(p, user, userns).unwrap_or_else(|(code, msg)| die(ctl, code, msg));
    // SAFETY: sigset operations on a local set; sigprocmask with a valid set.
    let all = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
        all
    };
    // SAFETY: the process is single-threaded.
    let child = match unsafe { libc::fork() } {
        0 => {
            safefs::fds::reset_signals();
            let (code, msg) = ready.exec();
            die(ctl, code, msg)
        }
        n if n < 0 => die(ctl, 1, format!("fork: {}", std::io::Error::last_os_error())),
        n => n,
    };
    // The workload's exec closes the control socket's last copy: the monitor's sign.
    // SAFETY: closing a descriptor this process owns and does not use again.
    unsafe { libc::close(ctl) };
    loop {
        // SAFETY: `all` is a valid set; a null siginfo is allowed.
        let sig = unsafe { libc::sigwaitinfo(&all, std::ptr::null_mut()) };
        if sig < 0 {
            continue;
        }
        if sig != libc::SIGCHLD {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(child, sig) };
            continue;
        }
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes one int.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == child {
                let code = if libc::WIFSIGNALED(status) {
                    128 + libc::WTERMSIG(status)
                } else {
                    libc::WEXITSTATUS(status)
                };
                std::process::exit(code);
            }
        }
    }
}
