//! Every key of the canonical Compose schema
//! (`../shared/conformance/compose-go/schema/compose-spec.json`) is known to the model:
//! a document holding just that key is never refused as "unknown key", while a made-up
//! key in the same place is.

mod common;
use serde_json::Value as Json;
use serde_yaml_ng::{Mapping, Value};

#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    /// An entry of a map with free keys.
    Any,
    /// An item of a sequence.
    Item,
}

fn resolve<'a>(root: &'a Json, node: &'a Json) -> &'a Json {
    match node.get("$ref").and_then(Json::as_str) {
        Some(r) => {
            let name = r.trim_start_matches("#/$defs/");
            resolve(root, &root["$defs"][name])
        }
        None => node,
    }
}

fn walk(root: &Json, node: &Json, path: Vec<Seg>, out: &mut Vec<Vec<Seg>>, depth: usize) {
    if depth > 14 {
        return;
    }
    let node = resolve(root, node);
    if let Some(props) = node.get("properties").and_then(Json::as_object) {
        for (k, v) in props {
            let mut p = path.clone();
            p.push(Seg::Key(k.clone()));
            out.push(p.clone());
            walk(root, v, p, out, depth + 1);
        }
    }
    if let Some(pp) = node.get("patternProperties").and_then(Json::as_object) {
        for (pat, v) in pp {
            if pat.starts_with("^x-") {
                continue;
            }
            let mut p = path.clone();
            p.push(Seg::Any);
            walk(root, v, p, out, depth + 1);
        }
    }
    if let Some(ap) = node.get("additionalProperties").filter(|v| v.is_object()) {
        let mut p = path.clone();
        p.push(Seg::Any);
        walk(root, ap, p, out, depth + 1);
    }
    if let Some(items) = node.get("items").filter(|v| v.is_object()) {
        let mut p = path.clone();
        p.push(Seg::Item);
        walk(root, items, p, out, depth + 1);
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        for alt in node.get(key).and_then(Json::as_array).into_iter().flatten() {
            walk(root, alt, path.clone(), out, depth + 1);
        }
    }
}

fn build(path: &[Seg]) -> Value {
    match path.split_first() {
        None => Value::Null,
        Some((seg, rest)) => {
            let inner = build(rest);
            match seg {
                Seg::Key(k) => Value::Mapping(Mapping::from_iter([(Value::String(k.clone()), inner)])),
                Seg::Any => Value::Mapping(Mapping::from_iter([(Value::String("k".into()), inner)])),
                Seg::Item => Value::Sequence(vec![inner]),
            }
        }
    }
}

fn show(path: &[Seg]) -> String {
    path.iter()
        .map(|s| match s {
            Seg::Key(k) => k.clone(),
            Seg::Any => "*".into(),
            Seg::Item => "[]".into(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[test]
fn every_schema_key_is_known() {
    let Some(c) = common::corpus() else { return };
    let schema: Json =
        serde_json::from_str(&std::fs::read_to_string(c.join("compose-go/schema/compose-spec.json")).unwrap()).unwrap();
    let mut paths = Vec::new();
    walk(&schema, &schema, Vec::new(), &mut paths, 0);
    assert!(paths.len() > 250, "walked only {} keys", paths.len());
    let mut checked = 0;
    for path in &paths {
        let Some(Seg::Key(leaf)) = path.last() else { continue };
        if let Err((at, msg)) = compose::decode(&build(path)) {
            assert!(
                !msg.starts_with("unknown key"),
                "{}: refused as unknown ({at}: {msg})",
                show(path)
            );
        }
        // The same place with a made-up key must be refused, naming it: proves the
        // document reached the struct that knows `leaf`.
        let mut bogus = path.clone();
        *bogus.last_mut().unwrap() = Seg::Key("zz_not_a_key".into());
        match compose::decode(&build(&bogus)) {
            Err((_, msg)) if msg.starts_with("unknown key `zz_not_a_key`") => {}
            other => panic!(
                "{}: a made-up key beside `{leaf}` was not refused: {other:?}",
                show(path)
            ),
        }
        checked += 1;
    }
    eprintln!("{checked} schema keys known to the model");
}
