//! Word processing and variable expansion as BuildKit's shell lexer does it: quotes
//! and the escape character removed, `$x`, `${x}`, `${x:-w}`, `${x-w}`, `${x:+w}`,
//! `${x+w}`, `${x:?w}`, `${x?w}`, `${x#p}`, `${x%p}` expanded from the variables as they
//! were before the instruction. Written by hand: it is the Dockerfile's own dialect.

use std::collections::BTreeMap;

/// The variables an instruction sees (build args and `ENV`s), by name.
pub type Vars = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExpandError {
    #[error("missing '}}' in {0:?}")]
    Unclosed(String),
    #[error("unterminated quote in {0:?}")]
    Quote(String),
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("unsupported modifier ({modifier}) in substitution {word:?}")]
    Modifier { modifier: char, word: String },
    #[error("substitutions nested more than {MAX_NESTING} deep")]
    TooDeep,
    #[error("a word expands to more than {MAX_EXPANDED} bytes")]
    TooLong,
}

/// How deep `${a:-${b:-...}}` may nest (each level is a frame of the lexer).
pub const MAX_NESTING: usize = 64;
/// The most one word may expand to (Linux takes no argument longer than 128 KiB), so
/// `ENV b=$a$a...` doubling line after line stops here instead of filling memory.
pub const MAX_EXPANDED: usize = 1 << 20;
/// The longest value `${x#pattern}` trims (each trim tries every cut).
const MAX_TRIMMED: usize = 64 * 1024;

/// One word: quotes removed, variables expanded.
pub fn word(s: &str, vars: &Vars, escape: char) -> Result<String, ExpandError> {
    let mut l = Lexer::new(s, vars, escape, false);
    l.run()?;
    Ok(l.words.concat())
}

/// Whitespace-separated words (unquoted expansions split too), as `EXPOSE`, `COPY`'s
/// sources and `VOLUME` take them.
pub fn words(s: &str, vars: &Vars, escape: char) -> Result<Vec<String>, ExpandError> {
    let mut l = Lexer::new(s, vars, escape, true);
    l.run()?;
    Ok(l.words)
}

/// Splits a `key=value key2="value 2"` list into its raw words (quotes kept), where
/// quoted spaces and escaped ones do not separate.
pub fn split_raw(s: &str, escape: char) -> Result<Vec<String>, ExpandError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    let mut has = false;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == escape && q == '"' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => {
                if has {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            None => {
                has = true;
                cur.push(c);
                if c == escape {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == '"' || c == '\'' {
                    quote = Some(c);
                }
            }
        }
    }
    if quote.is_some() {
        return Err(ExpandError::Quote(s.to_string()));
    }
    if has {
        out.push(cur);
    }
    Ok(out)
}

struct Lexer<'a> {
    src: Vec<char>,
    pos: usize,
    vars: &'a Vars,
    escape: char,
    split: bool,
    words: Vec<String>,
    /// A word is open (even an empty one, from `""`).
    open: bool,
    original: &'a str,
    /// `${` levels open now, and bytes produced so far.
    depth: usize,
    produced: usize,
}

impl<'a> Lexer<'a> {
    fn new(s: &'a str, vars: &'a Vars, escape: char, split: bool) -> Self {
        Lexer {
            src: s.chars().collect(),
            pos: 0,
            vars,
            escape,
            split,
            words: Vec::new(),
            open: false,
            original: s,
            depth: 0,
            produced: 0,
        }
    }

    /// Counts `n` more bytes produced, refusing a word past the limit.
    fn grow(&mut self, n: usize) -> Result<(), ExpandError> {
        self.produced += n;
        if self.produced > MAX_EXPANDED {
            return Err(ExpandError::TooLong);
        }
        Ok(())
    }

    fn push(&mut self, s: &str) {
        if !self.open {
            self.words.push(String::new());
            self.open = true;
        }
        if let Some(w) = self.words.last_mut() {
            w.push_str(s);
        }
    }

    fn push_char(&mut self, c: char) {
        self.push(c.encode_utf8(&mut [0; 4]));
    }

    fn end_word(&mut self) {
        self.open = false;
    }

    fn peek(&self) -> Option<char> {
        self.src.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += 1;
        c
    }

