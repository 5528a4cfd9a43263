//! The Compose lifecycle end to end, as root: the built `rcompose` binary against
//! busybox stacks, each with an engine of its own (see `engine_env`).

mod engine_env;

use engine_env::{root, spawn_engine, Env, BIN};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const STACK: &str = r#"
name: shop
services:
  migrate:
    image: rcompose/busybox:latest
    command: ["sh", "-c", "echo migrating; echo schema-v1 > /data/schema"]
    volumes: [data:/data]
  db:
    image: rcompose/busybox:latest
    command: ["sh", "-c", "echo boot >> /data/boots; touch /tmp/ready; while true; do cat /data/schema | nc -l -p 7000; done"]
    healthcheck:
      test: ["CMD-SHELL", "test -f /tmp/ready"]
      interval: 300ms
    volumes: [data:/data]
    depends_on:
      migrate: {condition: service_completed_successfully}
  web:
    image: rcompose/busybox:latest
    command: ["sh", "-c", "mkdir -p /www; nc db 7000 > /www/index.html; httpd -f -p 8080 -h /www"]
    environment: {GREETING: hello}
    ports: ["127.0.0.1::8080"]
    depends_on:
      db: {condition: service_healthy}
  crashy:
    image: rcompose/busybox:latest
    command: ["sh", "-c", "echo crash; exit 3"]
    restart: on-failure:2
volumes:
  data:
"#;

