//! The container's first process, from its fork by the monitor to `execve`: it makes or
//! joins the namespaces, says it is ready, waits for the engine's go (cgroup joined,
//! network plugged), builds the root filesystem and pivots into it, and then prepares
//! the workload as runc does since CVE-2024-21626: every descriptor above 2 is closed on
//! exec, the working directory is opened inside the new root (`openat2` with
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`, made if missing) and entered by its
//! descriptor, signal dispositions are the defaults, and the files read before it runs
//! (`/etc/passwd`, `/etc/group`) are regular files of the container with a size limit.
//! Then it becomes the workload (PID 1 of the container), or with `init: true` forks it
//! and stays as a minimal init ([`super::mini_init`]).

use super::monitor::{Ctl, Given, GO};
use super::process;
use super::spec::ContainerSpec;
use nix::sched::{setns, unshare, CloneFlags};
use safefs::{fds, inroot};
use std::fs::File;
use std::os::unix::io::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

/// The most of `/etc/passwd` or `/etc/group` read.
const ACCOUNTS_LIMIT: u64 = 4 << 20;

/// Reports a failure to the monitor and exits with its code.
pub(super) fn die(ctl: RawFd, exit_code: i32, message: String) -> ! {
    if let Ok(data) = serde_json::to_vec(&Ctl::Failed { exit_code, message }) {
        // SAFETY: a valid buffer; send does not keep it.
        unsafe { libc::send(ctl, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
    }
    // SAFETY: _exit after fork: none of the monitor's state is to be flushed here.
    unsafe { libc::_exit(exit_code) }
}

fn tell(ctl: RawFd, msg: &Ctl, fd: Option<RawFd>) -> std::io::Result<()> {
    let data = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    match fd {
        Some(fd) => fds::send_with_fd(ctl, &data, fd),
        None => {
            // SAFETY: a valid buffer; send does not keep it.
            if unsafe { libc::send(ctl, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        }
    }
}

/// Makes or joins every namespace but PID (the monitor's fork placed it) and cgroup
/// (made after the engine moved it into its cgroup).
fn namespaces(spec: &ContainerSpec, given: &Given, ctl: RawFd) {
    let ns = &spec.namespaces;
    let mut owned = CloneFlags::empty();
    if let Some((_, made)) = &given.userns {
        for (f, flag) in made {
            setns(f, *flag).unwrap_or_else(|e| die(ctl, 1, format!("entering the container's namespaces: {e}")));
            owned |= *flag;
        }
    }
    let mut flags = CloneFlags::CLONE_NEWNS;
    for (want, flag, kind) in [
        (&ns.net, CloneFlags::CLONE_NEWNET, "net"),
        (&ns.ipc, CloneFlags::CLONE_NEWIPC, "ipc"),
        (&ns.uts, CloneFlags::CLONE_NEWUTS, "uts"),
    ] {
        match want.as_deref() {
            None if owned.contains(flag) => {}
            None => flags |= flag,
            Some("host") => {}
            Some(path) => {
                let f = File::open(path)
                    .unwrap_or_else(|e| die(ctl, 1, format!("joining the {kind} namespace {path}: {e}")));
                setns(&f, flag).unwrap_or_else(|e| die(ctl, 1, format!("joining the {kind} namespace {path}: {e}")));
            }
        }
    }
    unshare(flags).unwrap_or_else(|e| die(ctl, 1, format!("creating namespaces: {e}")));
}

/// The first process's `main`, right after the monitor's fork. Never returns.
pub fn main(spec: ContainerSpec, given: Given) -> ! {
    let ctl = given.ctl.as_raw_fd();
    fds::reset_signals();
    // Nothing of the monitor's but what it gave.
    let mut keep = vec![ctl];
    keep.extend(
        [&given.stdin, &given.stdout, &given.stderr]
            .into_iter()
            .flatten()
            .map(|f| f.as_raw_fd()),
    );
    if let Some((u, made)) = &given.userns {
        keep.push(u.as_raw_fd());
        keep.extend(made.iter().map(|(f, _)| f.as_raw_fd()));
    }
    if let Err(e) = fds::close_except(&keep) {
        die(ctl, 1, format!("closing descriptors: {e}"));
    }
    namespaces(&spec, &given, ctl);
    if tell(ctl, &Ctl::Ready, None).is_err() {
        die(ctl, 1, "the monitor is gone".into());
    }
    let mut go = [0u8; 8];
    // SAFETY: `go` is writable for its length.
    let n = unsafe { libc::recv(ctl, go.as_mut_ptr().cast(), go.len(), 0) };
    if n != GO.len() as isize || &go[..GO.len()] != GO {
        // SAFETY: _exit after fork.
        unsafe { libc::_exit(1) }
    }
    // Now in its cgroup: a namespace of its own is rooted there (Docker's default on
    // v2; on v1 Docker's is the host's).
    let private_cgroups = super::cgroup_view::private(spec.cgroupns.as_deref());
    let host_paths = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    if private_cgroups {
        if let Err(e) = unshare(CloneFlags::CLONE_NEWCGROUP) {
            die(ctl, 1, format!("creating the cgroup namespace: {e}"));
        }
    }
    let cgroups = super::cgroup_view::CgroupView::of_self(private_cgroups, &host_paths);
    let userns_fd = given.userns.as_ref().map(|(u, _)| u.as_raw_fd());
    if let Some((_, made)) = &given.userns {
        // Joined: the namespace files are not needed any more.
        for (f, _) in made {
            // SAFETY: closing a descriptor this process owns and does not use again.
            unsafe { libc::close(f.as_raw_fd()) };
        }
    }
    let own_netns = spec.namespaces.net.is_none();
    if let Err(e) = super::mounts::setup(&spec, own_netns, userns_fd, &cgroups) {
        die(ctl, 1, e.to_string());
    }
    if spec.namespaces.uts.is_none() {
        let _ = nix::unistd::sethostname(&spec.hostname);
        if !spec.domainname.is_empty() {
            let d = std::ffi::CString::new(spec.domainname.clone()).unwrap_or_default();
            // SAFETY: `d` is valid for its length.
            unsafe { libc::setdomainname(d.as_ptr(), spec.domainname.len()) };
        }
    }
    let root = inroot::own_root().unwrap_or_else(|e| die(ctl, 1, format!("opening the root: {e}")));
    let user = user_of(inroot::borrow(&root), &spec.process).unwrap_or_else(|e| die(ctl, 1, e.to_string()));
    let mut p = spec.process.clone();
    super::init::default_env(&mut p, &user);
    stdio(&spec, &given, &root, &user, ctl);
    let cwd = if p.cwd.is_empty() { "/" } else { p.cwd.as_str() };
    let dir = inroot::mkdir_all(inroot::borrow(&root), Path::new(cwd))
        .unwrap_or_else(|e| die(ctl, 1, format!("working directory {cwd} cannot be used: {e}")));
    nix::unistd::fchdir(&dir).unwrap_or_else(|e| die(ctl, 1, format!("chdir to {cwd}: {e}")));
    drop((dir, root));
    // Everything but the standard streams goes on exec: the control socket (whose end
    // tells the monitor that the workload runs) and the user namespace last of all.
    if let Err(e) = fds::cloexec_from(3) {
        die(ctl, 1, format!("closing descriptors: {e}"));
    }
    if spec.init {
        super::mini_init::run(&p, &user, userns_fd, ctl)
    }
    let (code, msg) = process::exec(&p, &user, userns_fd);
    die(ctl, code, msg)
}

/// The process's user, from the container's own `/etc/passwd` and `/etc/group` (read
/// inside its root: a link to a pipe or a device, or a huge file, is refused).
pub fn user_of(
    root: std::os::unix::io::BorrowedFd,
    p: &super::spec::Process,
) -> Result<process::User, process::ProcessError> {
    let read = |path: &str| -> String {
        inroot::read_file(root, Path::new(path), ACCOUNTS_LIMIT)
            .map(|d| String::from_utf8_lossy(&d).into_owned())
            .unwrap_or_default()
    };
    process::resolve_user(&p.user, &p.group_add, &read("/etc/passwd"), &read("/etc/group"))
}

/// Standard input, output and error: the pipes the monitor gave, or a terminal made in
/// the container's own `/dev/pts` whose master goes to the monitor.
fn stdio(spec: &ContainerSpec, given: &Given, root: &OwnedFd, user: &process::User, ctl: RawFd) {
    if spec.process.tty {
        let (master, slave) =
            open_pty(root, spec.process.console_size).unwrap_or_else(|e| die(ctl, 1, format!("openpty: {e}")));
        if let Some(map) = &spec.userns {
            super::init::terminal_owner(slave.as_raw_fd(), map, user);
        }
        if tell(ctl, &Ctl::Pty, Some(master.as_raw_fd())).is_err() {
            die(ctl, 1, "handing the terminal to the monitor failed".into());
        }
        drop(master);
        for n in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(slave.as_raw_fd(), n) };
        }
        let _ = nix::unistd::setsid();
        // SAFETY: ioctl on our stdin-turned-terminal.
        unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
        return;
    }
    let null = || open_null(root).unwrap_or_else(|e| die(ctl, 1, format!("/dev/null: {e}")));
    let stdin = given.stdin.as_ref().map(|f| f.as_raw_fd());
    let devnull = stdin.is_none().then(null);
    let stdin = stdin.or(devnull.as_ref().map(|f| f.as_raw_fd()));
    for (fd, n) in [
        (stdin, 0),
        (given.stdout.as_ref().map(|f| f.as_raw_fd()), 1),
        (given.stderr.as_ref().map(|f| f.as_raw_fd()), 2),
    ] {
        if let Some(fd) = fd {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(fd, n) };
        }
    }
    let _ = nix::unistd::setsid();
}

/// The container's `/dev/null` (the character device 1:3, nothing else).
pub fn open_null(root: &OwnedFd) -> std::io::Result<OwnedFd> {
    let fd = inroot::open(
        inroot::borrow(root),
        Path::new("/dev/null"),
        libc::O_RDWR | libc::O_NOCTTY,
        0,
    )?;
    check_device(&fd, 1, 3, "/dev/null")?;
    Ok(fd)
}

fn check_device(fd: &OwnedFd, major: u32, minor: u32, what: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = File::from(fd.try_clone()?).metadata()?;
    let rdev = meta.rdev();
    if !meta.file_type().is_char_device() || libc::major(rdev) != major || libc::minor(rdev) != minor {
        return Err(std::io::Error::other(format!("{what} is not the device it should be")));
    }
    Ok(())
}

/// A terminal of the container's `/dev/pts`: (master, slave), the slave opened through
/// the master (TIOCGPTPEER), never by a path the container could have replaced.
pub fn open_pty(root: &OwnedFd, size: Option<(u16, u16)>) -> std::io::Result<(OwnedFd, OwnedFd)> {
    use std::os::unix::io::FromRawFd;
    let master = inroot::open(
        inroot::borrow(root),
        Path::new("/dev/pts/ptmx"),
        libc::O_RDWR | libc::O_NOCTTY,
        0,
    )?;
    check_device(&master, 5, 2, "/dev/pts/ptmx")?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int; TIOCSWINSZ one winsize; TIOCGPTPEER returns a
    // new descriptor, checked and then owned.
    unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if let Some((rows, cols)) = size {
            let ws = libc::winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
        let slave = libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if slave < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((master, OwnedFd::from_raw_fd(slave)))
    }
}
