//! Merging Compose documents by the Compose Specification's rules (used for several `-f`
//! files, `extends` and `include`).
//!
//! Each document is first *canonicalized* so that every key has one shape: list-or-map
//! keys become mappings (`environment`, `labels`, ...), string-or-list keys become
//! sequences (`dns`, `tmpfs`, ...), `depends_on` and service `networks` become mappings,
//! and sequences of unique resources (ports, volumes, secrets, configs, devices,
//! env_file, ipam.config) keep one entry per unique key, the later one in the place of the
//! first. Merging canonical documents is then simple: mappings merge key by key,
//! sequences append (then unicity applies again), scalars and the "shell command" keys
//! (`command`, `entrypoint`, `healthcheck.test`) are replaced. `!reset` removes a value,
//! `!override` replaces it whole.

use serde_yaml_ng::value::{Tag, TaggedValue};
use serde_yaml_ng::{Mapping, Value};

/// A mapping key as text (YAML keys may be numbers or booleans).
pub fn key_str(k: &Value) -> String {
    scalar_str(k).unwrap_or_else(|| "?".to_string())
}

/// A scalar as the string Compose would see.
pub fn scalar_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        Value::Tagged(t) => scalar_str(&t.value),
        _ => None,
    }
}

fn matches(path: &[String], pattern: &str) -> bool {
    let pat: Vec<&str> = pattern.split('.').collect();
    pat.len() == path.len() && pat.iter().zip(path).all(|(p, s)| *p == "*" || p == s)
}

fn any_match(path: &[String], patterns: &[&str]) -> bool {
    patterns.iter().any(|p| matches(path, p))
}

/// Keys written as `KEY=VALUE` lists or as mappings.
const MAPPINGS: &[&str] = &[
    "services.*.environment",
    "services.*.labels",
    "services.*.annotations",
    "services.*.sysctls",
    "services.*.build.args",
    "services.*.build.labels",
    "services.*.build.additional_contexts",
    "services.*.deploy.labels",
    "services.*.develop.watch.[].exec.environment",
    "services.*.post_start.[].environment",
    "services.*.pre_stop.[].environment",
    "services.*.pre_start.[].environment",
    "networks.*.labels",
    "volumes.*.labels",
    "secrets.*.labels",
    "configs.*.labels",
];

/// Keys written as one string or a list of strings; entries are unique.
const STRING_LISTS: &[&str] = &[
    "services.*.dns",
    "services.*.dns_search",
    "services.*.dns_opt",
    "services.*.tmpfs",
    "services.*.cap_add",
    "services.*.cap_drop",
    "services.*.profiles",
    "services.*.expose",
    "services.*.links",
    "services.*.external_links",
    "services.*.volumes_from",
    "services.*.security_opt",
    "services.*.group_add",
    "services.*.device_cgroup_rules",
    "services.*.label_file",
    "services.*.extra_hosts",
    "services.*.build.extra_hosts",
    "services.*.build.tags",
    "services.*.build.platforms",
    "services.*.build.cache_from",
    "services.*.build.cache_to",
    "services.*.networks.*.aliases",
    "services.*.networks.*.link_local_ips",
];

/// Keys whose value is replaced, never merged.
const REPLACED: &[&str] = &[
    "services.*.command",
    "services.*.entrypoint",
    "services.*.healthcheck.test",
    "services.*.extends",
    "services.*.develop.watch.[].exec.command",
];

fn tagged(v: &Value) -> Option<(&str, &Value)> {
    match v {
        Value::Tagged(t) => {
            let name = if t.tag == Tag::new("reset") {
                "reset"
            } else if t.tag == Tag::new("override") {
                "override"
            } else {
                "other"
            };
            Some((name, &t.value))
        }
        _ => None,
    }
}

