//! Bad Compose files, table-driven: each gives one message with the file, line, column
//! and key where there is one, and never a panic.

mod common;

/// (file content, expected "line:col: key: message" suffix or fragment)
const CASES: &[(&str, &str)] = &[
    (
        "services:\n  web:\n    image: x\n    depnds_on: [db]\n",
        "4:5: services.web.depnds_on: unknown key `depnds_on`, did you mean `depends_on`?",
    ),
    (
        "servics:\n  web:\n    image: x\n",
        "1:1: servics: unknown key `servics`, did you mean `services`?",
    ),
    (
        "services:\n  web:\n    image: x\n    healthcheck:\n      intervl: 3s\n",
        "5:7: services.web.healthcheck.intervl: unknown key `intervl`, did you mean `interval`?",
    ),
    (
        "services:\n  web:\n    image: x\n    deploy:\n      resources:\n        limits:\n          memroy: 1g\n",
        "7:11: services.web.deploy.resources.limits.memroy: unknown key `memroy`, did you mean `memory`?",
    ),
    (
        "services:\n  web:\n    image: x\n    ports:\n      - target: abc\n",
        "5:9: services.web.ports[0].target: invalid type: string \"abc\", expected u32",
    ),
    (
        "services:\n  web:\n    image: x\n    read_only: maybe\n",
        "4:5: services.web.read_only: invalid type: string \"maybe\", expected a boolean",
    ),
    (
        "services:\n  web:\n    image: x\n    mem_limit: lots\n",
        "4:5: services.web.mem_limit: invalid size \"lots\"",
    ),
    (
        "services:\n  web:\n    image: x\n    stop_grace_period: soon\n",
        "4:5: services.web.stop_grace_period: invalid duration \"soon\"",
    ),
    (
        "services:\n  web:\n    image: ${IMG:?set it}\n",
        "3:5: services.web.image: required variable IMG is missing a value: set it",
    ),
    (
        "services:\n  web:\n    image: \"cost $5\"\n",
        "3:5: services.web.image: invalid interpolation format \"cost $5\"",
    ),
    (
        "services:\n  web:\n    image: x\n    networks: [front]\n",
        "4:5: services.web.networks.front: service \"web\" refers to undefined network front",
    ),
    (
        "services:\n  web:\n    image: x\n    volumes: ['data:/d']\n",
        "services.web.volumes[0]: service \"web\" refers to undefined volume data",
    ),
    (
        "services:\n  web:\n    image: x\n    secrets: [s]\n",
        "services.web.secrets[0]: service \"web\" refers to undefined secret s",
    ),
    (
        "services:\n  web:\n    image: x\n    configs: [c]\n",
        "services.web.configs[0]: service \"web\" refers to undefined config c",
    ),
    (
        "services:\n  web:\n    image: x\n    depends_on: [db]\n",
        "2:3: services.web: service \"web\" depends on undefined service \"db\"",
    ),
    (
        "services:\n  web:\n    image: x\n    network_mode: service:db\n",
        "service \"web\" uses in network_mode undefined service \"db\"",
    ),
    (
        "services:\n  web:\n    image: x\n    volumes_from: [db]\n",
        "service \"web\" mounts volumes from undefined service \"db\"",
    ),
    (
        "services:\n  web:\n    image: x\n    links: [db]\n",
        "service \"web\" links to undefined service \"db\"",
    ),
    (
        "services:\n  web:\n    image: x\n    container_name: c\n    scale: 2\n",
        "4:5: services.web.container_name: service \"web\" sets container_name \"c\" and has 2 replicas",
    ),
    (
        "services:\n  a:\n    image: x\n    container_name: c\n  b:\n    image: x\n    container_name: c\n",
        "services.b.container_name: services \"a\" and \"b\" both use container_name \"c\"",
    ),
    (
        "services:\n  web:\n    command: x\n",
        "2:3: services.web: service \"web\" has neither an image nor a build context specified",
    ),
    (
        "services:\n  web:\n    image: x\n    restart: sometimes\n",
        "4:5: services.web.restart: invalid restart policy \"sometimes\"",
    ),
    (
        "services:\n  web:\n    image: x\n    pull_policy: often\n",
        "4:5: services.web.pull_policy: invalid pull_policy \"often\"",
    ),
    (
        "services:\n  web:\n    image: x\n    ports: ['99999:80']\n",
        "4:13: services.web.ports[0]: invalid published port \"99999\"",
    ),
    (
        "services:\n  web:\n    image: x\n    ports: ['1-3:1-2']\n",
        "the host and container port ranges differ in size",
    ),
    (
        "services:\n  web:\n    image: x\n    volumes: ['a:b:c:d']\n",
        "invalid volume \"a:b:c:d\"",
    ),
    (
        "services:\n  web:\n    image: x\n    volumes: ['/a:/b:bogus']\n",
        "unknown mode \"bogus\"",
    ),
    (
        "services:\n  web:\n    image: x\n    devices: ['/dev/a:/dev/b:xyz']\n",
        "permissions must be made of r, w and m",
    ),
    (
        "services:\n  web:\n    image: x\n    extra_hosts: ['nohost']\n",
        "invalid extra_hosts entry \"nohost\"",
    ),
    (
        "services:\n  web:\n    image: x\n    ulimits:\n      nofile: {soft: 10, hard: 5}\n",
        "ulimit soft limit is above its hard limit",
    ),
    (
        "services:\n  web:\n    image: x\n    depends_on:\n      db: {condition: service_ready}\n  db:\n    image: y\n",
        "services.web.depends_on.db: invalid condition \"service_ready\"",
    ),
    (
        "services:\n  web:\n    image: x\n    develop:\n      watch:\n        - action: copy\n          path: .\n",
        "services.web.develop.watch[0]: invalid watch action \"copy\"",
    ),
    (
        "services:\n  web:\n    image: x\n    develop:\n      watch:\n        - action: sync\n          path: .\n",
        "watch action sync needs a target",
    ),
    (
        "services:\n  web:\n    image: x\n    network_mode: host\n    networks: [default]\n",
        "declares both network_mode and networks",
    ),
    (
        "services:\n  web:\n    image: x\nsecrets:\n  s: {}\n",
        "5:3: secrets.s: secret \"s\" must set exactly one of file, environment or external",
    ),
    (
        "services:\n  web:\n    image: x\n    environment: !tag x\n",
        "4:5: services.web.environment: unsupported YAML tag !tag",
    ),
    (
        "services:\n  web:\n    image: x\n   bad: indent\n",
        "4:4: did not find expected key",
    ),
    (
        "services:\n  web:\n    image: x\n    image: y\n",
        "duplicate entry with key \"image\"",
    ),
    (
        "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n",
        "4:5: services.a.depends_on: dependency cycle detected: a -> b -> a",
    ),
    (
        "services:\n  a:\n    extends: a\n",
        "3:5: services.a.extends: extends cycle detected: a -> a",
    ),
    (
        "services:\n  a:\n    extends: nope\n",
        "services.a.extends: cannot extend service \"nope\"",
    ),
    (
        "services:\n  a:\n    image: x\n    extends: {file: missing.yaml, service: b}\n",
        "services.a.extends.file: extended file",
    ),
    ("include: [missing.yaml]\nservices: {}\n", "include[0]: included file"),
    (
        "services:\n  a:\n    image: x\n    env_file: missing.env\n",
        "services.a.env_file: env file",
    ),
    (
        "services:\n  a:\n    image: x\n    env_file: [{path: missing.env, required: false}]\n",
        "",
    ),
    ("", "empty compose file"),
    ("[1, 2]\n", "top-level object must be a mapping"),
];

