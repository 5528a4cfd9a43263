//! The stacks of `examples/`, end to end, as root: each is brought up from its own
//! directory with an engine of the test's own (see `engine_env`), made to do its job
//! through its published port, and brought down leaving nothing.

mod engine_env;

use engine_env::{root, Env, BIN};
use std::path::PathBuf;
use std::process::Command;

fn compose_file(stack: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(stack)
        .join("compose.yaml");
    p.to_string_lossy().into_owned()
}

/// `rcompose -f examples/<stack>/compose.yaml ARGS...`, which must succeed.
fn stack(env: &Env, name: &str, args: &[&str]) -> String {
    let file = compose_file(name);
    let mut all = vec!["-f", file.as_str()];
    all.extend_from_slice(args);
    env.ok(&all)
}

/// The stack's containers, as `ps -a --format json` gives them.
fn ps(env: &Env, name: &str) -> Vec<serde_json::Value> {
    stack(env, name, &["ps", "-a", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn container(env: &Env, stack_name: &str, name: &str) -> serde_json::Value {
    let all = ps(env, stack_name);
    all.iter()
        .find(|c| c["Name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no container {name}: {all:?}"))
}

/// The body of an HTTP response. busybox httpd passes a CGI script's own header lines
/// on as they are, ended by a bare newline.
fn body(response: &str) -> &str {
    let crlf = response.find("\r\n\r\n").map(|i| i + 4);
    let lf = response.find("\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => &response[a.min(b)..],
        (Some(i), None) | (None, Some(i)) => &response[i..],
        (None, None) => "",
    }
}

fn down_leaves_nothing(env: &Env, name: &str) {
    stack(env, name, &["down", "-v"]);
    env.assert_nothing_left();
    assert!(
        !env.state.path().join("volumes").read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("{name}_"))),
        "volumes of {name} left"
    );
}

#[test]
fn web_stack_stores_a_note_through_front_end_and_api() {
    if !root() {
        return;
    }
    let env = Env::new();
    stack(&env, "web", &["up", "-d", "--wait"]);
    let ps = ps(&env, "web");
    assert_eq!(ps.len(), 3, "{ps:?}");
    assert!(ps.iter().all(|c| c["State"] == "running"), "{ps:?}");

    assert!(body(&env.http(8080, "GET", "/", "")).contains("<h1>Notes</h1>"));
    // Front end -> API -> store, each by its service name.
    for note in ["hello+world", "second"] {
        let r = env.http(8080, "POST", "/cgi-bin/notes", &format!("note={note}"));
        assert_eq!(body(&r).trim(), "OK", "{r}\n{}", stack(&env, "web", &["logs"]));
    }
    assert_eq!(
        body(&env.http(8080, "GET", "/cgi-bin/notes", "")).trim(),
        "hello world\nsecond"
    );
    // The notes are in the named volume: they outlive the containers.
    stack(&env, "web", &["down"]);
    stack(&env, "web", &["up", "-d", "--wait"]);
    assert!(body(&env.http(8080, "GET", "/cgi-bin/notes", "")).contains("hello world"));
    down_leaves_nothing(&env, "web");
}

#[test]
fn build_stack_builds_its_own_image_from_a_dockerfile() {
    if !root() {
        return;
    }
    let env = Env::new();
    stack(&env, "build", &["up", "-d", "--build", "--wait"]);
    let page = env.http_get(8081);
    assert!(page.contains("<h1>Hello from a Dockerfile</h1>"), "{page}");
    // The .dockerignore kept the draft out; the final stage has only the pages.
    let files = stack(&env, "build", &["exec", "site", "ls", "/www"]);
    assert_eq!(files.split_whitespace().collect::<Vec<_>>(), ["index.html"], "{files}");
    // A second `up --build` with nothing changed keeps the container.
    let before = container(&env, "build", "build-site-1")["ID"].clone();
    stack(&env, "build", &["up", "-d", "--build", "--wait"]);
    assert_eq!(container(&env, "build", "build-site-1")["ID"], before);
    down_leaves_nothing(&env, "build");
}

#[test]
fn micro_stack_survives_a_poison_job_and_balances_replicas() {
    if !root() {
        return;
    }
    let env = Env::new();
    stack(&env, "micro", &["up", "-d", "--wait"]);
    // The migration ran once and ended; three API replicas behind one name.
    let migrate = container(&env, "micro", "micro-migrate-1");
    assert_eq!(
        (migrate["State"].as_str(), migrate["ExitCode"].as_i64()),
        (Some("exited"), Some(0))
    );
    let apis = ps(&env, "micro").into_iter().filter(|c| c["Service"] == "api").count();
    assert_eq!(apis, 3);

    let post = |text: &str| body(&env.http(8081, "POST", "/cgi-bin/jobs", &format!("text={text}"))).to_string();
    assert!(post("hello").starts_with("job 1 queued by "));
    assert!(post("crash").starts_with("job 2 queued by "));
    assert!(post("world").starts_with("job 3 queued by "));
    // The worker died on the poison job, was restarted by its policy, and went on.
    env.wait_for("the job after the crash to be done", || {
        body(&env.http(8081, "GET", "/cgi-bin/jobs", "")).contains("3 WORLD (worker start #2)")
    });
    let results = body(&env.http(8081, "GET", "/cgi-bin/jobs", "")).to_string();
    assert!(results.contains("1 HELLO (worker start #1)"), "{results}");
    assert!(!results.contains("CRASH"), "{results}");
    let worker = container(&env, "micro", "micro-worker-1");
    assert_eq!(worker["State"], "running");
    assert_eq!(worker["RestartCount"], 1, "{worker}");
    let logs = stack(&env, "micro", &["logs", "worker"]);
    assert!(logs.contains("job 2: poison job, crashing"), "{logs}");

    // The gateway's requests are spread over the replicas.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..9 {
        seen.insert(body(&env.http(8081, "GET", "/cgi-bin/whoami", "")).trim().to_string());
    }
    assert!(seen.len() >= 2, "one replica answered every time: {seen:?}");

    // Only the gateway has a way out; the backend network is internal.
    let api_routes = stack(&env, "micro", &["exec", "-T", "api", "ip", "route"]);
    assert!(!api_routes.contains("default"), "{api_routes}");
    let gw_routes = stack(&env, "micro", &["exec", "-T", "gateway", "ip", "route"]);
    assert!(gw_routes.contains("default"), "{gw_routes}");
    // deploy.resources.limits reach the cgroups.
    let stats = stack(&env, "micro", &["stats", "--no-stream", "--format", "json", "api"]);
    assert!(stats.contains("/ 32MiB"), "{stats}");

    down_leaves_nothing(&env, "micro");
}

