//! The workload's process, set up in the forked child just before `execve`: its user and
//! groups from the container's own `/etc/passwd` and `/etc/group`, resource limits, the
//! seccomp filter (see [`super::seccomp`]), the capability sets, `no_new_privs`, and the program found on `PATH`.

use super::spec::Process;
use std::collections::HashSet;
use std::ffi::CString;

/// Docker's default capabilities.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A process spec the kernel or the image cannot honour.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProcessError {
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoSuchUser(String),
    #[error("invalid uid for user {0}")]
    InvalidUid(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoSuchGroup(String),
    #[error("unknown ulimit {0:?}")]
    UnknownUlimit(String),
    #[error("ulimit {name}: hard limit {hard} is above the host's {host}")]
    AboveHostLimit { name: String, hard: u64, host: u64 },
    #[error("ulimit {name}: soft limit {soft} is above the hard limit {hard}")]
    SoftAboveHard { name: String, soft: u64, hard: u64 },
}

/// Docker's default set with `cap_add`/`cap_drop` (names with or without `CAP_`, `ALL`).
pub fn capabilities(add: &[String], drop: &[String], privileged: bool) -> Result<Vec<String>, ProcessError> {
    let norm = |c: &str| {
        let u = c.to_ascii_uppercase();
        if u == "ALL" || u.starts_with("CAP_") {
            u
        } else {
            format!("CAP_{u}")
        }
    };
    let all: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    for c in add.iter().chain(drop) {
        let n = norm(c);
        if n != "ALL" && !all.contains(&n) {
            return Err(ProcessError::UnknownCapability(c.clone()));
        }
    }
    // Every capability means every one this process may hand on (its bounding set), as
    // Docker grants them: a kernel's or a parent's missing one would fail the capset.
    let bounding = caps::read(None, caps::CapSet::Bounding).unwrap_or_default();
    let every: Vec<String> = caps::all()
        .iter()
        .filter(|c| bounding.is_empty() || bounding.contains(c))
        .map(|c| c.to_string())
        .collect();
    let mut set: Vec<String> = if privileged {
        every.clone()
    } else {
        DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
    };
    if drop.iter().any(|d| norm(d) == "ALL") {
        set.clear();
    }
    for d in drop.iter().map(|d| norm(d)) {
        set.retain(|c| *c != d);
    }
    for a in add.iter().map(|a| norm(a)) {
        if a == "ALL" {
            set = every.clone();
        } else if !set.contains(&a) {
            set.push(a);
        }
    }
    set.sort();
    Ok(set)
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

/// Resolves `user[:group]` (names or numbers) against passwd/group file contents.
pub fn resolve_user(spec: &str, group_add: &[String], passwd: &str, group: &str) -> Result<User, ProcessError> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let (uid, mut gid, home, name) = match u.parse::<u32>() {
        Ok(uid) => match entries.iter().find(|f| f[2].parse() == Ok(uid)) {
            Some(f) => (uid, f[3].parse().unwrap_or(0), f[5].to_string(), Some(f[0].to_string())),
            None => (uid, uid, "/".to_string(), None),
        },
        Err(_) => {
            let f = entries
                .iter()
                .find(|f| f[0] == u)
                .ok_or_else(|| ProcessError::NoSuchUser(u.to_string()))?;
            (
                f[2].parse().map_err(|_| ProcessError::InvalidUid(u.to_string()))?,
                f[3].parse().unwrap_or(0),
                f[5].to_string(),
                Some(u.to_string()),
            )
        }
    };
    let groups_file: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let lookup_group = |g: &str| -> Result<u32, ProcessError> {
        match g.parse::<u32>() {
            Ok(n) => Ok(n),
            Err(_) => groups_file
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| ProcessError::NoSuchGroup(g.to_string())),
        }
    };
    if let Some(g) = g {
        gid = lookup_group(g)?;
    }
    let mut groups = vec![gid];
    if let Some(n) = &name {
        for f in &groups_file {
            if f[3].split(',').any(|m| m == n) {
                if let Ok(id) = f[2].parse::<u32>() {
                    groups.push(id);
                }
            }
        }
    }
    for g in group_add {
        groups.push(lookup_group(g)?);
    }
    let mut seen = HashSet::new();
    groups.retain(|g| seen.insert(*g));
    Ok(User { uid, gid, groups, home })
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "core" => libc::RLIMIT_CORE,
        "cpu" => libc::RLIMIT_CPU,
        "data" => libc::RLIMIT_DATA,
        "fsize" => libc::RLIMIT_FSIZE,
        "locks" => libc::RLIMIT_LOCKS,
        "memlock" => libc::RLIMIT_MEMLOCK,
        "msgqueue" => libc::RLIMIT_MSGQUEUE,
        "nice" => libc::RLIMIT_NICE,
        "nofile" => libc::RLIMIT_NOFILE,
        "nproc" => libc::RLIMIT_NPROC,
        "rss" => libc::RLIMIT_RSS,
        "rtprio" => libc::RLIMIT_RTPRIO,
        "rttime" => libc::RLIMIT_RTTIME,
        "sigpending" => libc::RLIMIT_SIGPENDING,
        "stack" => libc::RLIMIT_STACK,
        "as" => libc::RLIMIT_AS,
        _ => return None,
    })
}

