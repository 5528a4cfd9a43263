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
            Some((line, column)) => Location { file: self.path.clone(), line, column },
            None => Location { file: self.path.clone(), line: 0, column: 0 },
        };
        At { location: Some(location), key: Some(key.to_string()) }
    }
}

/// Parses one file. The root must be a mapping; `<<` merge keys are applied.
pub fn parse(path: &Path, text: &str) -> Result<(Source, Value)> {
    let source = Source { path: path.to_path_buf(), locator: Locator::new(text) };
    let yaml_err = |e: serde_yaml_ng::Error| {
        let location = e.location().map(|l| Location { file: path.to_path_buf(), line: l.line(), column: l.column() });
        let location = location.or_else(|| Some(Location { file: path.to_path_buf(), line: 0, column: 0 }));
        // serde_yaml_ng appends " at line L column C"; the location already says it.
        let msg = e.to_string();
        let msg = match msg.find(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        Error::Yaml { at: At { location, key: None }, message: msg }
    };
    let mut value: Value = serde_yaml_ng::from_str(text).map_err(yaml_err)?;
    match &value {
        Value::Mapping(_) => {}
        Value::Null => return Err(Error::invalid(source.at(""), "empty compose file")),
        _ => return Err(Error::invalid(source.at(""), "top-level object must be a mapping")),
    }
    value.apply_merge().map_err(yaml_err)?;
    check_tags(&value, "", &source)?;
    Ok((source, value))
}

/// Only Compose's own tags are meaningful; anything else is refused by name.
fn check_tags(v: &Value, path: &str, source: &Source) -> Result<()> {
    match v {
        Value::Tagged(t) => {
            let tag = t.tag.to_string();
            if tag != "!reset" && tag != "!override" {
                return Err(Error::invalid(source.at(path), format!("unsupported YAML tag {tag} (Compose knows !reset and !override)")));
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
