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
    if let Some((line, column)) = too_deep(text) {
        let at = At {
            location: Some(Location {
                file: path.to_path_buf(),
                line,
                column,
            }),
            key: None,
        };
        return Err(Error::Yaml {
            at,
            message: format!("flow collections nested deeper than {MAX_FLOW_DEPTH} levels"),
        });
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
    value.apply_merge().map_err(yaml_err)?;
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
