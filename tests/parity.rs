//! Inside the container, what Docker shows: a stack run by the built `rcompose`, with
//! what an application sees checked against what Docker Engine shows for the same
//! file. The expected values are Docker's, recorded here as facts (observed with
//! docker-compose on Docker Engine 20.10 on this kind of host, and Docker's current
//! defaults where they differ), never computed by the code under test.

mod engine_env;

use engine_env::{root, Env};
use std::time::{Duration, Instant};

const STACK: &str = r#"
name: par
services:
  web:
    image: rcompose/busybox:latest
    command: [sleep, "300"]
    hostname: alpha
    domainname: example.com
    mem_limit: 64m
    pids_limit: 50
    tmpfs: [/run, "/scratch:rw,exec,size=1m"]
    networks: [front, back]
  stubborn:
    image: rcompose/busybox:latest
    # Ignores SIGTERM: only the grace period's SIGKILL stops it.
    command: [sh, -c, 'trap "" TERM; while true; do sleep 1; done']
    stop_grace_period: 1s
    read_only: true
    networks: [front]
  pid1:
    image: rcompose/busybox:latest
    # An image whose entrypoint must be PID 1 (as s6-overlay's /init); `$$$$` is the
    # shell's `$$`.
    command: [sh, -c, 'test $$$$ = 1 || { echo "not PID 1: $$$$"; exit 1; }; echo "PID 1"; sleep 300']
  tini:
    image: rcompose/busybox:latest
    init: true
    command: [sleep, "300"]
networks:
  front:
  back:
"#;

/// `sh -c SCRIPT` in `service`, its output.
fn sh(env: &Env, service: &str, script: &str) -> String {
    env.ok(&["exec", "-T", service, "sh", "-c", script])
}

