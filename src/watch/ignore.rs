//! Which changed paths a watch rule cares about: `.dockerignore` syntax for `ignore`
//! and `include` patterns and for the build context's `.dockerignore`, and the
//! temporary files editors write beside the files they save.
//!
//! The patterns follow Docker's rules (moby's patternmatcher), which no crate
//! implements: one pattern per line, `#` comments, `!` to re-include; a pattern is
//! anchored at the rule's path (`*.log` is only the top directory's, `**/*.log` any);
//! `*` and `?` stop at `/`, `**` crosses any number of directories; a pattern that
//! matches a directory matches everything under it; the last matching pattern wins.
//! Each glob is compiled by `globset`; the anchoring, parents and ordering are here.

use globset::GlobMatcher;
use std::path::{Component, Path};

#[derive(Debug, Clone)]
struct Pattern {
    glob: GlobMatcher,
    negated: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Patterns {
    list: Vec<Pattern>,
}

impl Patterns {
    /// Compiles patterns (lines of a `.dockerignore`, or a rule's `ignore` list).
    pub fn new<S: AsRef<str>>(lines: &[S]) -> Result<Patterns, String> {
        let mut list = Vec::new();
        for line in lines {
            let line = line.as_ref().trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negated, pat) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let pat = clean(pat);
            if pat.is_empty() {
                continue;
            }
            let glob = globset::GlobBuilder::new(&pat)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("invalid pattern {line:?}: {e}"))?;
            list.push(Pattern {
                glob: glob.compile_matcher(),
                negated,
            });
        }
        Ok(Patterns { list })
    }

    /// A `.dockerignore` file's patterns (none when there is no such file).
    pub fn from_file(path: &Path) -> Result<Patterns, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                Patterns::new(&lines).map_err(|e| format!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Patterns::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether `rel` (relative to the patterns' base) is matched: by the last pattern
    /// that matches it or one of its parent directories.
    pub fn matches(&self, rel: &Path) -> bool {
        let parts: Vec<String> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        if parts.is_empty() {
            return false;
        }
        let mut matched = false;
        for p in &self.list {
            // The path itself, or any of its parents.
            let hit = (1..=parts.len()).any(|n| p.glob.is_match(parts[..n].join("/")));
            if hit {
                matched = !p.negated;
            }
        }
        matched
    }

    /// Whether a directory can be left unwatched: it is matched, and no `!` pattern
    /// could bring back something under it.
    pub fn excludes_tree(&self, rel: &Path) -> bool {
        self.matches(rel) && !self.list.iter().any(|p| p.negated)
    }
}

/// A pattern as Docker cleans it: no leading `/` or `./`, no `.` components, no
/// trailing `/`.
fn clean(p: &str) -> String {
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
    parts.join("/")
}

/// The files editors write while saving (swap, backup, lock and atomic-save files):
/// never synced, never a reason to restart.
pub fn is_editor_temp(path: &Path) -> bool {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy()) else {
        return false;
    };
    let name = name.as_ref();
    name.ends_with('~')
        // emacs: lock files and auto-saves
        || name.starts_with(".#")
        || (name.len() > 2 && name.starts_with('#') && name.ends_with('#'))
        // vim: the probe file it writes to test a directory, and swap files
        || name == "4913"
        || (name.starts_with('.')
            && [".swp", ".swx", ".swo", ".swn", ".kate-swp"].iter().any(|s| name.ends_with(s)))
        // JetBrains IDEs' safe write
        || name.ends_with("___jb_tmp___")
        || name.ends_with("___jb_old___")
        // the Go tool's umask probe
        || name.ends_with("-go-tmp-umask")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pats: &[&str], path: &str) -> bool {
        Patterns::new(pats).unwrap().matches(Path::new(path))
    }

    #[test]
    fn dockerignore_rules() {
        // Anchored at the base: *.log is only the top directory's.
        assert!(m(&["*.log"], "a.log"));
        assert!(!m(&["*.log"], "sub/a.log"));
        assert!(m(&["**/*.log"], "sub/deep/a.log"));
        assert!(m(&["**/*.log"], "a.log"));
        // A directory's pattern covers what is under it.
        assert!(m(&["node_modules"], "node_modules/x/y.js"));
        assert!(m(&["/build/"], "build/out.o"));
        assert!(!m(&["node_modules"], "src/node_modules_x"));
        // ? is one character, not a separator.
        assert!(m(&["file?.txt"], "file1.txt"));
        assert!(!m(&["file?.txt"], "file12.txt"));
        assert!(!m(&["a?b"], "a/b"));
        // * stops at /.
        assert!(!m(&["src/*.js"], "src/x/y.js"));
        assert!(m(&["src/**"], "src/x/y.js"));
        // The last matching pattern wins; ! brings a path back.
        assert!(!m(&["*.md", "!README.md"], "README.md"));
        assert!(m(&["*.md", "!README.md"], "CHANGES.md"));
        assert!(m(&["!README.md", "*.md"], "README.md"));
        // Comments and blanks are not patterns.
        assert!(!m(&["# *.txt", "", "  "], "a.txt"));
    }

    #[test]
    fn trees_are_skipped_only_when_nothing_can_come_back() {
        let p = Patterns::new(&["node_modules", ".git"]).unwrap();
        assert!(p.excludes_tree(Path::new("node_modules")));
        assert!(!p.excludes_tree(Path::new("src")));
        let p = Patterns::new(&["vendor", "!vendor/keep.txt"]).unwrap();
        assert!(!p.excludes_tree(Path::new("vendor")));
        assert!(!p.matches(Path::new("vendor/keep.txt")));
    }

    #[test]
    fn a_bad_pattern_is_an_error_naming_it() {
        let e = Patterns::new(&["[z-a"]).unwrap_err();
        assert!(e.contains("[z-a"), "{e}");
    }

    #[test]
    fn editor_temporaries() {
        for t in [
            "a.js~",
            ".#a.js",
            "#a.js#",
            "4913",
            ".a.js.swp",
            ".a.js.swx",
            ".x.kate-swp",
            "a.js___jb_tmp___",
            "a.js___jb_old___",
            "123-go-tmp-umask",
        ] {
            assert!(is_editor_temp(Path::new(t)), "{t}");
        }
        for f in ["a.js", "swp", "notes.swp", "#", "index.html"] {
            assert!(!is_editor_temp(Path::new(f)), "{f}");
        }
    }
}
