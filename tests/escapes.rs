//! Escape attempts, as an attacker with an image, a Compose file or a container of their
//! own would make them: each must fail, and nothing may appear outside the container's
//! root. The WORKDIR, `working_dir` and `exec -w` paths through `/proc`, links planted
//! for `cp` both ways, descriptors inherited by the engine, hostile names, traffic
//! between networks (with and without nftables), the loader's alias bomb and endless
//! inputs, and a full disk under `stop`, `kill`, `rm` and `down`.

mod engine_env;

use engine_env::{root, Env, Opts, BIN};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A name no test shares.
fn marker(what: &str) -> String {
    format!("ESCAPE-{what}-{}", std::process::id())
}

/// Every path under `dir` named `name`, not looking into containers' own roots (their
/// upper layers, where a container's files belong).
fn find(dir: &Path, name: &str, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_name() == name {
            out.push(p.clone());
        }
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() && e.file_name() != "upper" && e.file_name() != "rootfs" && e.file_name() != "busybox-rootfs" {
            find(&p, name, out);
        }
    }
}

/// Where a file named `name` would be if something got out: anywhere in the state root
/// or the project, in the directories above the state root, or at `/`.
fn escaped(env: &Env, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    find(env.state.path(), name, &mut out);
    find(env.project.path(), name, &mut out);
    let mut up = env.state.path().parent();
    while let Some(d) = up {
        if d.join(name).exists() {
            out.push(d.join(name));
        }
        up = d.parent();
    }
    out
}

fn busybox_rootfs(env: &Env) -> String {
    env.state.path().join("busybox-rootfs").to_string_lossy().into_owned()
}

/// Running until told otherwise.
const SLEEPER: &str = "    image: rcompose/busybox:latest\n    command: [sleep, '600']\n    stop_signal: SIGKILL\n";

#[test]
fn a_workdir_through_proc_never_reaches_the_host() {
    if !root() {
        return;
    }
    let env = Env::new();
    let fs = busybox_rootfs(&env);
    let mut names = Vec::new();
    // An image's WORKDIR (CVE-2024-21626's shape), a Compose working_dir, and exec -w:
    // through the init's descriptors, its cwd and its root.
    for (i, wd) in [
        "/proc/1/fd/4",
        "/proc/self/fd/3",
        "/proc/1/cwd/../../..",
        "/proc/1/root/../..",
    ]
    .iter()
    .enumerate()
    {
        let m = marker(&format!("wd{i}"));
        let cmd = format!("[\"sh\",\"-c\",\"echo pwned > ../../../{m}; echo pwned > {m}\"]");
        env.ok(&[
            "image",
            "import",
            "--change",
            &format!("WORKDIR {wd}"),
            "--change",
            &format!("CMD {cmd}"),
            &fs,
            &format!("evil:wd{i}"),
        ]);
        names.push((m, wd.to_string(), i));
    }
    let mut file = String::from("services:\n");
    for (m, wd, i) in &names {
        file.push_str(&format!("  image{i}:\n    image: evil:wd{i}\n"));
        file.push_str(&format!(
            "  compose{i}:\n    image: rcompose/busybox:latest\n    working_dir: {wd}\n    command: [sh, -c, 'echo pwned > ../../../{m}c; echo pwned > {m}c']\n"
        ));
    }
    file.push_str(&format!("  running:\n{SLEEPER}"));
    env.write("compose.yaml", &file);
    // The workloads fail to start, or start without a way out; either way up goes on.
    let _ = env.rc(&["up", "-d"]);
    env.wait_for("the sleeper", || {
        env.ps()
            .iter()
            .any(|c| c["Service"] == "running" && c["State"] == "running")
    });
    for (m, wd, _) in &names {
        let o = env.rc(&[
            "exec",
            "-w",
            wd,
            "running",
            "sh",
            "-c",
            &format!("echo pwned > ../../../{m}x; echo pwned > {m}x"),
        ]);
        assert_ne!(o.status.code(), Some(0), "exec -w {wd}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(wd.as_str()),
            "the error names the directory: {}",
            stderr(&o)
        );
    }
    // Give anything that did start the time to write.
    std::thread::sleep(std::time::Duration::from_millis(500));
    for (m, wd, _) in &names {
        for suffix in ["", "c", "x"] {
            let found = escaped(&env, &format!("{m}{suffix}"));
            assert!(
                found.is_empty(),
                "{wd}{suffix}: written outside the container: {found:?}"
            );
        }
    }
    for c in env.ps() {
        if c["Service"] != "running" {
            assert_ne!(c["State"], "running", "{c}");
        }
    }
    env.ok(&["down", "-t", "0"]);
}

