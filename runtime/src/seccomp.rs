//! Seccomp: Docker's default policy for containers, and custom profiles in Docker's JSON
//! format, compiled with seccompiler and applied by the workload's process just before
//! `execve` (see `super::process`).

use std::collections::BTreeMap;

/// The syscalls Docker's default profile refuses (EPERM), among those up to
/// [`NEWEST_KNOWN`], each with the capabilities that lift the refusal, as Docker's
/// profile lifts it for a container given one of them (`cap_add`): none for those it
/// refuses whatever the capabilities.
fn refused() -> Vec<(i64, &'static [&'static str])> {
    const NONE: &[&str] = &[];
    const ADMIN: &[&str] = &["CAP_SYS_ADMIN"];
    const NICE: &[&str] = &["CAP_SYS_NICE"];
    const TIME: &[&str] = &["CAP_SYS_TIME"];
    const MODULE: &[&str] = &["CAP_SYS_MODULE"];
    #[allow(unused_mut)]
    let mut v: Vec<(i64, &'static [&'static str])> = vec![
        (libc::SYS_add_key, NONE),
        (libc::SYS_keyctl, NONE),
        (libc::SYS_request_key, NONE),
        (libc::SYS_kexec_file_load, NONE),
        (libc::SYS_kexec_load, NONE),
        (libc::SYS_userfaultfd, NONE),
        // io_uring bypasses seccomp for the operations it performs (Docker 25 and on).
        (libc::SYS_io_uring_setup, NONE),
        (libc::SYS_io_uring_enter, NONE),
        (libc::SYS_io_uring_register, NONE),
        (libc::SYS_acct, &["CAP_SYS_PACCT"]),
        (libc::SYS_bpf, &["CAP_SYS_ADMIN", "CAP_BPF"]),
        (libc::SYS_perf_event_open, &["CAP_SYS_ADMIN", "CAP_PERFMON"]),
        (libc::SYS_clock_adjtime, TIME),
        (libc::SYS_clock_settime, TIME),
        (libc::SYS_settimeofday, TIME),
        (libc::SYS_delete_module, MODULE),
        (libc::SYS_finit_module, MODULE),
        (libc::SYS_init_module, MODULE),
        (libc::SYS_get_mempolicy, NICE),
        (libc::SYS_mbind, NICE),
        (libc::SYS_set_mempolicy, NICE),
        (libc::SYS_move_pages, NICE),
        (libc::SYS_kcmp, &["CAP_SYS_PTRACE"]),
        (libc::SYS_open_by_handle_at, &["CAP_DAC_READ_SEARCH"]),
        (libc::SYS_reboot, &["CAP_SYS_BOOT"]),
        (libc::SYS_syslog, &["CAP_SYSLOG"]),
        (libc::SYS_vhangup, &["CAP_SYS_TTY_CONFIG"]),
        (libc::SYS_lookup_dcookie, ADMIN),
        (libc::SYS_mount, ADMIN),
        (libc::SYS_umount2, ADMIN),
        (libc::SYS_pivot_root, ADMIN),
        (libc::SYS_name_to_handle_at, ADMIN),
        (libc::SYS_quotactl, ADMIN),
        (libc::SYS_quotactl_fd, ADMIN),
        (libc::SYS_setns, ADMIN),
        (libc::SYS_unshare, ADMIN),
        (libc::SYS_swapon, ADMIN),
        (libc::SYS_swapoff, ADMIN),
        (libc::SYS_fanotify_init, ADMIN),
        (libc::SYS_fsopen, ADMIN),
        (libc::SYS_fsconfig, ADMIN),
        (libc::SYS_fsmount, ADMIN),
        (libc::SYS_fspick, ADMIN),
        (libc::SYS_move_mount, ADMIN),
        (libc::SYS_open_tree, ADMIN),
        (libc::SYS_mount_setattr, ADMIN),
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        (libc::SYS_ioperm, &["CAP_SYS_RAWIO"][..]),
        (libc::SYS_iopl, &["CAP_SYS_RAWIO"][..]),
        (libc::SYS_nfsservctl, NONE),
        (libc::SYS_sysfs, NONE),
        (libc::SYS__sysctl, NONE),
        (libc::SYS_uselib, NONE),
        (libc::SYS_ustat, NONE),
    ]);
    v
}

