//! Hostile Dockerfiles and contexts: each escape or exhaustion the builder's review
//! found, tried against the engine through the built binary. Needs root.

mod engine_env;

use engine_env::{root, Env};
use std::path::Path;

/// `rcompose build` of `dockerfile` in the project: success, and what it printed.
fn build(env: &Env, dockerfile: &str) -> (bool, String) {
    env.write("Dockerfile", dockerfile);
    let o = env.rc(&["--progress", "plain", "build"]);
    let out = String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    (o.status.success(), out)
}

/// A directory outside the context with a file the build must never show.
fn outside() -> (tempfile::TempDir, String) {
    let d = tempfile::tempdir().unwrap();
    let marker = format!("HOST-ONLY-{}", std::process::id());
    std::fs::write(d.path().join("marker"), &marker).unwrap();
    (d, marker)
}

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn bind_mounts_show_only_the_context_as_built() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write("compose.yaml", "name: hb\nservices:\n  app:\n    build: .\n");
    let (out, marker) = outside();
    let out_name = name_of(out.path());

    // overlayfs reads `\` as an escape: `.\.` would climb as `..` in a lowerdir.
    let climb = format!(".\\./{out_name}");
    let (_, said) = build(
        &env,
        &format!("# escape=`\nFROM rcompose/busybox\nRUN --mount=type=bind,source={climb},target=/h,rw cat /h/marker; true\n"),
    );
    assert!(!said.contains(&marker), "{said}");

    // A link in the context to a host directory resolves inside the context.
    std::os::unix::fs::symlink(out.path(), env.project.path().join("hostlink")).unwrap();
    let (_, said) = build(
        &env,
        "FROM rcompose/busybox\nRUN --mount=type=bind,source=hostlink,target=/h cat /h/marker; true\n",
    );
    assert!(!said.contains(&marker), "{said}");
    let (ok, said) = build(&env, "FROM rcompose/busybox\nCOPY hostlink/marker /x\n");
    assert!(!ok && !said.contains(&marker), "{said}");
    std::fs::remove_file(env.project.path().join("hostlink")).unwrap();

    // Nested mounts in the context stay read-only (recursively) in a read-only bind.
    let sub = env.project.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "hostile-test", sub.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(mounted.success());
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&sub);
    let (ok, said) = build(
        &env,
        "FROM rcompose/busybox\nRUN --mount=type=bind,target=/m sh -c 'touch /m/sub/x; test ! -e /m/sub/x'\n",
    );
    assert!(ok, "{said}");
    assert!(!sub.join("x").exists());
    drop(_guard);

    // What .dockerignore leaves out is not in a bind of the context either.
    env.write("kept.txt", "k\n");
    env.write("ignored.txt", "secret\n");
    env.write(".dockerignore", "ignored.txt\n");
    let (ok, said) = build(
        &env,
        "FROM rcompose/busybox\nRUN --mount=type=bind,target=/ctx test ! -e /ctx/ignored.txt && test -e /ctx/kept.txt\n",
    );
    assert!(ok, "{said}");

    // A bind mount's content is in the step's cache key: an edit runs it again.
    let df = "FROM rcompose/busybox\nRUN --mount=type=bind,source=kept.txt,target=/k cp /k /copied\n";
    let (ok, said) = build(&env, df);
    assert!(ok, "{said}");
    env.write("kept.txt", "edited\n");
    let (ok, said) = build(&env, df);
    assert!(ok && !said.contains("CACHED"), "{said}");
    let shown = env.ok(&["run", "--rm", "--no-deps", "--entrypoint", "cat", "app", "/copied"]);
    assert_eq!(shown, "edited\n");
}

#[test]
fn a_build_cannot_take_the_host_network_or_remove_host_files() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write("compose.yaml", "name: hn\nservices:\n  app:\n    build: .\n");
    let (ok, said) = build(&env, "FROM rcompose/busybox\nRUN --network=host true\n");
    assert!(!ok && said.contains("network.host is not allowed"), "{said}");
    // With the entitlement it runs.
    env.write(
        "compose.yaml",
        "name: hn\nservices:\n  app:\n    build:\n      context: .\n      entitlements: [network.host]\n",
    );
    let (ok, said) = build(&env, "FROM rcompose/busybox\nRUN --network=host true\n");
    assert!(ok, "{said}");

    // A mount target that climbs is taken inside the container; the clean-up of its
    // mount point never reaches the host's empty directory of the same path.
    let (out, _) = outside();
    let victim = out.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let climb = format!("{}{}", "/..".repeat(20), victim.display());
    let (ok, said) = build(
        &env,
        &format!("FROM rcompose/busybox\nRUN --mount=type=tmpfs,target={climb} true\n"),
    );
    assert!(ok, "{said}");
    assert!(victim.is_dir(), "the host's directory was removed");
}