/// Checks ulimits against the host's hard limits (raising past them is refused with a
/// message, never silently capped); returns the resources to set.
pub fn check_rlimits(
    limits: &[(String, u64, u64)],
) -> Result<Vec<(libc::__rlimit_resource_t, u64, u64)>, ProcessError> {
    let mut out = Vec::new();
    for (name, soft, hard) in limits {
        let res = rlimit_resource(name).ok_or_else(|| ProcessError::UnknownUlimit(name.clone()))?;
        let mut cur = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into `cur`.
        unsafe { libc::getrlimit(res, &mut cur) };
        if *hard > cur.rlim_max {
            return Err(ProcessError::AboveHostLimit {
                name: name.clone(),
                hard: *hard,
                host: cur.rlim_max,
            });
        }
        if soft > hard {
            return Err(ProcessError::SoftAboveHard {
                name: name.clone(),
                soft: *soft,
                hard: *hard,
            });
        }
        out.push((res, *soft, *hard));
    }
    Ok(out)
}

/// The program `args[0]` on `PATH` (from the process environment).
pub fn find_program(arg0: &str, env: &[String]) -> Result<String, (i32, String)> {
    if arg0.contains('/') {
        return Ok(arg0.to_string());
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let p = format!("{dir}/{arg0}");
        if std::fs::metadata(&p).is_ok_and(|m| m.is_file()) {
            return Ok(p);
        }
    }
    Err((127, format!("exec: \"{arg0}\": executable file not found in $PATH")))
}

/// A process with everything applied but the program's execution.
pub struct Ready {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    arg0: String,
}

/// Applies everything and executes the workload; returns only on failure, with Docker's
/// exit code (127 not found, 126 not executable, 1 otherwise) and message.
/// With `userns` (an open user namespace), the process enters it first and the user
/// and capabilities are the namespace's.
pub fn exec(p: &Process, user: &User, userns: Option<std::os::unix::io::RawFd>) -> (i32, String) {
    match prepare(p, user, userns) {
        Ok(ready) => ready.exec(),
        Err(e) => e,
    }
}

/// Resource limits, the user namespace, seccomp, capabilities (bounding as asked;
/// inheritable and ambient empty, as Docker has them since CVE-2022-24769), groups and
/// user, `no_new_privs` when asked; and the program found on `PATH`.
pub fn prepare(p: &Process, user: &User, userns: Option<std::os::unix::io::RawFd>) -> Result<Ready, (i32, String)> {
    let fail = |msg: String| (1, msg);
    for (res, soft, hard) in check_rlimits(&p.rlimits).map_err(|e| fail(e.to_string()))? {
        let l = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads `l`.
        if unsafe { libc::setrlimit(res, &l) } != 0 {
            return Err(fail(format!("setrlimit: {}", std::io::Error::last_os_error())));
        }
    }
    // After the limits (the namespace's root could not raise them), before seccomp
    // (which refuses setns).
    if let Some(fd) = userns {
        super::userns::join(fd).map_err(|e| fail(e.to_string()))?;
    }
    let Some(arg0) = p.args.first() else {
        return Err(fail("no command specified".into()));
    };
    let program = find_program(arg0, &p.env)?;
    // Seccomp goes on while all capabilities are still held (no no_new_privs needed).
    let filter = match p.seccomp.as_str() {
        "unconfined" => None,
        "" | "default" => Some(super::seccomp::default_seccomp(&p.capabilities)),
        profile => Some(super::seccomp::docker_profile(profile)),
    };
    if let Some(prog) = filter {
        let prog = prog.map_err(|e| fail(e.to_string()))?;
        super::seccomp::install(&prog).map_err(|e| fail(e.to_string()))?;
    }
    let keep: HashSet<caps::Capability> = p.capabilities.iter().filter_map(|c| c.parse().ok()).collect();
    for c in caps::all() {
        if !keep.contains(&c) {
            caps::drop(None, caps::CapSet::Bounding, c).map_err(|e| fail(format!("dropping {c}: {e}")))?;
        }
    }
    for set in [caps::CapSet::Inheritable, caps::CapSet::Ambient] {
        caps::clear(None, set).map_err(|e| fail(format!("clearing capabilities: {e}")))?;
    }
    let groups: Vec<nix::unistd::Gid> = user.groups.iter().map(|g| nix::unistd::Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&groups).map_err(|e| fail(format!("setgroups: {e}")))?;
    nix::unistd::setgid(nix::unistd::Gid::from_raw(user.gid)).map_err(|e| fail(format!("setgid {}: {e}", user.gid)))?;
    nix::unistd::setuid(nix::unistd::Uid::from_raw(user.uid)).map_err(|e| fail(format!("setuid {}: {e}", user.uid)))?;
    if user.uid == 0 {
        for set in [caps::CapSet::Effective, caps::CapSet::Permitted] {
            caps::set(None, set, &keep).map_err(|e| fail(format!("setting capabilities: {e}")))?;
        }
    }
    if p.no_new_privileges {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    }
    let c = |s: &str| CString::new(s).unwrap_or_default();
    Ok(Ready {
        program: c(&program),
        argv: p.args.iter().map(|a| c(a)).collect(),
        envp: p.env.iter().map(|e| c(e)).collect(),
        arg0: arg0.clone(),
    })
}