/// Brings one document (or a part of one, at `path`) to its canonical shape.
pub fn canonicalize(v: Value, path: &mut Vec<String>) -> Value {
    if let Value::Tagged(t) = v {
        let TaggedValue { tag, value } = *t;
        return Value::Tagged(Box::new(TaggedValue {
            tag,
            value: canonicalize(value, path),
        }));
    }
    let v = shape(v, path);
    let v = match v {
        Value::Mapping(m) => {
            let mut out = Mapping::with_capacity(m.len());
            for (k, val) in m {
                path.push(key_str(&k));
                let val = canonicalize(val, path);
                path.pop();
                out.insert(k, val);
            }
            Value::Mapping(out)
        }
        Value::Sequence(s) => {
            path.push("[]".into());
            let s = s.into_iter().map(|x| canonicalize(x, path)).collect();
            path.pop();
            Value::Sequence(s)
        }
        other => other,
    };
    unique(v, path)
}

/// The per-key shape conversions.
fn shape(v: Value, path: &[String]) -> Value {
    if any_match(path, MAPPINGS) {
        return list_to_mapping(v);
    }
    if any_match(path, STRING_LISTS) {
        return match v {
            Value::Mapping(m)
                if matches(path, "services.*.extra_hosts") || matches(path, "services.*.build.extra_hosts") =>
            {
                hosts_to_list(m)
            }
            s @ (Value::String(_) | Value::Number(_) | Value::Bool(_)) => Value::Sequence(vec![s]),
            other => other,
        };
    }
    if matches(path, "services.*.env_file") {
        return match v {
            s @ Value::String(_) => Value::Sequence(vec![s]),
            other => other,
        };
    }
    if matches(path, "services.*.build") {
        return match v {
            s @ Value::String(_) => {
                let mut m = Mapping::new();
                m.insert("context".into(), s);
                Value::Mapping(m)
            }
            other => other,
        };
    }
    if matches(path, "services.*.extends") {
        return match v {
            s @ Value::String(_) => {
                let mut m = Mapping::new();
                m.insert("service".into(), s);
                Value::Mapping(m)
            }
            other => other,
        };
    }
    if matches(path, "services.*.depends_on") {
        return match v {
            Value::Sequence(items) => {
                let mut m = Mapping::new();
                for it in items {
                    let mut d = Mapping::new();
                    d.insert("condition".into(), "service_started".into());
                    d.insert("required".into(), true.into());
                    m.insert(it, Value::Mapping(d));
                }
                Value::Mapping(m)
            }
            other => other,
        };
    }
    if matches(path, "services.*.networks") || matches(path, "services.*.models") {
        return match v {
            Value::Sequence(items) => Value::Mapping(items.into_iter().map(|i| (i, Value::Null)).collect()),
            other => other,
        };
    }
    v
}

/// `KEY=VALUE` / `KEY` list entries to a mapping (a bare `KEY` maps to null).
fn list_to_mapping(v: Value) -> Value {
    match v {
        Value::Sequence(items) => {
            let mut m = Mapping::new();
            for it in items {
                match scalar_str(&it) {
                    Some(s) => match s.split_once('=') {
                        Some((k, val)) => m.insert(k.into(), val.into()),
                        None => m.insert(s.into(), Value::Null),
                    },
                    // Leave odd entries for the typed stage to report.
                    None => m.insert(it, Value::Null),
                };
            }
            Value::Mapping(m)
        }
        other => other,
    }
}

/// `extra_hosts` as a mapping (`host: ip` or `host: [ip, ip]`) to `host=ip` entries.
fn hosts_to_list(m: Mapping) -> Value {
    let mut out = Vec::new();
    for (k, v) in m {
        let host = key_str(&k);
        match v {
            Value::Sequence(ips) => {
                for ip in ips {
                    out.push(Value::String(format!("{host}={}", scalar_str(&ip).unwrap_or_default())));
                }
            }
            other => out.push(Value::String(format!(
                "{host}={}",
                scalar_str(&other).unwrap_or_default()
            ))),
        }
    }
    Value::Sequence(out)
}

