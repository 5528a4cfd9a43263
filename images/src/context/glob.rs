//! Wildcards: Go's `filepath.Match` (what `COPY` sources and `.dockerignore` patterns
//! use, where `*` and `?` stop at `/`) and the shell's patterns of `${x#p}`, where they
//! do not. Written by hand: a few lines, and the `glob` crate walks directories itself.

/// A shell pattern: `*`, `?`, `[...]`, `\` escapes; `/` is an ordinary character.
pub fn matches(pat: &str, s: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = s.chars().collect();
    m(&p, &t, None)
}

/// Go's `filepath.Match`: as [`matches`], with `*`, `?` and classes never matching `/`.
pub fn path_matches(pat: &str, s: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = s.chars().collect();
    m(&p, &t, Some('/'))
}

/// Whether a pattern has wildcards at all.
pub fn has_wildcards(pat: &str) -> bool {
    pat.contains(['*', '?', '['])
}

fn m(p: &[char], t: &[char], sep: Option<char>) -> bool {
    let (mut pi, mut ti) = (0, 0);
    // Backtracking point of the last `*`: (pattern after it, text position).
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi + 1, ti));
                    pi += 1;
                    continue;
                }
                '?' if Some(t[ti]) != sep => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((ok, next)) = class(p, pi, t[ti]) {
                        if ok && Some(t[ti]) != sep {
                            pi = next;
                            ti += 1;
                            continue;
                        }
                    }
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == t[ti] => {
                    pi += 2;
                    ti += 1;
                    continue;
                }
                c if c == t[ti] && c != '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        // Mismatch: let the last `*` take one more character (never a separator).
        match star {
            Some((sp, st)) if Some(t[st]) != sep => {
                star = Some((sp, st + 1));
                pi = sp;
                ti = st + 1;
            }
            _ => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A `[...]` class at `p[i]`: whether `c` is in it, and the index after it.
fn class(p: &[char], i: usize, c: char) -> Option<(bool, usize)> {
    let mut j = i + 1;
    let negate = matches!(p.get(j), Some('^') | Some('!'));
    if negate {
        j += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let lo = *p.get(j)?;
        if lo == ']' && !first {
            return Some((hit != negate, j + 1));
        }
        first = false;
        let lo = if lo == '\\' {
            j += 1;
            *p.get(j)?
        } else {
            lo
        };
        j += 1;
        if p.get(j) == Some(&'-') && p.get(j + 1).is_some_and(|&h| h != ']') {
            let hi = p[j + 1];
            j += 2;
            hit |= lo <= c && c <= hi;
        } else {
            hit |= lo == c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_filepath_match() {
        assert!(path_matches("*.txt", "a.txt"));
        assert!(!path_matches("*.txt", "d/a.txt"));
        assert!(path_matches("d/*", "d/a"));
        assert!(path_matches("a?c", "abc") && !path_matches("a?c", "a/c"));
        assert!(path_matches("[a-c]x", "bx") && !path_matches("[^a-c]x", "bx"));
        assert!(path_matches("\\*", "*") && !path_matches("\\*", "a"));
        assert!(matches("*/", "/usr/") && matches("*", "a/b"));
        assert!(!path_matches("a", "ab") && path_matches("a*b*c", "axxbyyc"));
    }
}