impl Ready {
    /// Executes the program; returns only on failure, with Docker's exit code.
    pub fn exec(self) -> (i32, String) {
        let arg0 = &self.arg0;
        match nix::unistd::execve(&self.program, &self.argv, &self.envp).err() {
            Some(nix::errno::Errno::ENOENT) => (127, format!("exec: \"{arg0}\": no such file or directory")),
            Some(e) => (126, format!("exec: \"{arg0}\": {}", e.desc().to_lowercase())),
            None => (1, "exec returned".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app\napp:x:1000:\nvideo:x:44:app,other\n";

    #[test]
    fn users_as_docker_resolves_them() {
        assert_eq!(
            resolve_user("", &[], PASSWD, GROUP).unwrap(),
            User {
                uid: 0,
                gid: 0,
                groups: vec![0],
                home: "/root".into()
            }
        );
        assert_eq!(
            resolve_user("app", &[], PASSWD, GROUP).unwrap(),
            User {
                uid: 1000,
                gid: 1000,
                groups: vec![1000, 10, 44],
                home: "/home/app".into()
            }
        );
        assert_eq!(
            resolve_user("1000:wheel", &["video".into()], PASSWD, GROUP)
                .unwrap()
                .groups,
            vec![10, 44]
        );
        assert_eq!(
            resolve_user("4242:4343", &[], PASSWD, GROUP).unwrap(),
            User {
                uid: 4242,
                gid: 4343,
                groups: vec![4343],
                home: "/".into()
            }
        );
        assert!(resolve_user("nope", &[], PASSWD, GROUP)
            .unwrap_err()
            .to_string()
            .contains("unable to find user nope"));
        assert!(resolve_user("app:nogroup", &[], PASSWD, GROUP)
            .unwrap_err()
            .to_string()
            .contains("unable to find group nogroup"));
    }

    #[test]
    fn capability_sets() {
        let d = capabilities(&[], &[], false).unwrap();
        assert_eq!(d.len(), DEFAULT_CAPS.len());
        let c = capabilities(&["NET_ADMIN".into()], &["chown".into(), "CAP_KILL".into()], false).unwrap();
        assert!(
            c.contains(&"CAP_NET_ADMIN".to_string())
                && !c.contains(&"CAP_CHOWN".to_string())
                && !c.contains(&"CAP_KILL".to_string())
        );
        assert_eq!(
            capabilities(&["NET_RAW".into()], &["ALL".into()], false).unwrap(),
            vec!["CAP_NET_RAW".to_string()]
        );
        // ALL and privileged: what this process's bounding set holds, no more.
        let bounding = caps::read(None, caps::CapSet::Bounding).unwrap();
        for every in [capabilities(&["ALL".into()], &[], false), capabilities(&[], &[], true)] {
            let every = every.unwrap();
            assert_eq!(every.len(), bounding.len(), "{every:?}");
            assert!(every.iter().all(|c| bounding.iter().any(|b| b.to_string() == *c)));
        }
        assert!(capabilities(&["FLY".into()], &[], false).is_err());
    }

    #[test]
    fn program_lookup_and_limits() {
        assert_eq!(find_program("/bin/sh", &[]).unwrap(), "/bin/sh");
        assert_eq!(
            find_program("sh", &["PATH=/nonexistent:/bin".into()]).unwrap(),
            "/bin/sh"
        );
        assert_eq!(
            find_program("no-such-program", &["PATH=/bin".into()]).unwrap_err().0,
            127
        );
        assert!(check_rlimits(&[("nofile".into(), 10, u64::MAX - 1)])
            .unwrap_err()
            .to_string()
            .contains("above the host's"));
        assert!(check_rlimits(&[("bogus".into(), 1, 1)]).is_err());
    }
}