/// The unique key of an entry of a sequence of unique resources, when `path` is one.
fn unique_key(path: &[String], entry: &Value) -> Option<Option<String>> {
    let field = |name: &str| match entry {
        Value::Mapping(m) => m.get(name).and_then(scalar_str),
        _ => None,
    };
    let short = scalar_str(entry).filter(|_| !matches!(entry, Value::Mapping(_)));
    let key = if matches(path, "services.*.ports") {
        match (&short, entry) {
            (Some(s), _) => Some(s.clone()),
            (None, Value::Mapping(_)) => Some(format!(
                "{}:{}:{}/{}",
                field("host_ip").unwrap_or_default(),
                field("published").unwrap_or_default(),
                field("target").unwrap_or_default(),
                field("protocol").unwrap_or_else(|| "tcp".into())
            )),
            _ => None,
        }
    } else if matches(path, "services.*.volumes") || matches(path, "services.*.devices") {
        match short {
            Some(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                Some(if parts.len() >= 2 {
                    parts[1].to_string()
                } else {
                    s.clone()
                })
            }
            None => field("target"),
        }
    } else if matches(path, "services.*.secrets") || matches(path, "services.*.configs") {
        let secret = path.get(2).is_some_and(|p| p == "secrets");
        let source = short.clone().or_else(|| field("source")).unwrap_or_default();
        let target = field("target").unwrap_or_else(|| source.clone());
        Some(if target.starts_with('/') || !secret {
            target
        } else {
            format!("/run/secrets/{target}")
        })
    } else if matches(path, "services.*.env_file") {
        short.or_else(|| field("path"))
    } else if matches(path, "networks.*.ipam.config") {
        field("subnet")
    } else if any_match(path, STRING_LISTS) {
        short
    } else {
        return None;
    };
    Some(key)
}

/// Keeps one entry per unique key, the later value in the place of the first.
fn unique(v: Value, path: &[String]) -> Value {
    let Value::Sequence(items) = v else { return v };
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    let mut seen: indexmap::IndexMap<String, usize> = indexmap::IndexMap::new();
    for it in items {
        match unique_key(path, &it) {
            Some(Some(k)) => match seen.get(&k) {
                Some(&i) => out[i] = it,
                None => {
                    seen.insert(k, out.len());
                    out.push(it);
                }
            },
            _ => out.push(it),
        }
    }
    Value::Sequence(out)
}

/// Removes `!override` tags and `!reset` values left where there was nothing to merge.
pub fn strip_tags(v: Value) -> Option<Value> {
    match v {
        Value::Tagged(t) => match tagged(&Value::Tagged(t.clone())) {
            Some(("reset", _)) => None,
            _ => strip_tags(t.value),
        },
        Value::Mapping(m) => Some(Value::Mapping(
            m.into_iter()
                .filter_map(|(k, v)| strip_tags(v).map(|v| (k, v)))
                .collect(),
        )),
        Value::Sequence(s) => Some(Value::Sequence(s.into_iter().filter_map(strip_tags).collect())),
        other => Some(other),
    }
}

