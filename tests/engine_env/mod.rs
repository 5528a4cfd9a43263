//! The test harness of the engine's end-to-end tests, as root: a state root with a
//! busybox image made from the host's busybox-static, and an engine of the test's own
//! in a network namespace of its own. After each test nothing is left: the engine and
//! every container process are killed, their cgroups removed, and the namespace (with
//! its bridges and veths) goes with its last process.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rcompose");

pub fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let r = unsafe { libc::geteuid() } == 0 && Path::new("/bin/busybox").exists();
    if !r {
        eprintln!("skipped: lifecycle tests need root and /bin/busybox (busybox-static)");
    }
    r
}

pub struct Env {
    pub state: tempfile::TempDir,
    pub project: tempfile::TempDir,
    pub daemon: Child,
    /// The network namespace (held here too, so that it outlives an engine killed by
    /// the test).
    pub ns: std::fs::File,
    /// How the engine was started, to start it again.
    pub opts: Opts,
}

/// What a test asks of its engine besides the defaults.
#[derive(Default, Clone)]
pub struct Opts {
    /// Added to the engine's environment.
    pub engine_env: Vec<(String, String)>,
    /// The state root is a tmpfs of this size (`8M`), unmounted when the test ends.
    pub tmpfs: Option<String>,
    /// The engine's log, when it must not be in the state root.
    pub log: Option<PathBuf>,
    /// A descriptor the engine inherits, as from a shell that ran `exec 200<dir`.
    pub inherit: Option<(i32, PathBuf)>,
}

impl Env {
    /// A state root with the busybox image, and an engine in a new network namespace.
    pub fn new() -> Env {
        Env::with(Opts::default())
    }

