//! One Compose file read from disk (or stdin): its text, its YAML tree with merge keys
//! applied, and a locator for error positions.

use crate::error::{At, Error, Location, Result};
use crate::locate::Locator;
use serde_yaml_ng::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub locator: Locator,
}

impl Source {
    /// The location of a key path in this file (or of its closest written ancestor).
    pub fn at(&self, key: &str) -> At {
        let location = match self.locator.find(key) {
            Some((line, column)) => Location {
                file: self.path.clone(),
                line,
                column,
            },
            None => Location {
                file: self.path.clone(),
                line: 0,
                column: 0,
            },
        };
        At {
            location: Some(location),
            key: Some(key.to_string()),
        }
    }
}

/// Parses one file. The root must be a mapping; `<<` merge keys are applied.
pub fn parse(path: &Path, text: &str) -> Result<(Source, Value)> {
    let refused = |line, column, message: String| Error::Yaml {
        at: At {
            location: Some(Location {
                file: path.to_path_buf(),
                line,
                column,
            }),
            key: None,
        },
        message,
    };
    if let Some((line, column)) = too_deep(text) {
        return Err(refused(
            line,
            column,
            format!("flow collections nested deeper than {MAX_FLOW_DEPTH} levels"),
        ));
    }
    if let Some((line, column, limit)) = crate::aliases::excessive(text) {
        return Err(refused(
            line,
            column,
            format!("excessive aliasing: the document's aliases expand to more than {limit} nodes"),
        ));
    }
    let yaml_err = |e: serde_yaml_ng::Error| {
        let location = e.location().map(|l| Location {
            file: path.to_path_buf(),
            line: l.line(),
            column: l.column(),
        });
        let location = location.or_else(|| {
            Some(Location {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
            })
        });
        // serde_yaml_ng appends " at line L column C"; the location already says it.
        let msg = e.to_string();
        let msg = match msg.find(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        Error::Yaml {
            at: At { location, key: None },
            message: msg,
        }
    };
    let mut value: Value = serde_yaml_ng::from_str(text).map_err(yaml_err)?;
    // Positions are indexed only for a document that parsed (and so is not absurdly deep).
    let source = Source {
        path: path.to_path_buf(),
        locator: Locator::new(text),
    };
    match &value {
        Value::Mapping(_) => {}
        Value::Null => return Err(Error::invalid(source.at(""), "empty compose file")),
        _ => return Err(Error::invalid(source.at(""), "top-level object must be a mapping")),
    }
    apply_merge_keys(&mut value, "", &source)?;
    check_tags(&value, "", &source)?;
    Ok((source, value))
}

/// Deeper than any real file, and far below where libyaml's scanner, which is quadratic
/// in flow nesting, would take seconds.
const MAX_FLOW_DEPTH: usize = 256;

/// Where `[`/`{` nesting first passes [`MAX_FLOW_DEPTH`], skipping quoted text and
/// comments (a rough scan: it can only over-count on text no real file has).
pub(crate) fn too_deep(text: &str) -> Option<(usize, usize)> {
    let (mut depth, mut line, mut col) = (0usize, 1usize, 0usize);
    let mut quote: Option<char> = None;
    let mut comment = false;
    let mut prev = '\n';
    for c in text.chars() {
        col += 1;
        if c == '\n' {
            line += 1;
            col = 0;
            comment = false;
            prev = c;
            continue;
        }
        if comment {
            continue;
        }
        match quote {
            Some(q) if c == q && prev != '\\' => quote = None,
            Some(_) => {}
            None => match c {
                '#' if prev.is_whitespace() => comment = true,
                '"' | '\'' => quote = Some(c),
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Some((line, col));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        prev = c;
    }
    None
}

/// Only Compose's own tags are meaningful; anything else is refused by name.
fn check_tags(v: &Value, path: &str, source: &Source) -> Result<()> {
    match v {
        Value::Tagged(t) => {
            let tag = t.tag.to_string();
            if tag != "!reset" && tag != "!override" {
                return Err(Error::invalid(
                    source.at(path),
                    format!("unsupported YAML tag {tag} (Compose knows !reset and !override)"),
                ));
            }
            check_tags(&t.value, path, source)
        }
        Value::Mapping(m) => {
            for (k, v) in m {
                let key = crate::merge::key_str(k);
                check_tags(v, &crate::locate::join(path, &key), source)?;
            }
            Ok(())
        }
        Value::Sequence(s) => {
            for (i, v) in s.iter().enumerate() {
                check_tags(v, &format!("{path}[{i}]"), source)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Applies `<<` merge keys, also those inside the merged mappings: `x-a: {<<: *b, ...}`
/// merged into a service brings `b`'s keys too. `serde_yaml_ng`'s `apply_merge` leaves
/// such a nested `<<` behind, so this walk is ours. A mapping's own keys win over merged
/// ones, and the first of a list of merged mappings over the later.
fn apply_merge_keys(v: &mut Value, path: &str, source: &Source) -> Result<()> {
    match v {
        Value::Mapping(m) => {
            if let Some(merge) = m.remove("<<") {
                let mut from = match merge {
                    Value::Mapping(one) => vec![Value::Mapping(one)],
                    Value::Sequence(list) => list,
                    _ => {
                        return Err(Error::invalid(
                            source.at(&crate::locate::join(path, "<<")),
                            "a merge key `<<` takes a mapping or a list of mappings",
                        ))
                    }
                };
                for one in &mut from {
                    apply_merge_keys(one, path, source)?;
                    let Value::Mapping(one) = std::mem::take(one) else {
                        return Err(Error::invalid(
                            source.at(&crate::locate::join(path, "<<")),
                            "a merge key `<<` takes a mapping or a list of mappings",
                        ));
                    };
                    for (k, val) in one {
                        if !m.contains_key(&k) {
                            m.insert(k, val);
                        }
                    }
                }
            }
            for (k, val) in m.iter_mut() {
                let key = crate::merge::key_str(k);
                apply_merge_keys(val, &crate::locate::join(path, &key), source)?;
            }
            Ok(())
        }
        Value::Sequence(s) => {
            for (i, val) in s.iter_mut().enumerate() {
                apply_merge_keys(val, &format!("{path}[{i}]"), source)?;
            }
            Ok(())
        }
        Value::Tagged(t) => apply_merge_keys(&mut t.value, path, source),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod merge_key_tests {
    use super::*;

    fn parsed(text: &str) -> Result<Value> {
        parse(Path::new("compose.yaml"), text).map(|(_, v)| v)
    }

    #[test]
    fn nested_merge_keys_are_applied_with_the_nearer_keys_winning() {
        let v = parsed(
            "x-base: &base {image: busybox, init: true, restart: always}\n\
             x-store: &store {<<: *base, restart: unless-stopped, command: serve}\n\
             services:\n  db: {<<: *store, command: db}\n  two: {<<: [*store, {user: x, image: other}]}\n",
        )
        .unwrap();
        let db = &v["services"]["db"];
        assert_eq!(db["image"], Value::from("busybox"));
        assert_eq!(db["init"], Value::from(true));
        assert_eq!(db["restart"], Value::from("unless-stopped"));
        assert_eq!(db["command"], Value::from("db"));
        assert!(db.get("<<").is_none());
        let two = &v["services"]["two"];
        assert_eq!(two["image"], Value::from("busybox"));
        assert_eq!(two["user"], Value::from("x"));
    }

    #[test]
    fn a_merge_of_a_scalar_is_refused_with_its_place() {
        let e = parsed("services:\n  a:\n    <<: 3\n    image: x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("services.a.<<") && e.contains("merge key"), "{e}");
    }
}
