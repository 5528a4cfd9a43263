//! Working with running services end to end, as root: `exec` with and without a
//! terminal, `cp`, and `images`, `port`, `top`, `stats`, `scale`, `events` (see
//! `engine_env` for the harness).

mod engine_env;

use engine_env::{root, Env};
use std::path::Path;
use std::time::Duration;

#[test]
fn images_port_top_and_events() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write(
        "compose.yaml",
        "name: look\nservices:\n  web:\n    image: rcompose/busybox:latest\n    command: [sh, -c, 'mkdir -p /www; httpd -f -p 8080 -h /www']\n    ports: ['127.0.0.1::8080']\n",
    );
    env.ok(&["up", "-d"]);
    let published = env.container("look-web-1")["Publishers"][0]["PublishedPort"]
        .as_u64()
        .unwrap();
    assert_eq!(env.ok(&["port", "web", "8080"]), format!("127.0.0.1:{published}\n"));
    let o = env.rc(&["port", "web", "9999"]);
    assert_eq!(o.status.code(), Some(1));
    let images = env.ok(&["images"]);
    assert!(images.starts_with("CONTAINER "), "{images}");
    assert!(
        images.contains("look-web-1") && images.contains("rcompose/busybox   latest"),
        "{images}"
    );
    let top = env.ok(&["top"]);
    assert!(top.starts_with("look-web-1\nUID "), "{top}");
    assert!(top.contains("httpd -f -p 8080 -h /www"), "{top}");
    assert!(!top.contains("__rcompose"), "the init is not shown: {top}");
    // `scale` is `up` of those services at those counts.
    env.ok(&["scale", "web=2"]);
    assert_eq!(env.ps().iter().filter(|c| c["Service"] == "web").count(), 2);
    env.ok(&["scale", "web=1"]);
    // stats: memory near what the container holds (24 MiB in its /dev/shm), its limit.
    env.write(
        "compose.yaml",
        "name: look\nservices:\n  web:\n    image: rcompose/busybox:latest\n    command: [sh, -c, 'mkdir -p /www; httpd -f -p 8080 -h /www']\n    ports: ['127.0.0.1::8080']\n  hog:\n    image: rcompose/busybox:latest\n    command: [sh, -c, 'head -c 25165824 /dev/zero > /dev/shm/fill; touch /tmp/full; sleep 30']\n    mem_limit: 128m\n",
    );
    env.ok(&["up", "-d", "hog"]);
    env.wait_for("hog to fill", || {
        env.rc(&["exec", "-T", "hog", "test", "-f", "/tmp/full"])
            .status
            .success()
    });
    let line = env.ok(&["stats", "--no-stream", "--format", "json", "hog"]);
    let st: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let mem = st["MemUsage"].as_str().unwrap().to_string();
    let (usage, limit) = mem.split_once(" / ").unwrap();
    assert_eq!(limit, "128MiB", "{st}");
    let mib: f64 = usage.trim_end_matches("MiB").parse().unwrap_or(0.0);
    assert!(usage.ends_with("MiB") && (24.0..40.0).contains(&mib), "{st}");
    assert_eq!(st["PIDs"], "1", "{st}");
    let table = env.ok(&["stats", "--no-stream"]);
    assert!(table.starts_with("CONTAINER ID   NAME"), "{table}");
    // Events: a restart is a die and a start.
    let mut events = env
        .command(&["events", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    env.ok(&["restart", "web"]);
    let mut seen = Vec::new();
    let mut out = std::io::BufReader::new(events.stdout.take().unwrap());
    while !(seen.contains(&"die".to_string()) && seen.contains(&"start".to_string())) {
        let mut line = String::new();
        assert!(
            std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
            "events ended: {seen:?}"
        );
        let ev: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (ev["type"].as_str(), ev["service"].as_str()),
            (Some("container"), Some("web"))
        );
        seen.push(ev["action"].as_str().unwrap().to_string());
    }
    let _ = events.kill();
    let _ = events.wait();
    env.ok(&["down"]);
    env.assert_nothing_left();
}

