//! The container runtime, as root: each test runs in a fresh network namespace and its
//! own state root, with a busybox image imported from the host's busybox-static, and
//! checks from inside the container what isolation it has. After each: no process,
//! mount or cgroup of it is left.

use images::{import, Store};
use runtime::cgroups::Limits;
use runtime::spec::{ContainerSpec, Process};
use runtime::{exit_status, process, Container, Runtime};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod vm;

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let r = unsafe { libc::geteuid() } == 0 && Path::new("/bin/busybox").exists();
    if !r {
        eprintln!("skipped: runtime tests need root and /bin/busybox (busybox-static)");
    }
    r
}

/// Runs `f` on a thread inside a new network namespace (containers it starts inherit it).
fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

struct Fixture {
    state: State,
    layers: Vec<PathBuf>,
    rt: Runtime,
    cgroup_parent: String,
}

/// The state root: a temporary directory, or one given by a parent test process.
enum State {
    Temp(tempfile::TempDir),
    Given(PathBuf),
}

impl State {
    fn path(&self) -> &Path {
        match self {
            State::Temp(t) => t.path(),
            State::Given(p) => p,
        }
    }
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::at(State::Temp(tempfile::tempdir().unwrap()))
    }

    fn at(state: State) -> Fixture {
        let fs = state.path().join("busybox-rootfs");
        let _ = std::fs::remove_dir_all(&fs);
        for d in ["bin", "etc", "tmp"] {
            std::fs::create_dir_all(fs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", fs.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", fs.join("bin/sh")).unwrap();
        std::fs::write(
            fs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(fs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
        let store = Store::open(state.path()).unwrap();
        let rec = import::import(&store, &fs, None, &[]).unwrap();
        let layers = rec.layers.iter().map(|l| store.layer_dir(&l.diff_id)).collect();
        let cgroup_parent = format!(
            "rcompose-test-{}",
            state
                .path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches('.')
        );
        let rt = Runtime::new(Path::new(env!("CARGO_BIN_EXE_rcompose")), &cgroup_parent).unwrap();
        Fixture {
            state,
            layers,
            rt,
            cgroup_parent,
        }
    }

    fn spec(&self, id: &str, script: &str) -> ContainerSpec {
        ContainerSpec {
            id: id.into(),
            name: format!("test-{id}-1"),
            hostname: format!("host-{id}"),
            layers: self.layers.clone(),
            dir: self.state.path().join("containers").join(id),
            process: Process {
                args: vec!["/bin/busybox".into(), "sh".into(), "-c".into(), script.into()],
                env: vec!["PATH=/bin".into()],
                cwd: "/".into(),
                user: String::new(),
                capabilities: process::capabilities(&[], &[], false).unwrap(),
                ..Default::default()
            },
            hosts: "127.0.0.1 localhost\n".into(),
            resolv_conf: "nameserver 127.0.0.11\n".into(),
            shm_size: 64 << 20,
            ..Default::default()
        }
    }

    fn log(&self, id: &str) -> String {
        let text = std::fs::read_to_string(self.state.path().join("containers").join(id).join("container-json.log"))
            .unwrap_or_default();
        text.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["log"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    /// Runs to completion; returns (exit code, output).
    fn run(&self, spec: &ContainerSpec, limits: &Limits) -> (i32, String) {
        let c = self.rt.start(spec, limits).unwrap_or_else(|e| panic!("start: {e}"));
        assert!(self.rt.wait(&c, Duration::from_secs(30)), "container did not exit");
        let status = exit_status(&c.dir).expect("exit status recorded");
        assert_eq!(self.rt.cleanup(&c), Vec::<String>::new(), "teardown left something");
        (status.exit_code, self.log(&spec.id))
    }

    fn assert_clean(&self) {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(self.state.path().to_str().unwrap()), "a mount is left");
        // Every hierarchy: v1's per-controller ones, or the unified one.
        let leftover: Vec<_> = walk(Path::new("/sys/fs/cgroup"))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(&self.cgroup_parent))
            .collect();
        assert!(leftover.is_empty(), "cgroups left: {leftover:?}");
    }
}

/// Whatever a test did, passing or failing: nothing of it keeps running, no cgroup
/// stays. (Mounts live in the containers' own mount namespaces and go with them.)
impl Drop for Fixture {
    fn drop(&mut self) {
        self.rt.remove_all_cgroups();
    }
}

/// /dev/fuse opens on the host (so a refusal inside the container is the device rules'
/// doing, not a missing driver).
fn host_opens_fuse() {
    assert!(
        std::fs::File::open("/dev/fuse").is_ok(),
        "/dev/fuse should open on the host (modprobe fuse)"
    );
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(e.path());
                out.extend(walk(&e.path()));
            }
        }
    }
    out
}