    fn run(&mut self) -> Result<(), ExpandError> {
        while let Some(c) = self.next() {
            match c {
                '\'' => self.single()?,
                '"' => self.double()?,
                '$' => {
                    let v = self.dollar()?;
                    self.unquoted_value(&v);
                }
                c if c == self.escape => match self.next() {
                    Some(n) => self.push_char(n),
                    None => self.push_char(c),
                },
                c if self.split && c.is_whitespace() => self.end_word(),
                c => self.push_char(c),
            }
        }
        if !self.split && self.words.is_empty() {
            self.words.push(String::new());
        }
        Ok(())
    }

    /// An expansion outside quotes: split on whitespace when splitting words.
    fn unquoted_value(&mut self, v: &str) {
        if !self.split {
            self.push(v);
            return;
        }
        let mut parts = v.split(char::is_whitespace).peekable();
        let starts_blank = v.starts_with(char::is_whitespace);
        if starts_blank {
            self.end_word();
        }
        while let Some(p) = parts.next() {
            if !p.is_empty() {
                self.push(p);
            }
            if parts.peek().is_some() {
                self.end_word();
            }
        }
    }

    fn single(&mut self) -> Result<(), ExpandError> {
        self.push("");
        loop {
            match self.next() {
                None => return Err(ExpandError::Quote(self.original.to_string())),
                Some('\'') => return Ok(()),
                Some(c) => self.push_char(c),
            }
        }
    }

    fn double(&mut self) -> Result<(), ExpandError> {
        self.push("");
        loop {
            match self.next() {
                None => return Err(ExpandError::Quote(self.original.to_string())),
                Some('"') => return Ok(()),
                Some('$') => {
                    let v = self.dollar()?;
                    self.push(&v);
                }
                Some(c) if c == self.escape => match self.peek() {
                    Some(n) if n == '"' || n == '$' || n == self.escape => {
                        self.pos += 1;
                        self.push_char(n);
                    }
                    _ => self.push_char(c),
                },
                Some(c) => self.push_char(c),
            }
        }
    }

    fn name(&mut self) -> String {
        let mut n = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                n.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        n
    }

    /// After a `$`: the expansion's value.
    fn dollar(&mut self) -> Result<String, ExpandError> {
        if self.depth >= MAX_NESTING {
            return Err(ExpandError::TooDeep);
        }
        self.depth += 1;
        let v = self.dollar_inner();
        self.depth -= 1;
        let v = v?;
        self.grow(v.len())?;
        Ok(v)
    }

    fn dollar_inner(&mut self) -> Result<String, ExpandError> {
        if self.peek() != Some('{') {
            let n = self.name();
            if n.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.vars.get(&n).cloned().unwrap_or_default());
        }
        self.pos += 1;
        let n = self.name();
        if n.is_empty() {
            return Err(ExpandError::Unclosed(self.original.to_string()));
        }
        let value = self.vars.get(&n);
        match self.next() {
            Some('}') => Ok(value.cloned().unwrap_or_default()),
            Some(':') => {
                let m = self
                    .next()
                    .ok_or_else(|| ExpandError::Unclosed(self.original.to_string()))?;
                let w = self.modifier_word()?;
                let set = value.is_some_and(|v| !v.is_empty());
                self.apply(&n, m, value, set, w)
            }
            Some(m @ ('-' | '+' | '?')) => {
                let w = self.modifier_word()?;
                self.apply(&n, m, value, value.is_some(), w)
            }
            Some(m @ ('#' | '%')) => {
                let longest = self.peek() == Some(m);
                if longest {
                    self.pos += 1;
                }
                let pat = self.modifier_word()?;
                let v = value.cloned().unwrap_or_default();
                if v.len() > MAX_TRIMMED && crate::context::glob::has_wildcards(&pat) {
                    return Err(ExpandError::TooLong);
                }
                Ok(trim_pattern(&v, &pat, m == '#', longest))
            }
            Some(m) => Err(ExpandError::Modifier {
                modifier: m,
                word: self.original.to_string(),
            }),
            None => Err(ExpandError::Unclosed(self.original.to_string())),
        }
    }

    fn apply(&self, name: &str, m: char, value: Option<&String>, set: bool, w: String) -> Result<String, ExpandError> {
        let v = value.cloned().unwrap_or_default();
        match m {
            '-' => Ok(if set { v } else { w }),
            '+' => Ok(if set { w } else { String::new() }),
            '?' if set => Ok(v),
            '?' => Err(ExpandError::Required {
                name: name.to_string(),
                message: if w.is_empty() {
                    "is not allowed to be unset".into()
                } else {
                    w
                },
            }),
            other => Err(ExpandError::Modifier {
                modifier: other,
                word: self.original.to_string(),
            }),
        }
    }

    /// The word of a `${x<op>word}` up to its closing brace, itself expanded.
    fn modifier_word(&mut self) -> Result<String, ExpandError> {
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err(ExpandError::Unclosed(self.original.to_string())),
                Some('}') => return Ok(out),
                Some('$') => {
                    let v = self.dollar()?;
                    if out.len() + v.len() > MAX_EXPANDED {
                        return Err(ExpandError::TooLong);
                    }
                    out.push_str(&v);
                }
                Some('\'') => loop {
                    match self.next() {
                        None => return Err(ExpandError::Quote(self.original.to_string())),
                        Some('\'') => break,
                        Some(c) => out.push(c),
                    }
                },
                Some(c) if c == self.escape => {
                    if let Some(n) = self.next() {
                        out.push(n);
                    }
                }
                Some(c) => out.push(c),
            }
        }
    }
}

