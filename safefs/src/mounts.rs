//! What is mounted below a directory (from `/proc/self/mountinfo`), and taking it
//! away, so that a directory is never removed through a mount a crashed writer left
//! in it: a held bind of a build context would otherwise lose the user's files.

use std::io;
use std::path::{Path, PathBuf};

/// `\040`-style escapes of mountinfo's fields.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let d = |k: usize| u32::from(b[i + k] - b'0');
            out.push((d(1) * 64 + d(2) * 8 + d(3)) as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points at or below `dir` in `mountinfo`'s text, deepest first.
pub fn points_below_in(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

/// Detaches every mount at or below `dir`; true when none is left. Passes again while
/// some remain: mounts stacked on one point (as propagation makes them) go one a pass.
pub fn detach_below(dir: &Path) -> io::Result<bool> {
    for _ in 0..16 {
        let info = std::fs::read_to_string("/proc/self/mountinfo")?;
        let points = points_below_in(&info, dir);
        if points.is_empty() {
            return Ok(true);
        }
        for p in &points {
            // What will not go is found again, and said by the caller.
            let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(points_below_in(&info, dir).is_empty())
}

/// Removes `dir` and all in it, after detaching what is mounted below it; left in
/// place (and said) when a mount would not go.
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    if !detach_below(dir)? {
        return Err(io::Error::other(format!(
            "{}: something is still mounted below it; left in place",
            dir.display()
        )));
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_below_a_directory_deepest_first() {
        let info = "22 1 0:21 / / rw - ext4 /dev/vda rw\n\
                    30 22 0:40 / /s/tmp/run-1-2/merged rw - overlay overlay rw\n\
                    31 22 0:41 / /s/tmp/bind-1-3/src rw - ext4 /dev/vda rw\n\
                    32 31 0:42 / /s/tmp/bind-1-3/src/sub rw - tmpfs t rw\n\
                    33 22 0:43 / /s/tmp/with\\040space rw - tmpfs t rw\n\
                    34 22 0:44 / /s/tmpx rw - tmpfs t rw\n";
        let got = points_below_in(info, Path::new("/s/tmp"));
        assert_eq!(got[0], Path::new("/s/tmp/bind-1-3/src/sub"));
        assert!(got.contains(&PathBuf::from("/s/tmp/with space")));
        assert!(
            !got.contains(&PathBuf::from("/s/tmpx")),
            "a sibling with the same prefix"
        );
        assert_eq!(got.len(), 4);
        assert!(points_below_in(info, Path::new("/elsewhere")).is_empty());
    }
}
