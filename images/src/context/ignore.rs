//! `.dockerignore` as Docker's `patternmatcher` reads and applies it: one pattern a
//! line, `#` comments, patterns cleaned and taken relative to the context root, `**`
//! for any number of directories, `!` exceptions, the last matching pattern deciding.
//! Written by hand: the rules are Docker's own.

use super::glob;

#[derive(Debug, Clone, PartialEq)]
struct Pattern {
    /// Cleaned, split on `/`.
    parts: Vec<String>,
    exception: bool,
}

/// The patterns of one `.dockerignore` file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (exception, l) = match l.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, l),
            };
            let cleaned = clean(l);
            if cleaned.is_empty() {
                continue;
            }
            patterns.push(Pattern {
                parts: cleaned.split('/').map(str::to_string).collect(),
                exception,
            });
        }
        Ignore { patterns }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `rel` (a path relative to the context, `/`-separated) is excluded. A
    /// pattern matching a parent directory excludes what is inside it, as Docker's
    /// matcher does; the last pattern that matches decides.
    pub fn excludes(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
        let mut excluded = false;
        for p in &self.patterns {
            if excluded != p.exception {
                // Only a pattern that could change the answer needs to be tried.
                continue;
            }
            let hit = (1..=parts.len()).any(|n| matches_parts(&p.parts, &parts[..n]));
            if hit {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// Whether some exception might re-include something under the excluded directory
    /// `rel`: then the walk must go in.
    pub fn may_include_under(&self, rel: &str) -> bool {
        let depth = rel.split('/').filter(|p| !p.is_empty()).count();
        let dir: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        self.patterns.iter().any(|p| {
            p.exception
                && (p.parts.iter().any(|x| x == "**")
                    || (p.parts.len() > depth && matches_parts(&p.parts[..depth], &dir)))
        })
    }
}

/// `filepath.Clean`, with the leading `/` dropped (patterns are relative to the root).
pub fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            x => out.push(x),
        }
    }
    out.join("/")
}

/// Whether the pattern's parts match the path's, `**` taking any number of them. A
/// table of which path prefixes each pattern prefix reaches, so `**/**/**/...` costs
/// parts times components, never the exponential count of ways to split.
fn matches_parts(pat: &[String], path: &[&str]) -> bool {
    let n = path.len();
    let mut reach = vec![false; n + 1];
    reach[0] = true;
    for p in pat {
        let mut next = vec![false; n + 1];
        if p == "**" {
            let mut any = false;
            for j in 0..=n {
                any |= reach[j];
                next[j] = any;
            }
        } else {
            for j in 0..n {
                if reach[j] && glob::path_matches(p, path[j]) {
                    next[j + 1] = true;
                }
            }
        }
        if !next.iter().any(|r| *r) {
            return false;
        }
        reach = next;
    }
    reach[n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_rules() {
        let i = Ignore::parse("# comment\n*.log\n!keep.log\n/build\n**/tmp\nsecret*\n!secrets/public\n  \n");
        assert!(i.excludes("a.log") && !i.excludes("keep.log") && !i.excludes("d/a.log"));
        assert!(i.excludes("build") && i.excludes("build/x/y") && !i.excludes("src/build"));
        assert!(i.excludes("tmp") && i.excludes("a/b/tmp") && i.excludes("a/tmp/f"));
        assert!(i.excludes("secrets/private") && !i.excludes("secrets/public"));
        assert!(i.may_include_under("secrets") && !i.may_include_under("build"));
        // The last match wins.
        let j = Ignore::parse("!a\na\n");
        assert!(j.excludes("a"));
        let k = Ignore::parse("**\n!src/**\n!Dockerfile");
        assert!(k.excludes("x") && !k.excludes("src/a/b") && !k.excludes("Dockerfile"));
        assert_eq!(clean("/a/./b/../c/"), "a/c");
    }

    #[test]
    fn many_double_stars_cost_no_more_than_their_count() {
        let pat = format!("{}nomatch", "**/".repeat(40));
        let i = Ignore::parse(&pat);
        let deep = "d/".repeat(60) + "f";
        // Backtracking through every split would not end in the age of the universe.
        assert!(!i.excludes(&deep));
        assert!(Ignore::parse("**/a/**/b").excludes("x/a/y/z/b"));
        assert!(!Ignore::parse("a/**/b").excludes("b"));
        assert!(Ignore::parse("a/**").excludes("a/x/y"));
    }
}