#[test]
fn a_stack_comes_up_converges_and_goes_down() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write("compose.yaml", STACK);
    let o = env.rc(&["up", "-d"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}\n{}", env.engine_log());
    for line in [
        " Network shop_default  Created",
        " Volume \"shop_data\"  Created",
        " Container shop-migrate-1  Started",
        " Container shop-db-1  Healthy",
        " Container shop-web-1  Started",
    ] {
        assert!(err.contains(line), "missing {line:?} in:\n{err}");
    }
    // The migration ran first and ended; the request through the front end's published
    // port reaches the data store by its service name.
    let migrate = env.container("shop-migrate-1");
    assert_eq!(
        (migrate["State"].as_str(), migrate["ExitCode"].as_i64()),
        (Some("exited"), Some(0))
    );
    let web = env.container("shop-web-1");
    let port = web["Publishers"][0]["PublishedPort"].as_u64().unwrap() as u16;
    assert!(port > 0);
    assert!(env.http_get(port).contains("schema-v1"));
    let table = env.ok(&["ps"]);
    assert!(table.starts_with("NAME "), "{table}");
    assert!(table.contains(&format!("127.0.0.1:{port}->8080/tcp")), "{table}");
    assert!(table.contains("(healthy)"), "{table}");
    // A new volume got the image's content at its mount point.
    let vol = env.state.path().join("volumes/shop_data/_data");
    assert_eq!(std::fs::read_to_string(vol.join("from-image")).unwrap(), "seed\n");

    // The crashing service is restarted by its policy, twice, then left exited.
    env.wait_for("crashy to give up", || {
        let c = env.container("shop-crashy-1");
        c["State"] == "exited" && c["RestartCount"] == 2
    });
    let logs = env.ok(&["logs", "crashy"]);
    assert_eq!(logs.matches("| crash\n").count(), 3, "{logs}");
    assert!(logs.starts_with("crashy-1  | crash"), "{logs}");

    // An edited service is recreated; the others keep their containers.
    let before: Vec<(String, String)> = env
        .ps()
        .iter()
        .map(|c| {
            (
                c["Name"].as_str().unwrap().to_string(),
                c["ID"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    env.write("compose.yaml", &STACK.replace("GREETING: hello", "GREETING: bonjour"));
    let o = env.rc(&["up", "-d", "web", "--no-deps"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(" Container shop-web-1  Recreated"), "{err}");
    for (name, id) in &before {
        let now = env.container(name)["ID"].as_str().unwrap().to_string();
        assert_eq!(name == "shop-web-1", &now != id, "{name}");
    }

    // Scale up and down without touching the rest.
    let db_id = env.container("shop-db-1")["ID"].clone();
    env.ok(&["up", "-d", "--no-deps", "--scale", "web=3", "web"]);
    let webs = |env: &Env| env.ps().into_iter().filter(|c| c["Service"] == "web").count();
    assert_eq!(webs(&env), 3);
    env.ok(&["up", "-d", "--no-deps", "--scale", "web=1", "web"]);
    assert_eq!(webs(&env), 1);
    assert_eq!(env.container("shop-db-1")["ID"], db_id);

    // stop / start / restart keep the containers.
    env.ok(&["stop", "db"]);
    assert_eq!(env.container("shop-db-1")["State"], "exited");
    env.ok(&["start", "db"]);
    assert_eq!(env.container("shop-db-1")["State"], "running");
    assert_eq!(env.container("shop-db-1")["ID"], db_id);
    assert!(env.ok(&["ls"]).contains("shop"));

    // The volume's data survives down and up, and goes with down -v.
    env.ok(&["down"]);
    assert!(env.ps().is_empty());
    assert_eq!(std::fs::read_to_string(vol.join("boots")).unwrap(), "boot\nboot\n");
    env.ok(&["up", "-d"]);
    assert_eq!(
        std::fs::read_to_string(vol.join("boots")).unwrap(),
        "boot\nboot\nboot\n"
    );
    let o = env.rc(&["down", "-v"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(" Volume shop_data  Removed"), "{err}");
    assert!(!vol.exists());
    env.assert_nothing_left();
}

#[test]
fn exit_code_from_and_failed_dependencies() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write(
        "compose.yaml",
        "name: codes\nservices:\n  long:\n    image: rcompose/busybox:latest\n    command: [sleep, '30']\n  job:\n    image: rcompose/busybox:latest\n    command: [sh, -c, 'echo working; sleep 0.3; exit 7']\n",
    );
    let o = env.rc(&["up", "--exit-code-from", "job"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(7),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Prefixes padded to the longest name plus one, as Compose pads them.
    assert!(out.lines().any(|l| l == "job-1   | working"), "{out}");
    assert!(out.contains("codes-job-1 exited with code 7"), "{out}");
    // The others were stopped on the way out.
    assert_eq!(env.container("codes-long-1")["State"], "exited");
    env.ok(&["down"]);

    // A dependency that never becomes healthy stops the dependent with Compose's words.
    env.write(
        "compose.yaml",
        "name: codes\nservices:\n  db:\n    image: rcompose/busybox:latest\n    command: [sleep, '30']\n    healthcheck: {test: [CMD, 'false'], interval: 200ms, retries: 2}\n  app:\n    image: rcompose/busybox:latest\n    command: [sleep, '30']\n    depends_on: {db: {condition: service_healthy}}\n",
    );
    let o = env.rc(&["up", "-d"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("dependency failed to start: container codes-db-1 is unhealthy"),
        "{err}"
    );
    assert!(env.ps().iter().all(|c| c["Name"] != "codes-app-1"));
    // A published port that is taken: Docker's words, exit 1.
    env.ok(&["down", "-t", "0"]);
    let taken = env.in_netns(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let port = taken.local_addr().unwrap().port();
    env.write(
        "compose.yaml",
        &format!("name: codes\nservices:\n  web:\n    image: rcompose/busybox:latest\n    command: [sleep, '30']\n    ports: ['127.0.0.1:{port}:80']\n"),
    );
    let o = env.rc(&["up", "-d"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("Bind for 127.0.0.1:{port} failed: port is already allocated")),
        "{err}"
    );
    drop(taken);
    // Ctrl-C in attached mode stops the services and exits 130.
    env.write(
        "compose.yaml",
        "name: codes\nservices:\n  talk:\n    image: rcompose/busybox:latest\n    command: [sh, -c, 'echo ready; sleep 30']\n",
    );
    let mut up = env
        .command(&["up"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(up.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert!(line.ends_with("| ready\n"), "{line}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let o = up.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(
        err.contains("Gracefully stopping... (press Ctrl+C again to force)"),
        "{err}"
    );
    assert!(err.contains(" Container codes-talk-1  Stopped"), "{err}");
    assert_eq!(env.container("codes-talk-1")["State"], "exited");
    // An unknown service.
    let o = env.rc(&["up", "-d", "nosuch"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such service: nosuch"));
    // The container whose port was taken is an orphan of the last file: kept without
    // --remove-orphans, as Compose keeps it.
    env.ok(&["down", "-t", "0"]);
    assert_eq!(env.ps().len(), 1);
    env.ok(&["down", "--remove-orphans", "-t", "0"]);
    env.assert_nothing_left();
}

#[test]
fn containers_outlive_the_engine_and_are_adopted() {
    if !root() {
        return;
    }
    let mut env = Env::new();
    env.write(
        "compose.yaml",
        "name: keep\nservices:\n  web:\n    image: rcompose/busybox:latest\n    command: [sh, -c, 'mkdir -p /www; echo kept > /www/index.html; httpd -f -p 80 -h /www']\n    ports: ['127.0.0.1::80']\n    healthcheck: {test: [CMD, 'true'], interval: 200ms}\n    restart: always\n",
    );
    env.ok(&["up", "-d", "--wait"]);
    let before = env.container("keep-web-1");
    let port = before["Publishers"][0]["PublishedPort"].as_u64().unwrap() as u16;
    // A clean shutdown leaves the containers running.
    let ns = format!("/proc/{}/ns/net", env.daemon.id());
    let ns = std::fs::File::open(ns).unwrap();
    stop_engine(&mut env.daemon);
    // A new engine in the same namespace adopts them: same container, its port and
    // health come back.
    env.daemon = spawn_engine(env.state.path(), &ns);
    // Waiting on the socket, not on a command: a command would start an engine itself.
    let sock = env.state.path().join("run/rcompose.sock");
    env.wait_for("the new engine", || sock.exists());
    let after = env.container("keep-web-1");
    assert_eq!(
        (after["ID"].clone(), after["State"].as_str()),
        (before["ID"].clone(), Some("running"))
    );
    assert!(env.http_get(port).contains("kept"));
    env.wait_for("health to come back", || {
        env.container("keep-web-1")["Health"] == "healthy"
    });

    // A container that dies while no engine runs gets its restart policy from the next.
    stop_engine(&mut env.daemon);
    let dir = env.state.path().join("containers").join(before["ID"].as_str().unwrap());
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    let init = state["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(init), nix::sys::signal::Signal::SIGKILL).unwrap();
    env.wait_for("the init to go", || !Path::new(&format!("/proc/{init}")).exists());
    env.daemon = spawn_engine(env.state.path(), &ns);
    env.wait_for("the third engine", || sock.exists());
    env.wait_for("the restart", || {
        let c = env.container("keep-web-1");
        c["State"] == "running" && c["RestartCount"] == 1
    });
    assert_eq!(env.container("keep-web-1")["ID"], before["ID"]);
    assert!(env.http_get(port).contains("kept"));
    env.ok(&["down"]);
    env.assert_nothing_left();
}

/// SIGTERM, as a service manager stops the engine; it must exit cleanly.
fn stop_engine(daemon: &mut Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = daemon.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn the_cli_starts_an_engine_on_demand() {
    if !root() {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let root = state.path().to_path_buf();
    // From a namespace of its own, so that the engine it starts lives there.
    let out = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        Command::new(BIN)
            .arg("ls")
            .env("RCOMPOSE_ROOT", &root)
            .output()
            .unwrap()
    })
    .join()
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "NAME   STATUS   CONFIG FILES\n");
    let pid: i32 = std::fs::read_to_string(state.path().join("run/rcompose.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // One engine per root: a second one refuses.
    let second = Command::new(BIN)
        .arg("daemon")
        .env("RCOMPOSE_ROOT", state.path())
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("another engine is already running"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!state.path().join("run/rcompose.sock").exists());
}

#[test]
fn secrets_configs_hooks_volumes_from_and_links() {
    if !root() {
        return;
    }
    let env = Env::new();
    std::fs::create_dir(env.project.path().join("shared")).unwrap();
    env.write("shared/data", "from-host\n");
    env.write("token.txt", "s3cret\n");
    env.write(
        "compose.yaml",
        r#"
name: files
services:
  app:
    image: rcompose/busybox:latest
    command: [sh, -c, 'while [ ! -f /tmp/post ]; do sleep 0.05; done; cat /run/secrets/token /run/secrets/apikey /etc/app.conf; echo; stat -c "mode=%a uid=%u" /etc/app.conf; cat /shared/data; grep -c database /etc/hosts; echo done; sleep 30']
    secrets: [token, apikey]
    configs: [{source: appconf, target: /etc/app.conf, mode: 0400, uid: "1"}]
    post_start: [{command: [touch, /tmp/post]}]
    pre_stop: [{command: [sh, -c, 'echo stopping > /shared/bye']}]
    volumes_from: [store]
    links: ["store:database"]
    depends_on: [store]
  store:
    image: rcompose/busybox:latest
    command: [sleep, '30']
    volumes: [./shared:/shared]
secrets:
  token: {file: ./token.txt}
  apikey: {environment: API_KEY}
configs:
  appconf: {content: "setting=1"}
"#,
    );
    let o = env.rc_env(&["up", "-d"], &[("API_KEY", "k-123")]);
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        env.engine_log()
    );
    env.wait_for("the app's report", || env.ok(&["logs", "app"]).contains("done"));
    let logs = env.ok(&["logs", "--no-log-prefix", "app"]);
    assert_eq!(logs, "s3cret\nk-123setting=1\nmode=400 uid=1\nfrom-host\n1\ndone\n");
    env.ok(&["stop", "-t", "1", "app"]);
    assert_eq!(
        std::fs::read_to_string(env.project.path().join("shared/bye")).unwrap(),
        "stopping\n"
    );
    // A missing variable is named before anything is created.
    env.ok(&["down", "-t", "0"]);
    let o = env.rc(&["up", "-d"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("secrets.apikey: environment variable API_KEY is not set"));
    env.assert_nothing_left();
}

#[test]
fn wait_restart_dependents_and_rmi() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write(
        "compose.yaml",
        "name: w\nservices:\n  db:\n    image: rcompose/busybox:latest\n    command: [sleep, '30']\n    stop_signal: SIGKILL\n  app:\n    image: rcompose/busybox:latest\n    command: [sh, -c, 'echo start; sleep 30']\n    stop_signal: SIGKILL\n    depends_on: {db: {condition: service_started, restart: true}}\n  job:\n    image: rcompose/busybox:latest\n    command: [sh, -c, 'sleep 0.3; exit 5']\n  flaky:\n    image: rcompose/busybox:latest\n    command: [sh, -c, 'sleep 1.1; exit 1']\n    deploy: {restart_policy: {condition: on-failure, max_attempts: 1, window: 1s}}\n",
    );
    env.ok(&["up", "-d"]);
    // Runs longer than the policy's window are not counted against max_attempts.
    env.wait_for("flaky past its one attempt", || {
        env.container("w-flaky-1")["RestartCount"].as_u64() >= Some(2)
    });
    let o = env.rc(&["wait", "job"]);
    assert_eq!(o.status.code(), Some(5), "{}", String::from_utf8_lossy(&o.stderr));
    // Restarting db restarts app, which asked for it.
    let o = env.rc(&["restart", "db"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(" Container w-app-1  Restarting"), "{err}");
    env.wait_for("app's second start", || {
        env.ok(&["logs", "app"]).matches("start").count() == 2
    });
    let o = env.rc(&["down", "--rmi", "all"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains(" Image rcompose/busybox:latest  Removed"));
    assert!(!env.ok(&["image", "ls"]).contains("rcompose/busybox"));
    env.assert_nothing_left();
}

#[test]
fn names_resolve_only_on_shared_networks() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write(
        "compose.yaml",
        r#"
name: nets
services:
  a:
    image: rcompose/busybox:latest
    command: [sh, -c, 'nslookup b >/dev/null 2>&1; echo "b:$$?"; sleep 30']
    networks: [front]
    mac_address: 02:bb:00:00:00:02
    depends_on: [b]
  b:
    image: rcompose/busybox:latest
    command: [sleep, '30']
    networks:
      back: {aliases: [store], mac_address: "02:aa:00:00:00:01"}
  both:
    image: rcompose/busybox:latest
    command: [sh, -c, 'for n in a b store; do nslookup $$n >/dev/null 2>&1; echo "$$n:$$?"; done; ip -o link | grep -c "eth[01]@"; sleep 30']
    networks: [front, back]
    depends_on: [a, b]
networks:
  front:
  back:
    internal: true
"#,
    );
    env.ok(&["up", "-d"]);
    // A failed lookup takes a while (the forward to the host's resolvers times out):
    // wait for both reports.
    env.wait_for("the lookups", || {
        env.ok(&["logs", "both"]).ends_with("2\n") && !env.ok(&["logs", "a"]).is_empty()
    });
    // a is not on b's network: no answer for it. both shares a network with each.
    assert_eq!(env.ok(&["logs", "--no-log-prefix", "a"]), "b:1\n");
    assert_eq!(env.ok(&["logs", "--no-log-prefix", "both"]), "a:0\nb:0\nstore:0\n2\n");
    // mac_address, of the service (on its first network) and of one network.
    let mac = |s: &str| env.ok(&["exec", "-T", s, "cat", "/sys/class/net/eth0/address"]);
    assert_eq!(mac("a"), "02:bb:00:00:00:02\n");
    assert_eq!(mac("b"), "02:aa:00:00:00:01\n");
    // Others get Docker's, from their address.
    assert!(mac("both").starts_with("02:42:"), "{}", mac("both"));
    let e = env.refused(
        "bad.yaml",
        "name: nets\nservices:\n  x:\n    image: rcompose/busybox:latest\n    mac_address: 01:00:5e:00:00:01\n",
    );
    assert!(
        e.contains("service \"x\": mac_address: invalid MAC address \"01:00:5e:00:00:01\": a multicast address"),
        "{e}"
    );
    env.ok(&["down", "-t", "0"]);
    env.assert_nothing_left();
}

#[test]
fn ipv6_networks_with_aaaa_records() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write(
        "compose.yaml",
        r#"
name: six
services:
  a:
    image: rcompose/busybox:latest
    command: [sh, -c, 'mkdir -p /www && echo six > /www/index.html && httpd -f -p 80 -h /www']
    networks:
      v6net: {ipv6_address: "fd00:db8:6::10"}
    ports: ["[::1]:8086:80"]
  b:
    image: rcompose/busybox:latest
    command: [sleep, '60']
    networks: [v6net, auto]
networks:
  v6net:
    enable_ipv6: true
    ipam:
      config:
        - subnet: 10.66.0.0/24
        - subnet: fd00:db8:6::/64
  auto:
    enable_ipv6: true
"#,
    );
    env.ok(&["up", "-d"]);
    // The static address, on the network's IPv6 subnet; the IPv4 side as configured.
    let addrs = env.ok(&["exec", "-T", "a", "ip", "-o", "addr", "show", "eth0"]);
    assert!(
        addrs.contains("inet6 fd00:db8:6::10/64") && addrs.contains("inet 10.66.0."),
        "{addrs}"
    );
    // AAAA records by service name; traffic over IPv6 between containers.
    let aaaa = env.ok(&["exec", "-T", "b", "nslookup", "-type=AAAA", "a"]);
    assert!(aaaa.contains("fd00:db8:6::10"), "{aaaa}");
    let a4 = env.ok(&["exec", "-T", "b", "nslookup", "a"]);
    assert!(a4.contains("10.66.0."), "{a4}");
    let mut page = String::new();
    env.wait_for("a over IPv6", || {
        page = String::from_utf8_lossy(
            &env.rc(&["exec", "-T", "b", "wget", "-q", "-O-", "http://[fd00:db8:6::10]/"])
                .stdout,
        )
        .into_owned();
        page == "six\n"
    });
    // A subnet of its own from the unique local range when none is given (`auto`, first
    // by name as Compose orders equal priorities), and the IPv6 default route through
    // that first network's gateway.
    let eth0 = env.ok(&[
        "exec", "-T", "b", "ip", "-o", "-6", "addr", "show", "eth0", "scope", "global",
    ]);
    let auto = eth0
        .split_whitespace()
        .find(|w| w.starts_with("fd"))
        .unwrap_or_else(|| panic!("{eth0}"))
        .to_string();
    assert!(!auto.starts_with("fd00:db8:6:") && auto.ends_with("/64"), "{auto}");
    let prefix = auto.split("::").next().unwrap().to_string();
    let routes = env.ok(&["exec", "-T", "b", "ip", "-6", "route"]);
    assert!(
        routes.contains(&format!("default via {prefix}::1 dev eth0")),
        "{routes}"
    );
    // A port published on an IPv6 host address.
    let got = env.in_netns(|| {
        use std::io::{Read, Write};
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = (|| -> std::io::Result<String> {
                let mut c = std::net::TcpStream::connect("[::1]:8086")?;
                c.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
                let mut out = String::new();
                c.read_to_string(&mut out)?;
                Ok(out)
            })();
            match r {
                Ok(s) if s.contains("200 OK") => return s,
                _ if std::time::Instant::now() > deadline => return format!("{r:?}"),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
    assert!(got.ends_with("six\n"), "{got}");
    // An IPv6 address on a network without IPv6 is refused up front.
    let e = env.refused(
        "bad.yaml",
        "name: six\nservices:\n  x:\n    image: rcompose/busybox:latest\n    networks:\n      plain: {ipv6_address: 'fd00::5'}\nnetworks:\n  plain: {}\n",
    );
    assert!(
        e.contains("networks.plain.ipv6_address \"fd00::5\": network \"plain\" does not have enable_ipv6"),
        "{e}"
    );
    // So is an interface name no interface can have; nothing is made.
    let e = env.refused(
        "bad.yaml",
        "name: six\nservices:\n  x:\n    image: rcompose/busybox:latest\n    networks:\n      default: {interface_name: averyveryverylongname}\n",
    );
    assert!(
        e.contains("service \"x\": networks.default.interface_name \"averyveryverylongname\": an interface name is 1 to 15 bytes"),
        "{e}"
    );
    assert!(!e.contains("Creating"), "{e}");
    env.ok(&["down", "-t", "0"]);
    env.assert_nothing_left();
}

/// The `N` of `/proc/self/uid_map`'s only line, as (inside, host, size).
fn uid_map(text: &str) -> (u64, u64, u64) {
    let f: Vec<u64> = text.split_whitespace().map(|n| n.parse().unwrap()).collect();
    assert_eq!(f.len(), 3, "{text}");
    (f[0], f[1], f[2])
}

#[test]
fn user_namespaces_per_service() {
    if !root() {
        return;
    }
    let mut env = Env::new();
    // Refused up front, naming the service and the value.
    let e = env.refused(
        "bad.yaml",
        "services:\n  x:\n    image: rcompose/busybox:latest\n    userns_mode: remap\n",
    );
    assert!(
        e.contains("service \"x\": userns_mode \"remap\" is not supported: use \"host\", \"auto\""),
        "{e}"
    );
    let e = env.refused(
        "priv.yaml",
        "services:\n  x:\n    image: rcompose/busybox:latest\n    userns_mode: auto\n    privileged: true\n",
    );
    assert!(
        e.contains("privileged mode is incompatible with user namespaces"),
        "{e}"
    );
    env.write("token.txt", "s3cret\n");
    env.write(
        "compose.yaml",
        r#"
name: uns
services:
  a:
    image: rcompose/busybox:latest
    userns_mode: auto
    command: [httpd, -f, -p, '80', -h, /data]
    volumes: [shared:/data]
    secrets: [token]
  b:
    image: rcompose/busybox:latest
    userns_mode: auto:size=1024
    command: [sleep, '300']
    volumes: [shared:/data]
  plain:
    image: rcompose/busybox:latest
    command: [sleep, '300']
    volumes: [shared:/data]
volumes:
  shared: {}
secrets:
  token: {file: ./token.txt}
"#,
    );
    env.ok(&["up", "-d"]);
    // Each has a range of its own, apart from the other's; `plain` has the host's IDs.
    let (a0, a_host, a_size) = uid_map(&env.ok(&["exec", "-T", "a", "cat", "/proc/self/uid_map"]));
    let (b0, b_host, b_size) = uid_map(&env.ok(&["exec", "-T", "b", "cat", "/proc/self/uid_map"]));
    assert_eq!((a0, a_size, b0, b_size), (0, 65536, 0, 1024));
    assert!(a_host > 0 && b_host > 0);
    assert!(
        a_host + a_size <= b_host || b_host + b_size <= a_host,
        "{a_host} {b_host}"
    );
    assert_eq!(
        uid_map(&env.ok(&["exec", "-T", "plain", "cat", "/proc/self/uid_map"])),
        (0, 0, 4294967295)
    );
    // The shared volume (filled from the image) and the secret are root's in each.
    env.ok(&["exec", "-T", "a", "sh", "-c", "echo hi > /data/index.html"]);
    for s in ["a", "b", "plain"] {
        let owners = env.ok(&[
            "exec",
            "-T",
            s,
            "stat",
            "-c",
            "%u:%g",
            "/data/index.html",
            "/data/from-image",
        ]);
        assert_eq!(owners, "0:0\n0:0\n", "{s}");
    }
    assert_eq!(
        env.ok(&["exec", "-T", "a", "stat", "-c", "%u", "/run/secrets/token"]),
        "0\n"
    );
    // A low port and a raw socket work: the network namespace is the container's.
    assert_eq!(
        env.ok(&["exec", "-T", "b", "wget", "-q", "-O-", "http://a/index.html"]),
        "hi\n"
    );
    env.ok(&["exec", "-T", "b", "ping", "-c", "1", "-W", "5", "a"]);
    // cp: what arrives is the container root's (the host's files are the caller's).
    env.write("copied.txt", "copied\n");
    env.ok(&["cp", "copied.txt", "a:/tmp/copied.txt"]);
    assert_eq!(
        env.ok(&["exec", "-T", "a", "stat", "-c", "%u:%g", "/tmp/copied.txt"]),
        "0:0\n"
    );
    // An engine killed and replaced finds the same namespaces; the range stays with
    // the container across a restart.
    let ns = std::fs::File::open(format!("/proc/{}/ns/net", env.daemon.id())).unwrap();
    env.daemon.kill().unwrap();
    env.daemon.wait().unwrap();
    // The dead engine's socket stays behind: wait for the new one's.
    let sock = env.state.path().join("run/rcompose.sock");
    std::fs::remove_file(&sock).unwrap();
    env.daemon = spawn_engine(env.state.path(), &ns);
    env.wait_for("the new engine", || sock.exists());
    assert_eq!(
        uid_map(&env.ok(&["exec", "-T", "a", "cat", "/proc/self/uid_map"])),
        (0, a_host, 65536)
    );
    env.ok(&["restart", "-t", "1", "a"]);
    assert_eq!(
        uid_map(&env.ok(&["exec", "-T", "a", "cat", "/proc/self/uid_map"])),
        (0, a_host, 65536)
    );
    assert_eq!(env.ok(&["exec", "-T", "a", "cat", "/tmp/copied.txt"]), "copied\n");
    env.ok(&["down", "-v", "-t", "0"]);
    env.assert_nothing_left();
}

/// A service over an image with its own command line, environment and working
/// directory, with a bind mount, a tmpfs and a user: merged and run as Docker does.
#[test]
fn a_compose_service_runs_as_docker_would_run_it() {
    if !root() {
        return;
    }
    let env = Env::new();
    let fs = env.state.path().join("busybox-rootfs");
    // The image's accounts, as the runtime's tests give it: `user: nobody` resolves there.
    std::fs::write(
        fs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )
    .unwrap();
    env.ok(&[
        "image",
        "import",
        "--change",
        "CMD [\"/bin/busybox\", \"echo\", \"from-image\"]",
        "--change",
        "ENV FROM_IMAGE=yes GREETING=image",
        "--change",
        "WORKDIR /tmp",
        fs.to_str().unwrap(),
        "local",
    ]);
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in.txt"), "host file").unwrap();
    env.write(
        "compose.yaml",
        &format!(
            "services:\n  app:\n    image: local\n    entrypoint: [/bin/busybox, sh, -c]\n    command: ['echo $$GREETING $$FROM_IMAGE $$(pwd) $$(cat /data/in.txt) $$(busybox id -u); echo x > /scratch/y && echo tmpfs-ok']\n    environment: {{GREETING: service}}\n    user: nobody\n    volumes: ['{}:/data:ro']\n    tmpfs: ['/scratch']\n",
            host.path().display()
        ),
    );
    let out = env.ok(&["run", "--rm", "app"]);
    assert!(
        out.contains("service yes /tmp host file 65534\n") && out.contains("tmpfs-ok"),
        "{out}"
    );
    env.ok(&["down"]);
    env.assert_nothing_left();
}