#[test]
fn inside_the_container_what_docker_shows() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write("compose.yaml", STACK);
    env.ok(&["up", "-d"]);

    // PID 1 is the workload itself; `init: true` puts an init in front of it.
    assert_eq!(sh(&env, "web", "tr '\\0' ' ' < /proc/1/cmdline"), "sleep 300 ");
    env.wait_for("pid1's report", || {
        env.ok(&["logs", "--no-log-prefix", "pid1"]) == "PID 1\n"
    });
    assert_eq!(env.container("par-pid1-1")["State"], "running");
    let tini = sh(
        &env,
        "tini",
        "tr '\\0' ' ' < /proc/2/cmdline; echo; tr '\\0' ' ' < /proc/1/cmdline",
    );
    let (workload, init) = tini.split_once('\n').unwrap_or_default();
    assert_eq!(workload, "sleep 300 ", "the workload is the init's child");
    assert!(!init.starts_with("sleep"), "{init}");
    // Root in the container reads PID 1's environment.
    assert!(sh(&env, "web", "tr '\\0' '\\n' < /proc/1/environ").contains("HOSTNAME=alpha\n"));

    // SIGTERM to a PID 1 without a handler is ignored, as for any PID 1.
    env.ok(&["exec", "-T", "web", "kill", "-TERM", "1"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(env.container("par-web-1")["State"], "running");

    // The container's own cgroup, read-only, its limits at the top.
    let cg = sh(
        &env,
        "web",
        "cd /sys/fs/cgroup; if [ -f cgroup.controllers ]; then cat memory.max pids.max; \
         else cat memory/memory.limit_in_bytes pids/pids.max; fi; touch x 2>&1 | grep -c Read-only",
    );
    assert_eq!(cg, "67108864\n50\n1\n");
    let v2 = sh(
        &env,
        "web",
        "test -f /sys/fs/cgroup/cgroup.controllers && echo v2 || echo v1",
    ) == "v2\n";
    // Its cgroup path as Docker's shows it: the namespace's root on v2, the host's path
    // (the host's namespace, Docker's default there) on v1.
    let own = sh(&env, "web", "cat /proc/self/cgroup");
    if v2 {
        assert_eq!(own, "0::/\n");
    } else {
        let pids = own.lines().find(|l| l.contains(":pids:")).unwrap_or_default();
        let id = env.container("par-web-1")["ID"].as_str().unwrap_or("?").to_string();
        assert!(pids.ends_with(&format!("/{id}")), "{own}");
    }
    // Only the container's processes count against pids_limit: the workload and this
    // exec, no helper of the engine's.
    let current = if v2 {
        "/sys/fs/cgroup/pids.current"
    } else {
        "/sys/fs/cgroup/pids/pids.current"
    };
    assert_eq!(env.ok(&["exec", "-T", "web", "cat", current]), "2\n");
    // Memory and swap: twice the memory (Docker's default for memswap_limit), where the
    // host accounts swap.
    let swap = sh(
        &env,
        "web",
        "cd /sys/fs/cgroup; if [ -f memory.swap.max ]; then echo swap=$(cat memory.swap.max); \
         elif [ -f memory/memory.memsw.limit_in_bytes ]; then echo memsw=$(cat memory/memory.memsw.limit_in_bytes); \
         else echo no swap accounting; fi",
    );
    match swap.trim() {
        // v2 counts swap alone, v1 memory and swap together.
        "swap=67108864" | "memsw=134217728" | "no swap accounting" => {}
        other => panic!("swap: {other}"),
    }

    // /etc/hosts: Docker's lines, then one per network with the FQDN first.
    let hosts = sh(&env, "web", "cat /etc/hosts");
    let ips: Vec<String> = sh(&env, "web", "ip -o -4 addr show | grep -v ' lo ' | awk '{print $4}'")
        .lines()
        .map(|l| l.split('/').next().unwrap_or("").to_string())
        .collect();
    assert_eq!(ips.len(), 2, "two networks: {ips:?}");
    let mut want = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for ip in &ips {
        want.push_str(&format!("{ip}\talpha.example.com alpha\n"));
    }
    assert_eq!(hosts, want);
    // resolv.conf: the embedded server at 127.0.0.11, ndots:0.
    let resolv = sh(&env, "web", "cat /etc/resolv.conf");
    assert!(resolv.starts_with("nameserver 127.0.0.11\n"), "{resolv}");
    assert!(
        resolv
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("options ") && l.ends_with("ndots:0")),
        "{resolv}"
    );
    // Served over UDP and TCP there.
    let listening = sh(&env, "web", "netstat -uln; netstat -tln");
    assert_eq!(listening.matches("127.0.0.11:53 ").count(), 2, "{listening}");
    // Names: the custom hostname and `name.<project>_<network>` forms, from another
    // container on the network, through 127.0.0.11.
    let ip_of = |name: &str| -> String {
        let out = String::from_utf8_lossy(&env.rc(&["exec", "-T", "stubborn", "nslookup", name]).stdout).into_owned();
        out.lines()
            .skip_while(|l| !l.starts_with("Name:"))
            .find_map(|l| l.strip_prefix("Address: ").or_else(|| l.strip_prefix("Address 1: ")))
            .map(|a| a.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    let front_ip = ip_of("web");
    assert!(ips.contains(&front_ip), "web is {front_ip:?}, has {ips:?}");
    for name in ["alpha", "web.par_front", "par-web-1.par_front"] {
        assert_eq!(ip_of(name), front_ip, "{name}");
    }

    // tmpfs: rw,nosuid,nodev,noexec unless `exec` is asked for; the mode 1777.
    let mounts = sh(&env, "web", "grep -E ' /(run|scratch) ' /proc/mounts; stat -c %a /run");
    assert!(
        mounts.contains("tmpfs /run tmpfs rw,nosuid,nodev,noexec,relatime 0 0\n"),
        "{mounts}"
    );
    assert!(
        mounts.contains("tmpfs /scratch tmpfs rw,nosuid,nodev,relatime,size=1024k 0 0\n"),
        "{mounts}"
    );
    assert!(mounts.ends_with("1777\n"), "{mounts}");
    // /proc's read-only parts: ro,nosuid,nodev,noexec.
    let procs = sh(
        &env,
        "web",
        "grep -E ' /proc/(bus|fs|irq|sys|sysrq-trigger) ' /proc/mounts | cut -d' ' -f2,4",
    );
    let present = sh(
        &env,
        "web",
        "cd /proc; ls -d bus fs irq sys sysrq-trigger 2>/dev/null; true",
    );
    assert!(present.contains("sys\n"), "{present}");
    // (sysrq-trigger only where the kernel has it.)
    for p in present.lines() {
        assert!(
            procs.contains(&format!("/proc/{p} ro,nosuid,nodev,noexec,relatime\n")),
            "{p}: {procs}"
        );
    }
    // No /dev/core.
    assert_eq!(sh(&env, "web", "ls /dev/core 2>/dev/null | wc -l"), "0\n");
    // read_only: the generated files are read-only with the root.
    let ro = sh(
        &env,
        "stubborn",
        "for f in hosts hostname resolv.conf; do echo x >> /etc/$f 2>/dev/null && echo $f:written || echo $f:refused; done",
    );
    assert_eq!(ro, "hosts:refused\nhostname:refused\nresolv.conf:refused\n");

    // Exit codes: exec of a missing command 126; run of one 127.
    assert_eq!(
        env.rc(&["exec", "-T", "web", "no-such-command"]).status.code(),
        Some(126)
    );
    assert_eq!(
        env.rc(&["run", "--rm", "-T", "web", "no-such-command"]).status.code(),
        Some(127)
    );

    // Compose's labels, its version among them.
    let labels = &env.container("par-web-1")["Labels"];
    assert!(
        labels["com.docker.compose.version"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{labels}"
    );

    // A stop of an app that ignores SIGTERM: SIGKILL after the grace period, 137.
    let t = Instant::now();
    env.ok(&["stop", "stubborn"]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "stopped before its grace period: {took:?}"
    );
    assert_eq!(env.container("par-stubborn-1")["ExitCode"], 137);

    env.ok(&["down", "-t", "0"]);
    env.assert_nothing_left();
}