#[test]
fn hostile_dockerfiles_are_refused_without_exhausting_the_engine() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write("compose.yaml", "name: hd\nservices:\n  app:\n    build: .\n");
    // Nesting without end would overflow the engine's stack.
    let deep = format!("FROM {}x{}\n", "${a:-".repeat(10_000), "}".repeat(10_000));
    let (ok, said) = build(&env, &deep);
    assert!(!ok && said.contains("nested more than 64 deep"), "{said}");
    // Doubling line after line would fill its memory.
    let mut grow = String::from("FROM rcompose/busybox\nENV a0=xxxxxxxxxxxxxxxx\n");
    for i in 1..30 {
        grow.push_str(&format!("ENV a{i}=$a{p}$a{p}$a{p}$a{p}\n", p = i - 1));
    }
    let (ok, said) = build(&env, &grow);
    assert!(!ok && said.contains("expands to more than"), "{said}");
    // Wildcards over links to `.` would multiply past any memory.
    for i in 0..10 {
        std::os::unix::fs::symlink(".", env.project.path().join(format!("l{i}"))).unwrap();
    }
    let (ok, said) = build(&env, "FROM rcompose/busybox\nCOPY l*/l*/l*/l*/l*/l*/l* /d/\n");
    assert!(!ok && said.contains("matches more than 100000 paths"), "{said}");
    // A step that writes without end is clipped as BuildKit clips it.
    let (ok, said) = build(
        &env,
        "FROM rcompose/busybox\nRUN yes 0123456789abcdef | head -c 3000000\n",
    );
    assert!(
        ok && said.contains("[output clipped, log limit 2MiB reached]"),
        "{said}"
    );
    let lines = said.matches("0123456789abcdef").count();
    assert!(lines < 130_000, "{lines} lines shown");
    // The engine is still there.
    env.ok(&["image", "ls"]);
}

#[test]
fn a_dockerfile_is_read_inside_its_context() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write("compose.yaml", "name: hf\nservices:\n  app:\n    build: .\n");
    let (out, marker) = outside();
    let df = env.project.path().join("Dockerfile");
    std::os::unix::fs::symlink(out.path().join("marker"), &df).unwrap();
    let o = env.rc(&["build"]);
    let said = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(!said.contains(&marker) && said.contains("dockerfile"), "{said}");
    std::fs::remove_file(&df).unwrap();
    // A pipe is refused, not waited on.
    nix::unistd::mkfifo(&df, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let o = env.rc(&["build"]);
    let said = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(said.contains("not a regular file"), "{said}");
}

/// The pids whose command line is exactly `args`.
fn pids_running(args: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = args.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

/// A build whose step sleeps, started in the background, once the step runs.
fn build_sleeping(env: &Env, flags: &str, secs: &str) -> std::process::Child {
    env.write(
        "Dockerfile",
        &format!("FROM rcompose/busybox\nRUN {flags} sleep {secs}\n"),
    );
    env.write("compose.yaml", "name: bi\nservices:\n  app:\n    build: .\n");
    let child = env
        .command(&["--progress", "plain", "build"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    env.wait_for("the step to run", || !pids_running(&["sleep", secs]).is_empty());
    child
}

/// The build network's bridge and record are gone (the last build removes them).
fn build_network_gone(env: &Env) -> bool {
    !env.links().contains(": rc-") && !env.state.path().join("networks/rcompose_build.json").exists()
}

/// Nothing of a build is mounted under the state root.
fn mounts_under(env: &Env) -> Vec<String> {
    let root = env.state.path().to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&root)))
        .map(str::to_string)
        .collect()
}

#[test]
fn an_interrupted_build_leaves_nothing_running_or_mounted() {
    if !root() {
        return;
    }
    let env = Env::new();
    let mut cli = build_sleeping(&env, "--mount=type=bind,target=/ctx", "86411");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(cli.id() as i32, libc::SIGINT) };
    assert!(!cli.wait().unwrap().success());
    env.wait_for("the step to end", || pids_running(&["sleep", "86411"]).is_empty());
    env.wait_for("the build network to go", || build_network_gone(&env));
    assert_eq!(mounts_under(&env), Vec::<String>::new());
    env.assert_nothing_left();
}

