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
    env.write(
        "Dockerfile",
        "FROM rcompose/busybox\nRUN echo $(ulimit -Sn) $(ulimit -Hn) > /n\n",
    );
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
    assert!(
        !o.status.success()
            && err.contains("build.ulimits.nofile")
            && err.contains("soft limit is above its hard limit"),
        "{err}"
    );
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
    assert!(
        !o.status.success() && err.contains("not one of sandbox, insecure"),
        "{err}"
    );
}

/// A static client for an agent's socket: sends a line to `$SSH_AUTH_SOCK` (or its
/// argument) and prints the answer. Busybox has no Unix-socket client.
const CLIENT_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
static int dial(const char *p) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, p, sizeof a.sun_path - 1);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); exit(1); }
    write(s, "list keys\n", 10);
    return s;
}
/* `many`: 40 connections held open at once; prints how many were answered. */
int main(int argc, char **argv) {
    const char *p = getenv("SSH_AUTH_SOCK");
    char buf[256];
    ssize_t n;
    if (argc > 1 && strcmp(argv[1], "many") == 0) {
        int s[40], answered = 0;
        for (int i = 0; i < 40; i++) s[i] = dial(p);
        for (int i = 0; i < 40; i++) if (read(s[i], buf, sizeof buf) > 0) answered++;
        printf("%d\n", answered);
        return 0;
    }
    if (argc > 1) p = argv[1];
    if (!p) return 2;
    int s = dial(p);
    shutdown(s, SHUT_WR);
    while ((n = read(s, buf, sizeof buf)) > 0) fwrite(buf, 1, n, stdout);
    return 0;
}
"#;

/// An agent of the test's own: answers each connection's line with `agent saw: LINE`.
fn fake_agent(path: &std::path::Path) {
    use std::io::{BufRead, Write};
    let l = std::os::unix::net::UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let mut line = String::new();
            let mut r = std::io::BufReader::new(c.try_clone().unwrap());
            let _ = r.read_line(&mut line);
            let _ = (&c).write_all(format!("agent saw: {line}").as_bytes());
        }
    });
}

#[test]
fn ssh_mounts_relay_the_clients_agent_to_a_socket_of_the_steps_own() {
    if !root() {
        return;
    }
    let env = Env::new();
    let src = env.project.path().join("client.c");
    std::fs::write(&src, CLIENT_C).unwrap();
    let o = std::process::Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(env.project.path().join("agent-client"))
        .arg(&src)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let agents = tempfile::tempdir().unwrap();
    let sock = agents.path().join("agent.sock");
    fake_agent(&sock);
    env.write(".dockerignore", "client.c\n");
    env.write(
        "Dockerfile",
        "FROM rcompose/busybox\n\
         COPY agent-client /bin/\n\
         RUN --mount=type=ssh --mount=type=ssh,target=/s,mode=0640,uid=7 \\\n\
             echo $SSH_AUTH_SOCK > /sock && agent-client > /got && agent-client /s >> /got && \\\n\
             ls -ln /s | awk '{print $1, $3}' > /s-mode\n\
         RUN --mount=type=ssh,id=other true\n\
         RUN --mount=type=ssh agent-client many > /many\n",
    );
    env.write(
        "compose.yaml",
        "name: sh\nservices:\n  app:\n    build:\n      context: .\n      ssh: [default]\n",
    );
    let agent = sock.to_str().unwrap();
    let o = env.rc_env(&["--progress", "plain", "build"], &[("SSH_AUTH_SOCK", agent)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(cat(&env, "/sock"), "/run/buildkit/ssh_agent.0\n");
    assert_eq!(cat(&env, "/got"), "agent saw: list keys\nagent saw: list keys\n");
    assert_eq!(cat(&env, "/s-mode"), "srw-r----- 7\n");
    // A step holds at most 32 connections to the agent at once; the rest are closed.
    assert_eq!(cat(&env, "/many"), "32\n");
    // The sockets were the step's only: nothing of them is in the image.
    let o = env.rc(&[
        "run",
        "--rm",
        "--no-deps",
        "--entrypoint",
        "ls",
        "app",
        "/run/buildkit/ssh_agent.0",
        "/s",
    ]);
    assert!(!o.status.success());

    // `build --ssh` gives an agent to every service, by id; a required one missing,
    // a key file and an unset SSH_AUTH_SOCK are refused by name.
    env.write("Dockerfile", "FROM rcompose/busybox\nCOPY agent-client /bin/\nRUN --mount=type=ssh,id=other,required agent-client > /other\n");
    env.write("compose.yaml", "name: sh\nservices:\n  app:\n    build: .\n");
    let o = env.rc(&["--progress", "plain", "build"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success() && err.contains("no SSH agent \"other\" forwarded"),
        "{err}"
    );
    let flag = format!("other={agent}");
    let o = env.rc(&["--progress", "plain", "build", "--ssh", &flag]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(cat(&env, "/other"), "agent saw: list keys\n");
    let key = env.project.path().join("client.c");
    let o = env.rc(&["build", "--ssh", &format!("other={}", key.display())]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success() && err.contains("build.ssh: other=") && err.contains("key files are not implemented yet"),
        "{err}"
    );
    let many = format!(
        "FROM rcompose/busybox\nRUN {} true\n",
        "--mount=type=ssh,id=other ".repeat(9)
    );
    env.write("Dockerfile", &many);
    let o = env.rc(&["build", "--ssh", &flag]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success() && err.contains("more than 8 ssh mounts in one RUN"),
        "{err}"
    );
    let o = env
        .command(&["build", "--ssh", "default"])
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success() && err.contains("SSH_AUTH_SOCK is not set"), "{err}");
}