#[test]
fn bad_files_give_one_clear_message() {
    for (i, (text, want)) in CASES.iter().enumerate() {
        let t = common::temp(&[("compose.yaml", text)]);
        let file = t.path().join("compose.yaml");
        let result = compose::load(&common::opts(t.path(), &[], &[]));
        if want.is_empty() {
            assert!(result.is_ok(), "case {i}: {:?}", result.err().map(|e| e.to_string()));
            continue;
        }
        let e = match result {
            Ok(_) => panic!("case {i} should fail: {text}"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(want), "case {i}: {e:?} does not contain {want:?}");
        assert!(
            e.starts_with(&file.display().to_string()),
            "case {i}: {e:?} does not name the file"
        );
        assert_eq!(e.lines().count(), 1, "case {i}: {e:?}");
    }
}

#[test]
fn an_empty_compose_file_variable_is_no_file() {
    let t = common::temp(&[]);
    let e = compose::load(&common::opts(t.path(), &[], &[("COMPOSE_FILE", ":")])).unwrap_err();
    assert_eq!(e.to_string(), "no configuration file provided: not found");
}

#[test]
fn hostile_yaml_is_refused_quickly() {
    // Alias expansion bombs and very deep nesting end in an error, not a hang or a crash.
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for n in 1..12 {
        bomb.push_str(&format!(
            "{}: &{} [*{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}]\n",
            (b'a' + n) as char,
            (b'a' + n) as char,
            (b'a' + n - 1) as char,
            (b'a' + n - 1) as char,
            (b'a' + n - 1) as char,
            (b'a' + n - 1) as char,
            (b'a' + n - 1) as char,
            (b'a' + n - 1) as char,
            (b'a' + n - 1) as char,
            (b'a' + n - 1) as char,
            (b'a' + n - 1) as char,
            (b'a' + n - 1) as char
        ));
    }
    let deep = format!("services: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    for text in [bomb, deep] {
        let t = common::temp(&[("compose.yaml", &text)]);
        let started = std::time::Instant::now();
        assert!(compose::load(&common::opts(t.path(), &[], &[])).is_err());
        eprintln!("refused in {:?}", started.elapsed());
    }
}
