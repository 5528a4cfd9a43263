//! A Dockerfile's text as instructions: parser directives, comments, line
//! continuations and heredocs, as BuildKit's frontend reads them (its `parser` package).
//! Written by hand: no crate parses Dockerfiles.

use super::DockerfileError;

/// The parser directives at the top of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Directives {
    /// `# syntax=`: recorded, never fetched (the built-in frontend is always used).
    pub syntax: Option<String>,
    pub escape: char,
    /// `# check=`: BuildKit's lint configuration; accepted.
    pub check: Option<String>,
}

/// A heredoc of an instruction (`<<EOF` ... `EOF`).
#[derive(Debug, Clone, PartialEq)]
pub struct Heredoc {
    pub name: String,
    /// The lines between the marker and the terminator, each with its newline.
    pub body: String,
    /// Unquoted delimiter: variables in the body are expanded.
    pub expand: bool,
}

/// One instruction as written: its keyword (upper case), the rest of its (joined)
/// line, and its heredocs.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw {
    /// 1-based line of the keyword.
    pub line: usize,
    pub keyword: String,
    pub rest: String,
    pub heredocs: Vec<Heredoc>,
}

/// Instructions whose lines may start heredocs.
const HEREDOC_KEYWORDS: &[&str] = &["RUN", "COPY", "ADD"];

/// Splits a Dockerfile into its directives and instructions.
pub fn lex(text: &str) -> Result<(Directives, Vec<Raw>), DockerfileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let (directives, mut i) = directives(&lines)?;
    let escape = directives.escape;
    let mut out = Vec::new();
    while i < lines.len() {
        let first = lines[i];
        if is_blank_or_comment(first) {
            i += 1;
            continue;
        }
        let line = i + 1;
        let (joined, next) = join_continued(&lines, i, escape);
        i = next;
        let trimmed = joined.trim_start();
        let (keyword, rest) = match trimmed.find(char::is_whitespace) {
            Some(n) => (&trimmed[..n], trimmed[n..].trim()),
            None => (trimmed, ""),
        };
        let keyword = keyword.to_ascii_uppercase();
        let mut heredocs = Vec::new();
        let inner = keyword_of_onbuild(&keyword, rest);
        if HEREDOC_KEYWORDS.contains(&inner.as_str()) {
            for (name, expand, strip_tabs) in markers(rest) {
                let (body, next) =
                    heredoc_body(&lines, i, &name, strip_tabs).ok_or_else(|| DockerfileError::Syntax {
                        line,
                        message: format!("unterminated heredoc {name:?}"),
                    })?;
                i = next;
                heredocs.push(Heredoc { name, body, expand });
            }
        }
        out.push(Raw {
            line,
            keyword,
            rest: rest.to_string(),
            heredocs,
        });
    }
    Ok((directives, out))
}

fn keyword_of_onbuild(keyword: &str, rest: &str) -> String {
    if keyword == "ONBUILD" {
        rest.split_whitespace().next().unwrap_or("").to_ascii_uppercase()
    } else {
        keyword.to_string()
    }
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// The directives, and the index of the first line after them. They are only looked
/// for before the first comment that is not one, blank line or instruction.
fn directives(lines: &[&str]) -> Result<(Directives, usize), DockerfileError> {
    let mut d = Directives {
        syntax: None,
        escape: '\\',
        check: None,
    };
    let mut seen: Vec<String> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some((name, value)) = directive(l) else {
            return Ok((d, i));
        };
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(DockerfileError::Syntax {
                line: i + 1,
                message: format!("only one {lower} parser directive can be used"),
            });
        }
        seen.push(lower.clone());
        match lower.as_str() {
            "syntax" => d.syntax = Some(value.to_string()),
            "check" => d.check = Some(value.to_string()),
            "escape" => {
                d.escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(DockerfileError::Syntax {
                            line: i + 1,
                            message: format!("invalid escape token '{other}' does not match ` or \\"),
                        })
                    }
                }
            }
            // Unknown directives are comments, and end the directives.
            _ => return Ok((d, i)),
        }
    }
    Ok((d, lines.len()))
}

/// `# name=value` with a name of letters and digits.
fn directive(line: &str) -> Option<(&str, &str)> {
    let body = line.trim_start().strip_prefix('#')?;
    let (name, value) = body.split_once('=')?;
    let name = name.trim();
    if name.is_empty()
        || !name.starts_with(|c: char| c.is_ascii_alphabetic())
        || !name.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return None;
    }
    Some((name, value.trim()))
}

