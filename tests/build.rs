//! End to end: images built from Dockerfiles by the engine, through the built binary,
//! on the busybox image the harness imports. Needs root.

mod engine_env;

use engine_env::{root, Env};

const DOCKERFILE: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=rcompose/busybox
FROM ${BASE} AS base
ARG GREETING=hello
ENV APP=/app E2="two words"
LABEL org.example.x=1 "org.example.y"="a b"
WORKDIR $APP
COPY --chown=1000:1000 --chmod=640 a.txt ./
COPY dir/ sub/
RUN echo "$GREETING $E2" > greeting && id -u > uid
RUN <<EOF
echo one > here1
echo two >> here1
EOF
COPY <<EOT /etc/note
note $APP
EOT
USER 1000
EXPOSE 8080 53/udp
VOLUME /data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=4 CMD true
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat greeting"]

FROM rcompose/busybox AS unused
RUN exit 3

FROM base
"#;

fn project(env: &Env) {
    env.write("Dockerfile", DOCKERFILE);
    env.write("a.txt", "A\n");
    std::fs::create_dir_all(env.project.path().join("dir/deep")).unwrap();
    env.write("dir/deep/f", "deep\n");
    env.write("dir/skip.log", "ignored\n");
    env.write(".dockerignore", "# logs stay out\n**/*.log\n");
    env.write(
        "compose.yaml",
        "name: bt\nservices:\n  app:\n    build:\n      context: .\n      args: [GREETING=hi]\n",
    );
}