/// `${x#p}`, `${x##p}`, `${x%p}`, `${x%%p}` with `*` and `?` wildcards in `p`.
fn trim_pattern(v: &str, pat: &str, prefix: bool, longest: bool) -> String {
    let idx: Vec<usize> = v.char_indices().map(|(i, _)| i).chain([v.len()]).collect();
    let candidates: Box<dyn Iterator<Item = &usize>> = match (prefix, longest) {
        (true, false) => Box::new(idx.iter()),
        (true, true) => Box::new(idx.iter().rev()),
        (false, false) => Box::new(idx.iter().rev()),
        (false, true) => Box::new(idx.iter()),
    };
    for &i in candidates {
        let (part, keep) = if prefix { (&v[..i], &v[i..]) } else { (&v[i..], &v[..i]) };
        if crate::context::glob::matches(pat, part) {
            return keep.to_string();
        }
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        [("a", "1"), ("e", ""), ("sp", "x y"), ("p", "/usr/local/bin")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn buildkit_expansions() {
        let v = vars();
        let w = |s: &str| word(s, &v, '\\').unwrap();
        assert_eq!(w("$a${a}"), "11");
        assert_eq!(w("${e:-d}|${e-d}|${u-d}|${u:-$a}"), "d||d|1");
        assert_eq!(w("${a:+w}|${e:+w}|${e+w}|${u+w}"), "w||w|");
        assert_eq!(w("'$a' \"$a\" \\$a $ ${a}x"), "$a 1 $a $ 1x");
        assert_eq!(w("\"a\\\"b\\n\""), "a\"b\\n");
        assert_eq!(w("${p#*/}|${p##*/}|${p%/*}|${p%%/*}"), "usr/local/bin|bin|/usr/local|");
        assert!(matches!(
            word("${u:?must}", &v, '\\'),
            Err(ExpandError::Required { .. })
        ));
        assert!(word("${a", &v, '\\').is_err());
        assert!(word("'open", &v, '\\').is_err());
        assert_eq!(word("`$a", &v, '`').unwrap(), "$a");
    }

    #[test]
    fn hostile_nesting_and_growth_are_refused() {
        let mut v = vars();
        let deep = format!("{}x{}", "${u:-".repeat(10_000), "}".repeat(10_000));
        assert_eq!(word(&deep, &v, '\\'), Err(ExpandError::TooDeep));
        let ok = format!("{}x{}", "${u:-".repeat(MAX_NESTING - 1), "}".repeat(MAX_NESTING - 1));
        assert_eq!(word(&ok, &v, '\\').unwrap(), "x");
        // Doubling line after line (ENV b=$a$a, c=$b$b, ...) stops at the limit.
        v.insert("big".into(), "y".repeat(MAX_EXPANDED / 2 + 1));
        assert_eq!(word("$big$big", &v, '\\'), Err(ExpandError::TooLong));
        assert_eq!(word("${u:-$big$big}", &v, '\\'), Err(ExpandError::TooLong));
        assert_eq!(words("$big", &v, '\\').unwrap().len(), 1);
    }

    #[test]
    fn words_split_unquoted_expansions() {
        let v = vars();
        assert_eq!(words("a $sp \"$sp\" ''", &v, '\\').unwrap(), ["a", "x", "y", "x y", ""]);
        assert_eq!(
            split_raw("k=v \"q k\"='a b' x=\"y \\\" z\"", '\\').unwrap(),
            ["k=v", "\"q k\"='a b'", "x=\"y \\\" z\""]
        );
    }
}