#[test]
fn exec_with_and_without_a_terminal() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write(
        "compose.yaml",
        "name: ex\nservices:\n  app:\n    image: rcompose/busybox:latest\n    command: [sleep, '30']\n    environment: {FROM_FILE: yes}\n    working_dir: /tmp\n  gone:\n    image: rcompose/busybox:latest\n    command: ['true']\n",
    );
    env.ok(&["up", "-d"]);
    // Plain streams: stdout and stderr apart, the exit code returned, stdin forwarded.
    let o = env.rc(&[
        "exec",
        "-T",
        "-e",
        "EXTRA=1",
        "app",
        "sh",
        "-c",
        "echo out $FROM_FILE $EXTRA $(pwd); echo err >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out yes 1 /tmp\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    let mut child = env
        .command(&[
            "exec",
            "-T",
            "-u",
            "65534",
            "-w",
            "/",
            "app",
            "sh",
            "-c",
            "cat; id -u; pwd",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(b"piped in\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "piped in\n65534\n/\n");
    // A terminal: the test drives a pty of 30x100 as the CLI's standard streams.
    let pty = nix::pty::openpty(
        Some(&nix::pty::Winsize {
            ws_row: 30,
            ws_col: 100,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }),
        None,
    )
    .unwrap();
    let slave = std::fs::File::from(pty.slave);
    let mut child = env
        .command(&[
            "exec",
            "app",
            "sh",
            "-c",
            "[ -t 0 ] && echo is-a-tty; tty; stty size; exit 4",
        ])
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    let status = child.wait().unwrap();
    let text = read_until_closed(pty.master);
    assert_eq!(status.code(), Some(4), "{text}");
    // Its terminal is one of the container's own, and of the caller's size.
    assert!(text.contains("is-a-tty\r\n/dev/pts/0\r\n30 100"), "{text:?}");
    // Resizes follow the terminal: the test resizes its pty and signals the CLI (until
    // the command, a second later, reports its size).
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = std::fs::File::from(pty.slave);
    let mut child = env
        .command(&["exec", "app", "sh", "-c", "sleep 1; stty size"])
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    let ws = libc::winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize.
    unsafe {
        libc::ioctl(
            std::os::unix::io::AsRawFd::as_raw_fd(&pty.master),
            libc::TIOCSWINSZ,
            &ws,
        )
    };
    while child.try_wait().unwrap().is_none() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGWINCH,
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = read_until_closed(pty.master);
    assert!(text.contains("40 120"), "{text:?}");
    // Compose's messages for what cannot be run; Docker's exec says 126 for every
    // process it could not start, a missing one too.
    let o = env.rc(&["exec", "-T", "app", "no-such-command"]);
    assert_eq!(o.status.code(), Some(126), "{}", String::from_utf8_lossy(&o.stderr));
    let o = env.rc(&["exec", "-T", "--index", "2", "app", "true"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("service \"app\" is not running container #2"));
    env.wait_for("gone to exit", || env.container("ex-gone-1")["State"] == "exited");
    let o = env.rc(&["exec", "-T", "gone", "true"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("service \"gone\" is not running"));
    // Detached: started and left.
    env.ok(&["exec", "-d", "app", "sh", "-c", "echo bg > /tmp/bg"]);
    env.wait_for("the detached command", || {
        env.rc(&["exec", "-T", "app", "test", "-f", "/tmp/bg"]).status.success()
    });
    env.ok(&["down", "-t", "0"]);
    env.assert_nothing_left();
}

#[test]
fn cp_round_trips_a_tree_and_stays_inside() {
    if !root() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.write(
        "compose.yaml",
        "name: cpy\nservices:\n  app:\n    image: rcompose/busybox:latest\n    command: [sleep, '30']\n",
    );
    env.ok(&["up", "-d"]);
    let src = env.project.path().join("tree");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(src.join("sub/run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("sub/run.sh", src.join("link")).unwrap();
    std::os::unix::fs::chown(src.join("sub/run.sh"), Some(1234), Some(1234)).unwrap();
    // In, with -a keeping the owner; the container sees the tree.
    env.ok(&["cp", "-a", "tree", "app:/srv"]);
    let o = env.rc(&[
        "exec",
        "-T",
        "app",
        "sh",
        "-c",
        "stat -c '%a %u' /srv/sub/run.sh; readlink /srv/link; /srv/link",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "750 1234\nsub/run.sh\nhi\n");
    // Out again, into an existing directory and under a new name.
    std::fs::create_dir(env.project.path().join("back")).unwrap();
    env.ok(&["cp", "app:/srv", "back"]);
    let copied = env.project.path().join("back/srv/sub/run.sh");
    assert_eq!(std::fs::metadata(&copied).unwrap().permissions().mode() & 0o777, 0o750);
    assert_eq!(
        std::fs::read_link(env.project.path().join("back/srv/link")).unwrap(),
        Path::new("sub/run.sh")
    );
    env.ok(&["cp", "app:/srv/sub/run.sh", "renamed.sh"]);
    assert_eq!(
        std::fs::read_to_string(env.project.path().join("renamed.sh")).unwrap(),
        "#!/bin/sh\necho hi\n"
    );
    // Paths and links resolve inside the container, never on the host.
    env.ok(&["exec", "-T", "app", "ln", "-s", "/etc", "/tmp/hostetc"]);
    env.ok(&["cp", "-L", "app:/tmp/hostetc/passwd", "theirs"]);
    assert_eq!(
        std::fs::read_to_string(env.project.path().join("theirs")).unwrap(),
        "root:x:0:0:root:/root:/bin/sh\n"
    );
    env.ok(&["cp", "app:/../../../etc/group", "group"]);
    assert_eq!(
        std::fs::read_to_string(env.project.path().join("group")).unwrap(),
        "root:x:0:\n"
    );
    // A missing path: Docker's message, exit 1.
    let o = env.rc(&["cp", "app:/no/such", "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Could not find the file /no/such in container cpy-app-1"));
    env.ok(&["down", "-t", "0"]);
    env.assert_nothing_left();
}

#[test]
fn run_makes_one_off_containers() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write(
        "compose.yaml",
        "name: once\nservices:\n  db:\n    image: rcompose/busybox:latest\n    command: [sleep, '30']\n  app:\n    image: rcompose/busybox:latest\n    command: [sleep, '30']\n    restart: always\n    depends_on: [db]\n",
    );
    std::fs::create_dir(env.project.path().join("data")).unwrap();
    env.write("data/f", "from the host\n");
    // Dependencies first; the command's output and exit code; --rm leaves nothing.
    let o = env.rc(&[
        "run",
        "--rm",
        "-T",
        "-e",
        "WHO=me",
        "-w",
        "/data",
        "-v",
        "./data:/data:ro",
        "app",
        "sh",
        "-c",
        "echo $WHO $(pwd); cat f; exit 5",
    ]);
    assert_eq!(o.status.code(), Some(5), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "me /data\nfrom the host\n");
    assert_eq!(env.container("once-db-1")["State"], "running");
    assert!(
        env.ps().iter().all(|c| !c["Name"].as_str().unwrap().contains("-run-")),
        "{:?}",
        env.ps()
    );
    // --entrypoint, -u, a name of its own; detached it prints the name and keeps running.
    let o = env.rc(&["run", "--rm", "-T", "--entrypoint", "id -u", "-u", "65534", "app"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "65534\n");
    let name = env.ok(&["run", "-d", "--name", "once-debug", "app", "sleep", "30"]);
    assert_eq!(name, "once-debug\n");
    let c = env.container("once-debug");
    assert_eq!(
        (c["State"].as_str(), c["Labels"]["com.docker.compose.oneoff"].as_str()),
        (Some("running"), Some("True"))
    );
    // `up` leaves it alone: app gets its own container.
    env.ok(&["up", "-d"]);
    assert_eq!(env.container("once-app-1")["State"], "running");
    assert_eq!(env.container("once-debug")["State"], "running");
    let o = env.rc(&["run", "-T", "nosuch"]);
    assert_eq!(o.status.code(), Some(1));
    env.ok(&["down", "-t", "0"]);
    env.assert_nothing_left();
}

/// What a pty's other side wrote: read until its last holder has closed it (EIO).
fn read_until_closed(master: std::os::unix::io::OwnedFd) -> String {
    let mut master = std::fs::File::from(master);
    let (mut out, mut buf) = (Vec::new(), [0u8; 4096]);
    while let Ok(n) = std::io::Read::read(&mut master, &mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn progress_as_compose_shows_it() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write(
        "compose.yaml",
        "name: prog\nservices:\n  app:\n    image: rcompose/busybox:latest\n    command: [sleep, '30']\n",
    );
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    // JSON: an object per event, as Compose's `--progress json` prints them.
    let o = env.rc(&["--progress", "json", "up", "-d"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let events: Vec<serde_json::Value> = stderr(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(events.contains(&serde_json::json!({"id": "Network prog_default", "text": "Created"})));
    assert!(events.contains(&serde_json::json!({"id": "Container prog-app-1", "text": "Started"})));
    // The table, drawn even into a pipe when asked for: a header, a mark, a timer.
    let o = env.rc(&["--progress", "tty", "restart"]);
    let text = stderr(&o);
    assert!(text.contains("[+] Running 1/1"), "{text:?}");
    assert!(text.contains("✔ Container prog-app-1 Started"), "{text:?}");
    assert!(text.contains("s\x1b[K\n"), "{text:?}");
    // Plain lines, and nothing at all.
    let o = env.rc(&["--progress", "plain", "stop"]);
    assert!(
        stderr(&o).contains(" Container prog-app-1  Stopped\n"),
        "{}",
        stderr(&o)
    );
    let o = env.rc(&["--progress", "quiet", "down"]);
    assert!(o.status.success() && stderr(&o).is_empty(), "{}", stderr(&o));
    env.assert_nothing_left();
}