fn inspect(env: &Env, image: &str) -> serde_json::Value {
    let out = env.ok(&["image", "inspect", image]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

#[test]
fn a_dockerfile_builds_as_buildkit_builds_it() {
    if !root() {
        return;
    }
    let env = Env::new();
    project(&env);
    let o = env.rc(&["--progress", "plain", "build"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}\n{}", env.engine_log());
    // Plain progress as BuildKit's; the unused stage (which fails) is not built.
    assert!(err.contains("[base 2/7] WORKDIR /app"), "{err}");
    assert!(err.contains("DONE"), "{err}");
    assert!(!err.contains("exit 3"), "{err}");
    let img = inspect(&env, "bt-app");
    let c = &img["Config"];
    assert_eq!(
        c["Env"],
        serde_json::json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "APP=/app",
            "E2=two words"
        ]),
        "{img}"
    );
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(c["User"], "1000");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(c["Cmd"], serde_json::json!(["cat greeting"]));
    assert_eq!(c["StopSignal"], "SIGINT");
    assert_eq!(c["Labels"]["org.example.y"], "a b");
    assert_eq!(c["Labels"]["com.docker.compose.service"], "app");
    assert!(
        c["ExposedPorts"]["53/udp"].is_object() && c["ExposedPorts"]["8080/tcp"].is_object(),
        "{c}"
    );
    assert!(c["Volumes"]["/data"].is_object());
    assert_eq!(c["Healthcheck"]["Test"], serde_json::json!(["CMD-SHELL", "true"]));
    assert_eq!(c["Healthcheck"]["Interval"], 5_000_000_000u64);
    assert_eq!(c["ArgsEscaped"], true, "set by CMD, as BuildKit sets it");

    // The history as current BuildKit writes it (checked against docker build).
    let id = img["Id"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let raw = std::fs::read(env.state.path().join("images/blobs/sha256").join(&id)).unwrap();
    let config: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let history = config["history"].as_array().unwrap();
    let ours: Vec<(&str, bool)> = history
        .iter()
        .filter(|h| h["comment"] == "buildkit.dockerfile.v0")
        .map(|h| (h["created_by"].as_str().unwrap(), h["empty_layer"] == true))
        .collect();
    let want: Vec<(&str, bool)> = vec![
        ("ARG GREETING=hi", true),
        ("ENV APP=/app E2=two words", true),
        ("LABEL org.example.x=1 org.example.y=a b", true),
        ("WORKDIR /app", false),
        ("COPY --chown=1000:1000 --chmod=640 a.txt ./ # buildkit", false),
        ("COPY dir/ sub/ # buildkit", false),
        (
            "RUN |1 GREETING=hi /bin/sh -c echo \"$GREETING $E2\" > greeting && id -u > uid # buildkit",
            false,
        ),
        (
            "RUN |1 GREETING=hi /bin/sh -c echo one > here1\necho two >> here1\n # buildkit",
            false,
        ),
        ("COPY <<EOT /etc/note # buildkit", false),
        ("USER 1000", true),
        ("EXPOSE [53/udp 8080/tcp]", true),
        ("VOLUME [/data]", true),
        ("STOPSIGNAL SIGINT", true),
        (
            "HEALTHCHECK {Test:[CMD-SHELL true] Interval:5s Timeout:0s StartPeriod:0s StartInterval:0s Retries:4}",
            true,
        ),
        ("ENTRYPOINT [\"/bin/sh\" \"-c\"]", true),
        ("CMD [\"cat greeting\"]", true),
    ];
    assert_eq!(ours, want, "{}", serde_json::to_string_pretty(history).unwrap());
    // Every entry has a time (metadata steps get the layers' as BuildKit's exporter
    // gives them), and the image's is the last one.
    assert!(history.iter().all(|h| h["created"].is_string()), "{history:?}");
    assert_eq!(config["created"], history.last().unwrap()["created"]);

    // What the steps made, seen from inside a container of the image.
    let show = |cmd: &str| env.ok(&["run", "--rm", "--no-deps", "--entrypoint", "/bin/sh", "app", "-c", cmd]);
    assert_eq!(show("cat greeting").trim(), "hi two words");
    assert_eq!(show("cat uid").trim(), "0");
    assert_eq!(show("cat here1"), "one\ntwo\n");
    assert_eq!(show("cat /etc/note"), "note /app\n");
    assert_eq!(show("stat -c '%u:%g %a' a.txt").trim(), "1000:1000 640");
    assert_eq!(show("cat sub/deep/f; ls sub").trim(), "deep\ndeep");
    assert_eq!(
        show("ls sub/skip.log 2>&1 || echo absent").trim().lines().last(),
        Some("absent")
    );

    // A rebuild with nothing changed: every step cached, the same image.
    let o = env.rc(&["--progress", "plain", "build"]);
    let again = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{again}");
    assert!(again.matches("CACHED").count() >= 6, "{again}");
    assert_eq!(inspect(&env, "bt-app")["Id"], img["Id"], "{again}");

    // An edit invalidates from its step on, never before.
    env.write("a.txt", "changed\n");
    let o = env.rc(&["--progress", "plain", "build"]);
    let third = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{third}");
    let cached = |name: &str| {
        let id = third
            .lines()
            .find(|l| l.contains(name))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("#?")
            .to_string();
        third.lines().any(|l| l == format!("{id} CACHED"))
    };
    assert!(cached("WORKDIR /app"), "{third}");
    assert!(!cached("COPY --chown"), "{third}");
    assert!(!cached("RUN echo"), "{third}");
    assert_ne!(inspect(&env, "bt-app")["Id"], img["Id"]);

    // Asked first, as Docker asks: "n" keeps the cache.
    let mut ask = env.command(&["builder", "prune"]);
    ask.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = ask.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"n\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("WARNING! This will remove all build cache."),
        "{o:?}"
    );
    let o = env.rc(&["--progress", "plain", "build"]);
    let kept = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(kept.matches("CACHED").count() >= 6, "{kept}");
    // `builder prune -f` frees the cache: the next build runs every step again.
    let pruned = env.ok(&["builder", "prune", "-f"]);
    assert!(pruned.starts_with("Total:\t") && !pruned.contains("\t0B"), "{pruned}");
    let o = env.rc(&["--progress", "plain", "build"]);
    let fresh = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success() && !fresh.contains("CACHED"), "{fresh}");
}

