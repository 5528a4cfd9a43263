//! The `.env` file format as Compose reads it: `KEY=VALUE` and `KEY: VALUE`, `export`,
//! comments (whole-line and ` #` inline after unquoted values), single quotes (literal,
//! `\'` allowed), double quotes (escapes, multi-line), a bare `KEY` taken from the
//! environment, a UTF-8 BOM, and `${VAR}` interpolation against earlier keys and then the
//! environment (the environment first: it wins over the file, as it does for the values).
//!
//! Written by hand: the existing crates (dotenvy) implement a different dialect (no
//! `${VAR:-default}`, no `KEY: VALUE`), and the format is small.

use crate::interpolate::{substitute, Lookup, SubstError};
use indexmap::IndexMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct DotEnvError {
    pub line: usize,
    pub message: String,
}

/// Parses `src`. `lookup` resolves bare keys and variables not defined earlier in the
/// file. Later duplicates replace earlier ones.
pub fn parse(src: &str, lookup: &dyn Lookup) -> Result<IndexMap<String, String>, DotEnvError> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src).replace("\r\n", "\n");
    let mut vars: IndexMap<String, String> = IndexMap::new();
    let mut p = Cursor { s: &src, i: 0, line: 1 };
    loop {
        p.skip_blank_and_comments();
        if p.eof() {
            break;
        }
        let line = p.line;
        let err = |message: String| DotEnvError { line, message };
        let mut rest = p.rest();
        if let Some(r) = rest.strip_prefix("export").filter(|r| r.starts_with([' ', '\t'])) {
            p.i += rest.len() - r.len();
            rest = r;
        }
        // The key runs to the first `=` or `:`, or to the end of the line (a bare key).
        let stop = rest.find(['=', ':', '\n']).unwrap_or(rest.len());
        let key = rest[..stop].trim();
        if key.is_empty() {
            return Err(err("missing variable name".into()));
        }
        if key.contains(char::is_whitespace) {
            return Err(err(format!("key cannot contain a space: {key:?}")));
        }
        if key.contains(['\'', '"', '$', '#']) {
            return Err(err(format!("invalid character in key {key:?}")));
        }
        let key = key.to_string();
        let sep = rest[stop..].chars().next();
        p.i += stop;
        if sep != Some('=') && sep != Some(':') {
            // A bare KEY inherits its value from the environment, or is skipped.
            if let Some(v) = lookup.get(&key) {
                vars.insert(key, v);
            }
            continue;
        }
        p.i += 1;
        p.skip_inline_space();
        let value = match p.peek() {
            Some(q @ ('\'' | '"')) => {
                let raw = p
                    .quoted(q)
                    .ok_or_else(|| err(format!("unterminated quoted value for {key}")))?;
                // After the closing quote only a comment may follow on that line.
                let tail = p.take_line();
                let tail = tail.trim();
                if !tail.is_empty() && !tail.starts_with('#') {
                    return Err(err(format!(
                        "unexpected characters after quoted value of {key}: {tail:?}"
                    )));
                }
                if q == '\'' {
                    raw.replace("\\'", "'")
                } else {
                    expand(&unescape(&raw), &vars, lookup).map_err(|e| err(e.to_string()))?
                }
            }
            _ => {
                let raw = p.take_line();
                let raw = match raw.find(" #").or_else(|| raw.find("\t#")) {
                    Some(c) => &raw[..c],
                    None => raw,
                };
                expand(raw.trim(), &vars, lookup).map_err(|e| err(e.to_string()))?
            }
        };
        vars.insert(key, value);
    }
    Ok(vars)
}

/// `\$` survives unescaping (as a `$$`), so that it is taken literally by interpolation.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('$') => out.push_str("$$"),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn expand(s: &str, vars: &IndexMap<String, String>, lookup: &dyn Lookup) -> Result<String, SubstError> {
    // The environment wins over the file's own earlier keys, as it wins over the file.
    let both = |n: &str| lookup.get(n).or_else(|| vars.get(n).cloned());
    substitute(s, &both, &mut |_| {})
}

struct Cursor<'a> {
    s: &'a str,
    i: usize,
    line: usize,
}

impl<'a> Cursor<'a> {
    fn eof(&self) -> bool {
        self.i >= self.s.len()
    }
    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }
    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }
    fn skip_inline_space(&mut self) {
        let r = self.rest();
        self.i += r.len() - r.trim_start_matches([' ', '\t']).len();
    }
    fn skip_blank_and_comments(&mut self) {
        loop {
            let r = self.rest();
            let t = r.trim_start_matches([' ', '\t']);
            if t.starts_with('\n') {
                self.i += r.len() - t.len() + 1;
                self.line += 1;
            } else if t.starts_with('#') {
                self.i += r.len() - t.len();
                self.take_line();
            } else {
                self.i += r.len() - t.len();
                return;
            }
        }
    }
    /// The rest of the line, consuming its newline.
    fn take_line(&mut self) -> &'a str {
        let r = self.rest();
        match r.find('\n') {
            Some(n) => {
                self.i += n + 1;
                self.line += 1;
                &r[..n]
            }
            None => {
                self.i = self.s.len();
                r
            }
        }
    }
    /// A quoted value starting at the opening quote; a backslash escapes the next char.
    fn quoted(&mut self, q: char) -> Option<String> {
        let r = self.rest();
        let mut escaped = false;
        for (n, c) in r.char_indices().skip(1) {
            if escaped {
                escaped = false;
                continue;
            }
            if c == '\\' {
                escaped = true;
            } else if c == q {
                let body = &r[1..n];
                self.line += body.matches('\n').count();
                self.i += n + 1;
                return Some(body.to_string());
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn basics() {
        let src = "# comment\nA=1\nexport B = two words # note\nC: 3\nD='x # y'\nE=\"l1\\nl2\"\nF=\nG\n";
        let m = parse(src, &|n: &str| (n == "G").then(|| "from-env".to_string())).unwrap();
        let want = [
            ("A", "1"),
            ("B", "two words"),
            ("C", "3"),
            ("D", "x # y"),
            ("E", "l1\nl2"),
            ("F", ""),
            ("G", "from-env"),
        ];
        assert_eq!(m.len(), want.len());
        for (k, v) in want {
            assert_eq!(m[k], v, "{k}");
        }
    }

    #[test]
    fn interpolation_uses_env_then_earlier_keys() {
        let m = parse("A=1\nB=${A}-${X:-d}\nC='${A}'\nD=\"\\$A\"", &none).unwrap();
        assert_eq!(m["B"], "1-d");
        assert_eq!(m["C"], "${A}");
        assert_eq!(m["D"], "$A");
        let m = parse("A=1\nB=${A}", &|n: &str| (n == "A").then(|| "env".to_string())).unwrap();
        assert_eq!(m["B"], "env");
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("A=1\n\nBAD KEY=2\n", &none).unwrap_err();
        assert_eq!(e.line, 3);
        let e = parse("A=\"open\n", &none).unwrap_err();
        assert_eq!(e.line, 1);
    }

    #[test]
    fn bom_and_crlf() {
        let m = parse("\u{feff}A=1\r\nB=2\r\n", &none).unwrap();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "2");
    }
}
