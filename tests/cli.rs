//! End to end: the built `rcompose` binary, as a user runs it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn rcompose(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rcompose"));
    // Never an engine of a CLI test's making (it would run in the host's namespace).
    c.current_dir(dir)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("RCOMPOSE_NO_AUTOSTART", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn err(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "should fail: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let t = tempfile::Builder::new().prefix("proj").tempdir().unwrap();
    for (n, c) in files {
        let p = t.path().join(n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    }
    t
}

const STACK: &str = "services:\n  web:\n    image: nginx:${TAG:-1.27}\n    ports: ['8080:80']\n    depends_on: [cache]\n    volumes: ['./html:/usr/share/nginx/html:ro']\n  db:\n    image: postgres\n    profiles: [data]\n  cache:\n    image: redis\n";

#[test]
fn config_prints_the_resolved_model_as_yaml_and_json() {
    let t = project(&[("compose.yaml", STACK), (".env", "TAG=2.0\n")]);
    let name = t.path().file_name().unwrap().to_string_lossy().to_lowercase();
    let out = ok(&rcompose(t.path(), &["--profile", "data", "config"], &[]));
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&out).unwrap();
    assert_eq!(v["name"].as_str(), Some(name.as_str()));
    assert_eq!(v["services"]["web"]["image"].as_str(), Some("nginx:2.0"));
    assert_eq!(v["services"]["web"]["ports"][0]["published"].as_str(), Some("8080"));
    assert_eq!(
        v["services"]["web"]["depends_on"]["cache"]["condition"].as_str(),
        Some("service_started")
    );
    let src = t.path().join("html");
    assert_eq!(
        v["services"]["web"]["volumes"][0]["source"].as_str(),
        Some(src.to_str().unwrap())
    );
    assert_eq!(
        v["networks"]["default"]["name"].as_str(),
        Some(format!("{name}_default").as_str())
    );

    let out = ok(&rcompose(
        t.path(),
        &["--profile", "data", "config", "--format", "json"],
        &[("TAG", "shell")],
    ));
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["services"]["web"]["image"], "nginx:shell");
    let keys: Vec<&String> = j["services"].as_object().unwrap().keys().collect();
    assert_eq!(keys, vec!["cache", "db", "web"]);
}

#[test]
fn yaml_output_is_laid_out_as_compose_and_matches_json() {
    let t = project(&[(
        "compose.yaml",
        "services:\n  web:\n    image: nginx\n    command: [\"a b\", \"\"]\n    ports: ['8080:80']\n    environment: {A: '1', B: 'x: y'}\n    build:\n      context: .\n      dockerfile_inline: |\n        FROM busybox\n        RUN true\n",
    )]);
    let yaml = ok(&rcompose(t.path(), &["config"], &[]));
    assert!(yaml.contains("    command:\n      - a b\n      - \"\"\n"), "{yaml}");
    assert!(yaml.contains("    ports:\n      - mode: ingress\n        target: 80\n        published: \"8080\"\n        protocol: tcp\n"), "{yaml}");
    assert!(yaml.contains("      A: \"1\"\n      B: \"x: y\"\n"), "{yaml}");
    assert!(
        yaml.contains("      dockerfile_inline: |\n        FROM busybox\n        RUN true\n"),
        "{yaml}"
    );
    let from_yaml: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    let from_json: serde_json::Value =
        serde_json::from_str(&ok(&rcompose(t.path(), &["config", "--format", "json"], &[]))).unwrap();
    assert_eq!(from_yaml, from_json);
}