#[test]
fn bad_dockerfiles_and_failing_steps_say_where() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write("compose.yaml", "name: bad\nservices:\n  app:\n    build: .\n");
    for (text, want) in [
        (
            "FROM rcompose/busybox\nFOO bar\n",
            "Dockerfile:2: unknown instruction: FOO",
        ),
        (
            "FROM rcompose/busybox\nCOPY nothere /x\n",
            "\"nothere\" not found in the build context",
        ),
        (
            "FROM rcompose/busybox\nCOPY ../../etc/passwd /x\n",
            "outside the build context",
        ),
        (
            "FROM rcompose/busybox\nRUN echo out; exit 7\n",
            "Dockerfile:2: process \"/bin/sh -c echo out; exit 7\" did not complete successfully: exit code: 7",
        ),
        ("FROM rcompose/busybox\nCOPY --from=nosuch /x /y\n", "nosuch"),
    ] {
        env.write("Dockerfile", text);
        let o = env.rc(&["--progress", "plain", "build"]);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(1), "{text}: {err}");
        assert!(err.contains(want), "{text}: {err}");
        if text.contains("exit 7") {
            assert!(err.contains(" out\n"), "the step's output is shown: {err}");
        }
        let images = env.ok(&["image", "ls", "-q"]);
        assert_eq!(images.lines().count(), 1, "no image tagged: {images}");
    }
    // Nothing of the failed builds is left running or mounted.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(env.state.path().to_str().unwrap()), "{mounts}");
}

const APP_DOCKERFILE: &str = r#"ARG VERSION=1
FROM rcompose/busybox AS build
ARG VERSION
RUN --mount=type=secret,id=token wc -c < /run/secrets/token > /secret-size; echo "v$VERSION" > /version
RUN --mount=type=cache,target=/cache sh -c 'echo x >> /cache/runs; wc -l < /cache/runs > /runs'
FROM build AS broken
RUN exit 9
FROM rcompose/busybox AS final
COPY --from=build /version /secret-size /runs /out/
COPY --from=basectx /base.txt /out/
COPY src/ /src/
RUN test ! -e /run/secrets/token && echo "VERSION=${VERSION:-unset}" > /out/scope
"#;

const STACK: &str = "name: bc
services:
  base:
    build: ./base
    command: [sleep, '600']
  app:
    build:
      context: ./app
      target: final
      args:
        VERSION: '2'
      secrets: [token]
      additional_contexts:
        basectx: service:base
    command: [sleep, '600']
    develop:
      watch:
        - path: ./app/src
          action: rebuild
  other:
    image: rcompose/busybox
    command: [sleep, '600']
secrets:
  token:
    file: ./token.txt
";

