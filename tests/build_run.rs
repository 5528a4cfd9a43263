//! End to end: what a `RUN` step may do and is given (limits, privileges, the SSH
//! agent), through the built binary. Needs root.

mod engine_env;

use engine_env::{root, Env};

/// `cat` of `path` in the service `app`'s built image.
fn cat(env: &Env, path: &str) -> String {
    env.ok(&["run", "--rm", "--no-deps", "--entrypoint", "cat", "app", path])
}

#[test]
fn build_ulimits_apply_to_every_run() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write("Dockerfile", "FROM rcompose/busybox\nRUN echo $(ulimit -Sn) $(ulimit -Hn) > /n\n");
    env.write(
        "compose.yaml",
        "name: ul\nservices:\n  app:\n    build:\n      context: .\n      ulimits:\n        nofile: {soft: 100, hard: 200}\n",
    );
    let o = env.rc(&["--progress", "plain", "build"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(cat(&env, "/n"), "100 200\n");
    env.write(
        "compose.yaml",
        "name: ul\nservices:\n  app:\n    build:\n      context: .\n      ulimits:\n        nofile: {soft: 300, hard: 200}\n",
    );
    let o = env.rc(&["build"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success() && err.contains("build.ulimits.nofile") && err.contains("soft limit is above its hard limit"), "{err}");
}

#[test]
fn insecure_steps_run_privileged_only_when_the_build_allows_it() {
    if !root() {
        return;
    }
    let env = Env::new();
    let caps = "grep CapEff /proc/self/status | cut -f2";
    env.write(
        "Dockerfile",
        &format!(
            "FROM rcompose/busybox\n\
             RUN {caps} > /sandbox\n\
             RUN --security=insecure {caps} > /insecure && mkdir /m && mount -t tmpfs t /m && umount /m\n"
        ),
    );
    env.write("compose.yaml", "name: pr\nservices:\n  app:\n    build: .\n");
    let o = env.rc(&["--progress", "plain", "build"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success() && err.contains("Dockerfile:3: RUN --security=insecure: security.insecure is not allowed"),
        "{err}"
    );
    for grant in ["privileged: true", "entitlements: [security.insecure]"] {
        env.write(
            "compose.yaml",
            &format!("name: pr\nservices:\n  app:\n    build:\n      context: .\n      {grant}\n"),
        );
        let o = env.rc(&["--progress", "plain", "build"]);
        assert!(o.status.success(), "{grant}: {}", String::from_utf8_lossy(&o.stderr));
        // Docker's default set in the sandbox; every capability the kernel has when insecure.
        assert_eq!(cat(&env, "/sandbox").trim(), "00000000a80425fb");
        let all = u64::from_str_radix(cat(&env, "/insecure").trim(), 16).unwrap();
        assert!(all.count_ones() >= 38, "{all:x}");
    }
    env.write("Dockerfile", "FROM rcompose/busybox\nRUN --security=loose true\n");
    let o = env.rc(&["build"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success() && err.contains("not one of sandbox, insecure"), "{err}");
}
