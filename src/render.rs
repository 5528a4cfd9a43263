//! YAML laid out as `docker compose config` prints it (Go's yaml.v3 style): two-space
//! indentation with sequence items indented under their key, double-quoted strings where
//! quoting is needed, block literals for multi-line text.
//!
//! The layout is written here because serde_yaml_ng puts sequence items at their key's
//! column and single-quotes; each scalar's quoting and escaping is still decided by
//! serde_yaml_ng, so every value round-trips.

use serde_json::Value;

pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => mapping(m, 0, &mut out),
        Value::Array(a) if !a.is_empty() => sequence(a, 0, &mut out),
        other => {
            out.push_str(&scalar(other, 0));
            out.push('\n');
        }
    }
    out
}

fn pad(n: usize) -> String {
    " ".repeat(n)
}

/// A scalar, quoted as needed; continuation lines of a block literal are indented to
/// `indent`.
fn scalar(v: &Value, indent: usize) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let raw = serde_yaml_ng::to_string(s).unwrap_or_else(|_| format!("{s:?}"));
            let raw = raw.strip_suffix('\n').unwrap_or(&raw);
            let header = raw.lines().next().unwrap_or("");
            if raw.starts_with(['|', '>']) && header != "|" && header != "|-" {
                // Indentation indicators and kept trailing newlines are relative to where
                // serde_yaml_ng put them; JSON's double-quoted form is valid YAML anywhere.
                serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
            } else if raw.starts_with('|') {
                // Block literal: the header, then lines serde_yaml_ng indented by two.
                let mut lines = raw.lines();
                let mut out = lines.next().unwrap_or("|").to_string();
                for l in lines {
                    out.push('\n');
                    if !l.trim().is_empty() {
                        out.push_str(&pad(indent));
                        out.push_str(l.strip_prefix("  ").unwrap_or(l));
                    }
                }
                out
            } else if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
                // yaml.v3 double-quotes; do the same when nothing needs escaping.
                if inner.contains(['\'', '"', '\\']) || inner.chars().any(char::is_control) {
                    raw.to_string()
                } else {
                    format!("\"{inner}\"")
                }
            } else if is_yaml11_bool(raw) {
                // YAML 1.1 readers take these for booleans; yaml.v3 quotes them.
                format!("\"{raw}\"")
            } else {
                raw.to_string()
            }
        }
        // Collections are laid out by the callers.
        other => other.to_string(),
    }
}

fn is_yaml11_bool(s: &str) -> bool {
    matches!(
        s,
        "y" | "Y" | "yes" | "Yes" | "YES" | "n" | "N" | "no" | "No" | "NO" | "on" | "On" | "ON" | "off" | "Off" | "OFF"
    )
}

fn inline(v: &Value, indent: usize) -> String {
    match v {
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => scalar(other, indent),
    }
}

fn mapping(m: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    let mut first = true;
    for (k, v) in m {
        // The first key of a mapping that is a sequence item sits on the `- ` line.
        if !first || !out.ends_with("- ") {
            out.push_str(&pad(indent));
        }
        first = false;
        out.push_str(&scalar(&Value::String(k.clone()), indent + 2));
        out.push(':');
        match v {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                mapping(inner, indent + 2, out);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                sequence(items, indent + 2, out);
            }
            other => {
                out.push(' ');
                out.push_str(&inline(other, indent + 2));
                out.push('\n');
            }
        }
    }
}

fn sequence(items: &[Value], indent: usize, out: &mut String) {
    for item in items {
        out.push_str(&pad(indent));
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => mapping(m, indent + 2, out),
            Value::Array(a) if !a.is_empty() => {
                out.pop();
                out.push('\n');
                sequence(a, indent + 2, out);
            }
            other => {
                out.push_str(&inline(other, indent + 2));
                out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layout_as_compose_prints_it() {
        let v = json!({
            "name": "p",
            "services": {"web": {
                "command": ["nginx", "-g", "daemon off;"],
                "ports": [{"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"}],
                "networks": {"default": null},
                "environment": {"EMPTY": "", "MULTI": "a\nb\n"},
                "tmpfs": [],
            }},
        });
        let want = "name: p\nservices:\n  web:\n    command:\n      - nginx\n      - -g\n      - daemon off;\n    ports:\n      - mode: ingress\n        target: 80\n        published: \"8080\"\n        protocol: tcp\n    networks:\n      default: null\n    environment:\n      EMPTY: \"\"\n      MULTI: |\n        a\n        b\n    tmpfs: []\n";
        assert_eq!(to_yaml(&v), want);
    }

    #[test]
    fn round_trips_awkward_scalars() {
        let v = json!({
            "a": ["no", "Yes", "off", "", "'", "\"", "\\", "x: y", "- z", "#c", "true", "1.5", "null", "~", "@", "`", "%", "a\tb", "\u{7}", "é", "  lead", "trail  ", "l1\n  l2", "\n", "[x]"],
            "nested": [[1, 2], [], {}, [{"k": "v", "l": [1]}]],
            "k: weird": {"- also": 1},
        });
        let text = to_yaml(&v);
        let back: Value = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, v, "{text}");
    }
}