fn id_of(env: &Env, service: &str) -> String {
    env.ps()
        .into_iter()
        .find(|c| c["Service"] == service)
        .map(|c| c["ID"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

#[test]
fn compose_builds_stages_secrets_contexts_and_rebuilds() {
    if !root() {
        return;
    }
    let env = Env::new();
    for d in ["base", "app/src"] {
        std::fs::create_dir_all(env.project.path().join(d)).unwrap();
    }
    env.write(
        "base/Dockerfile",
        "FROM rcompose/busybox\nRUN echo from-base > /base.txt\n",
    );
    env.write("app/Dockerfile", APP_DOCKERFILE);
    env.write("app/src/main.txt", "one\n");
    env.write("token.txt", "s3cret");
    env.write("compose.yaml", STACK);
    let out = |args: &[&str]| {
        let o = env.rc(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{args:?}: {err}\n{}", env.engine_log());
        err
    };
    let log = out(&["--progress", "plain", "build"]);
    assert!(
        !log.contains("exit 9"),
        "the stage the target does not need is not built: {log}"
    );
    let show = |cmd: &str| env.ok(&["run", "--rm", "--no-deps", "app", "sh", "-c", cmd]);
    assert_eq!(
        show("cat /out/version").trim(),
        "v2",
        "a build arg over the global default"
    );
    assert_eq!(
        show("cat /out/scope").trim(),
        "VERSION=unset",
        "a global ARG is not seen in a stage that does not declare it"
    );
    assert_eq!(show("cat /out/secret-size").trim(), "6");
    assert_eq!(show("cat /out/base.txt").trim(), "from-base", "service: context");
    assert_eq!(show("cat /out/runs").trim(), "1");

    // The secret is in no layer, cache entry or history.
    let mut stack = vec![env.state.path().join("images")];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        } else if p.is_file() {
            let data = std::fs::read(&p).unwrap_or_default();
            assert!(
                !data.windows(6).any(|w| w == b"s3cret"),
                "the secret is in {}",
                p.display()
            );
        }
    }

    // A cache mount outlives the build: a build without the layer cache sees it.
    out(&["build", "--no-cache", "app"]);
    assert_eq!(show("cat /out/runs").trim(), "2");

    // `up --build` recreates only what changed.
    out(&["up", "-d"]);
    let (app, other) = (id_of(&env, "app"), id_of(&env, "other"));
    assert!(!app.is_empty() && !other.is_empty(), "{:?}", env.ps());
    out(&["up", "-d", "--build"]);
    assert_eq!(
        (id_of(&env, "app"), id_of(&env, "other")),
        (app.clone(), other.clone()),
        "nothing changed"
    );
    env.write("app/src/main.txt", "two\n");
    out(&["up", "-d", "--build"]);
    let app2 = id_of(&env, "app");
    assert_ne!(app2, app, "the edited service is recreated");
    assert_eq!(id_of(&env, "other"), other, "the others are untouched");
    assert_eq!(env.ok(&["exec", "app", "cat", "/src/main.txt"]), "two\n");

    // Watch's rebuild: an edit rebuilds the image and recreates the container.
    let mut watch = env.command(&["watch", "--no-up"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    env.write("app/src/main.txt", "three\n");
    env.wait_for("the watched service to be rebuilt", || {
        let now = id_of(&env, "app");
        !now.is_empty() && now != app2 && env.rc(&["exec", "app", "cat", "/src/main.txt"]).stdout == b"three\n"
    });
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(id_of(&env, "other"), other);
    out(&["down"]);
}

#[test]
fn an_image_of_more_layers_than_one_mount_call_holds_builds_and_runs() {
    if !root() {
        return;
    }
    let env = Env::new();
    // Sixty layers' paths pass the page mount(2) takes its options in.
    let mut df = String::from("FROM rcompose/busybox\n");
    for i in 0..60 {
        df.push_str(&format!("RUN echo {i} > /f{i}\n"));
    }
    df.push_str("RUN cat /f0 /f59 > /both\n");
    env.write("Dockerfile", &df);
    env.write("compose.yaml", "name: many\nservices:\n  app:\n    build: .\n");
    let o = env.rc(&["--progress", "plain", "build"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let shown = env.ok(&["run", "--rm", "--no-deps", "--entrypoint", "cat", "app", "/both"]);
    assert_eq!(shown, "0\n59\n");
}

#[test]
fn copy_from_a_stage_shows_the_stage_as_its_layers_stack() {
    if !root() {
        return;
    }
    let env = Env::new();
    // /d is in two layers, the second deleting a file (a whiteout): copied from the
    // stacked view. /e is in one layer only: copied from that layer (its files linked).
    env.write(
        "Dockerfile",
        "FROM rcompose/busybox AS s\n\
         RUN mkdir /d && echo a > /d/a && echo b > /d/b\n\
         RUN rm /d/b\n\
         RUN mkdir -p /e/sub && echo e > /e/sub/f && chmod 741 /e/sub/f && chown 7:8 /e/sub/f\n\
         FROM rcompose/busybox\n\
         COPY --from=s /d /d\n\
         COPY --from=s /e /e\n\
         COPY --from=s --chmod=600 /e/sub/f /f600\n",
    );
    env.write("compose.yaml", "name: cf\nservices:\n  app:\n    build: .\n");
    let o = env.rc(&["--progress", "plain", "build"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let show = |cmd: &str| env.ok(&["run", "--rm", "--no-deps", "--entrypoint", "/bin/sh", "app", "-c", cmd]);
    assert_eq!(show("ls /d; cat /d/a").trim(), "a\na");
    assert_eq!(show("stat -c '%a %u:%g' /e/sub/f; cat /e/sub/f").trim(), "741 7:8\ne");
    assert_eq!(show("stat -c '%a' /f600").trim(), "600");
    // Rebuilt: every step cached, without mounting the stage (its digest remembered).
    let o = env.rc(&["--progress", "plain", "build"]);
    let again = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success() && again.matches("CACHED").count() == 6, "{again}");
}

/// A one-file HTTP server on loopback in the engine's namespace; its port.
fn serve_file(env: &Env, body: &'static str) -> u16 {
    serve_file_at(env, "127.0.0.1", body)
}

/// As [`serve_file`], listening on `addr`.
fn serve_file_at(env: &Env, addr: &'static str, body: &'static str) -> u16 {
    let ns = env.ns.try_clone().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let l = std::net::TcpListener::bind((addr, 0)).unwrap();
        tx.send(l.local_addr().unwrap().port()).unwrap();
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match std::io::Read::read(&mut s, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = std::io::Write::write_all(&mut s, head.as_bytes());
            let _ = std::io::Write::write_all(&mut s, body.as_bytes());
        }
    });
    rx.recv().unwrap()
}

#[test]
fn add_fetches_a_url_and_checks_its_checksum() {
    if !root() {
        return;
    }
    let env = Env::new();
    let port = serve_file(&env, "fetched\n");
    // sha256 of "fetched\n"
    let sum = "sha256:f6e379b0639054c51806fd5d67948cbcaebd354b0e91a7683932b043c5c3ba32";
    env.write(
        "Dockerfile",
        &format!(
            "FROM rcompose/busybox\n\
             ADD http://127.0.0.1:{port}/files/hello.txt /srv/\n\
             ADD --checksum={sum} http://127.0.0.1:{port}/x/y /named\n"
        ),
    );
    env.write("compose.yaml", "name: au\nservices:\n  app:\n    build: .\n");
    let o = env.rc(&["--progress", "plain", "build"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    let show = |cmd: &str| env.ok(&["run", "--rm", "--no-deps", "--entrypoint", "/bin/sh", "app", "-c", cmd]);
    assert_eq!(
        show("stat -c '%a %u %Y' /srv/hello.txt /named; cat /srv/hello.txt").trim(),
        "600 0 1445412480\n600 0 1445412480\nfetched"
    );
    // Fetched again, same content: cached.
    let o = env.rc(&["--progress", "plain", "build"]);
    assert!(String::from_utf8_lossy(&o.stderr).matches("CACHED").count() == 2);
    // A checksum that does not match, or one on a local file: refused.
    let bad = format!("sha256:{}", "0".repeat(64));
    for (df, want) in [
        (
            format!("FROM rcompose/busybox\nADD --checksum={bad} http://127.0.0.1:{port}/f /f\n"),
            "digest mismatch",
        ),
        (
            format!("FROM rcompose/busybox\nADD --checksum={sum} compose.yaml /f\n"),
            "checksum requires HTTP(S) or Git sources",
        ),
    ] {
        env.write("Dockerfile", &df);
        let o = env.rc(&["build"]);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success() && err.contains(want), "{err}");
    }
}

#[test]
fn cache_mounts_start_from_a_stage_and_share_as_asked() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write(
        "Dockerfile",
        "FROM rcompose/busybox AS seed\n\
         RUN mkdir -p /seed && echo seeded > /seed/s\n\
         FROM rcompose/busybox\n\
         RUN --mount=type=cache,target=/c,id=c1,from=seed,source=/seed cat /c/s > /out1\n\
         RUN --mount=type=cache,target=/p,id=c2,sharing=private sh -c 'echo p >> /p/x; wc -l < /p/x > /out2'\n\
         RUN --mount=type=cache,target=/l,id=c3,sharing=locked sh -c 'echo l >> /l/x; wc -l < /l/x > /out3'\n",
    );
    env.write("compose.yaml", "name: cm\nservices:\n  app:\n    build: .\n");
    let show = |cmd: &str| env.ok(&["run", "--rm", "--no-deps", "--entrypoint", "/bin/sh", "app", "-c", cmd]);
    for runs in ["1", "2"] {
        let o = env.rc(&["--progress", "plain", "build", "--no-cache"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(show("cat /out1 /out2 /out3"), format!("seeded\n{runs}\n{runs}\n"));
    }
    env.write(
        "Dockerfile",
        "FROM rcompose/busybox\nRUN --mount=type=cache,target=/z,sharing=bogus true\n",
    );
    let o = env.rc(&["build"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success() && err.contains("sharing=bogus: not one of shared, private, locked"),
        "{err}"
    );
}

#[test]
fn run_steps_have_a_network_of_their_own_with_a_way_out() {
    if !root() {
        return;
    }
    let env = Env::new();
    // Outside the step, in the engine's namespace, on every address (the bridge's too).
    let port = serve_file_at(&env, "0.0.0.0", "from outside\n");
    env.write(
        "Dockerfile",
        &format!(
            "FROM rcompose/busybox\n\
             RUN ip -4 addr show eth0 | grep -q 'inet ' && \\\n\
                 gw=$(ip route | awk '/^default/ {{print $3}}') && \\\n\
                 grep -q \"nameserver $gw\" /etc/resolv.conf && \\\n\
                 timeout 10 wget -q -O /got http://$gw:{port}/x\n"
        ),
    );
    env.write("compose.yaml", "name: bn\nservices:\n  app:\n    build: .\n");
    let o = env.rc(&["--progress", "plain", "build"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The step's veth went with it (host ends are named rv...), and the network with
    // the last build that used it (bridges are rc-...).
    let links = env.links();
    assert!(!links.contains(": rv") && !links.contains(": rc-"), "{links}");
    let got = env.ok(&["run", "--rm", "--no-deps", "--entrypoint", "cat", "app", "/got"]);
    assert_eq!(got, "from outside\n");
}

#[test]
fn copy_link_makes_a_layer_of_its_own_that_survives_earlier_changes() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write("a.txt", "A\n");
    env.write(
        "Dockerfile",
        "FROM rcompose/busybox\n\
         ARG V=1\n\
         RUN echo $V > /v && ln -s /tmp /lnk\n\
         COPY --link a.txt /lnk/a.txt\n\
         COPY a.txt /lnk/plain.txt\n",
    );
    env.write("compose.yaml", "name: cl\nservices:\n  app:\n    build: .\n");
    let o = env.rc(&["--progress", "plain", "build"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let show = |cmd: &str| env.ok(&["run", "--rm", "--no-deps", "--entrypoint", "/bin/sh", "app", "-c", cmd]);
    // The linked layer's /lnk is a directory of its own over the image's link; the
    // plain COPY then goes into it, as the stacked image shows it.
    assert_eq!(show("cat /lnk/a.txt /lnk/plain.txt; ls /tmp").trim(), "A\nA");
    // An earlier step changes: the linked COPY is still cached, the plain one is not.
    let o = env.rc(&["--progress", "plain", "build", "--build-arg", "V=2"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    let cached = |what: &str| {
        let id = err
            .lines()
            .find(|l| l.contains(what))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("#?")
            .to_string();
        err.lines().any(|l| l == format!("{id} CACHED"))
    };
    assert!(cached("COPY --link a.txt"), "{err}");
    assert!(!cached("COPY a.txt /lnk/plain.txt") && !cached("RUN echo"), "{err}");
    assert_eq!(show("cat /v /lnk/a.txt").trim(), "2\nA");
}