#[test]
fn cp_never_follows_a_link_out_of_the_container() {
    if !root() {
        return;
    }
    let env = Env::with(Opts {
        engine_env: vec![("RCOMPOSE_TEST_SECRET".into(), "hunter2-engine-only".into())],
        ..Default::default()
    });
    env.write(
        "compose.yaml",
        &format!("services:\n  box:\n{SLEEPER}    environment: [INSIDE=inside-value]\n"),
    );
    env.ok(&["up", "-d"]);
    // The container plants links through /proc's magic links and a plain relative one.
    env.ok(&[
        "exec",
        "box",
        "sh",
        "-c",
        "ln -s /proc/1/root/../../../.. /tmp/viaroot; ln -s /proc/self/cwd/../../.. /tmp/viacwd; ln -s ../../../../../../.. /tmp/up",
    ]);
    let out = tempfile::tempdir().unwrap();
    let host_passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    // Out: a relative link resolves inside the container's root, as Docker resolves it.
    let dst = out.path().join("passwd");
    env.ok(&["cp", "box:/tmp/up/etc/passwd", dst.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(&dst).unwrap(),
        "root:x:0:0:root:/root:/bin/sh\n"
    );
    // Through magic links: refused, nothing written, no content in the message.
    for link in ["viaroot", "viacwd"] {
        let dst = out.path().join(link);
        let o = env.rc(&["cp", &format!("box:/tmp/{link}/etc/passwd"), dst.to_str().unwrap()]);
        assert_ne!(o.status.code(), Some(0), "{link}");
        if let Ok(got) = std::fs::read_to_string(&dst) {
            assert_ne!(got, host_passwd, "{link}: the host's file came out");
        }
        assert!(!stderr(&o).contains("daemon:x:"), "{}", stderr(&o));
    }
    // /proc itself: no file of the init's, no content in an error.
    for p in ["/proc/1/environ", "/proc/self/environ", "/proc/1/fd/1", "/proc"] {
        let dst = out.path().join("proc-out");
        let o = env.rc(&["cp", &format!("box:{p}"), dst.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "cp {p}: {}", stderr(&o));
        let e = stderr(&o);
        for secret in ["hunter2", "inside-value", "PATH="] {
            assert!(!e.contains(secret), "cp {p}: {e}");
        }
        assert!(!dst.exists() || std::fs::read_dir(&dst).is_ok_and(|mut d| d.next().is_none()));
    }
    // In: a relative link lands inside the container; magic links are refused.
    let payload = out.path().join("payload");
    std::fs::write(&payload, "payload\n").unwrap();
    let m = marker("cpin");
    env.ok(&["cp", payload.to_str().unwrap(), &format!("box:/tmp/up/{m}")]);
    assert_eq!(env.ok(&["exec", "box", "cat", &format!("/{m}")]), "payload\n");
    for link in ["viaroot", "viacwd"] {
        let name = format!("{m}-{link}");
        let o = env.rc(&["cp", payload.to_str().unwrap(), &format!("box:/tmp/{link}/{name}")]);
        assert_ne!(o.status.code(), Some(0), "{link}");
        let found = escaped(&env, &name);
        assert!(found.is_empty(), "{link}: written outside: {found:?}");
        assert!(!Path::new("/").join(&name).exists());
    }
    let found = escaped(&env, &m);
    assert!(found.is_empty(), "{found:?}");
    // The whole filesystem comes out (not just /sys), with /proc and /sys empty.
    let all = out.path().join("all");
    env.ok(&["cp", "box:/", all.to_str().unwrap()]);
    assert!(all.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_to_string(all.join("etc/passwd")).unwrap(),
        "root:x:0:0:root:/root:/bin/sh\n"
    );
    for d in ["proc", "sys"] {
        assert!(all.join(d).is_dir(), "{d}");
        assert!(std::fs::read_dir(all.join(d)).unwrap().next().is_none(), "{d} is empty");
    }
    env.ok(&["down", "-t", "0"]);
}

#[test]
fn no_descriptor_of_the_engine_reaches_a_container() {
    if !root() {
        return;
    }
    let host_dir = tempfile::tempdir().unwrap();
    let env = Env::with(Opts {
        inherit: Some((200, host_dir.path().to_path_buf())),
        ..Default::default()
    });
    assert!(
        std::fs::read_link(format!("/proc/{}/fd/200", env.daemon.id())).is_ok(),
        "the engine was given fd 200"
    );
    env.write("compose.yaml", &format!("services:\n  box:\n{SLEEPER}"));
    env.ok(&["up", "-d"]);
    let check = |env: &Env| {
        // The workload (PID 1) and an exec hold only their standard streams.
        let pid1 = env.ok(&["exec", "box", "ls", "/proc/1/fd"]);
        let fds: Vec<&str> = pid1.split_whitespace().collect();
        assert_eq!(fds, ["0", "1", "2"], "PID 1 holds: {pid1}");
        let own = env.ok(&["exec", "box", "sh", "-c", "ls /proc/$$/fd"]);
        assert!(
            own.split_whitespace().all(|f| f.parse::<u32>().unwrap() < 10),
            "an exec holds: {own}"
        );
        let m = marker("fd");
        let o = env.rc(&["exec", "box", "sh", "-c", &format!("echo x > /proc/1/fd/200/{m}")]);
        assert_ne!(o.status.code(), Some(0));
        assert!(!host_dir.path().join(&m).exists());
    };
    check(&env);
    env.ok(&["down", "-t", "0"]);

    // An engine the CLI starts itself, from a shell holding fd 200: the same.
    let mut env = env;
    let _ = env.daemon.kill();
    let _ = env.daemon.wait();
    let _ = std::fs::remove_file(env.state.path().join("run/rcompose.sock"));
    let ns = env.ns.try_clone().unwrap();
    let (project, state) = (env.project.path().to_path_buf(), env.state.path().to_path_buf());
    let dir = host_dir.path().to_path_buf();
    let o = std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let held = std::fs::File::open(&dir).unwrap();
        let fd = held.as_raw_fd();
        let mut c = Command::new(BIN);
        c.args(["up", "-d"])
            .current_dir(&project)
            .env("RCOMPOSE_ROOT", &state)
            .env_remove("RCOMPOSE_RUN")
            .env_remove("RCOMPOSE_NO_AUTOSTART");
        // SAFETY: dup2 is async-signal-safe.
        unsafe {
            c.pre_exec(move || {
                if libc::dup2(fd, 200) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c.output().unwrap()
    })
    .join()
    .unwrap();
    let pid: i32 = std::fs::read_to_string(env.state.path().join("run/rcompose.pid"))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0);
    // Killed when the test ends, whatever happens.
    struct Kill(i32);
    impl Drop for Kill {
        fn drop(&mut self) {
            if self.0 > 0 {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(self.0, libc::SIGKILL) };
            }
        }
    }
    let _kill = Kill(pid);
    assert!(o.status.success(), "{}\n{}", stderr(&o), env.engine_log());
    assert!(pid > 0);
    check(&env);
    env.ok(&["down", "-t", "0"]);
}

#[test]
fn hostile_names_are_refused_before_anything_touches_the_disk() {
    if !root() {
        return;
    }
    let env = Env::new();
    let listing = |env: &Env| {
        let mut all = Vec::new();
        find(env.state.path(), "x", &mut all);
        let mut top: Vec<_> = std::fs::read_dir(env.state.path().parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        top.sort();
        (all, top.len())
    };
    let before = listing(&env);
    for (file, needle) in [
        (
            "services:\n  web:\n    image: rcompose/busybox:latest\n    networks: ['../../x y']\nnetworks:\n  '../../x y': {}\n",
            "../../x y",
        ),
        (
            "services:\n  web:\n    image: rcompose/busybox:latest\nnetworks:\n  default:\n    name: ../../x\n",
            "../../x",
        ),
        (
            "services:\n  'we b/../x':\n    image: rcompose/busybox:latest\n",
            "we b/../x",
        ),
        (
            "services:\n  web:\n    image: rcompose/busybox:latest\n    container_name: ../../../x\n",
            "../../../x",
        ),
        (
            "services:\n  web:\n    image: rcompose/busybox:latest\n    volumes: [data:/data]\nvolumes:\n  data:\n    name: ../../x\n",
            "../../x",
        ),
        (
            "services:\n  web:\n    image: rcompose/busybox:latest\n    secrets: [s]\nsecrets:\n  s:\n    name: ../x\n    environment: HOME\n",
            "../x",
        ),
    ] {
        let e = env.refused("compose.yaml", file);
        assert!(e.contains(needle), "{file}\n{e}");
    }
    env.write(
        "compose.yaml",
        "services:\n  web:\n    image: rcompose/busybox:latest\n",
    );
    let o = env.rc(&["-p", "../x", "up", "-d"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("../x"), "{}", stderr(&o));
    assert_eq!(listing(&env), before, "something was created");
    assert!(env.ps().is_empty());
}

/// Two networks of one project (one of them named `ipam`, whose record was once the
/// IPAM's state file and escaped isolation) and the default network of another: only
/// containers that share a network reach each other; published ports stay reachable.
fn networks_are_isolated(env: &Env) {
    let web = "    image: rcompose/busybox:latest\n    command: [httpd, -f, -p, '8080', -h, /etc]\n";
    env.write(
        "compose.yaml",
        &format!(
            "name: one\nservices:\n  a:\n{web}    networks: {{front: {{ipv4_address: 10.231.1.10}}}}\n  c:\n{web}    networks: {{front: {{ipv4_address: 10.231.1.11}}}}\n  b:\n{web}    networks: {{back: {{ipv4_address: 10.231.2.10}}}}\n    ports: ['18090:8080']\nnetworks:\n  front: {{name: ipam, ipam: {{config: [{{subnet: 10.231.1.0/24}}]}}}}\n  back: {{ipam: {{config: [{{subnet: 10.231.2.0/24}}]}}}}\n"
        ),
    );
    env.write(
        "other.yaml",
        &format!(
            "name: two\nservices:\n  d:\n{web}    networks: {{default: {{ipv4_address: 10.231.3.10}}}}\nnetworks:\n  default: {{ipam: {{config: [{{subnet: 10.231.3.0/24}}]}}}}\n"
        ),
    );
    env.ok(&["up", "-d"]);
    env.ok(&["-f", "other.yaml", "up", "-d"]);
    let reach = |file: &str, from: &str, to: &str| -> (bool, bool) {
        let tcp = env.rc(&[
            "-f",
            file,
            "exec",
            from,
            "timeout",
            "3",
            "wget",
            "-q",
            "-O",
            "/dev/null",
            &format!("http://{to}:8080/passwd"),
        ]);
        let ping = env.rc(&["-f", file, "exec", from, "ping", "-c", "1", "-W", "2", to]);
        (tcp.status.success(), ping.status.success())
    };
    env.wait_for("a to reach c", || {
        reach("compose.yaml", "a", "10.231.1.11") == (true, true)
    });
    for (file, from, to) in [
        ("compose.yaml", "a", "10.231.2.10"),
        ("compose.yaml", "b", "10.231.1.10"),
        ("compose.yaml", "a", "10.231.3.10"),
        ("other.yaml", "d", "10.231.1.10"),
        ("other.yaml", "d", "10.231.2.10"),
    ] {
        assert_eq!(reach(file, from, to), (false, false), "{from} reached {to}");
    }
    // The published port stays reachable.
    let r = env.http(18090, "GET", "/passwd", "");
    assert!(r.contains("root:x:0:0"), "{r}");
    // The engine's rules are what keeps them apart: without them, a reaches b.
    env.in_netns(|| {
        let o = Command::new("ip").args(["rule"]).output().unwrap();
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            if let Some(iif) = line.split_whitespace().skip_while(|w| *w != "iif").nth(1) {
                if iif.starts_with("rc-") {
                    let s = Command::new("ip")
                        .args(["rule", "del", "iif", iif, "priority", "32000"])
                        .status()
                        .unwrap();
                    assert!(s.success());
                }
            }
        }
    });
    env.wait_for("a to reach b once the rules are gone", || {
        reach("compose.yaml", "a", "10.231.2.10") == (true, true)
    });
    env.ok(&["-f", "other.yaml", "down", "-t", "0"]);
    env.ok(&["down", "-t", "0"]);
    let rules = env.in_netns(|| {
        let o = Command::new("ip").args(["rule"]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    });
    assert!(!rules.contains("rc-"), "rules left: {rules}");
    env.assert_nothing_left();
}

#[test]
fn networks_are_isolated_with_nftables() {
    if !root() || !Path::new("/usr/sbin/nft").exists() {
        return;
    }
    networks_are_isolated(&Env::new());
}

#[test]
fn networks_are_isolated_without_nftables() {
    if !root() {
        return;
    }
    // No nft on the engine's PATH, and a host that forwards anyway (another tool's
    // doing): isolation must not depend on either.
    let env = Env::with(Opts {
        engine_env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        ..Default::default()
    });
    env.in_netns(|| std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap());
    assert!(
        env.engine_log().contains("nft not found") || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            env.engine_log().contains("nft not found")
        }
    );
    networks_are_isolated(&env);
}

/// The CLI with its address space limited: what it does not bound, it cannot finish.
fn bounded(args: &[&str], dir: &Path) -> Output {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(BIN);
    c.args(args)
        .current_dir(dir)
        .env("RCOMPOSE_NO_AUTOSTART", "1")
        .env("RCOMPOSE_ROOT", dir.join("state"))
        .stdin(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.output().unwrap()
}

#[test]
fn an_alias_bomb_is_refused_in_bounded_memory() {
    let t = tempfile::tempdir().unwrap();
    // Nine levels of nine references: 9^9 nodes from a file of under 2 KB.
    let mut y = String::from("x-a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for w in names.windows(2) {
        let r = format!("*{}", w[0]);
        y.push_str(&format!("x-{}: &{} [{}]\n", w[1], w[1], [r.as_str(); 9].join(",")));
    }
    y.push_str("services:\n  web:\n    image: busybox\n    labels:\n      bomb: *i\n");
    assert!(y.len() < 2048, "{}", y.len());
    std::fs::write(t.path().join("compose.yaml"), &y).unwrap();
    let o = bounded(&["config"], t.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("excessive aliasing"), "{e}");
    assert!(e.contains("compose.yaml"), "the file is named: {e}");
    // Aliases within the budget still work.
    std::fs::write(
        t.path().join("compose.yaml"),
        "x-env: &env {A: '1'}\nservices:\n  web:\n    image: busybox\n    environment: *env\n",
    )
    .unwrap();
    let o = bounded(&["config"], t.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("A: \"1\""), "{}", stdout(&o));
}

#[test]
fn endless_inputs_are_refused_at_once() {
    let t = tempfile::tempdir().unwrap();
    let svc = "services:\n  web:\n    image: busybox\n";
    for (file, args, needle) in [
        (None, vec!["-f", "/dev/zero", "config"], "/dev/zero"),
        (
            Some(format!("{svc}    env_file: /dev/zero\n")),
            vec!["config"],
            "/dev/zero",
        ),
        (
            Some(format!("{svc}    label_file: /dev/zero\n")),
            vec!["config"],
            "/dev/zero",
        ),
        (
            Some(svc.to_string()),
            vec!["--env-file", "/dev/zero", "config"],
            "/dev/zero",
        ),
        (
            Some(format!("{svc}    env_file: /proc/self\n")),
            vec!["config"],
            "/proc/self",
        ),
    ] {
        if let Some(f) = &file {
            std::fs::write(t.path().join("compose.yaml"), f).unwrap();
        }
        let o = bounded(&args, t.path());
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?} {file:?}: {e}");
        assert!(e.contains(needle), "{args:?}: {e}");
        assert!(!e.contains("panicked"), "{e}");
    }
}

/// Fills the filesystem of `dir` until a write fails.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("fill")).unwrap();
    for chunk in [1 << 20, 4096, 1] {
        let buf = vec![0u8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    let _ = f.sync_all();
    // And the inodes' worth of small files a tmpfs still takes: none needed, writes fail.
    assert!(std::fs::write(dir.join("probe"), "x").is_err(), "the disk is not full");
}

/// Every state file is whole JSON: none empty, none half written, no temporary left.
fn state_files_are_whole(dir: &Path, bad: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            if !["upper", "work", "rootfs", "busybox-rootfs", "layers", "blobs"].contains(&name.as_str()) {
                state_files_are_whole(&p, bad);
            }
            continue;
        }
        if name.ends_with(".tmp") {
            bad.push(format!("{}: left over", p.display()));
        }
        if name.ends_with(".json") {
            let data = std::fs::read(&p).unwrap_or_default();
            if serde_json::from_slice::<serde_json::Value>(&data).is_err() {
                bad.push(format!("{}: {} bytes, not JSON", p.display(), data.len()));
            }
        }
    }
}

#[test]
fn a_full_disk_never_stops_a_stop() {
    if !root() {
        return;
    }
    let logs = tempfile::tempdir().unwrap();
    let mut env = Env::with(Opts {
        tmpfs: Some("48M".into()),
        log: Some(logs.path().join("engine.log")),
        ..Default::default()
    });
    let svc = "    image: rcompose/busybox:latest\n    command: [sh, -c, 'while true; do echo tick; sleep 0.2; done']\n    restart: always\n";
    env.write(
        "compose.yaml",
        &format!("services:\n  a:\n{svc}  b:\n{svc}  c:\n{svc}  d:\n{svc}"),
    );
    env.ok(&["up", "-d"]);
    fill(env.state.path());

    // An engine started on the full disk serves, and says what it could not write.
    let _ = env.daemon.kill();
    let _ = env.daemon.wait();
    let _ = std::fs::remove_file(env.state.path().join("run/rcompose.sock"));
    env.daemon = engine_env::spawn_engine_with(env.state.path(), &env.ns, &env.opts);
    env.wait_for_engine();
    env.wait_for("the containers adopted", || {
        env.ps().iter().filter(|c| c["State"] == "running").count() == 4
    });
    assert!(env.engine_log().contains("rcompose.pid"), "{}", env.engine_log());

    let running = |env: &Env, s: &str| env.ps().iter().any(|c| c["Service"] == s && c["State"] == "running");
    let o = env.rc(&["stop", "-t", "1", "a"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("could not record"), "{}", stderr(&o));
    assert!(!running(&env, "a"));
    let o = env.rc(&["kill", "b"]);
    assert!(o.status.success(), "{}", stderr(&o));
    env.wait_for("b killed", || !running(&env, "b"));
    // Not brought back by its restart policy: the stop holds in memory.
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(!running(&env, "a") && !running(&env, "b"));
    let o = env.rc(&["rm", "-s", "-f", "c"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(env.ps().iter().all(|c| c["Service"] != "c"));
    let o = env.rc(&["down", "-t", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(env.ps().is_empty());
    let mut bad = Vec::new();
    state_files_are_whole(env.state.path(), &mut bad);
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn an_endless_request_body_is_refused_and_the_engine_serves_on() {
    if !root() {
        return;
    }
    use std::io::{Read, Write};
    let env = Env::new();
    let sock = env.state.path().join("run/rcompose.sock");
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let len: usize = 80 << 20;
    s.write_all(
        format!("POST /v1/projects/p/up HTTP/1.1\r\nHost: rcompose\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..(len >> 20) {
            if w.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let _ = writer.join();
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 413"), "{}", &resp[..resp.len().min(300)]);
    // Still serving.
    env.write("compose.yaml", &format!("services:\n  box:\n{SLEEPER}"));
    assert!(env.ps().is_empty());
}

/// The fields of `/proc/<pid>/status` a clean start is seen by.
fn status_fields(status: &str) -> Vec<(String, String)> {
    status
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| ["NoNewPrivs", "CapInh", "CapAmb", "SigIgn", "SigBlk"].contains(k))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn a_workload_and_an_exec_start_clean() {
    if !root() {
        return;
    }
    // The engine ignores SIGPIPE (Rust's runtime does): a container must not.
    let env = Env::new();
    env.write(
        "compose.yaml",
        &format!("services:\n  plain:\n{SLEEPER}  nnp:\n{SLEEPER}    security_opt: ['no-new-privileges:true']\n"),
    );
    env.ok(&["up", "-d"]);
    let zero = "0000000000000000".to_string();
    for (svc, nnp) in [("plain", "0"), ("nnp", "1")] {
        for path in ["/proc/1/status", "/proc/self/status"] {
            let got = status_fields(&env.ok(&["exec", svc, "cat", path]));
            let want = vec![
                ("SigBlk".to_string(), zero.clone()),
                ("SigIgn".to_string(), zero.clone()),
                ("NoNewPrivs".to_string(), nnp.to_string()),
                ("CapInh".to_string(), zero.clone()),
                ("CapAmb".to_string(), zero.clone()),
            ];
            let mut got_sorted = got.clone();
            got_sorted.sort();
            let mut want_sorted = want.clone();
            want_sorted.sort();
            assert_eq!(got_sorted, want_sorted, "{svc} {path}");
        }
    }
    env.ok(&["down", "-t", "0"]);
}