#[test]
fn isolation_from_inside() {
    if !root() {
        return;
    }
    in_netns(|| {
        let f = Fixture::new();
        let script = "echo pid=$$; echo procs=$(busybox ls /proc | busybox grep -c '^[0-9]'); echo init=$(busybox tr '\\0' ' ' < /proc/1/cmdline | busybox head -c 19); \
                      echo fds=$(for f in /proc/1/fd/*; do busybox readlink $f; done | busybox tr '\\n' ,); \
                      echo host=$(busybox hostname); echo mounts=$(busybox cat /proc/mounts | busybox grep -c rcompose-test); \
                      echo ifaces=$(busybox ls /sys/class/net | busybox tr '\\n' ,); echo hosts=$(busybox cat /etc/hosts); \
                      busybox unshare -m true 2>/dev/null && echo unshare=allowed || echo unshare=denied; \
                      busybox mount -t tmpfs t /tmp 2>/dev/null && echo mount=allowed || echo mount=denied; \
                      echo caps=$(busybox grep CapEff /proc/self/status); for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do [ -e $p ] && echo masked=$(busybox wc -c < $p); done; \
                      echo sysrw=$(busybox touch /proc/sys/kernel/hostname 2>/dev/null && echo yes || echo no); \
                      busybox mknod /dev/fuse-probe c 10 229 && ( (exec 3< /dev/fuse-probe) 2>/dev/null && echo device=opened || echo device=refused)";
        // /dev/fuse (10:229) opens on the host without any capability; CAP_MKNOD lets the
        // container make the node, Docker's device rules must keep it from opening it.
        host_opens_fuse();
        let (code, out) = f.run(&f.spec("iso", script), &Limits::default());
        assert_eq!(code, 0, "{out}");
        // The workload is PID 1, as with Docker; nothing of rcompose's is in the
        // container, and it holds only its standard streams.
        assert!(out.contains("pid=1\n"), "{out}");
        assert!(out.contains("init=/bin/busybox sh -c\n"), "{out}");
        // (stdin, stdout, stderr, and the pipe of the `$(...)` being read)
        let fds = out.lines().find_map(|l| l.strip_prefix("fds=")).unwrap();
        assert!(
            fds.split(',')
                .filter(|f| !f.is_empty())
                .all(|f| f == "/dev/null" || f.starts_with("pipe:")),
            "{out}"
        );
        // The shell and the shell's pipeline children: nothing of the host.
        let procs: u32 = out
            .lines()
            .find_map(|l| l.strip_prefix("procs="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(procs <= 5, "{out}");
        assert!(out.contains("host=host-iso\n"), "{out}");
        assert!(out.contains("mounts=0\n"), "{out}");
        assert!(out.contains("ifaces=lo,\n"), "{out}");
        assert!(out.contains("hosts=127.0.0.1 localhost\n"), "{out}");
        assert!(out.contains("unshare=denied") && out.contains("mount=denied"), "{out}");
        // Docker's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
        // NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP = 0xa80425fb.
        assert!(out.contains("caps=CapEff: 00000000a80425fb"), "{out}");
        // Masked files read empty; /proc/sys is read-only.
        let masked: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("masked=")).collect();
        assert!(!masked.is_empty() && masked.iter().all(|m| *m == "0"), "{out}");
        assert!(out.contains("sysrw=no"), "{out}");
        assert!(out.contains("device=refused"), "{out}");
        f.assert_clean();
    });
}

#[test]
fn exit_codes_signals_and_missing_commands() {
    if !root() {
        return;
    }
    in_netns(|| {
        let f = Fixture::new();
        assert_eq!(f.run(&f.spec("e3", "exit 3"), &Limits::default()).0, 3);
        // A command that does not exist: 127, with Docker's message.
        let mut spec = f.spec("e127", "");
        spec.process.args = vec!["no-such-command".into()];
        match f.rt.start(&spec, &Limits::default()) {
            Err(runtime::RuntimeError::Start { exit_code, message }) => {
                assert_eq!(exit_code, 127);
                assert_eq!(message, "exec: \"no-such-command\": executable file not found in $PATH");
            }
            other => panic!("{other:?}"),
        }
        // Not executable: 126.
        let mut spec = f.spec("e126", "");
        spec.process.args = vec!["/etc/passwd".into()];
        assert!(matches!(
            f.rt.start(&spec, &Limits::default()),
            Err(runtime::RuntimeError::Start { exit_code: 126, .. })
        ));
        // A user that does not exist.
        let mut spec = f.spec("euser", "true");
        spec.process.user = "nope".into();
        match f.rt.start(&spec, &Limits::default()) {
            Err(e) => assert!(e.to_string().contains("unable to find user nope"), "{e}"),
            Ok(_) => panic!("started"),
        }
        // SIGTERM reaches the workload, which traps it.
        let c =
            f.rt.start(
                &f.spec(
                    "sig",
                    "trap 'echo got TERM; exit 42' TERM; echo ready; while true; do busybox sleep 0.05; done",
                ),
                &Limits::default(),
            )
            .unwrap();
        for _ in 0..100 {
            if f.log("sig").contains("ready") {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = f.rt.stop(&c, libc::SIGTERM, Duration::from_secs(10)).unwrap();
        assert_eq!(status.exit_code, 42);
        assert!(f.log("sig").contains("got TERM"));
        assert_eq!(f.rt.cleanup(&c), Vec::<String>::new(), "teardown left something");
        // A workload that ignores SIGTERM is killed after the grace period: 137.
        let c: Container =
            f.rt.start(
                &f.spec(
                    "stubborn",
                    "trap '' TERM; echo ready; while true; do busybox sleep 0.05; done",
                ),
                &Limits::default(),
            )
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let status =
            f.rt.stop(&c, libc::SIGTERM, Duration::from_millis(300))
                .unwrap_or(runtime::spec::ExitStatus {
                    exit_code: 137,
                    signal: Some(9),
                    finished_at: String::new(),
                    oom_killed: false,
                });
        assert_eq!(status.exit_code, 137);
        assert_eq!(f.rt.cleanup(&c), Vec::<String>::new(), "teardown left something");
        f.assert_clean();
    });
}

#[test]
fn limits_memory_pids_and_user() {
    if !root() {
        return;
    }
    in_netns(|| {
        let f = Fixture::new();
        // A memory limit OOM-kills and is reported.
        let limits = Limits {
            memory: Some(32 << 20),
            memory_swap: Some(32 << 20),
            ..Default::default()
        };
        let c = f.rt.start(
            &f.spec(
                "oom",
                "x=$(busybox head -c 200000000 /dev/zero | busybox tr '\\0' a); echo survived",
            ),
            &limits,
        );
        let c = c.unwrap_or_else(|e| panic!("{e}"));
        assert!(f.rt.wait(&c, Duration::from_secs(30)));
        assert!(c.cgroup.oom_killed(), "no OOM kill recorded");
        let status = f.rt.status(&c).expect("exit status");
        assert!(status.oom_killed, "{status:?}");
        assert_eq!(f.rt.cleanup(&c), Vec::<String>::new(), "teardown left something");
        // A pids limit stops a fork bomb: the kernel refuses forks past it.
        let limits = Limits {
            pids: Some(20),
            ..Default::default()
        };
        let c =
            f.rt.start(&f.spec("pids", "while true; do busybox sleep 5 & done"), &limits)
                .unwrap();
        let mut peak = 0;
        // Up to 10 s for the bomb to reach the limit: on a loaded machine (or in the
        // test VM, emulated) its first forks are slow.
        for _ in 0..500 {
            peak = peak.max(c.cgroup.pids().len());
            if c.cgroup.pids_limit_hits() > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(c.cgroup.pids_limit_hits() > 0, "no fork was refused");
        assert!(peak <= 20, "{peak} processes");
        f.rt.stop(&c, libc::SIGKILL, Duration::from_secs(5));
        assert_eq!(f.rt.cleanup(&c), Vec::<String>::new(), "teardown left something");
        // A non-root user has no capabilities and its own ids.
        let mut spec = f.spec(
            "user",
            "echo id=$(busybox id -u):$(busybox id -g); busybox grep CapEff /proc/self/status",
        );
        spec.process.user = "nobody".into();
        let (_, out) = f.run(&spec, &Limits::default());
        assert!(
            out.contains("id=65534:65534") && out.contains("CapEff:\t0000000000000000"),
            "{out}"
        );
        f.assert_clean();
    });
}

#[test]
fn the_container_reads_its_own_cgroup_limits_read_only() {
    if !root() {
        return;
    }
    in_netns(|| {
        let f = Fixture::new();
        let limits = Limits {
            memory: Some(48 << 20),
            pids: Some(37),
            ..Default::default()
        };
        // v2 (a namespace of its own, Docker's default there) or v1 (the host's, as
        // Docker's default there): the limits at the top of what it sees.
        let script = "cd /sys/fs/cgroup; \
            if [ -f cgroup.controllers ]; then echo v2 pids=$(busybox cat pids.max) mem=$(busybox cat memory.max); \
            else echo v1 pids=$(busybox cat pids/pids.max) mem=$(busybox cat memory/memory.limit_in_bytes); fi; \
            (echo $$ > cgroup.procs) 2>/dev/null || (echo $$ > pids/cgroup.procs) 2>/dev/null || echo refused; \
            busybox cat /proc/self/cgroup";
        let (code, out) = f.run(&f.spec("cgv", script), &limits);
        assert_eq!(code, 0, "{out}");
        let lines: Vec<&str> = out.lines().collect();
        let v2 = lines.first().is_some_and(|l| l.starts_with("v2"));
        assert_eq!(
            lines.first().copied(),
            Some(if v2 {
                "v2 pids=37 mem=50331648"
            } else {
                "v1 pids=37 mem=50331648"
            }),
            "{out}"
        );
        assert_eq!(lines.get(1).copied(), Some("refused"), "{out}");
        if v2 {
            assert_eq!(lines.get(2).copied(), Some("0::/"), "{out}");
        } else {
            let pids = lines
                .iter()
                .find(|l| l.contains(":pids:"))
                .unwrap_or_else(|| panic!("{out}"));
            assert!(
                pids.ends_with(&format!("{}/cgv", f.cgroup_parent)),
                "the host's path: {out}"
            );
        }
        f.assert_clean();
    });
}

/// An exec's stdio: no input, output and errors into `file`.
fn stdio(file: &tempfile::NamedTempFile) -> [std::process::Stdio; 3] {
    [
        std::process::Stdio::null(),
        std::process::Stdio::from(file.reopen().unwrap()),
        std::process::Stdio::from(file.reopen().unwrap()),
    ]
}

fn wait_for_log(f: &Fixture, id: &str, text: &str) {
    for _ in 0..250 {
        if f.log(id).contains(text) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{text:?} never appeared in the log of {id}: {}", f.log(id));
}

#[test]
fn exec_joins_the_container_with_and_without_a_tty() {
    if !root() {
        return;
    }
    in_netns(|| {
        let f = Fixture::new();
        let c =
            f.rt.start(
                &f.spec("ex", "echo ready; while true; do busybox sleep 0.05; done"),
                &Limits::default(),
            )
            .unwrap();
        wait_for_log(&f, "ex", "ready");
        let out = tempfile::NamedTempFile::new().unwrap();
        let mut p = f.spec("ex", "").process;
        p.args = vec!["/bin/busybox".into(), "sh".into(), "-c".into(), "echo host=$(busybox hostname) cwd=$(pwd) uid=$(busybox id -u) procs=$(busybox ls /proc | busybox grep -c '^[0-9]') $(busybox grep CapEff /proc/self/status); exit 7".into()];
        p.user = "nobody".into();
        p.cwd = "/tmp".into();
        let code = f.rt.exec(&c, &p, Some(stdio(&out))).unwrap();
        let text = std::fs::read_to_string(out.path()).unwrap();
        assert_eq!(code, 7, "{text}");
        assert!(text.contains("host=host-ex cwd=/tmp uid=65534"), "{text}");
        assert!(text.contains("CapEff: 0000000000000000"), "{text}");
        // It sees the container's processes only.
        let procs: u32 = text
            .split("procs=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((3..=8).contains(&procs), "{text}");
        // A command that does not exist: 126, as Docker's exec says (its run says 127).
        let mut missing = p.clone();
        missing.args = vec!["nope".into()];
        match f.rt.exec(&c, &missing, Some(stdio(&out))) {
            Err(runtime::RuntimeError::Start { exit_code, message }) => {
                assert_eq!((exit_code, message.contains("executable file not found")), (126, true))
            }
            other => panic!("{other:?}"),
        }
        // With a terminal: the process has a tty of the size the caller set.
        let pty = nix::pty::openpty(
            Some(&nix::pty::Winsize {
                ws_row: 33,
                ws_col: 101,
                ws_xpixel: 0,
                ws_ypixel: 0,
            }),
            None,
        )
        .unwrap();
        let mut tp = f.spec("ex", "").process;
        tp.tty = true;
        tp.args = vec![
            "/bin/busybox".into(),
            "sh".into(),
            "-c".into(),
            "[ -t 0 ] && echo is-a-tty; busybox stty size".into(),
        ];
        let slave = std::fs::File::from(pty.slave);
        let ttyio = [
            std::process::Stdio::from(slave.try_clone().unwrap()),
            std::process::Stdio::from(slave.try_clone().unwrap()),
            std::process::Stdio::from(slave),
        ];
        let code = f.rt.exec(&c, &tp, Some(ttyio)).unwrap();
        assert_eq!(code, 0);
        let mut master = std::fs::File::from(pty.master);
        let mut buf = vec![0u8; 4096];
        let n = std::io::Read::read(&mut master, &mut buf).unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(text.contains("is-a-tty") && text.contains("33 101"), "{text:?}");
        // Once the container is stopped, exec is refused.
        f.rt.stop(&c, libc::SIGKILL, Duration::from_secs(5));
        assert!(f.rt.exec(&c, &p, Some(stdio(&out))).is_err());
        assert_eq!(f.rt.cleanup(&c), Vec::<String>::new(), "teardown left something");
        f.assert_clean();
    });
}

#[test]
fn cpu_quota_mounts_read_only_sysctls_ulimits_and_freeze() {
    if !root() {
        return;
    }
    in_netns(|| {
        let f = Fixture::new();
        // Half a CPU: a busy loop gets about half of the wall time.
        let mut limits = Limits::default();
        limits.set_cpus(0.5);
        let c = f.rt.start(&f.spec("cpu", "while true; do :; done"), &limits).unwrap();
        let t0 = std::time::Instant::now();
        let u0 = c.cgroup.cpu_usage_ns().unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let share = (c.cgroup.cpu_usage_ns().unwrap() - u0) as f64 / t0.elapsed().as_nanos() as f64;
        assert!(share < 0.75, "the busy loop used {share:.2} of a CPU");
        f.rt.stop(&c, libc::SIGKILL, Duration::from_secs(5));
        assert_eq!(f.rt.cleanup(&c), Vec::<String>::new(), "teardown left something");

        let rw = tempfile::tempdir().unwrap();
        let ro = tempfile::tempdir().unwrap();
        std::fs::write(ro.path().join("data"), "from the host").unwrap();
        let mut spec = f.spec(
            "mnt",
            "echo hi > /rw/written && echo rw=ok; echo x > /ro/x 2>/dev/null && echo ro=writable || echo ro=refused; cat /ro/data; echo; \
             busybox touch /rootfile 2>/dev/null && echo root=writable || echo root=refused; echo s > /scratch/s && echo scratch=ok; \
             echo fwd=$(cat /proc/sys/net/ipv4/ip_forward); echo nofile=$(ulimit -n)",
        );
        spec.read_only = true;
        spec.sysctls = vec![("net.ipv4.ip_forward".into(), "1".into())];
        spec.process.rlimits = vec![("nofile".into(), 512, 1024)];
        spec.mounts = vec![
            runtime::spec::Mount {
                kind: "bind".into(),
                source: rw.path().into(),
                target: "/rw".into(),
                ..Default::default()
            },
            runtime::spec::Mount {
                kind: "bind".into(),
                source: ro.path().into(),
                target: "/ro".into(),
                read_only: true,
                ..Default::default()
            },
            runtime::spec::Mount {
                kind: "tmpfs".into(),
                target: "/scratch".into(),
                data: "size=1m".into(),
                ..Default::default()
            },
        ];
        let (code, out) = f.run(&spec, &Limits::default());
        assert_eq!(code, 0, "{out}");
        for want in [
            "rw=ok",
            "ro=refused",
            "from the host",
            "root=refused",
            "scratch=ok",
            "fwd=1",
            "nofile=512",
        ] {
            assert!(out.contains(want), "{want}: {out}");
        }
        assert_eq!(std::fs::read_to_string(rw.path().join("written")).unwrap(), "hi\n");
        // A ulimit above the host's hard limit is refused with a message.
        let mut spec = f.spec("ulim", "true");
        spec.process.rlimits = vec![("nofile".into(), 10, u64::MAX - 1)];
        assert!(f
            .rt
            .start(&spec, &Limits::default())
            .unwrap_err()
            .to_string()
            .contains("above the host's"));

        // Freeze stops it, thaw resumes it.
        let c =
            f.rt.start(
                &f.spec(
                    "frz",
                    "i=0; while true; do i=$((i+1)); echo tick $i; busybox sleep 0.02; done",
                ),
                &Limits::default(),
            )
            .unwrap();
        wait_for_log(&f, "frz", "tick 3");
        c.cgroup.freeze().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let frozen = f.log("frz").len();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(f.log("frz").len(), frozen, "output while frozen");
        c.cgroup.thaw().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(f.log("frz").len() > frozen, "no output after thaw");
        f.rt.stop(&c, libc::SIGKILL, Duration::from_secs(5));
        assert_eq!(f.rt.cleanup(&c), Vec::<String>::new(), "teardown left something");
        f.assert_clean();
    });
}

/// The "engine" of `the_engine_can_die_and_the_container_lives_on`: run as a separate
/// process by that test (ignored otherwise). Starts a container, says so, then waits to
/// be killed.
#[test]
#[ignore]
fn engine_process_for_adoption() {
    let Some(dir) = std::env::var_os("RCOMPOSE_TEST_STATE") else {
        return;
    };
    let f = Fixture::at(State::Given(PathBuf::from(dir)));
    let c =
        f.rt.start(
            &f.spec(
                "adopt",
                "trap 'echo stopping; exit 0' TERM; echo running; while true; do busybox sleep 0.05; done",
            ),
            &Limits::default(),
        )
        .unwrap();
    std::fs::write(f.state.path().join("started"), c.pid.to_string()).unwrap();
    std::mem::forget(f);
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn the_engine_can_die_and_the_container_lives_on() {
    if !root() {
        return;
    }
    in_netns(|| {
        let f = Fixture::new();
        let mut engine = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "engine_process_for_adoption", "--ignored", "--nocapture"])
            .env("RCOMPOSE_TEST_STATE", f.state.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let marker = f.state.path().join("started");
        for _ in 0..500 {
            if marker.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid: i32 = std::fs::read_to_string(&marker)
            .expect("the engine process started a container")
            .parse()
            .unwrap();
        wait_for_log(&f, "adopt", "running");
        // The engine dies without a word.
        engine.kill().unwrap();
        engine.wait().unwrap();
        // A new engine finds the very same container, still running, logs whole.
        let dir = f.state.path().join("containers/adopt");
        let c = f.rt.adopt(&dir).expect("the container is still running");
        assert_eq!(c.pid, pid);
        let status = f.rt.stop(&c, libc::SIGTERM, Duration::from_secs(10)).unwrap();
        assert_eq!(status.exit_code, 0);
        let log = f.log("adopt");
        assert!(log.starts_with("running\n") && log.ends_with("stopping\n"), "{log}");
        assert!(f.rt.adopt(&dir).is_none());
        assert_eq!(f.rt.cleanup(&c), Vec::<String>::new(), "teardown left something");
        f.assert_clean();
    });
}

#[test]
fn namespace_joins_and_a_tty_workload() {
    if !root() {
        return;
    }
    in_netns(|| {
        let f = Fixture::new();
        let a = f.rt.start(&f.spec("nsa", "busybox ip link add dummy7 type dummy 2>/dev/null; echo ready; while true; do busybox sleep 0.05; done"), &Limits::default()).unwrap();
        wait_for_log(&f, "nsa", "ready");
        // B joins A's network, pid and ipc namespaces (`service:a`): it sees A's
        // processes, and A's network (not the test's).
        let mut spec = f.spec("nsb", "echo procs=$(busybox ls /proc | busybox grep -c '^[0-9]'); echo lo=$(busybox cat /sys/class/net/lo/ifindex)");
        for (slot, ns) in [
            (&mut spec.namespaces.net, "net"),
            (&mut spec.namespaces.pid, "pid"),
            (&mut spec.namespaces.ipc, "ipc"),
        ] {
            *slot = Some(format!("/proc/{}/ns/{ns}", a.pid));
        }
        let (code, out) = f.run(&spec, &Limits::default());
        assert_eq!(code, 0, "{out}");
        let procs: u32 = out
            .lines()
            .find_map(|l| l.strip_prefix("procs="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(procs >= 4, "B should see A's init and shell too: {out}");
        let a_net = std::fs::read_link(format!("/proc/{}/ns/net", a.pid)).unwrap();
        let test_net = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        assert_ne!(a_net, test_net);
        f.rt.stop(&a, libc::SIGKILL, Duration::from_secs(5));
        assert_eq!(f.rt.cleanup(&a), Vec::<String>::new(), "teardown left something");

        // A host device made available: created inside and allowed by the device rules.
        let mut spec = f.spec(
            "dev",
            "echo x > /dev/mynull && echo dev=writable; busybox head -c 3 /dev/mynull | busybox wc -c",
        );
        spec.devices = vec![runtime::spec::Device {
            host: "/dev/null".into(),
            container: "/dev/mynull".into(),
            permissions: "rw".into(),
        }];
        let (code, out) = f.run(&spec, &Limits::default());
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("dev=writable"), "{out}");

        // A workload with a terminal: its output is a tty, logged as stdout.
        let mut spec = f.spec("tty", "[ -t 1 ] && echo tty-yes; echo to-stderr >&2");
        spec.process.tty = true;
        let (code, out) = f.run(&spec, &Limits::default());
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("tty-yes") && out.contains("to-stderr"), "{out}");
        f.assert_clean();
    });
}

#[test]
fn seccomp_default_unconfined_and_a_custom_profile() {
    if !root() {
        return;
    }
    in_netns(|| {
        let f = Fixture::new();
        let script = "busybox unshare -m true 2>/dev/null && echo unshare=allowed || echo unshare=denied; \
                      busybox mkdir /tmp/d 2>/dev/null && echo mkdir=allowed || echo mkdir=denied; busybox touch /tmp/f && echo touch=ok";
        let with_sys_admin = |id: &str, seccomp: &str| {
            let mut s = f.spec(id, script);
            s.process.capabilities = process::capabilities(&["SYS_ADMIN".into()], &[], false).unwrap();
            s.process.seccomp = seccomp.into();
            s
        };
        // The default profile refuses unshare to a container with the default
        // capabilities, and lets it through with CAP_SYS_ADMIN, as Docker's does.
        let mut plain = f.spec("spln", script);
        plain.process.seccomp = "default".into();
        let (_, out) = f.run(&plain, &Limits::default());
        assert!(out.contains("unshare=denied") && out.contains("mkdir=allowed"), "{out}");
        let (_, out) = f.run(&with_sys_admin("sdef", "default"), &Limits::default());
        assert!(
            out.contains("unshare=allowed") && out.contains("mkdir=allowed"),
            "{out}"
        );
        // Unconfined: only capabilities decide.
        let (_, out) = f.run(&with_sys_admin("sunc", "unconfined"), &Limits::default());
        assert!(out.contains("unshare=allowed"), "{out}");
        // A custom profile in Docker's format.
        let profile = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#;
        let (_, out) = f.run(&with_sys_admin("scus", profile), &Limits::default());
        assert!(out.contains("mkdir=denied") && out.contains("touch=ok"), "{out}");
        f.assert_clean();
    });
}

#[test]
fn a_host_wide_sysctl_is_refused() {
    if !root() {
        return;
    }
    in_netns(|| {
        let f = Fixture::new();
        let before = std::fs::read_to_string("/proc/sys/kernel/panic").unwrap();
        let mut spec = f.spec("sysctl", "true");
        spec.sysctls = vec![("kernel.panic".into(), "77".into())];
        let e = f.rt.start(&spec, &Limits::default()).unwrap_err().to_string();
        assert!(e.contains("sysctl kernel.panic is not namespaced"), "{e}");
        assert_eq!(std::fs::read_to_string("/proc/sys/kernel/panic").unwrap(), before);
        f.assert_clean();
    });
}

/// Host UID and GID of a process (real IDs from /proc).
fn host_ids(pid: i32) -> (u32, u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| -> u32 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap()
    };
    (field("Uid:"), field("Gid:"))
}

#[test]
fn a_user_namespace_maps_the_container_root_to_its_own_host_ids() {
    if !root() {
        return;
    }
    in_netns(|| {
        use std::os::unix::fs::MetadataExt;
        let f = Fixture::new();
        let map = runtime::spec::IdMap {
            uid: 1_500_000_000,
            gid: 1_600_000_000,
            size: 65536,
        };
        // A volume (the engine's: idmapped) and a host directory (not: as with Docker).
        let vol = f.state.path().join("vol");
        let plain = f.state.path().join("plain");
        for d in [&vol, &plain] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("f"), "host root's\n").unwrap();
        }
        let mut spec = f.spec(
            "uns",
            "echo id=$(busybox id -u):$(busybox id -g); echo map=$(busybox cat /proc/self/uid_map); \
             echo owners=$(busybox stat -c %u:%g / /etc/passwd /vol/f /plain/f /scratch /dev/shm | busybox tr '\\n' ' '); \
             busybox touch /etc/new /vol/new && echo wrote; \
             busybox touch /plain/new 2>/dev/null && echo plain=writable || echo plain=refused; \
             echo pid=$$; \
             echo $(busybox grep CapEff /proc/self/status); echo ready; while true; do busybox sleep 0.05; done",
        );
        spec.userns = Some(map);
        spec.mounts = vec![
            runtime::spec::Mount {
                kind: "bind".into(),
                source: vol.clone(),
                target: "/vol".into(),
                idmap: true,
                ..Default::default()
            },
            runtime::spec::Mount {
                kind: "bind".into(),
                source: plain.clone(),
                target: "/plain".into(),
                ..Default::default()
            },
            runtime::spec::Mount {
                kind: "tmpfs".into(),
                target: "/scratch".into(),
                data: "mode=755".into(),
                ..Default::default()
            },
        ];
        let c =
            f.rt.start(&spec, &Limits::default())
                .unwrap_or_else(|e| panic!("start: {e}"));
        wait_for_log(&f, "uns", "ready");
        let out = f.log("uns");
        // Inside: root, mapped onto the range; the image's, the volume's and its own
        // tmpfs's files are root's; the host directory's are nobody's and stay closed.
        assert!(out.contains("id=0:0\n"), "{out}");
        assert!(out.contains("map= 0 1500000000 65536\n"), "{out}");
        assert!(out.contains("owners=0:0 0:0 0:0 65534:65534 0:0 0:0\n"), "{out}");
        assert!(out.contains("wrote\n") && out.contains("plain=refused\n"), "{out}");
        assert!(out.contains("pid=1\n"), "the workload is PID 1: {out}");
        // Docker's default set, held in the namespace only.
        assert!(out.contains("CapEff: 00000000a80425fb"), "{out}");
        // Outside: the workload is the range's first ID; what it wrote in its layer is
        // that ID's; what it wrote in the volume is the host root's, as the volume's owner.
        assert_eq!(host_ids(c.pid), (1_500_000_000, 1_600_000_000));
        assert_eq!(host_ids(c.monitor), (0, 0), "the monitor stays the host's");
        let new = std::fs::metadata(spec.dir.join("upper/etc/new")).unwrap();
        assert_eq!((new.uid(), new.gid()), (1_500_000_000, 1_600_000_000));
        let in_vol = std::fs::metadata(vol.join("new")).unwrap();
        assert_eq!((in_vol.uid(), in_vol.gid()), (0, 0));
        assert!(!plain.join("new").exists());

        // exec enters the same namespace: as root, and as another user of the image.
        let out = tempfile::NamedTempFile::new().unwrap();
        let mut p = f.spec("uns", "").process;
        p.args = vec![
            "/bin/busybox".into(),
            "sh".into(),
            "-c".into(),
            "echo $(busybox id -u) $(busybox cat /proc/self/uid_map) $(busybox grep CapEff /proc/self/status); busybox touch /tmp/by-exec".into(),
        ];
        assert_eq!(f.rt.exec(&c, &p, Some(stdio(&out))).unwrap(), 0);
        let text = std::fs::read_to_string(out.path()).unwrap();
        assert!(
            text.starts_with("0 0 1500000000 65536 CapEff: 00000000a80425fb"),
            "{text}"
        );
        let by_exec = std::fs::metadata(spec.dir.join("upper/tmp/by-exec")).unwrap();
        assert_eq!(by_exec.uid(), 1_500_000_000);
        p.user = "nobody".into();
        p.args[3] = "echo $(busybox id -u) $(busybox grep CapEff /proc/self/status); busybox touch /etc/x 2>/dev/null || echo refused".into();
        assert_eq!(f.rt.exec(&c, &p, Some(stdio(&out))).unwrap(), 0);
        let text = std::fs::read_to_string(out.path()).unwrap();
        assert!(text.starts_with("65534 CapEff: 0000000000000000\nrefused"), "{text}");
        // A terminal is the user's and the tty group's, as the container counts them.
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave = std::fs::File::from(pty.slave);
        let ttyio = [
            std::process::Stdio::from(slave.try_clone().unwrap()),
            std::process::Stdio::from(slave.try_clone().unwrap()),
            std::process::Stdio::from(slave),
        ];
        p.tty = true;
        p.args[3] = "echo tty=$(busybox stat -L -c %u:%g /proc/self/fd/0)".into();
        assert_eq!(f.rt.exec(&c, &p, Some(ttyio)).unwrap(), 0);
        let mut buf = vec![0u8; 4096];
        let n = std::io::Read::read(&mut std::fs::File::from(pty.master), &mut buf).unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(text.contains("tty=65534:5"), "{text:?}");
        let mut tty = f.spec("unst", "echo tty=$(busybox stat -L -c %u:%g /proc/self/fd/0)");
        tty.userns = Some(map);
        tty.process.tty = true;
        let (code, out) = f.run(&tty, &Limits::default());
        assert_eq!((code, out.contains("tty=0:5")), (0, true), "{out}");

        f.rt.stop(&c, libc::SIGKILL, Duration::from_secs(5));
        assert_eq!(f.rt.cleanup(&c), Vec::<String>::new(), "teardown left something");
        f.assert_clean();
    });
}

/// The whole runtime suite again, on a machine whose only cgroup hierarchy is the
/// unified one (cgroup v2), as on current distributions; this host is hybrid. The
/// suite runs from a service-like cgroup with processes in it, its controllers
/// delegated, as under systemd, so the engine must move its processes out of the way
/// of the containers' groups.
#[test]
fn on_a_host_with_cgroup_v2_only() {
    if !root() {
        return;
    }
    let k = match vm::kernel() {
        Ok(k) => k,
        // CI installs both (.ci/run): there, their absence is a failure.
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{e}"),
        Err(e) => {
            eprintln!("skipped: {e}");
            return;
        }
    };
    let me = std::env::current_exe().unwrap();
    let rcompose = Path::new(env!("CARGO_BIN_EXE_rcompose"));
    let script = format!(
        "mount -t cgroup2 none /sys/fs/cgroup\n\
         echo hierarchies=$(grep -c cgroup /proc/mounts) controllers=$(cat /sys/fs/cgroup/cgroup.controllers)\n\
         echo '+cpu +cpuset +memory +pids +io' > /sys/fs/cgroup/cgroup.subtree_control\n\
         mkdir -p /sys/fs/cgroup/system.slice/tests.service\n\
         echo '+cpu +cpuset +memory +pids +io' > /sys/fs/cgroup/system.slice/cgroup.subtree_control\n\
         echo 0 > /sys/fs/cgroup/system.slice/tests.service/cgroup.procs\n\
         cd /tmp && {me} --test-threads=2 --skip on_a_host_with_cgroup_v2_only\n\
         echo TESTS-EXIT=$?\n\
         echo self=$(cat /proc/self/cgroup)\n\
         echo leftover=$(find /sys/fs/cgroup -mindepth 1 -type d | grep -v -c -e 'system.slice$' -e 'tests.service$' -e 'rcompose-supervisor$')\n",
        me = me.display()
    );
    let out = vm::boot(&k, &[&me, rcompose], &script, Duration::from_secs(900));
    for l in out.lines().filter(|l| l.starts_with("test ") || l.contains('=')) {
        eprintln!("vm: {l}");
    }
    let tail: String = out
        .lines()
        .rev()
        .take(80)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(out.contains("hierarchies=1 controllers=cpuset cpu io memory"), "{tail}");
    assert!(out.contains("TESTS-EXIT=0"), "{tail}");
    // Every test of this file but this one (the Compose service one runs through the
    // engine, in lifecycle.rs, since the runtime knows no Compose).
    assert!(out.contains("test result: ok. 11 passed"), "{tail}");
    // The suite's processes were moved into the leaf, out of the way of the containers'.
    assert!(
        out.contains("self=0::/system.slice/tests.service/rcompose-supervisor"),
        "{tail}"
    );
    assert!(out.contains("leftover=0"), "{tail}");
}