#[test]
fn config_listing_flags() {
    let t = project(&[("compose.yaml", STACK)]);
    assert_eq!(ok(&rcompose(t.path(), &["config", "--services"], &[])), "cache\nweb\n");
    assert_eq!(
        ok(&rcompose(t.path(), &["--profile", "data", "config", "--services"], &[])),
        "cache\ndb\nweb\n"
    );
    assert_eq!(ok(&rcompose(t.path(), &["config", "--profiles"], &[])), "data\n");
    assert_eq!(ok(&rcompose(t.path(), &["config", "--networks"], &[])), "default\n");
    assert_eq!(
        ok(&rcompose(t.path(), &["--profile", "*", "config", "--images"], &[])),
        "redis\npostgres\nnginx:1.27\n"
    );
    // A named service brings its dependencies; naming one activates its profile.
    assert_eq!(
        ok(&rcompose(t.path(), &["config", "--services", "web"], &[])),
        "cache\nweb\n"
    );
    assert_eq!(ok(&rcompose(t.path(), &["config", "--services", "db"], &[])), "db\n");
    let e = err(&rcompose(t.path(), &["config", "nope"], &[]));
    assert!(e.contains("no such service: nope"), "{e}");
    assert_eq!(ok(&rcompose(t.path(), &["config", "-q"], &[])), "");
}

#[test]
fn config_hash_is_stable_and_ignores_what_compose_ignores() {
    let t = project(&[("compose.yaml", STACK)]);
    let all = ok(&rcompose(t.path(), &["config", "--hash", "*"], &[]));
    let h1 = ok(&rcompose(t.path(), &["config", "--hash", "cache"], &[]));
    assert_eq!(all.lines().next(), h1.lines().next());
    assert_eq!(all.lines().count(), 2);
    let (svc, hash) = h1.trim().split_once(' ').unwrap();
    assert_eq!((svc, hash.len()), ("cache", 64));
    // Scale and pull policy do not change the container: same hash. An env var does.
    std::fs::write(
        t.path().join("compose.override.yaml"),
        "services:\n  cache:\n    scale: 3\n    pull_policy: always\n",
    )
    .unwrap();
    assert_eq!(ok(&rcompose(t.path(), &["config", "--hash", "cache"], &[])), h1);
    std::fs::write(
        t.path().join("compose.override.yaml"),
        "services:\n  cache:\n    environment: [A=1]\n",
    )
    .unwrap();
    assert_ne!(ok(&rcompose(t.path(), &["config", "--hash", "cache"], &[])), h1);
}