/// The `personality` values Docker's profile allows: `PER_LINUX`, `PER_LINUX32`,
/// `UNAME26`, `PER_LINUX32|UNAME26`, and the query `0xffffffff`.
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// `AF_VSOCK`: sockets to the hypervisor are refused, as by Docker's profile.
const AF_VSOCK: u64 = 40;

/// The newest syscall whose place in the policy was decided (`mseal`, Linux 6.10). From
/// Linux 5.1 on, new syscalls have the same number on every architecture.
const NEWEST_KNOWN: u32 = 462;

/// The namespace flags `clone` may not take without `CAP_SYS_ADMIN`: `CLONE_NEWNS`,
/// `NEWCGROUP`, `NEWUTS`, `NEWIPC`, `NEWUSER`, `NEWPID` and `NEWNET`.
const CLONE_NAMESPACES: [u64; 7] = [
    0x0002_0000,
    0x0200_0000,
    0x0400_0000,
    0x0800_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
];

/// A seccomp profile that cannot be compiled or installed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SeccompError {
    /// A Docker JSON profile this runtime cannot read.
    #[error("seccomp profile: {0}")]
    Profile(String),
    /// The filter compiler or the kernel refused the program.
    #[error("seccomp: {0}")]
    Compile(String),
    #[error("a seccomp filter of {0} instructions is too long")]
    TooLong(usize),
    #[error("applying seccomp: {0}")]
    Install(String),
}

/// Installs `prog` on the calling thread. Unlike seccompiler's `apply_filter`, which
/// always sets `no_new_privs` first, this leaves it as it is: the caller still holds
/// `CAP_SYS_ADMIN`, which lets the kernel take a filter without it, so that
/// `no_new_privs` stays off unless `no-new-privileges:true` asks for it (as runc does).
pub fn install(prog: &seccompiler::BpfProgram) -> Result<(), SeccompError> {
    let mut filter: Vec<libc::sock_filter> = prog
        .iter()
        .map(|f| libc::sock_filter {
            code: f.code,
            jt: f.jt,
            jf: f.jf,
            k: f.k,
        })
        .collect();
    let len = u16::try_from(filter.len()).map_err(|_| SeccompError::TooLong(filter.len()))?;
    let fprog = libc::sock_fprog {
        len,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: seccomp reads one sock_fprog and the instructions it points to, which
    // outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(SeccompError::Install(std::io::Error::last_os_error().to_string()));
    }
    Ok(())
}

/// The BPF program of the default profile for a process with the capabilities `caps`
/// (`CAP_…` names), with the effect of Docker's allow-list:
/// - the syscalls of [`refused`] fail with EPERM unless a capability lifts them, and so
///   do `clone` with a namespace flag and `clone3` (ENOSYS, which a filter cannot read
///   the flags of, so that the C library falls back to `clone`) without
///   `CAP_SYS_ADMIN`, `personality` but for [`PERSONALITIES`], and `socket(AF_VSOCK)`;
/// - a syscall newer than [`NEWEST_KNOWN`] (and any x32 one) fails with ENOSYS, as runc
///   makes Docker's profile answer for syscalls it does not know, rather than being
///   allowed unreviewed.
///
/// The ENOSYS answers are a short hand-written prefix before seccompiler's program,
/// because seccompiler matches single syscall numbers and one action per filter:
/// listing every number above the newest known would make every syscall walk hundreds
/// of comparisons.
pub fn default_seccomp(caps: &[String]) -> Result<seccompiler::BpfProgram, SeccompError> {
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
    };
    let arch: TargetArch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| SeccompError::Compile(format!("{e:?}")))?;
    let has = |c: &str| caps.iter().any(|k| k == c);
    let err = |e: seccompiler::BackendError| SeccompError::Compile(e.to_string());
    let cond = |index, op, value| SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value).map_err(err);
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = refused()
        .into_iter()
        .filter(|(_, lifted_by)| !lifted_by.iter().any(|c| has(c)))
        .map(|(n, _)| (n, vec![]))
        .collect();
    let admin = has("CAP_SYS_ADMIN");
    if !admin {
        let clone_rules = CLONE_NAMESPACES
            .iter()
            .map(|flag| SeccompRule::new(vec![cond(0, SeccompCmpOp::MaskedEq(*flag), *flag)?]).map_err(err))
            .collect::<Result<Vec<_>, SeccompError>>()?;
        rules.insert(libc::SYS_clone, clone_rules);
    }
    // One rule whose conditions must all hold: none of the allowed values.
    let personality = PERSONALITIES
        .iter()
        .map(|v| cond(0, SeccompCmpOp::Ne, *v))
        .collect::<Result<Vec<_>, SeccompError>>()?;
    rules.insert(libc::SYS_personality, vec![SeccompRule::new(personality).map_err(err)?]);
    rules.insert(
        libc::SYS_socket,
        vec![SeccompRule::new(vec![cond(0, SeccompCmpOp::Eq, AF_VSOCK)?]).map_err(err)?],
    );
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(err)?;
    let program: seccompiler::BpfProgram = filter.try_into().map_err(err)?;
    let audit_arch = match std::env::consts::ARCH {
        "x86_64" => 62 | 0x8000_0000 | 0x4000_0000,
        "aarch64" => 183 | 0x8000_0000 | 0x4000_0000,
        other => return Err(SeccompError::Compile(format!("no default profile for {other}"))),
    };
    let clone3 = (!admin).then_some(libc::SYS_clone3 as u32);
    let mut full = unknown_syscalls_prefix(audit_arch, clone3);
    full.extend(program);
    Ok(full)
}

