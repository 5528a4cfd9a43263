//! Resolving a path inside a directory tree that may hold hostile symlinks, as
//! `openat2(RESOLVE_IN_ROOT)` does: symlinks are followed, but absolute targets and
//! `..` are taken relative to the root, so the result never leaves it.

use std::io;
use std::path::{Component, Path, PathBuf};

/// The real path of `rel` under `root`, every symlink resolved within `root`.
pub fn resolve_in_root(root: &Path, rel: &Path) -> io::Result<PathBuf> {
    let mut todo: Vec<PathBuf> = rel.components().filter_map(comp).rev().collect();
    let mut done = PathBuf::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c == Path::new("..") {
            done.pop();
            continue;
        }
        let candidate = root.join(&done).join(&c);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links at {}",
                        rel.display()
                    )));
                }
                let target = std::fs::read_link(&candidate)?;
                if target.is_absolute() {
                    done = PathBuf::new();
                }
                todo.extend(target.components().filter_map(comp).rev());
            }
            _ => done.push(c),
        }
    }
    Ok(root.join(done))
}

fn comp(c: Component<'_>) -> Option<PathBuf> {
    match c {
        Component::Normal(n) => Some(PathBuf::from(n)),
        Component::ParentDir => Some(PathBuf::from("..")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_stay_inside() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        symlink("/etc", r.join("abs")).unwrap();
        symlink("../../../../..", r.join("a/b/up")).unwrap();
        symlink("b", r.join("a/rel")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        assert_eq!(
            resolve_in_root(r, Path::new("abs/passwd")).unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(resolve_in_root(r, Path::new("a/b/up/x")).unwrap(), r.join("x"));
        assert_eq!(resolve_in_root(r, Path::new("a/rel/f")).unwrap(), r.join("a/b/f"));
        assert_eq!(resolve_in_root(r, Path::new("../../x")).unwrap(), r.join("x"));
        assert!(resolve_in_root(r, Path::new("loop")).is_err());
    }
}
