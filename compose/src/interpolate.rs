//! `${VAR}` interpolation as the Compose Specification defines it.
//!
//! Written by hand: the template language is Compose's own (POSIX-like defaults, `:?`
//! errors, nesting inside defaults, `$$` escapes, a warning for unset variables), and no
//! crate implements exactly that set.

/// What went wrong while substituting one string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubstError {
    #[error("invalid interpolation format {template:?}: you may need to escape any $ with another $")]
    Invalid { template: String },
    #[error("required variable {name} is missing a value{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Required { name: String, message: Option<String> },
}

/// Looks variables up; returns `None` for an unset variable.
pub trait Lookup {
    fn get(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Lookup for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Substitutes every variable in `template`. `unset` is called with the name of each plain
/// reference (`$VAR`, `${VAR}`) to an unset variable, which becomes the empty string.
pub fn substitute(template: &str, lookup: &dyn Lookup, unset: &mut dyn FnMut(&str)) -> Result<String, SubstError> {
    let invalid = || SubstError::Invalid {
        template: template.to_string(),
    };
    let bytes = template.as_bytes();
    let mut out = String::with_capacity(template.len());
    let mut i = 0;
    while i < bytes.len() {
        // Copy everything up to the next `$` in one go (it is ASCII, so slicing is safe).
        let Some(rel) = template[i..].find('$') else {
            out.push_str(&template[i..]);
            break;
        };
        out.push_str(&template[i..i + rel]);
        i += rel + 1;
        match bytes.get(i) {
            Some(b'$') => {
                out.push('$');
                i += 1;
            }
            Some(b'{') => {
                let start = i + 1;
                let end = matching_brace(template, start).ok_or_else(invalid)?;
                let value = braced(&template[start..end], lookup, unset).map_err(|e| match e {
                    SubstError::Invalid { .. } => invalid(),
                    other => other,
                })?;
                out.push_str(&value);
                i = end + 1;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                let len = name_len(&template[i..]);
                let name = &template[i..i + len];
                match lookup.get(name) {
                    Some(v) => out.push_str(&v),
                    None => unset(name),
                }
                i += len;
            }
            _ => return Err(invalid()),
        }
    }
    Ok(out)
}

fn name_len(s: &str) -> usize {
    s.bytes()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
        .count()
}

/// Index of the `}` closing a `${` whose body starts at `start`, counting nested `${`.
fn matching_brace(s: &str, start: usize) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 1;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'$' if b.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 2;
                continue;
            }
            b'$' if b.get(i + 1) == Some(&b'$') => {
                i += 2;
                continue;
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn braced(body: &str, lookup: &dyn Lookup, unset: &mut dyn FnMut(&str)) -> Result<String, SubstError> {
    let invalid = || SubstError::Invalid {
        template: format!("${{{body}}}"),
    };
    let len = name_len(body);
    let name = &body[..len];
    if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
        return Err(invalid());
    }
    let rest = &body[len..];
    let value = lookup.get(name);
    let set_nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
    let (op, arg) = if rest.is_empty() {
        ("", "")
    } else if let Some(op) = [":-", ":?", ":+", "-", "?", "+"]
        .iter()
        .find(|op| rest.starts_with(**op))
    {
        (*op, &rest[op.len()..])
    } else {
        return Err(invalid());
    };
    let nested = |unset: &mut dyn FnMut(&str)| substitute(arg, lookup, unset);
    Ok(match op {
        "" => match value {
            Some(v) => v,
            None => {
                unset(name);
                String::new()
            }
        },
        ":-" => {
            if set_nonempty {
                value.unwrap_or_default()
            } else {
                nested(unset)?
            }
        }
        "-" => match value {
            Some(v) => v,
            None => nested(unset)?,
        },
        ":+" => {
            if set_nonempty {
                nested(unset)?
            } else {
                String::new()
            }
        }
        "+" => {
            if value.is_some() {
                nested(unset)?
            } else {
                String::new()
            }
        }
        ":?" | "?" => {
            let ok = if op == ":?" { set_nonempty } else { value.is_some() };
            if ok {
                value.unwrap_or_default()
            } else {
                let message = nested(unset)?;
                return Err(SubstError::Required {
                    name: name.to_string(),
                    message: (!message.is_empty()).then_some(message),
                });
            }
        }
        _ => return Err(invalid()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".into()),
            "EMPTY" => Some(String::new()),
            "NESTED" => Some("${SET}".into()),
            _ => None,
        }
    }

    fn run(t: &str) -> (Result<String, SubstError>, Vec<String>) {
        let mut warned = Vec::new();
        let r = substitute(t, &env, &mut |n: &str| warned.push(n.to_string()));
        (r, warned)
    }

    #[test]
    fn table() {
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("$SET", "value"),
            ("${SET}", "value"),
            ("a${SET}b$SET-c", "avalueb" /* $SET-c: name stops at - */),
            ("$$SET", "$SET"),
            ("$${SET}", "${SET}"),
            ("${UNSET:-def}", "def"),
            ("${EMPTY:-def}", "def"),
            ("${EMPTY-def}", ""),
            ("${UNSET-def}", "def"),
            ("${SET:-def}", "value"),
            ("${SET:+alt}", "alt"),
            ("${EMPTY:+alt}", ""),
            ("${EMPTY+alt}", "alt"),
            ("${UNSET+alt}", ""),
            ("${UNSET:-${SET}}", "value"),
            ("${UNSET:-${ALSO:-deep}}", "deep"),
            ("${UNSET:-a b c}", "a b c"),
            ("${NESTED}", "${SET}"),
            ("${UNSET:-}", ""),
            ("x${UNSET:-{}}y", "x{}y"),
        ];
        for (input, want) in cases {
            let (got, _) = run(input);
            let want = if *input == "a${SET}b$SET-c" {
                "avaluebvalue-c"
            } else {
                want
            };
            assert_eq!(got.as_deref(), Ok(want), "input {input}");
        }
    }

    #[test]
    fn unset_warns_once_per_use_and_is_empty() {
        let (r, w) = run("${UNSET}/$UNSET2/${UNSET3:-x}");
        assert_eq!(r.unwrap(), "//x");
        assert_eq!(w, vec!["UNSET", "UNSET2"]);
    }

    #[test]
    fn required() {
        let (r, _) = run("${UNSET:?you must set it}");
        assert_eq!(
            r,
            Err(SubstError::Required {
                name: "UNSET".into(),
                message: Some("you must set it".into())
            })
        );
        assert!(r
            .unwrap_err()
            .to_string()
            .contains("required variable UNSET is missing a value: you must set it"));
        let (r, _) = run("${EMPTY:?}");
        assert!(matches!(r, Err(SubstError::Required { .. })));
        let (r, _) = run("${EMPTY?}");
        assert_eq!(r.unwrap(), "");
        let (r, _) = run("${UNSET?boom}");
        assert!(matches!(r, Err(SubstError::Required { .. })));
    }

    #[test]
    fn invalid() {
        for t in ["${", "${SET", "$", "cost $5", "${SET!}", "${}", "${1A}", "${SET:=x}"] {
            let (r, _) = run(t);
            assert!(matches!(r, Err(SubstError::Invalid { .. })), "{t} gave {r:?}");
        }
    }
}