/// `ret ERRNO(ENOSYS)` for syscalls above [`NEWEST_KNOWN`] and for `clone3` (when
/// given), then on to the program that follows (which checks the architecture itself
/// and kills a process of another one).
fn unknown_syscalls_prefix(audit_arch: u32, clone3: Option<u32>) -> Vec<seccompiler::sock_filter> {
    // Classic BPF opcodes (linux/filter.h).
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const JGT_K: u16 = 0x25;
    const JA: u16 = 0x05;
    const RET_K: u16 = 0x06;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    let op = |code, jt, jf, k| seccompiler::sock_filter { code, jt, jf, k };
    // seccomp_data: the syscall number at offset 0, the architecture at 4. Jumps count
    // the instructions after the current one.
    let mut checks = vec![op(JGT_K, 0, 0, NEWEST_KNOWN)]; // newer than known, or x32
    if let Some(nr) = clone3 {
        checks.push(op(JEQ_K, 0, 0, nr));
    }
    let n = checks.len() as u8;
    // Each check jumps, when true, over the checks after it and the `ja` to the `ret`.
    for (i, c) in checks.iter_mut().enumerate() {
        c.jt = n - 1 - i as u8 + 1;
    }
    let mut p = vec![
        op(LD_W_ABS, 0, 0, 4),
        op(JEQ_K, 0, n + 3, audit_arch), // another architecture: on to the program
        op(LD_W_ABS, 0, 0, 0),
    ];
    p.extend(checks);
    p.push(op(JA, 0, 0, 1)); // known: on to the program
    p.push(op(RET_K, 0, 0, SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
    p
}

/// A seccomp profile in Docker's JSON format, compiled through seccompiler's JSON
/// frontend (which knows the syscall names of each architecture). Supported: the
/// default action, syscall groups with one action shared by all groups, `errnoRet`, and
/// argument conditions. `includes`/`excludes` (by capability or architecture) are
/// refused by name. Names this architecture does not have are skipped, as Docker does.
pub fn docker_profile(json: &str) -> Result<seccompiler::BpfProgram, SeccompError> {
    use serde_json::{json, Value};
    let bad = SeccompError::Profile;
    let v: Value = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    let action = |name: &str, ret: Option<u64>| -> Result<Value, SeccompError> {
        Ok(match name {
            "SCMP_ACT_ALLOW" => json!("allow"),
            "SCMP_ACT_ERRNO" => json!({ "errno": ret.unwrap_or(libc::EPERM as u64) }),
            "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => json!("kill_thread"),
            "SCMP_ACT_KILL_PROCESS" => json!("kill_process"),
            "SCMP_ACT_TRAP" => json!("trap"),
            "SCMP_ACT_LOG" => json!("log"),
            "SCMP_ACT_TRACE" => json!({ "trace": ret.unwrap_or(0) }),
            other => return Err(bad(format!("unknown action {other:?}"))),
        })
    };
    let default = action(v["defaultAction"].as_str().unwrap_or(""), v["defaultErrnoRet"].as_u64())?;
    let mut match_action: Option<Value> = None;
    let mut rules: Vec<(String, Value)> = Vec::new();
    for group in v["syscalls"].as_array().into_iter().flatten() {
        for key in ["includes", "excludes"] {
            if group
                .get(key)
                .is_some_and(|i| i.as_object().is_some_and(|o| !o.is_empty()))
            {
                return Err(bad(format!("`{key}` in syscall groups is not implemented yet")));
            }
        }
        let a = action(group["action"].as_str().unwrap_or(""), group["errnoRet"].as_u64())?;
        match &match_action {
            None => match_action = Some(a.clone()),
            Some(m) if *m != a => {
                return Err(bad(
                    "syscall groups with different actions are not implemented yet".into()
                ))
            }
            _ => {}
        }
        let mut args = Vec::new();
        for arg in group["args"].as_array().into_iter().flatten() {
            let (val, val2) = (
                arg["value"].as_u64().unwrap_or(0),
                arg["valueTwo"].as_u64().unwrap_or(0),
            );
            let (op, val) = match arg["op"].as_str().unwrap_or("") {
                "SCMP_CMP_EQ" => (json!("eq"), val),
                "SCMP_CMP_NE" => (json!("ne"), val),
                "SCMP_CMP_LT" => (json!("lt"), val),
                "SCMP_CMP_LE" => (json!("le"), val),
                "SCMP_CMP_GT" => (json!("gt"), val),
                "SCMP_CMP_GE" => (json!("ge"), val),
                "SCMP_CMP_MASKED_EQ" => (json!({ "masked_eq": val }), val2),
                other => return Err(bad(format!("unknown comparison {other:?}"))),
            };
            args.push(json!({ "index": arg["index"].as_u64().unwrap_or(0), "type": "qword", "op": op, "val": val }));
        }
        for name in group["names"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str())
        {
            let rule = if args.is_empty() {
                json!({ "syscall": name })
            } else {
                json!({ "syscall": name, "args": args })
            };
            rules.push((name.to_string(), rule));
        }
    }
    let arch: seccompiler::TargetArch = std::env::consts::ARCH.try_into().map_err(|e| bad(format!("{e:?}")))?;
    // Skip names this architecture does not know, one compile at a time.
    loop {
        let doc = json!({ "main": { "mismatch_action": default, "match_action": match_action.clone().unwrap_or(json!("allow")), "filter": rules.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>() } });
        match seccompiler::compile_from_json(doc.to_string().as_bytes(), arch) {
            Ok(mut map) => return map.remove("main").ok_or_else(|| bad("no filter compiled".into())),
            // seccompiler keeps its frontend's error type private: read the message.
            Err(e) if e.to_string().contains("Invalid syscall name: ") => {
                let msg = e.to_string();
                let name = msg
                    .split("Invalid syscall name: ")
                    .nth(1)
                    .and_then(|r| r.split(" for given arch").next())
                    .unwrap_or("")
                    .to_string();
                let before = rules.len();
                rules.retain(|(n, _)| *n != name);
                if rules.len() == before {
                    return Err(bad(format!("unknown syscall {name:?}")));
                }
            }
            Err(e) => return Err(bad(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_and_custom_profiles_compile() {
        assert!(default_seccomp(&[]).is_ok());
        let profile = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat","no_such_syscall_anywhere"],"action":"SCMP_ACT_ERRNO"},{"names":["personality"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]}]}"#;
        assert!(docker_profile(profile).is_ok());
        assert!(docker_profile(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"},{"names":["rmdir"],"action":"SCMP_ACT_KILL"}]}"#).unwrap_err().to_string().contains("different actions"));
        assert!(docker_profile(r#"{"defaultAction":"SCMP_ACT_NOPE"}"#).is_err());
        assert!(docker_profile("not json").is_err());
    }

    #[test]
    fn the_prefix_sends_unknown_syscalls_and_clone3_to_enosys() {
        // Run the prefix as the kernel would, on (arch, nr): where does it end?
        let p = unknown_syscalls_prefix(7, Some(435));
        let run = |arch: u32, nr: u32| -> Option<u32> {
            let (mut pc, mut acc) = (0usize, 0u32);
            while pc < p.len() {
                let i = &p[pc];
                pc += 1;
                match i.code {
                    0x20 => acc = if i.k == 4 { arch } else { nr },
                    0x15 => pc += if acc == i.k { i.jt } else { i.jf } as usize,
                    0x25 => pc += if acc > i.k { i.jt } else { i.jf } as usize,
                    0x05 => pc += i.k as usize,
                    0x06 => return Some(i.k),
                    _ => unreachable!(),
                }
            }
            // Fell through to the program after it: exactly at its end.
            assert_eq!(pc, p.len());
            None
        };
        let enosys = Some(0x0005_0000 | libc::ENOSYS as u32);
        assert_eq!(run(7, 0), None);
        assert_eq!(run(7, 462), None);
        assert_eq!(run(7, 463), enosys);
        assert_eq!(run(7, 0x4000_0001), enosys);
        assert_eq!(run(7, 435), enosys);
        assert_eq!(run(8, 999), None, "another architecture is the program's to refuse");
        // Without the clone3 check (CAP_SYS_ADMIN), the rest holds.
        let p2 = unknown_syscalls_prefix(7, None);
        assert_eq!(p2.len(), p.len() - 1);
    }

    /// The default profile as the kernel applies it, in a forked child (which only makes
    /// syscalls and exits; the test runs with every capability, so only the filter
    /// refuses). Returns the step that went otherwise than expected, 0 if none.
    fn in_child(caps: &[&str], steps: fn() -> i32) -> i32 {
        let caps: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
        let prog = default_seccomp(&caps).unwrap();
        // SAFETY: the child makes only syscalls (no allocation) and leaves with _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: prctl with integer arguments.
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            let code = if seccompiler::apply_filter(&prog).is_err() {
                100
            } else {
                steps()
            };
            // SAFETY: leaving the child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "{status}");
        libc::WEXITSTATUS(status)
    }

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    /// Whether a syscall failed with `e`.
    fn failed_with(r: libc::c_long, e: i32) -> bool {
        r == -1 && errno() == e
    }

    #[test]
    fn the_kernel_applies_the_default_profile() {
        // Default capabilities: a syscall newer than the known ones (463, `setxattrat`,
        // which without the filter fails otherwise) and clone3 get ENOSYS; unshare,
        // clone with a namespace flag, an odd personality and a vsock socket get EPERM;
        // the rest works.
        let code = in_child(&[], || {
            // SAFETY: plain syscalls with integer arguments (pointers null).
            unsafe {
                let steps: [(bool, i32); 8] = [
                    (failed_with(libc::syscall(463, 0, 0, 0, 0, 0, 0), libc::ENOSYS), 1),
                    (failed_with(libc::syscall(libc::SYS_clone3, 0, 0), libc::ENOSYS), 2),
                    (
                        failed_with(libc::unshare(libc::CLONE_NEWUTS) as libc::c_long, libc::EPERM),
                        3,
                    ),
                    (
                        failed_with(
                            libc::syscall(libc::SYS_clone, (libc::CLONE_NEWNET | libc::SIGCHLD) as u64, 0, 0, 0, 0),
                            libc::EPERM,
                        ),
                        4,
                    ),
                    (
                        failed_with(libc::syscall(libc::SYS_personality, 0x0040_0000u64), libc::EPERM),
                        5,
                    ),
                    (libc::syscall(libc::SYS_personality, 0xffff_ffffu64) >= 0, 6),
                    (
                        failed_with(libc::socket(40, libc::SOCK_STREAM, 0) as libc::c_long, libc::EPERM),
                        7,
                    ),
                    (libc::getppid() > 0, 8),
                ];
                steps.iter().find(|(ok, _)| !ok).map_or(0, |(_, n)| *n)
            }
        });
        assert_eq!(code, 0, "the step that went otherwise");
        // CAP_SYS_ADMIN lifts the namespace refusals, as in Docker's profile.
        let code = in_child(&["CAP_SYS_ADMIN"], || {
            // SAFETY: as above; the new UTS namespace is the child's alone.
            unsafe {
                if libc::unshare(libc::CLONE_NEWUTS) != 0 {
                    return 1;
                }
                if failed_with(libc::syscall(libc::SYS_clone3, 0, 0), libc::ENOSYS) {
                    return 2;
                }
                if !failed_with(libc::syscall(463, 0, 0, 0, 0, 0, 0), libc::ENOSYS) {
                    return 3;
                }
            }
            0
        });
        assert_eq!(code, 0, "the step that went otherwise");
    }
}