    pub fn with(opts: Opts) -> Env {
        let state = tempfile::tempdir().unwrap();
        if let Some(size) = &opts.tmpfs {
            let o = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "rcompose-test"])
                .arg(state.path())
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        let project = tempfile::tempdir().unwrap();
        let fs = state.path().join("busybox-rootfs");
        for d in ["bin", "etc", "tmp", "data"] {
            std::fs::create_dir_all(fs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", fs.join("bin/busybox")).unwrap();
        let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", fs.join("bin").join(applet));
            }
        }
        std::fs::write(fs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(fs.join("etc/group"), "root:x:0:\n").unwrap();
        // Image content at a volume's mount point is copied into a new volume.
        std::fs::write(fs.join("data/from-image"), "seed\n").unwrap();
        // A network namespace of its own, held by the engine started in it.
        let ns = std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            let lo = Command::new("ip").args(["link", "set", "lo", "up"]).status().unwrap();
            assert!(lo.success());
            std::fs::File::open("/proc/thread-self/ns/net").unwrap()
        })
        .join()
        .unwrap();
        let daemon = spawn_engine_with(state.path(), &ns, &opts);
        let env = Env {
            state,
            project,
            daemon,
            ns,
            opts,
        };
        env.wait_for_engine();
        // Through the engine, the one writer of its image store.
        env.ok(&["image", "import", fs.to_str().unwrap(), "rcompose/busybox:latest"]);
        env
    }

    /// Waits until the engine serves.
    pub fn wait_for_engine(&self) {
        let env = self;
        let sock = env.state.path().join("run/rcompose.sock");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !sock.exists() {
            assert!(Instant::now() < deadline, "engine did not start: {}", env.engine_log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.opts
            .log
            .clone()
            .unwrap_or_else(|| self.state.path().join("engine.log"))
    }

    pub fn engine_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `up -d` of the Compose file `text` (written as `name`), which must be refused:
    /// exit code 1 and the message, which is returned.
    pub fn refused(&self, name: &str, text: &str) -> String {
        self.write(name, text);
        let o = self.rc(&["-f", name, "up", "-d"]);
        let e = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(1), "{e}");
        e
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.project.path().join(name), text).unwrap();
    }

    pub fn rc(&self, args: &[&str]) -> Output {
        self.rc_env(args, &[])
    }

    pub fn rc_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args).envs(env.iter().copied()).output().unwrap()
    }

    /// The CLI for this engine and project, to be spawned by the caller.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.project.path())
            .env("RCOMPOSE_ROOT", self.state.path())
            .env_remove("RCOMPOSE_RUN")
            // Never an engine of the CLI's making: it would run outside the namespace.
            .env("RCOMPOSE_NO_AUTOSTART", "1");
        c
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.rc(args);
        assert!(
            o.status.success(),
            "rcompose {args:?} failed ({:?}):\n{}\n{}\nengine log:\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.engine_log()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `ps -a --format json`, one object per container.
    pub fn ps(&self) -> Vec<serde_json::Value> {
        self.ok(&["ps", "-a", "--format", "json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn container(&self, name: &str) -> serde_json::Value {
        self.ps()
            .into_iter()
            .find(|c| c["Name"] == name)
            .unwrap_or_else(|| panic!("no container {name}: {:?}", self.ps()))
    }

    /// Runs `f` inside the engine's network namespace.
    pub fn in_netns<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let f_ns = self.ns.try_clone().unwrap();
        std::thread::spawn(move || {
            nix::sched::setns(&f_ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    }

    /// `GET /` on 127.0.0.1:`port` in the engine's namespace, retried until it is a 200.
    pub fn http_get(&self, port: u16) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.http(port, "GET", "/", "");
            if r.contains("200 OK") {
                return r;
            }
            assert!(Instant::now() < deadline, "GET :{port}: {r}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One HTTP/1.0 request to 127.0.0.1:`port` in the engine's namespace, retried
    /// until something answers; the whole response (headers and body).
    pub fn http(&self, port: u16, method: &str, path: &str, body: &str) -> String {
        let req = format!(
            "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.in_netns(move || {
            use std::io::{Read, Write};
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let attempt = (|| -> std::io::Result<String> {
                    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
                    s.set_read_timeout(Some(Duration::from_secs(10)))?;
                    s.write_all(req.as_bytes())?;
                    let mut out = String::new();
                    s.read_to_string(&mut out)?;
                    Ok(out)
                })();
                match attempt {
                    Ok(s) if s.starts_with("HTTP/") => return s,
                    other if Instant::now() > deadline => panic!("{req}: {other:?}"),
                    _ => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        })
    }

    pub fn links(&self) -> String {
        self.in_netns(|| {
            let o = Command::new("ip").args(["-o", "link"]).output().unwrap();
            String::from_utf8_lossy(&o.stdout).into_owned()
        })
    }

    pub fn wait_for(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.engine_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What `down` must leave: no container, network or cgroup of this root.
    pub fn assert_nothing_left(&self) {
        let containers: Vec<String> = std::fs::read_dir(self.state.path().join("containers"))
            .unwrap()
            .flatten()
            .map(|e| std::fs::read_to_string(e.path().join("record.json")).unwrap_or_default())
            .collect();
        assert!(containers.is_empty(), "container directories left: {containers:?}");
        let links = self.links();
        assert!(!links.contains("rc-") && !links.contains("rv"), "links left:\n{links}");
        let nets: Vec<_> = std::fs::read_dir(self.state.path().join("networks"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name() != ".ipam.json")
            .collect();
        assert!(nets.is_empty(), "network records left: {nets:?}");
        let tables = self.in_netns(|| {
            Command::new("nft")
                .args(["list", "tables"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        });
        assert!(!tables.contains("rcompose_"), "NAT table left: {tables}");
        let parent = engine::cgroup_parent(self.state.path());
        let mut left = Vec::new();
        for base in [
            "/sys/fs/cgroup/pids",
            "/sys/fs/cgroup/memory",
            "/sys/fs/cgroup/unified",
            "/sys/fs/cgroup",
        ] {
            let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
            for line in own.lines() {
                let path = line.splitn(3, ':').nth(2).unwrap_or("/");
                let dir = PathBuf::from(format!("{base}{path}")).join(&parent);
                if let Ok(rd) = std::fs::read_dir(&dir) {
                    left.extend(rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
                }
            }
        }
        assert!(left.is_empty(), "container cgroups left: {left:?}");
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        // Whatever a failed test left running: kill it and remove its cgroups.
        if let Ok(m) = runtime::cgroups::Manager::detect() {
            m.remove_tree(&engine::cgroup_parent(self.state.path()));
        }
        if self.opts.tmpfs.is_some() {
            // Lazily: a container's mount made beneath it may still be going away.
            let _ = Command::new("umount")
                .arg("-R")
                .arg("-l")
                .arg(self.state.path())
                .status();
        }
    }
}

/// An engine for `root` in the network namespace `ns`, logging to `<root>/engine.log`.
pub fn spawn_engine(root: &Path, ns: &std::fs::File) -> Child {
    spawn_engine_with(root, ns, &Opts::default())
}

/// An engine as `opts` asks for it.
pub fn spawn_engine_with(root: &Path, ns: &std::fs::File, opts: &Opts) -> Child {
    use std::os::unix::process::CommandExt;
    let root = root.to_path_buf();
    let ns = ns.try_clone().unwrap();
    let opts = opts.clone();
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(opts.log.clone().unwrap_or_else(|| root.join("engine.log")))
            .unwrap();
        let mut c = Command::new(BIN);
        c.arg("daemon")
            .env("RCOMPOSE_ROOT", &root)
            .envs(opts.engine_env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // Kept open here until the child has it: dup2'd into place after fork.
        let held = opts
            .inherit
            .as_ref()
            .map(|(n, p)| (*n, std::fs::File::open(p).unwrap()));
        if let Some((n, f)) = &held {
            use std::os::fd::AsRawFd;
            let (n, fd) = (*n, f.as_raw_fd());
            // SAFETY: dup2 is async-signal-safe; it only places an open descriptor.
            unsafe {
                c.pre_exec(move || {
                    if libc::dup2(fd, n) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        c.spawn().unwrap()
    })
    .join()
    .unwrap()
}
