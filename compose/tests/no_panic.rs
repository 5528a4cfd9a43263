//! No input makes the loader panic: arbitrary text, and arbitrary documents built from
//! real Compose keys with values of every shape, go through the whole pipeline (parse,
//! interpolate, merge, decode, normalize, validate, graph) and come back Ok or Err.

use proptest::prelude::*;
use serde_yaml_ng::{Mapping, Value};

const KEYS: &[&str] = &[
    "services",
    "networks",
    "volumes",
    "secrets",
    "configs",
    "include",
    "name",
    "image",
    "build",
    "ports",
    "environment",
    "depends_on",
    "command",
    "extends",
    "healthcheck",
    "test",
    "volumes_from",
    "network_mode",
    "deploy",
    "replicas",
    "resources",
    "limits",
    "memory",
    "cpus",
    "profiles",
    "env_file",
    "labels",
    "extra_hosts",
    "ulimits",
    "target",
    "source",
    "type",
    "external",
    "develop",
    "watch",
    "path",
    "action",
    "condition",
    "required",
    "service",
    "file",
    "web",
    "db",
    "<<",
    "x-ext",
    "tmpfs",
    "devices",
    "secrets",
    "mode",
    "published",
    "context",
    "links",
    "ipc",
    "pid",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>().prop_map(|n| Value::Number(n.into())),
        "[a-z0-9:/.${}_=-]{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "80:80",
            "./x:/y:ro",
            "service:db",
            "${A:-b}",
            "${X:?}",
            "1g",
            "10s",
            "-1",
            "0o777",
            "a=b",
            "*"
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ]
}

fn doc() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..5).prop_map(|kv| {
                Value::Mapping(
                    kv.into_iter()
                        .map(|(k, v)| (Value::String(k.to_string()), v))
                        .collect::<Mapping>(),
                )
            }),
        ]
    })
}

fn load_text(text: String) {
    let o = compose::Options {
        working_dir: std::env::temp_dir(),
        files: vec!["-".into()],
        stdin: Some(text),
        os_env: [("A".to_string(), "1".to_string())].into_iter().collect(),
        ..Default::default()
    };
    let _ = compose::load(&o);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_documents(d in doc()) {
        let mut root = Mapping::new();
        root.insert("services".into(), d.clone());
        load_text(serde_yaml_ng::to_string(&Value::Mapping(root)).unwrap_or_default());
        load_text(serde_yaml_ng::to_string(&d).unwrap_or_default());
    }

    #[test]
    fn arbitrary_text(s in "(services:|  |- |web:|image: |\\$\\{|\\}|&a |\\*a|<<: |!reset |!override |\n|[a-z0-9:\"'\\[\\]{},#])*") {
        load_text(s);
    }
}