#[test]
fn servers_stack_runs_nginx_redis_and_postgresql_from_debian() {
    if !root() {
        return;
    }
    let env = Env::new();
    // The Debian image comes from the tarball that `make-images.sh debian` left in its
    // cache; a test never downloads.
    let o = Command::new("sh")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/make-images.sh"))
        .args(["--offline", "debian"])
        .env("RCOMPOSE", BIN)
        .env("RCOMPOSE_ROOT", env.state.path())
        .output()
        .unwrap();
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            std::env::var_os("CI").is_none(),
            "the Debian image is not made (run examples/make-images.sh --no-import debian first): {err}"
        );
        eprintln!("skipped: {err}");
        return;
    }
    stack(&env, "servers", &["up", "-d", "--wait"]);

    let page = env.http(8082, "GET", "/", "");
    assert!(page.contains("Server: nginx/"), "{page}");
    assert!(body(&page).contains("<h1>Guestbook</h1>"));
    // nginx -> app -> Redis.
    assert_eq!(body(&env.http(8082, "GET", "/api/visits", "")).trim(), "visit #1");
    assert_eq!(body(&env.http(8082, "GET", "/api/visits", "")).trim(), "visit #2");
    // nginx -> app -> PostgreSQL, whatever the name says.
    let hostile = "Robert%27%29%3B+DROP+TABLE+guestbook%3B--";
    assert_eq!(
        body(&env.http(8082, "POST", "/api/guestbook", "name=Ada")).trim(),
        "signed: Ada"
    );
    env.http(8082, "POST", "/api/guestbook", &format!("name={hostile}"));
    assert_eq!(
        body(&env.http(8082, "GET", "/api/guestbook", "")).trim(),
        "Ada\nRobert'); DROP TABLE guestbook;--"
    );
    // The servers answer their own protocols, across the internal network.
    assert_eq!(
        stack(
            &env,
            "servers",
            &["exec", "-T", "app", "redis-cli", "-h", "redis", "GET", "visits"]
        )
        .trim(),
        "2"
    );
    assert_eq!(
        stack(
            &env,
            "servers",
            &[
                "exec",
                "-T",
                "app",
                "psql",
                "-At",
                "-c",
                "SELECT count(*) FROM guestbook"
            ]
        )
        .trim(),
        "2"
    );
    assert_eq!(
        stack(&env, "servers", &["exec", "-T", "redis", "redis-cli", "ping"]).trim(),
        "PONG"
    );

    down_leaves_nothing(&env, "servers");
}
