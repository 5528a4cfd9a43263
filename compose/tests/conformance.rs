//! The third-party conformance corpus (`../shared/conformance/`), read in place. Each
//! test asserts the behaviour the upstream test names, re-derived from the Compose
//! Specification; fixtures Compose rejects must be rejected with a message.

mod common;
use common::*;
use compose::model::{Duration, External, FileMode, Ulimit};
use compose::Graph;
use std::collections::BTreeMap;
use std::path::Path;

macro_rules! corpus {
    () => {
        match corpus() {
            Some(c) => c,
            None => return,
        }
    };
}

fn levels(l: &compose::Loaded) -> Vec<Vec<String>> {
    Graph::new(&l.project).unwrap().start_levels()
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

// ---- compose-go dotenv fixtures ------------------------------------------------------

#[test]
fn dotenv_fixtures() {
    let c = corpus!();
    let dir = c.join("compose-go/dotenv/fixtures");
    let os = |n: &str| (n == "VAR_TO_BE_LOADED_FROM_OS_ENV").then(|| "loaded from os".to_string());
    let read = |f: &str| compose::dotenv::parse(&std::fs::read_to_string(dir.join(f)).unwrap(), &os);
    let check = |f: &str, want: &[(&str, &str)]| {
        let got = read(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        let want: Vec<(String, String)> = want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let got: Vec<(String, String)> = got.into_iter().collect();
        assert_eq!(got, want, "{f}");
    };
    let plain = [
        ("OPTION_A", "1"),
        ("OPTION_B", "2"),
        ("OPTION_C", "3"),
        ("OPTION_D", "4"),
        ("OPTION_E", "5"),
        ("456", "ABC"),
        ("OPTION_F", ""),
        ("OPTION_G", ""),
        ("OPTION_H", "my string"),
    ];
    check("plain.env", &plain);
    check("utf8-bom.env", &plain);
    check(
        "quoted.env",
        &[
            ("OPTION_A", "1"),
            ("OPTION_B", "2"),
            ("OPTION_C", ""),
            ("OPTION_D", "\\n"),
            ("OPTION_E", "1"),
            ("OPTION_F", "2"),
            ("OPTION_G", ""),
            ("OPTION_H", "\n"),
            ("OPTION_I", "echo 'asd'"),
            ("OPTION_J", "first line\nsecond line\nthird line\nand so on"),
            ("OPTION_K", "Let's go!"),
            ("OPTION_Z", "last value"),
        ],
    );
    check("exported.env", &[("OPTION_A", "2"), ("OPTION_B", "\\n")]);
    check(
        "equals.env",
        &[("OPTION_A", "postgres://localhost:5432/database?sslmode=disable")],
    );
    check(
        "special.env",
        &[
            ("VAR.WITH.DOTS", "dots"),
            ("VAR_WITH_UNDERSCORES", "underscores"),
            ("VAR-WITH-DASHES", "dashes"),
        ],
    );
    let subst = [
        ("OPTION_A", "1"),
        ("OPTION_B", "1"),
        ("OPTION_C", "1"),
        ("OPTION_D", "1_1"),
        ("OPTION_E", ""),
    ];
    check("substitutions.env", &subst);
    check("substitutions-default.env", &subst);
    check(
        "unquoted.env",
        &[
            ("OPTION_A", "some quoted phrase"),
            ("OPTION_B", "first one with an unquoted phrase"),
            ("OPTION_C", "then another one with an unquoted phrase"),
            ("OPTION_D", "then another one with an unquoted phrase special è char"),
            ("OPTION_E", "then another one quoted phrase"),
        ],
    );
    check(
        "inherited-single-var.env",
        &[("VAR_TO_BE_LOADED_FROM_OS_ENV", "loaded from os")],
    );
    check(
        "inherited-multi-var.env",
        &[
            ("foo", "bar"),
            ("VAR_TO_BE_LOADED_FROM_OS_ENV", "loaded from os"),
            ("bar", "baz"),
        ],
    );
    check("inherited-not-found.env", &[]);
    check("custom.format", &[("FOO", "BAR"), ("ZOT", "QIX")]);
    let e = read("invalid1.env").unwrap_err();
    assert_eq!(e.line, 7, "{e}");
    assert!(e.message.contains("INVALID LINE"), "{e}");
}

// ---- compose-go cli fixtures -------------------------------------------------------

#[test]
fn cli_simple_discovery_overrides_and_names() {
    let c = corpus!();
    let dir = c.join("compose-go/cli/testdata/simple");
    let l = load(&dir, &[], &[]);
    assert_eq!(l.files, vec![dir.join("compose.yaml")]);
    assert_eq!(l.name, "simple");
    assert_eq!(l.project.services["simple"].image.as_deref(), Some("nginx"));

    let l = load(&dir, &["compose.yaml", "compose-with-overrides.yaml"], &[]);
    assert_eq!(l.project.services["simple"].image.as_deref(), Some("haproxy"));

    // `.env` of the project directory feeds interpolation; the OS environment wins.
    let l = load(&dir, &["compose-with-variables.yaml"], &[]);
    assert_eq!(
        l.project.services["simple"].ports.as_ref().unwrap()[0]
            .published
            .as_deref(),
        Some("8000")
    );
    let l = load(&dir, &["compose-with-variables.yaml"], &[("PUBLIC_PORT", "9000")]);
    assert_eq!(
        l.project.services["simple"].ports.as_ref().unwrap()[0]
            .published
            .as_deref(),
        Some("9000")
    );

    // name: in the file, COMPOSE_PROJECT_NAME over it, -p over both.
    assert_eq!(
        load(&dir, &["compose-name.yaml"], &[("TEST", "env")]).name,
        "test-env-test"
    );
    assert_eq!(
        load(
            &dir,
            &["compose-name.yaml"],
            &[("TEST", "env"), ("COMPOSE_PROJECT_NAME", "from_env")]
        )
        .name,
        "from_env"
    );
    let mut o = opts(
        &dir,
        &["compose-name.yaml"],
        &[("TEST", "env"), ("COMPOSE_PROJECT_NAME", "from_env")],
    );
    o.project_name = Some("flag".into());
    assert_eq!(compose::load(&o).unwrap().name, "flag");
}

#[test]
fn cli_env_file_and_compose_file_from_dotenv() {
    let c = corpus!();
    let dir = c.join("compose-go/cli/testdata/env-file");
    // COMPOSE_FILE comes from .env; that file's env_file is not in the corpus, and a
    // missing env_file is an error naming it.
    let e = load_err(&dir, &[], &[]);
    assert!(e.contains("simple-env"), "{e}");

    // The same directory with the env files present, in a scratch copy.
    let t = tempfile::tempdir().unwrap();
    for f in [
        ".env",
        "compose-with-env-file.yaml",
        "compose-with-env-files.yaml",
        "override.env",
    ] {
        std::fs::copy(dir.join(f), t.path().join(f)).unwrap();
    }
    std::fs::write(t.path().join("simple-env"), "A=1\n").unwrap();
    std::fs::write(t.path().join("second-env"), "A=2\nB=3\n").unwrap();
    let l = load(t.path(), &[], &[]);
    assert_eq!(l.name, "my_project_from_dot_env");
    assert_eq!(l.files, vec![t.path().join("compose-with-env-file.yaml")]);
    assert!(l.warnings.iter().any(|w| w.contains("`version` is obsolete")));
    assert_eq!(
        l.project.services["simple"].environment.as_ref().unwrap()["A"].as_deref(),
        Some("1")
    );

    // --env-file replaces .env: PORT comes from override.env.
    let mut o = opts(t.path(), &["compose-with-env-files.yaml"], &[]);
    o.env_files = vec!["override.env".into()];
    let l = compose::load(&o).unwrap();
    let svc = &l.project.services["simple"];
    assert_eq!(svc.ports.as_ref().unwrap()[0].published.as_deref(), Some("9000"));
    // Later env files win.
    let env = svc.environment.as_ref().unwrap();
    assert_eq!((env["A"].as_deref(), env["B"].as_deref()), (Some("2"), Some("3")));
}

// ---- compose-go loader fixtures ----------------------------------------------------

#[test]
fn extends_fixtures() {
    let c = corpus!();
    let dir = c.join("compose-go/loader/testdata/extends");
    let base = path_str(&dir.join("base.yaml"));
    let t = temp(&[(
        "compose.yaml",
        &format!(
            "services:\n  another:\n    extends: {{file: {base}, service: another}}\n  with-build:\n    extends: {{file: {base}, service: with-build}}\n  limits:\n    extends: {{file: {base}, service: withUlimits}}\n  nested:\n    extends: {{file: {}, service: with-build}}\n  ports:\n    extends: {{file: {}, service: test}}\n    ports: ['9090:9090']\n  interp:\n    extends: {{file: {}, service: foo}}\n",
            path_str(&dir.join("nested.yaml")),
            path_str(&dir.join("ports.yaml")),
            path_str(&dir.join("interpolated.yaml")),
        ),
    )]);
    let l = load(t.path(), &[], &[]);
    let s = &l.project.services;
    // Short form, chained across files: another -> base.
    assert_eq!(s["another"].image.as_deref(), Some("base"));
    // A relative build context of an extended file stays relative to that file.
    for n in ["with-build", "nested"] {
        assert_eq!(
            s[n].build.as_ref().unwrap().context.as_deref(),
            Some(path_str(&dir).as_str()),
            "{n}"
        );
    }
    let ul = s["limits"].ulimits.as_ref().unwrap();
    assert_eq!(ul["nproc"], Ulimit::Single(65535));
    assert_eq!(
        ul["nofile"],
        Ulimit::Range {
            soft: 20000,
            hard: 40000
        }
    );
    let ports: Vec<u32> = s["ports"]
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.target.unwrap())
        .collect();
    assert_eq!(ports, vec![8080, 9090]);
    // Interpolation in an extended file uses the project's environment.
    assert_eq!(
        s["interp"].volumes.as_ref().unwrap()[0].source.as_deref(),
        Some("/dev/null")
    );
    let l = load(t.path(), &[], &[("SOURCE", "/srv")]);
    assert_eq!(
        l.project.services["interp"].volumes.as_ref().unwrap()[0]
            .source
            .as_deref(),
        Some("/srv")
    );

    // `!reset` inside extends removes the inherited command.
    let l = load(&dir, &["reset.yaml"], &[]);
    assert_eq!(l.project.services["base"].command, None);
    assert_eq!(l.project.services["base"].image.as_deref(), Some("alpine:latest"));
    assert_eq!(l.project.services["init"].command, Some(strs(&["sleep", "infinity"])));

    // base.yaml as a project: its empty `nil` service is invalid.
    let e = load_err(&dir, &["base.yaml"], &[]);
    assert!(
        e.contains("\"nil\"") && e.contains("neither an image nor a build"),
        "{e}"
    );

    // References of an extended service resolve in the extending project.
    let l = load(&dir, &["depends_on.yaml"], &[]);
    assert_eq!(
        levels(&l),
        vec![
            strs(&["zot"]),
            strs(&["with_depends_on", "with_ipc", "with_network_mode", "with_volumes_from"])
        ]
    );
    let t = temp(&[(
        "compose.yaml",
        &format!(
            "services:\n  x:\n    extends: {{file: {}, service: with_depends_on}}\n",
            path_str(&dir.join("depends_on.yaml"))
        ),
    )]);
    let e = load_err(t.path(), &[], &[]);
    assert!(e.contains("undefined service \"zot\""), "{e}");
}

#[test]
fn extends_cycle_is_refused() {
    let t = temp(&[(
        "compose.yaml",
        "services:\n  a:\n    extends: b\n  b:\n    extends: c\n  c:\n    extends: a\n",
    )]);
    let e = load_err(t.path(), &[], &[]);
    assert!(e.contains("extends cycle detected: a -> b -> c -> a"), "{e}");
}

#[test]
fn include_fixtures() {
    let c = corpus!();
    let dir = c.join("compose-go/loader/testdata");
    let inc = dir.join("include");
    let l = load(&inc, &["compose.yaml"], &[]);
    let s = &l.project.services["included"];
    assert_eq!(
        s.build.as_ref().unwrap().context.as_deref(),
        Some(path_str(&inc).as_str())
    );
    assert_eq!(
        s.volumes.as_ref().unwrap()[0].source.as_deref(),
        Some(path_str(&inc).as_str())
    );

    // project_directory: paths and env files relative to it.
    let l = load(&inc, &["project-directory.yaml"], &[]);
    let s = &l.project.services["service"];
    let sub = dir.join("subdir");
    assert_eq!(
        s.build.as_ref().unwrap().context.as_deref(),
        Some(path_str(&sub).as_str())
    );
    assert_eq!(
        s.volumes.as_ref().unwrap()[0].source.as_deref(),
        Some(path_str(&sub.join("compose-test-extends-imported.yaml")).as_str())
    );
    assert_eq!(s.environment.as_ref().unwrap()["SOURCE"].as_deref(), Some("extends"));

    let l = load(&dir, &["compose-include.yaml"], &[]);
    let names: Vec<&String> = l.project.services.keys().collect();
    assert_eq!(names, vec!["bar", "imported"]);
    let imp = &l.project.services["imported"];
    // The env_file is read relative to the included file, and does not feed interpolation.
    assert_eq!(imp.container_name.as_deref(), Some("imported"));
    assert_eq!(imp.environment.as_ref().unwrap()["SOURCE"].as_deref(), Some("extends"));
    assert_eq!(imp.volumes.as_ref().unwrap()[0].source.as_deref(), Some("/opt/data"));
    assert_eq!(
        l.project.services["bar"].environment.as_ref().unwrap()["FOO"].as_deref(),
        Some("BAR")
    );

    let e = load_err(&dir, &["compose-include-cycle.yaml"], &[]);
    assert!(e.contains("include cycle detected"), "{e}");
}

#[test]
fn include_conflicts_are_refused() {
    let t = temp(&[
        (
            "compose.yaml",
            "include: [child.yaml]\nservices:\n  a:\n    image: one\n",
        ),
        ("child.yaml", "services:\n  a:\n    image: two\n"),
    ]);
    let e = load_err(t.path(), &[], &[]);
    assert!(e.contains("services.a"), "{e}");
}

#[test]
fn dependency_cycles() {
    let c = corpus!();
    let dir = c.join("compose-go/loader/testdata");
    let e = load_err(&dir, &["compose-depends-on-cycle.yaml"], &[]);
    assert!(e.ends_with("compose-depends-on-cycle.yaml:5:5: services.service1.depends_on: dependency cycle detected: service1 -> service2 -> service3 -> service1"), "{e}");
    let e = load_err(&dir, &["compose-depends-on-self.yaml"], &[]);
    assert!(
        e.ends_with("services.service1.depends_on: dependency cycle detected: service1 -> service1"),
        "{e}"
    );
}

#[test]
fn schema_using_variables_is_typed_after_interpolation() {
    let c = corpus!();
    let dir = c.join("compose-go/schema");
    // `${VARIABLE}` in a number or boolean slot is not an error in itself: types are
    // checked on the interpolated value, so the first error names a value, not `${...}`.
    let e = load_err(&dir, &["using-variables.yaml"], &[("VARIABLE", "1")]);
    assert!(!e.contains("${VARIABLE}") && e.contains("\"1\""), "{e}");
    let mut o = opts(&dir, &["using-variables.yaml"], &[]);
    o.no_interpolate = true;
    let e = compose::load(&o).unwrap_err().to_string();
    assert!(e.contains("${VARIABLE}"), "{e}");
}

#[test]
fn full_example() {
    let c = corpus!();
    let dir = c.join("compose-go@9dee8f4/loader");
    // As written it sets container_name on six replicas: refused, with the place.
    let e = load_err(&dir, &["full-example.yml"], &[("HOME", "/home/user")]);
    assert!(e.contains("full-example.yml:66:5: services.foo.container_name"), "{e}");

    let t = temp(&[(
        "fix.yaml",
        "services:\n  foo:\n    network_mode: !reset null\n    deploy:\n      replicas: 1\n  db: {image: db}\n  redis: {image: redis}\n  other_service: {image: other}\nnetworks:\n  other-other-network:\nvolumes:\n  datavolume:\n",
    )]);
    let fix = path_str(&t.path().join("fix.yaml"));
    let l = load(
        &dir,
        &["full-example.yml", &fix],
        &[("HOME", "/home/user"), ("BAR", "bar")],
    );
    let foo = &l.project.services["foo"];
    assert_eq!(foo.ports.as_ref().unwrap().len(), 22);
    let env = foo.environment.as_ref().unwrap();
    assert_eq!(env["BAR"].as_deref(), Some("bar_from_env_file_2"));
    assert_eq!(env["BAZ"].as_deref(), Some("baz_from_service_def"));
    assert_eq!(env["FOO"].as_deref(), Some("foo_from_env_file"));
    assert_eq!(foo.env_file, None);
    let labels = foo.labels.as_ref().unwrap();
    assert_eq!(labels["QUX"], "quz_from_label_file_2");
    assert_eq!(labels["com.example.empty-label"], "");
    assert_eq!(
        foo.healthcheck.as_ref().unwrap().interval,
        Some(Duration(10_000_000_000))
    );
    assert_eq!(foo.stop_grace_period, Some(Duration(20_000_000_000)));
    assert_eq!(
        foo.volumes.as_ref().unwrap()[4].source.as_deref(),
        Some("/home/user/configs")
    );
    assert_eq!(foo.secrets.as_ref().unwrap()[1].mode, Some(FileMode(0o440)));
    assert_eq!(foo.extensions.0.len(), 2);
    let n = &l.project.networks["other-external-network"];
    assert_eq!(
        (n.name.as_deref(), n.external.clone()),
        (Some("my-cool-network"), Some(External::Flag(true)))
    );
    assert_eq!(
        l.project.networks["some-network"].name.as_deref(),
        Some("fullex_some-network")
            .map(|_| format!("{}_some-network", l.name))
            .as_deref()
    );
    assert!(
        l.warnings
            .iter()
            .any(|w| w.contains("deploy.placement applies to Swarm only")),
        "{:?}",
        l.warnings
    );
}

// ---- docker/compose e2e fixtures ---------------------------------------------------

fn td(c: &Path, name: &str) -> std::path::PathBuf {
    c.join("docker-compose/pkg/e2e/testdata").join(name)
}

#[test]
fn health_and_dependency_conditions() {
    let c = corpus!();
    let l = load(&td(&c, "TestUpServiceUnhealthy"), &[], &[]);
    let hc = l.project.services["fail"].healthcheck.clone().unwrap();
    assert_eq!(hc.test, Some(strs(&["CMD-SHELL", "false"])));
    assert_eq!((hc.interval, hc.retries), (Some(Duration(1_000_000_000)), Some(3)));
    let d = l.project.services["depends"].depends_on.as_ref().unwrap()["fail"]
        .clone()
        .unwrap();
    assert_eq!(
        (d.condition.as_deref(), d.required),
        (Some("service_healthy"), Some(true))
    );
    assert_eq!(levels(&l), vec![strs(&["fail"]), strs(&["depends"])]);

    let l = load(&td(&c, "TestUpWithDependencyExit"), &[], &[]);
    assert_eq!(levels(&l), vec![strs(&["db"]), strs(&["web"])]);

    for t in ["TestInitContainer", "TestUpWait"] {
        let l = load(&td(&c, t), &[], &[]);
        let conds: Vec<String> = l
            .project
            .services
            .values()
            .flat_map(|s| s.depends_on.iter().flatten())
            .map(|(_, d)| d.clone().unwrap().condition.unwrap())
            .collect();
        assert_eq!(conds, strs(&["service_completed_successfully"]), "{t}");
        assert_eq!(levels(&l).len(), 2, "{t}");
    }

    for t in ["TestCascadeStop", "TestCascadeFail"] {
        let l = load(&td(&c, t), &[], &[]);
        assert_eq!(
            l.project.services["fail"].command,
            Some(strs(&["sh", "-c", "return 111"]))
        );
        assert_eq!(levels(&l), vec![strs(&["running"]), strs(&["exit"]), strs(&["fail"])]);
    }

    let l = load(&td(&c, "TestUpExitCodeFrom"), &[], &[]);
    assert_eq!(
        l.project.services["failure"].command.as_ref().unwrap()[2],
        "sleep 1 ; echo \"exiting with error\" ; exit 42"
    );

    let l = load(&td(&c, "TestStartInterval"), &[], &[]);
    let hc = l.project.services["test"].healthcheck.clone().unwrap();
    assert_eq!(
        (hc.start_period, hc.start_interval),
        (Some(Duration(10_000_000_000)), Some(Duration(1_000_000_000)))
    );
    assert_eq!(hc.test, Some(strs(&["CMD-SHELL", "/bin/true"])));

    let l = load(&td(&c, "TestRestart"), &[], &[]);
    assert_eq!(
        l.project.services["app"].command.as_ref().unwrap()[..2],
        strs(&["ash", "-c"])[..]
    );

    let l = load(
        &c.join("docker-compose/pkg/e2e/fixtures/restart-test"),
        &["compose-depends-on.yaml"],
        &[],
    );
    let dep = |s: &str| {
        l.project.services[s].depends_on.as_ref().unwrap()["nginx"]
            .clone()
            .unwrap()
    };
    assert_eq!(dep("with-restart").restart, Some(true));
    assert_eq!(dep("no-restart").restart, None);
    assert_eq!(l.project.services["nginx"].labels.as_ref().unwrap()["TEST"], "test");
    let l = load(
        &c.join("docker-compose/pkg/e2e/fixtures/restart-test"),
        &["compose-depends-on.yaml"],
        &[("LABEL", "set")],
    );
    assert_eq!(l.project.services["nginx"].labels.as_ref().unwrap()["TEST"], "set");
}

#[test]
fn profiles() {
    let c = corpus!();
    let dir = td(&c, "TestUpProfile");
    let names = |o: compose::Options| {
        compose::load(&o)
            .unwrap()
            .project
            .services
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(names(opts(&dir, &[], &[])), strs(&["db"]));
    let mut o = opts(&dir, &[], &[]);
    o.profiles = strs(&["test"]);
    assert_eq!(names(o), strs(&["bar", "db", "foo"]));
    assert_eq!(
        names(opts(&dir, &[], &[("COMPOSE_PROFILES", "test")])),
        strs(&["bar", "db", "foo"])
    );
    // Naming a service activates its profiles.
    let mut o = opts(&dir, &[], &[]);
    o.services = strs(&["foo"]);
    assert_eq!(names(o), strs(&["bar", "db", "foo"]));
    let l = load(&dir, &[], &[]);
    assert_eq!(
        (l.all_profiles.clone(), l.disabled.clone()),
        (strs(&["test"]), strs(&["foo", "bar"]))
    );

    // An optional dependency disabled by its profile is left out, not an error.
    let dir = td(&c, "TestUpWithDependencyNotRequired");
    let l = load(&dir, &[], &[]);
    assert_eq!(l.project.services.keys().collect::<Vec<_>>(), vec!["foo"]);
    assert_eq!(
        l.project.services["foo"].depends_on.as_ref().unwrap()["bar"]
            .clone()
            .unwrap()
            .required,
        Some(false)
    );
    assert_eq!(levels(&l), vec![strs(&["foo"])]);
    let mut o = opts(&dir, &[], &[]);
    o.profiles = strs(&["not-required"]);
    assert_eq!(names(o), strs(&["bar", "foo"]));
    // A required one is an error.
    let t = temp(&[(
        "compose.yaml",
        "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    profiles: [p]\n",
    )]);
    let e = load_err(t.path(), &[], &[]);
    assert!(e.contains("depends on undefined service \"b\""), "{e}");
}

#[test]
fn environment_priority_and_interpolation() {
    let c = corpus!();
    let dir = td(&c, "TestEnvInterpolation");
    let l = load(&dir, &[], &[]);
    let s = &l.project.services["env-interpolation"];
    assert_eq!(
        s.environment.as_ref().unwrap()["IMAGE"].as_deref(),
        Some("default_env:EnvFile")
    );
    assert_eq!(s.command, Some(strs(&["echo", "default_env:EnvFile"])));
    let l = load(&dir, &[], &[("WHEREAMI", "Shell")]);
    assert_eq!(
        l.project.services["env-interpolation"].environment.as_ref().unwrap()["IMAGE"].as_deref(),
        Some("default_env:Shell")
    );

    let l = load(&td(&c, "TestEnvInterpolationDefaultValue"), &[], &[]);
    assert_eq!(
        l.project.services["env-interpolation"].environment.as_ref().unwrap()["IMAGE"].as_deref(),
        Some("default_env:EnvFileDefaultValue")
    );

    let dir = td(&c, "TestEnvPriority");
    let whereami = |env_file: Option<&str>, shell: Option<&str>| {
        let mut o = opts(&dir, &[], &shell.map(|v| vec![("WHEREAMI", v)]).unwrap_or_default());
        o.env_files = env_file.map(|f| vec![f.into()]).unwrap_or_default();
        compose::load(&o).unwrap().environment.get("WHEREAMI").cloned()
    };
    assert_eq!(whereami(None, None).as_deref(), Some("Env File"));
    assert_eq!(whereami(Some(".env.override"), None).as_deref(), Some("override"));
    assert_eq!(whereami(Some(".env.override"), Some("shell")).as_deref(), Some("shell"));
    assert_eq!(
        whereami(Some(".env.override.with.default"), None).as_deref(),
        Some("EnvFileDefaultValue")
    );
    assert_eq!(
        whereami(Some(".env.override.with.default"), Some("shell")).as_deref(),
        Some("shell")
    );
    assert_eq!(whereami(Some(".env.empty"), None), None);
    let e = {
        let mut o = opts(&dir, &[], &[]);
        o.env_files = vec![".env.missing".into()];
        compose::load(&o).unwrap_err().to_string()
    };
    assert!(e.contains(".env.missing"), "{e}");

    // Raw env files are read verbatim; `$$` in the file escapes interpolation.
    let l = load(&td(&c, "TestRawEnvFile"), &[], &[]);
    let s = &l.project.services["test"];
    assert_eq!(
        s.environment.as_ref().unwrap()["TEST_VAR"].as_deref(),
        Some("'{\"key\": \"value\"}'")
    );
    assert_eq!(s.command, Some(strs(&["sh", "-c", "echo $TEST_VAR"])));

    // A bare environment entry takes the OS value, or stays unset.
    let l = load(&td(&c, "TestScaleBasicCases"), &[], &[]);
    assert_eq!(l.project.services["db"].environment.as_ref().unwrap()["MAYBE"], None);
    let l = load(&td(&c, "TestScaleBasicCases"), &[], &[("MAYBE", "yes")]);
    assert_eq!(
        l.project.services["db"].environment.as_ref().unwrap()["MAYBE"].as_deref(),
        Some("yes")
    );
}

#[test]
fn secrets_include_extends_hooks_scale_ports() {
    let c = corpus!();
    let l = load(&td(&c, "TestSecretFromInclude"), &[], &[]);
    let foo = &l.project.services["foo"];
    let sec = &foo.secrets.as_ref().unwrap()[0];
    assert_eq!(
        (sec.source.as_deref(), sec.target.as_deref()),
        (Some("secret"), Some("bar"))
    );
    assert_eq!(
        (sec.uid.as_deref(), sec.gid.as_deref(), sec.mode),
        (Some("1005"), Some("1005"), Some(FileMode(0o440)))
    );
    assert_eq!(l.project.secrets["my-secret"].environment.as_deref(), Some("MY_SECRET"));
    // The included project's env file provides the secret's value to the engine.
    assert_eq!(
        l.environment.get("MY_SECRET").map(String::as_str),
        Some("this-is-secret")
    );
    let l = load(&td(&c, "TestSecretFromInclude"), &[], &[("MY_SECRET", "from-shell")]);
    assert_eq!(l.environment.get("MY_SECRET").map(String::as_str), Some("from-shell"));
    assert_eq!(l.project.secrets["secret"].name, Some(format!("{}_secret", l.name)));
    assert_eq!(
        l.project.services["included"].secrets.as_ref().unwrap()[0]
            .source
            .as_deref(),
        Some("my-secret")
    );

    let l = load(&td(&c, "TestPublishWithExtends"), &[], &[]);
    assert_eq!(l.project.services["test"].image.as_deref(), Some("bar"));

    let l = load(&td(&c, "TestPostStartAndPreStopHook"), &[], &[]);
    let pre = &l.project.services["sample"].pre_stop.as_ref().unwrap()[0];
    assert_eq!(
        pre.command,
        Some(strs(&["sh", "-c", "echo \"In the pre-stop\" >> /data/log.txt"]))
    );
    assert_eq!(
        l.project.services["test"].post_start.as_ref().unwrap()[0].command,
        Some(strs(&["sh", "-c", "echo env"]))
    );

    let l = load(&td(&c, "TestScaleBasicCases"), &[], &[]);
    assert_eq!(l.project.services["front"].replicas(), 2);
    assert_eq!(l.project.services["dbadmin"].replicas(), 0);
    assert_eq!(levels(&l)[0], strs(&["db", "dbadmin", "front"]));

    let l = load(&td(&c, "TestPortRange"), &[], &[]);
    let a = &l.project.services["a"];
    assert_eq!(a.replicas(), 5);
    let p = &a.ports.as_ref().unwrap()[0];
    assert_eq!(
        (p.target, p.published.as_deref(), p.protocol.as_deref()),
        (Some(80), Some("6005-6015"), Some("tcp"))
    );
    let p = &l.project.services["b"].ports.as_ref().unwrap()[0];
    assert_eq!((p.target, p.published.clone()), (Some(80), None));
}

#[test]
fn networks_fixtures() {
    let c = corpus!();
    let l = load(&td(&c, "TestNetworkAliases"), &[], &[]);
    assert_eq!(levels(&l), vec![strs(&["container2"]), strs(&["container1"])]);
    let n = l.project.services["container2"].networks.as_ref().unwrap()["default"]
        .clone()
        .unwrap();
    assert_eq!(n.aliases, Some(strs(&["alias-of-container2"])));
    assert_eq!(l.project.services["container1"].stop_signal.as_deref(), Some("SIGTERM"));

    let l = load(&td(&c, "TestIPAMConfig"), &[], &[]);
    let net = &l.project.networks["default"];
    assert_eq!(
        net.ipam.as_ref().unwrap().config.as_ref().unwrap()[0].subnet.as_deref(),
        Some("10.1.0.0/16")
    );
    assert_eq!(net.name, Some(format!("{}_default", l.name)));
    let sn = l.project.services["foo"].networks.as_ref().unwrap()["default"]
        .clone()
        .unwrap();
    assert_eq!(sn.ipv4_address.as_deref(), Some("10.1.0.100"));
    assert_eq!(l.project.services["foo"].entrypoint, Some(strs(&["sleep", "600"])));

    let l = load(&td(&c, "TestNetworkModes"), &[], &[]);
    assert_eq!(l.project.services["mydb"].networks, None);
    assert_eq!(levels(&l), vec![strs(&["db"]), strs(&["mydb"])]);

    let dir = c.join("docker-compose/pkg/e2e/fixtures/network-test");
    let l = load(&dir, &[], &[]);
    assert_eq!(l.name, "network-test");
    assert_eq!(l.project.networks["servicenet"].name.as_deref(), Some("microservices"));
    assert_eq!(l.project.networks["dbnet"].name.as_deref(), Some("network-test_dbnet"));
    assert_eq!(l.project.services["db"].networks.as_ref().unwrap().len(), 3);
    assert_eq!(l.project.services["mydb"].networks, None);
    let p = &l.project.services["words"].ports.as_ref().unwrap()[0];
    assert_eq!((p.target, p.published.clone()), (Some(8080), None));
    assert_eq!(l.project.services["web"].labels.as_ref().unwrap()["my-label"], "test");
    assert_eq!(
        l.project.networks.keys().collect::<Vec<_>>(),
        vec!["closesnetworkname1", "closesnetworkname2", "dbnet", "servicenet"]
    );
}

#[test]
fn volumes_fixture() {
    let c = corpus!();
    let dir = c.join("docker-compose/pkg/e2e/fixtures/volume-test");
    let l = load(&dir, &[], &[]);
    let s = &l.project.services;
    assert_eq!(
        s["nginx"].build.as_ref().unwrap().context.as_deref(),
        Some(path_str(&dir.join("nginx-build")).as_str())
    );
    let v = &s["nginx"].volumes.as_ref().unwrap()[0];
    assert_eq!(
        (v.r#type.as_deref(), v.source.as_deref()),
        (Some("bind"), Some(path_str(&dir.join("static")).as_str()))
    );
    assert_eq!(v.bind.as_ref().unwrap().create_host_path, Some(true));
    let v2 = s["nginx2"].volumes.as_ref().unwrap();
    assert_eq!(
        (v2[0].r#type.as_deref(), v2[0].source.as_deref(), v2[0].read_only),
        (Some("volume"), Some("staticVol"), Some(true))
    );
    assert_eq!(
        (v2[1].r#type.as_deref(), v2[1].source.clone(), v2[1].target.as_deref()),
        (Some("volume"), None, Some("/usr/src/app/node_modules"))
    );
    assert_eq!(l.project.volumes["otherVol"].name.as_deref(), Some("myVolume"));
    assert_eq!(
        l.project.volumes["staticVol"].name.as_deref(),
        Some("volume-test_staticVol")
    );
    assert_eq!(
        l.project.configs["myconfig"].file.as_deref(),
        Some(path_str(&dir.join("static/index.html")).as_str())
    );
    assert_eq!(
        l.project.secrets["mysecret"].file.as_deref(),
        Some(path_str(&dir.join("static/index.html")).as_str())
    );
}

#[test]
fn watch_fixtures() {
    let c = corpus!();
    let dir = c.join("docker-compose/pkg/e2e/fixtures/watch");
    let l = load(&dir, &["compose.yaml"], &[]);
    for svc in ["alpine", "busybox", "debian"] {
        let w = l.project.services[svc].develop.as_ref().unwrap().watch.clone().unwrap();
        assert_eq!(w.len(), 2, "{svc}");
        assert_eq!(
            (w[0].action.as_deref(), w[0].path.as_deref(), w[0].target.as_deref()),
            (
                Some("sync"),
                Some(path_str(&dir.join("data")).as_str()),
                Some("/app/data")
            )
        );
        assert_eq!(w[0].ignore, Some(strs(&["*.foo", "./ignored"])));
        assert_eq!(w[1].action.as_deref(), Some("sync+restart"));
        assert!(l.project.services[svc]
            .build
            .as_ref()
            .unwrap()
            .dockerfile_inline
            .as_ref()
            .unwrap()
            .starts_with("FROM "));
    }
    let l = load(&dir, &["exec.yaml"], &[]);
    let w = &l.project.services["test"]
        .develop
        .as_ref()
        .unwrap()
        .watch
        .as_ref()
        .unwrap()[0];
    assert_eq!((w.action.as_deref(), w.initial_sync), (Some("sync+exec"), Some(true)));
    assert_eq!(w.exec.as_ref().unwrap().command, Some(strs(&["echo", "SUCCESS"])));
    let l = load(&dir, &["rebuild.yaml"], &[]);
    assert_eq!(l.project.services.len(), 3);
    for s in l.project.services.values() {
        let w = &s.develop.as_ref().unwrap().watch.as_ref().unwrap()[0];
        assert_eq!(
            (w.action.as_deref(), w.path.as_deref()),
            (Some("rebuild"), Some(path_str(&dir.join("test")).as_str()))
        );
    }
    let l = load(&dir, &["include.yaml"], &[]);
    let w = &l.project.services["a"]
        .develop
        .as_ref()
        .unwrap()
        .watch
        .as_ref()
        .unwrap()[0];
    assert_eq!(w.include, Some(strs(&["A.*"])));
}

#[test]
fn compose_spec_conformance_tests() {
    let c = corpus!();
    let base = c.join("conformance-tests/tests");
    let mut seen = 0;
    for entry in std::fs::read_dir(&base).unwrap() {
        let dir = entry.unwrap().path();
        let l = load(&dir, &[], &[]);
        assert!(
            l.warnings.iter().any(|w| w.contains("`version` is obsolete")),
            "{}",
            dir.display()
        );
        assert!(l
            .project
            .services
            .values()
            .all(|s| s.image.as_deref().is_some_and(|i| i.starts_with("composespec/"))));
        seen += 1;
    }
    assert_eq!(seen, 8);
    let l = load(&base.join("scaling"), &[], &[]);
    assert_eq!(l.project.services["client"].replicas(), 3);
    let l = load(&base.join("different_networks"), &[], &[]);
    assert_eq!(
        l.project.services["entry"]
            .networks
            .as_ref()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec!["entrynetwork"]
    );
    let l = load(&base.join("udp_port"), &[], &[]);
    let p = l.project.services["entry"].ports.clone().unwrap();
    assert_eq!(
        (p[0].published.as_deref(), p[0].protocol.as_deref()),
        (Some("8080"), Some("tcp"))
    );
    assert_eq!(
        (
            p[1].published.as_deref(),
            p[1].protocol.as_deref(),
            p[1].mode.as_deref()
        ),
        (Some("10001"), Some("udp"), Some("host"))
    );
    let l = load(&base.join("simple_configfile"), &[], &[]);
    assert_eq!(
        l.project.services["entry"].configs.as_ref().unwrap()[0]
            .target
            .as_deref(),
        Some("/volumes/test_config.txt")
    );
    let l = load(&base.join("simple_volume"), &[], &[]);
    let v = &l.project.services["entry"].volumes.as_ref().unwrap()[0];
    assert_eq!(
        v.source.as_deref(),
        Some(path_str(&base.join("simple_volume/test_volume.txt")).as_str())
    );
    let _: BTreeMap<(), ()> = BTreeMap::new();
}
