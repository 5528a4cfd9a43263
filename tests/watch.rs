//! Watch mode end to end, as root: `rcompose watch` and `up --watch` against busybox
//! services, each test with an engine of its own (see `engine_env`).

mod engine_env;

use engine_env::{root, Env};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A watching CLI, killed whatever the test's outcome; its output goes to a file.
struct Watching {
    child: Child,
    log: std::path::PathBuf,
}

impl Watching {
    fn start(env: &Env, args: &[&str]) -> Watching {
        let log = env.state.path().join(format!("watch-{}.log", args.join("-")));
        let f = std::fs::File::create(&log).unwrap();
        let child = env
            .command(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        let w = Watching { child, log };
        w.wait_for("Watch enabled");
        w
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.output().contains(text) {
            assert!(Instant::now() < deadline, "no {text:?} in:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn interrupt(&mut self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The output of a command run in a service's container (empty when it fails).
fn exec(env: &Env, service: &str, cmd: &str) -> String {
    let o = env.rc(&["exec", "-T", service, "sh", "-c", cmd]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ids(env: &Env) -> std::collections::BTreeMap<String, String> {
    env.ps()
        .into_iter()
        .map(|c| {
            (
                c["Service"].as_str().unwrap().to_string(),
                c["ID"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

const WATCHED: &str = r#"
name: dev
services:
  web:
    image: rcompose/busybox:latest
    command: ["sleep", "3600"]
    develop:
      watch:
        - {path: ./src, action: sync, target: /app, ignore: ["*.tmp", cache], initial_sync: true}
        - {path: ./hooks, action: sync+exec, target: /hooks, exec: {command: ["sh", "-c", "cat /hooks/h > /tmp/ran"]}}
  app:
    image: rcompose/busybox:latest
    command: ["sh", "-c", "echo started; exec sleep 3600"]
    develop:
      watch:
        - {path: ./conf, action: sync+restart, target: /etc/app}
  other:
    image: rcompose/busybox:latest
    command: ["sleep", "3600"]
"#;

#[test]
fn watch_syncs_deletes_ignores_restarts_and_runs_commands() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write("compose.yaml", WATCHED);
    let dir = env.project.path();
    for d in ["src/cache", "hooks", "conf"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("src/before.txt"), "there before\n").unwrap();
    let mut w = Watching::start(&env, &["watch"]);
    let before = ids(&env);
    assert_eq!(before.len(), 3);

    // initial_sync: what was there before the watch.
    env.wait_for("the initial sync", || {
        exec(&env, "web", "cat /app/before.txt") == "there before\n"
    });
    // An edit appears in the container; a new tree too.
    std::fs::write(dir.join("src/index.html"), "v1\n").unwrap();
    std::fs::create_dir_all(dir.join("src/a/b")).unwrap();
    std::fs::write(dir.join("src/a/b/deep.txt"), "deep\n").unwrap();
    env.wait_for("the sync", || {
        exec(&env, "web", "cat /app/index.html /app/a/b/deep.txt") == "v1\ndeep\n"
    });
    // Ignored files are not synced: a pattern, a directory, an editor's swap file.
    std::fs::write(dir.join("src/skip.tmp"), "no\n").unwrap();
    std::fs::write(dir.join("src/cache/x"), "no\n").unwrap();
    std::fs::write(dir.join("src/.index.html.swp"), "no\n").unwrap();
    std::fs::write(dir.join("src/index.html"), "v2\n").unwrap();
    env.wait_for("the second sync", || exec(&env, "web", "cat /app/index.html") == "v2\n");
    let listing = exec(&env, "web", "ls -a /app");
    assert!(
        !listing.contains("skip.tmp") && !listing.contains("cache") && !listing.contains(".swp"),
        "{listing}"
    );
    // A deletion here is one there, of a file and of a tree.
    std::fs::remove_file(dir.join("src/index.html")).unwrap();
    std::fs::remove_dir_all(dir.join("src/a")).unwrap();
    env.wait_for("the deletions", || exec(&env, "web", "ls /app") == "before.txt\n");

    // sync+exec runs its command after the sync.
    std::fs::write(dir.join("hooks/h"), "hooked\n").unwrap();
    env.wait_for("the exec", || exec(&env, "web", "cat /tmp/ran") == "hooked\n");

    // sync+restart restarts exactly its service.
    std::fs::write(dir.join("conf/app.conf"), "setting=1\n").unwrap();
    env.wait_for("the restart", || {
        env.ok(&["logs", "app"]).matches("started").count() == 2
    });
    assert_eq!(exec(&env, "app", "cat /etc/app/app.conf"), "setting=1\n");
    assert_eq!(ids(&env), before, "a container was recreated");
    assert_eq!(env.ok(&["logs", "web"]), "");
    let out = w.output();
    assert!(out.contains("Syncing service \"web\" after"), "{out}");
    assert!(
        out.contains("Restarting service \"app\" after 1 change was detected"),
        "{out}"
    );
    assert!(!out.contains("\"other\""), "{out}");

    w.interrupt();
    env.ok(&["down"]);
    env.assert_nothing_left();
}

const RELOADED: &str = r#"
name: live
services:
  a:
    image: rcompose/busybox:latest
    command: ["sleep", "3600"]
    develop:
      watch:
        - {path: ./src, action: sync, target: /src}
  b:
    image: rcompose/busybox:latest
    command: ["sleep", "3600"]
    environment: {LEVEL: "1"}
"#;

#[test]
fn up_watch_applies_edits_of_the_compose_file_and_ignores_broken_ones() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write("compose.yaml", RELOADED);
    std::fs::create_dir_all(env.project.path().join("src")).unwrap();
    let mut w = Watching::start(&env, &["up", "--watch"]);
    let first = ids(&env);
    assert_eq!(first.len(), 2);

    // Only the edited service is recreated.
    env.write("compose.yaml", &RELOADED.replace("LEVEL: \"1\"", "LEVEL: \"2\""));
    // (The new container is listed once created; it answers once started.)
    env.wait_for("b to be recreated and running", || {
        ids(&env).get("b") != first.get("b") && exec(&env, "b", "echo $LEVEL") == "2\n"
    });
    let second = ids(&env);
    assert_eq!(second.get("a"), first.get("a"));

    // A file that does not load is reported; nothing changes, and once it loads again
    // as it was, nothing is recreated.
    env.write("compose.yaml", "services:\n  a: [broken\n");
    w.wait_for("do not load; nothing running was touched");
    env.write("compose.yaml", &RELOADED.replace("LEVEL: \"1\"", "LEVEL: \"2\""));
    w.wait_for("The project's files changed: applying them\n");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ids(&env), second);

    // An added service starts; a removed one goes.
    let with_c = format!(
        "{}  c:\n    image: rcompose/busybox:latest\n    command: [\"sleep\", \"3600\"]\n",
        RELOADED.replace("LEVEL: \"1\"", "LEVEL: \"2\"")
    );
    env.write("compose.yaml", &with_c);
    env.wait_for("c to start", || ids(&env).contains_key("c"));
    env.write("compose.yaml", &RELOADED.replace("LEVEL: \"1\"", "LEVEL: \"2\""));
    env.wait_for("c to go", || !ids(&env).contains_key("c"));
    assert_eq!(ids(&env), second);

    // Ctrl-C stops the services, as up does.
    w.interrupt();
    assert!(env.ps().iter().all(|c| c["State"] != "running"), "{:?}", env.ps());
    env.ok(&["down"]);
    env.assert_nothing_left();
}

#[test]
fn bad_watch_rules_are_refused_before_anything_starts() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write(
        "compose.yaml",
        "services:\n  web:\n    image: rcompose/busybox:latest\n    develop:\n      watch:\n        - {path: ./missing, action: sync, target: /app}\n",
    );
    let o = env.rc(&["watch"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("services.web.develop.watch[0].path") && err.contains("does not exist"),
        "{err}"
    );
    env.write(
        "compose.yaml",
        "services:\n  web:\n    image: rcompose/busybox:latest\n    develop:\n      watch:\n        - {path: ., action: rebuild}\n",
    );
    let o = env.rc(&["up", "--watch"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("rebuild needs the service to have a build section"),
        "{err}"
    );
    env.write(
        "compose.yaml",
        "services:\n  web:\n    image: rcompose/busybox:latest\n",
    );
    let o = env.rc(&["watch"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("none of the selected services is configured for watch"),
        "{err}"
    );
    // Nothing was started.
    assert!(env.ps().is_empty());
}