#[test]
fn a_build_step_ends_with_its_engine_and_the_next_engine_sweeps_it() {
    if !root() {
        return;
    }
    let mut env = Env::new();
    // With the context held bound, a mount in the engine's namespace.
    let mut cli = build_sleeping(&env, "--mount=type=bind,target=/ctx", "86412");
    assert!(!mounts_under(&env).is_empty());
    env.daemon.kill().unwrap();
    env.daemon.wait().unwrap();
    env.wait_for("the step to end", || pids_running(&["sleep", "86412"]).is_empty());
    assert!(!cli.wait().unwrap().success());
    // The engine that comes next removes the step's group and the build network
    // before it serves.
    let _ = std::fs::remove_file(env.state.path().join("run/rcompose.sock"));
    env.daemon = engine_env::spawn_engine_with(env.state.path(), &env.ns, &env.opts);
    env.wait_for_engine();
    env.wait_for("the build network to go", || build_network_gone(&env));
    assert_eq!(mounts_under(&env), Vec::<String>::new());
    env.assert_nothing_left();
}

/// The inode of `rel` in the top layer of the service `app`'s image.
fn top_layer_inode(env: &Env, rel: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let out = env.ok(&["image", "inspect", "rv-app"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let top = v[0]["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let dir = env
        .state
        .path()
        .join("images/layers/sha256")
        .join(top.trim_start_matches("sha256:"));
    std::fs::metadata(dir.join(rel)).unwrap().ino()
}

#[test]
fn a_copy_reuses_only_files_unchanged_since_the_last_one() {
    if !root() {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    env.write("a.txt", "aaaa\n");
    env.write("b.txt", "bbbb\n");
    env.write("Dockerfile", "FROM rcompose/busybox\nCOPY a.txt b.txt /c/\n");
    env.write("compose.yaml", "name: rv\nservices:\n  app:\n    build: .\n");
    // Older than the racy window, as a checkout's files are.
    std::thread::sleep(std::time::Duration::from_secs(3));
    env.ok(&["build"]);
    let (a1, b1) = (top_layer_inode(&env, "c/a.txt"), top_layer_inode(&env, "c/b.txt"));
    env.write("b.txt", "bbbb, edited\n");
    env.ok(&["build"]);
    // The unchanged file is the earlier layer's; the edited one is new.
    assert_eq!(top_layer_inode(&env, "c/a.txt"), a1);
    assert_ne!(top_layer_inode(&env, "c/b.txt"), b1);
    let show = |f: &str| env.ok(&["run", "--rm", "--no-deps", "--entrypoint", "cat", "app", f]);
    assert_eq!(show("/c/b.txt"), "bbbb, edited\n");
    // Rewritten in place with its size and mtime put back: its ctime tells.
    let a = env.project.path().join("a.txt");
    let m = std::fs::metadata(&a).unwrap();
    let mtime = format!("{}.{:09}", m.mtime(), m.mtime_nsec());
    std::fs::write(&a, "AAAA\n").unwrap();
    let o = std::process::Command::new("touch")
        .arg("-d")
        .arg(format!("@{mtime}"))
        .arg(&a)
        .status()
        .unwrap();
    assert!(o.success());
    let back = std::fs::metadata(&a).unwrap();
    assert_eq!(
        (back.mtime(), back.mtime_nsec(), back.len()),
        (m.mtime(), m.mtime_nsec(), m.len())
    );
    env.ok(&["build"]);
    assert_eq!(show("/c/a.txt"), "AAAA\n");
    assert_ne!(top_layer_inode(&env, "c/a.txt"), a1);
}

#[test]
fn a_reused_copy_is_the_last_writer_of_its_destination() {
    if !root() {
        return;
    }
    let env = Env::new();
    std::fs::create_dir_all(env.project.path().join("a")).unwrap();
    std::fs::create_dir_all(env.project.path().join("b")).unwrap();
    env.write("a/f", "from a\n");
    env.write("b/f", "from b\n");
    // Alike in all but content: same size, mode and times.
    let o = std::process::Command::new("touch")
        .arg("-r")
        .arg(env.project.path().join("a/f"))
        .arg(env.project.path().join("b/f"))
        .status()
        .unwrap();
    assert!(o.success());
    env.write("Dockerfile", "FROM rcompose/busybox\nCOPY */f /app/\n");
    env.write("compose.yaml", "name: lw\nservices:\n  app:\n    build: .\n");
    std::thread::sleep(std::time::Duration::from_secs(3));
    env.ok(&["build"]);
    let show = || env.ok(&["run", "--rm", "--no-deps", "--entrypoint", "cat", "app", "/app/f"]);
    assert_eq!(show(), "from b\n");
    // a/f, unchanged, was not what the earlier layer's /app/f came from.
    std::fs::remove_file(env.project.path().join("b/f")).unwrap();
    env.ok(&["build"]);
    assert_eq!(show(), "from a\n");
}