/// Merges canonical `over` onto canonical `base`. Returns `None` when `over` resets it.
pub fn merge(base: Value, over: Value, path: &mut Vec<String>) -> Option<Value> {
    if let Some((tag, inner)) = tagged(&over) {
        return match tag {
            "reset" => None,
            _ => strip_tags(inner.clone()),
        };
    }
    if any_match(path, REPLACED) {
        return strip_tags(over);
    }
    // A logging driver change drops the old driver's options.
    if matches(path, "services.*.logging") {
        if let (Value::Mapping(b), Value::Mapping(o)) = (&base, &over) {
            let (bd, od) = (b.get("driver"), o.get("driver"));
            if bd.is_some() && od.is_some() && bd != od {
                return strip_tags(over);
            }
        }
    }
    match (base, over) {
        (Value::Mapping(mut b), Value::Mapping(o)) => {
            for (k, v) in o {
                path.push(key_str(&k));
                let merged = match b.shift_remove(&k) {
                    // A null in an override (e.g. `networks: {front: }`) keeps what was there.
                    Some(old) if v.is_null() && matches!(old, Value::Mapping(_)) => Some(old),
                    Some(old) => merge(old, v, path),
                    None => strip_tags(v),
                };
                path.pop();
                if let Some(m) = merged {
                    b.insert(k, m);
                }
            }
            Some(Value::Mapping(b))
        }
        (Value::Sequence(mut b), Value::Sequence(o)) => {
            b.extend(o.into_iter().filter_map(strip_tags));
            Some(unique(Value::Sequence(b), path))
        }
        (_, o) => strip_tags(o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Value {
        let mut v: Value = serde_yaml_ng::from_str(s).unwrap();
        v.apply_merge().unwrap();
        canonicalize(v, &mut vec![])
    }

    fn merged(a: &str, b: &str) -> Value {
        let base = merge(Value::Mapping(Mapping::new()), y(a), &mut vec![]).unwrap();
        merge(base, y(b), &mut vec![]).unwrap()
    }

    #[test]
    fn spec_rules() {
        let m = merged(
            "services:\n  web:\n    image: a\n    command: [a, b]\n    environment: [A=1, B=2]\n    ports: ['80:80', '81:81']\n    volumes: ['./x:/data', 'v:/other']\n    dns: 1.1.1.1\n    depends_on: [db]\n    labels: {x: '1'}\n",
            "services:\n  web:\n    image: b\n    command: [c]\n    environment: {B: '3', C: '4'}\n    ports: ['81:81', '82:82']\n    volumes: ['./y:/data']\n    dns: [8.8.8.8]\n    depends_on: {db: {condition: service_healthy}}\n    labels: !reset {}\n",
        );
        let want = y(
            "services:\n  web:\n    image: b\n    command: [c]\n    environment: {A: '1', B: '3', C: '4'}\n    ports: ['80:80', '81:81', '82:82']\n    volumes: ['./y:/data', 'v:/other']\n    dns: [1.1.1.1, 8.8.8.8]\n    depends_on: {db: {condition: service_healthy, required: true}}\n",
        );
        assert_eq!(m, want);
    }

    #[test]
    fn override_tag_replaces_whole() {
        let m = merged(
            "services:\n  web:\n    ports: ['80:80']\n",
            "services:\n  web:\n    ports: !override ['81:81']\n",
        );
        assert_eq!(m, y("services:\n  web:\n    ports: ['81:81']\n"));
    }

    #[test]
    fn logging_driver_change_drops_options() {
        let m = merged(
            "services:\n  s:\n    logging: {driver: json-file, options: {max-size: 1m}}\n",
            "services:\n  s:\n    logging: {driver: syslog, options: {tag: x}}\n",
        );
        assert_eq!(
            m,
            y("services:\n  s:\n    logging: {driver: syslog, options: {tag: x}}\n")
        );
        let m = merged(
            "services:\n  s:\n    logging: {driver: json-file, options: {max-size: 1m}}\n",
            "services:\n  s:\n    logging: {options: {max-file: '3'}}\n",
        );
        assert_eq!(
            m,
            y("services:\n  s:\n    logging: {driver: json-file, options: {max-size: 1m, max-file: '3'}}\n")
        );
    }

    #[test]
    fn unique_within_one_file_keeps_the_last() {
        let v = y("services:\n  s:\n    volumes: ['a:/x', 'b:/y', 'c:/x']\n    secrets: [s1, {source: s1, target: /run/secrets/s1, mode: 0400}]\n");
        assert_eq!(v, y("services:\n  s:\n    volumes: ['c:/x', 'b:/y']\n    secrets: [{source: s1, target: /run/secrets/s1, mode: 0400}]\n"));
    }

    #[test]
    fn short_forms_canonical() {
        let v = y("services:\n  s:\n    build: .\n    extends: base\n    networks: [a, b]\n    extra_hosts: {h: 1.2.3.4}\n    tmpfs: /run\n");
        assert_eq!(
            v,
            y("services:\n  s:\n    build: {context: .}\n    extends: {service: base}\n    networks: {a: null, b: null}\n    extra_hosts: ['h=1.2.3.4']\n    tmpfs: [/run]\n")
        );
    }
}