/// The instruction starting at `lines[i]` with its continuation lines joined (the
/// escape character removed; comment and blank lines inside skipped), and the index of
/// the line after it.
fn join_continued(lines: &[&str], mut i: usize, escape: char) -> (String, usize) {
    let mut joined = String::new();
    loop {
        let l = lines[i];
        i += 1;
        match continued(l, escape) {
            Some(head) => {
                joined.push_str(head);
                while i < lines.len() && is_blank_or_comment(lines[i]) {
                    i += 1;
                }
                if i >= lines.len() {
                    return (joined, i);
                }
            }
            None => {
                joined.push_str(l);
                return (joined, i);
            }
        }
    }
}

/// The line without its trailing escape character (and blanks after it), if it ends
/// with one.
fn continued(line: &str, escape: char) -> Option<&str> {
    let t = line.trim_end_matches([' ', '\t']);
    t.strip_suffix(escape)
}

/// The heredoc markers of a line in order: (name, expand, strip leading tabs).
fn markers(rest: &str) -> Vec<(String, bool, bool)> {
    let b = rest.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 < b.len() + 1 {
        if b.get(i) == Some(&b'<') && b.get(i + 1) == Some(&b'<') && b.get(i + 2) != Some(&b'<') {
            let mut j = i + 2;
            let strip = b.get(j) == Some(&b'-');
            if strip {
                j += 1;
            }
            let quote = match b.get(j) {
                Some(q @ (b'"' | b'\'')) => {
                    j += 1;
                    Some(*q)
                }
                _ => None,
            };
            let start = j;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            let name = &rest[start..j];
            let closed = match quote {
                Some(q) if b.get(j) == Some(&q) => {
                    j += 1;
                    true
                }
                Some(_) => false,
                None => true,
            };
            if !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()) && closed {
                out.push((name.to_string(), quote.is_none(), strip));
                i = j;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// A heredoc's body from `lines[i]` to its terminator, and the line after it.
fn heredoc_body(lines: &[&str], mut i: usize, name: &str, strip_tabs: bool) -> Option<(String, usize)> {
    let mut body = String::new();
    while i < lines.len() {
        let l = if strip_tabs {
            lines[i].trim_start_matches('\t')
        } else {
            lines[i]
        };
        i += 1;
        if l == name {
            return Some((body, i));
        }
        body.push_str(l);
        body.push('\n');
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_comments_continuations_and_heredocs() {
        let text = "# syntax=docker/dockerfile:1\n# escape=`\n\n# a comment\nFROM busybox AS b\nRUN echo a `\n  # inside\n\n  b\nrun <<EOF cat <<-'TWO'\necho $x\nEOF\n\t\tliteral $y\n\tTWO\nCOPY <<EOT /x\nEOT\n";
        let (d, raws) = lex(text).unwrap();
        assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(d.escape, '`');
        assert_eq!(raws.len(), 4);
        assert_eq!(
            (raws[0].line, raws[0].keyword.as_str(), raws[0].rest.as_str()),
            (5, "FROM", "busybox AS b")
        );
        assert_eq!(raws[1].rest, "echo a   b");
        assert_eq!(raws[2].line, 10);
        assert_eq!(raws[2].keyword, "RUN");
        assert_eq!(
            raws[2].heredocs[0],
            Heredoc {
                name: "EOF".into(),
                body: "echo $x\n".into(),
                expand: true
            }
        );
        assert_eq!(
            raws[2].heredocs[1],
            Heredoc {
                name: "TWO".into(),
                body: "literal $y\n".into(),
                expand: false
            }
        );
        assert_eq!((raws[3].line, raws[3].heredocs[0].body.as_str()), (15, ""));
    }

    #[test]
    fn directives_end_at_the_first_other_line() {
        let (d, raws) = lex("FROM a\n# escape=`\nRUN x \\\n y").unwrap();
        assert_eq!(d.escape, '\\');
        assert_eq!(raws[1].rest, "x  y");
        assert!(lex("# escape=x\nFROM a").is_err());
        assert!(lex("# escape=`\n# escape=\\\nFROM a").is_err());
        let e = lex("FROM a\nRUN <<EOF\nnever ends\n").unwrap_err();
        assert_eq!(e.to_string(), "line 2: unterminated heredoc \"EOF\"");
    }
}