#[test]
fn files_from_flags_env_stdin_and_parents() {
    let t = project(&[
        ("a.yaml", "services:\n  a:\n    image: a\n"),
        ("b.yaml", "services:\n  a:\n    image: b\n"),
        ("sub/dir/.keep", ""),
        ("compose.yml", "services:\n  root:\n    image: r\n"),
    ]);
    assert!(ok(&rcompose(t.path(), &["-f", "a.yaml", "-f", "b.yaml", "config"], &[])).contains("image: b"));
    let out = ok(&rcompose(
        t.path(),
        &["config"],
        &[("COMPOSE_FILE", "a.yaml;b.yaml"), ("COMPOSE_PATH_SEPARATOR", ";")],
    ));
    assert!(out.contains("image: b"), "{out}");
    // Discovery walks up from the working directory.
    assert!(ok(&rcompose(&t.path().join("sub/dir"), &["config", "--services"], &[])).contains("root"));
    // `-f -` reads standard input; the project is named after the working directory.
    let mut c = Command::new(env!("CARGO_BIN_EXE_rcompose"));
    c.current_dir(t.path())
        .args(["-f", "-", "-p", "fromstdin", "config"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"services:\n  s:\n    image: from-stdin\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let out = ok(&o);
    assert!(
        out.contains("name: fromstdin") && out.contains("image: from-stdin"),
        "{out}"
    );
    // --project-directory moves where .env and relative paths are taken from.
    let o = rcompose(
        t.path(),
        &[
            "--project-directory",
            "sub",
            "-f",
            "a.yaml",
            "config",
            "--format",
            "json",
        ],
        &[],
    );
    let j: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(j["name"], "sub");
}

#[test]
fn output_file_is_written_whole() {
    let t = project(&[("compose.yaml", "services:\n  a:\n    image: a\n")]);
    ok(&rcompose(t.path(), &["config", "-o", "out.yaml"], &[]));
    let text = std::fs::read_to_string(t.path().join("out.yaml")).unwrap();
    assert!(text.contains("image: a"));
    let leftovers: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn errors_are_one_clear_line_with_file_line_and_key() {
    let t = project(&[("compose.yaml", "services:\n  web:\n    image: x\n    depnds_on: [db]\n")]);
    let e = err(&rcompose(t.path(), &["config"], &[]));
    let file = t.path().join("compose.yaml");
    assert_eq!(
        e.trim(),
        format!(
            "{}:4:5: services.web.depnds_on: unknown key `depnds_on`, did you mean `depends_on`?",
            file.display()
        )
    );
    assert_eq!(e.lines().count(), 1);

    let t = project(&[("compose.yaml", "services:\n  web:\n    image: ${IMG:?set IMG}\n")]);
    let e = err(&rcompose(t.path(), &["config"], &[]));
    assert!(
        e.contains("compose.yaml:3:5: services.web.image: required variable IMG is missing a value: set IMG"),
        "{e}"
    );

    let t = project(&[(
        "compose.yaml",
        "services:\n  web:\n    image: x\n    ports: [\"abc\"]\n",
    )]);
    let e = err(&rcompose(t.path(), &["config"], &[]));
    assert!(
        e.contains("compose.yaml:4:13: services.web.ports[0]: invalid container port \"abc\""),
        "{e}"
    );

    let t = project(&[]);
    let e = err(&rcompose(t.path(), &["config"], &[]));
    assert!(e.contains("no configuration file provided: not found"), "{e}");

    let t = project(&[("compose.yaml", "services:\n  a:\n    image: a\n")]);
    let e = err(&rcompose(t.path(), &["-p", "Bad Name!", "config"], &[]));
    assert!(e.contains("invalid project name \"Bad Name!\""), "{e}");
}

#[test]
fn warnings_go_to_stderr() {
    let t = project(&[(
        "compose.yaml",
        "version: '3'\nservices:\n  a:\n    image: ${UNSET_VAR}x\n",
    )]);
    let o = rcompose(t.path(), &["config"], &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("WARN[0000] The \"UNSET_VAR\" variable is not set. Defaulting to a blank string."),
        "{stderr}"
    );
    let file = t.path().join("compose.yaml");
    assert!(
        stderr.contains(&format!(
            "WARN[0000] {}: the attribute `version` is obsolete",
            file.display()
        )),
        "{stderr}"
    );
    assert!(ok(&o).contains("image: x"));
}

#[test]
fn unbuilt_commands_say_so_and_fail() {
    let t = project(&[("compose.yaml", "services:\n  a:\n    image: a\n")]);
    for cmd in [vec!["commit", "a"], vec!["export", "a"]] {
        let o = rcompose(t.path(), &cmd, &[]);
        assert_eq!(o.status.code(), Some(1), "{cmd:?}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(e.trim(), format!("rcompose {}: not implemented yet", cmd[0]), "{cmd:?}");
    }
    let e = err(&rcompose(t.path(), &["config", "--resolve-image-digests"], &[]));
    assert!(e.contains("--resolve-image-digests: not implemented yet"), "{e}");
}

#[test]
fn version_and_completion() {
    let t = project(&[]);
    let v = env!("CARGO_PKG_VERSION");
    assert_eq!(
        ok(&rcompose(t.path(), &["version"], &[])),
        format!("rcompose version v{v}\n")
    );
    assert_eq!(ok(&rcompose(t.path(), &["version", "--short"], &[])), format!("{v}\n"));
    let j: serde_json::Value =
        serde_json::from_str(&ok(&rcompose(t.path(), &["version", "--format", "json"], &[]))).unwrap();
    assert_eq!(j["version"], format!("v{v}"));
    let bash = ok(&rcompose(t.path(), &["completion", "bash"], &[]));
    assert!(
        bash.contains("COMPLETE=\"bash\"") && bash.contains(env!("CARGO_BIN_EXE_rcompose")),
        "{bash}"
    );
    assert!(ok(&rcompose(t.path(), &["completion", "zsh"], &[])).contains("compdef"));
}

/// What the shell script asks: the candidates for the word at `index` of `words`.
fn complete(dir: &Path, words: &[&str], index: usize) -> Vec<String> {
    let mut args = vec!["--"];
    args.extend_from_slice(words);
    let index = index.to_string();
    let env = [
        ("COMPLETE", "bash"),
        ("_CLAP_COMPLETE_INDEX", index.as_str()),
        ("_CLAP_COMPLETE_COMP_TYPE", "9"),
        ("_CLAP_COMPLETE_SPACE", "true"),
        ("_CLAP_IFS", "\n"),
    ];
    ok(&rcompose(dir, &args, &env)).lines().map(String::from).collect()
}

#[test]
fn completion_offers_the_projects_services() {
    let t = project(&[
        ("compose.yaml", STACK),
        (
            "other/o.yaml",
            "services:\n  alpha:\n    image: a\n  beta:\n    image: b\n",
        ),
    ]);
    let got = complete(t.path(), &["rcompose", "logs", ""], 2);
    // The project's services (not those of an inactive profile), then the flags.
    assert!(
        got.contains(&"web".to_string()) && got.contains(&"cache".to_string()),
        "{got:?}"
    );
    assert!(!got.contains(&"db".to_string()), "{got:?}");
    assert!(got.contains(&"--follow".to_string()), "{got:?}");
    let got = complete(t.path(), &["rcompose", "--profile", "data", "exec", "d"], 4);
    assert_eq!(got, vec!["db"]);
    let got = complete(t.path(), &["rcompose", "-f", "other/o.yaml", "restart", "b"], 4);
    assert_eq!(got, vec!["beta"]);
    // Commands are this binary's; a project that does not load offers no services.
    assert_eq!(complete(t.path(), &["rcompose", "atta"], 1), vec!["attach"]);
    let got = complete(t.path(), &["rcompose", "-f", "missing.yaml", "logs", "w"], 4);
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn example_stack_resolves() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/web");
    let out = ok(&rcompose(&dir, &["config", "--format", "json"], &[]));
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["name"], "web");
    assert_eq!(
        j["services"]["front"]["depends_on"]["api"]["condition"],
        "service_healthy"
    );
    assert_eq!(
        j["services"]["store"]["deploy"]["resources"]["limits"]["memory"],
        "67108864"
    );
}

/// A larger stack of our own (anchors, extends, an override file with `!override`, env
/// files, profiles, secrets, configs, two networks): its whole resolved model, as
/// reviewed against what Docker Compose prints, is kept in `expected.yaml`.
#[test]
fn shop_stack_resolves_to_the_reviewed_model() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/stacks/shop");
    let out = ok(&rcompose(
        root,
        &["--project-directory", "tests/stacks/shop", "config"],
        &[],
    ));
    let out = out.replace(dir.to_str().unwrap(), "<dir>");
    let want = std::fs::read_to_string(dir.join("expected.yaml")).unwrap();
    assert_eq!(out, want);
    // The tools profile adds the admin service and nothing else changes.
    let with_tools = ok(&rcompose(
        root,
        &[
            "--project-directory",
            "tests/stacks/shop",
            "--profile",
            "tools",
            "config",
            "--services",
        ],
        &[],
    ));
    assert_eq!(
        with_tools,
        "admin\napi\ncache\ndb\ngateway\nmigrate\nqueue\nweb\nworker\n"
    );
    // Variables from the shell win over .env.
    let out = ok(&rcompose(
        root,
        &["--project-directory", "tests/stacks/shop", "config", "--format", "json"],
        &[("APP_TAG", "2.0"), ("SHOP_NAME", "myshop")],
    ));
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["name"], "myshop");
    assert_eq!(j["services"]["worker"]["image"], "registry.local/shop/app:2.0");
    assert_eq!(j["networks"]["back"]["name"], "myshop_back");
}
