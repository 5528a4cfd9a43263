//! `cp`: a container's files as a tar stream ([`out`]), and a tar stream into a
//! container ([`into`]). Every path is resolved by the kernel inside the container's
//! root, opened through `/proc/<pid>/root` of its first process, with `openat2`
//! (`RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`): `..`, absolute links and the magic links
//! of `/proc` (`/proc/*/fd`, `/proc/*/root`, `/proc/*/cwd`) never lead to the host, and
//! whatever the container changes while a copy runs cannot redirect it (every file is
//! reached from the descriptor of its directory, never by a path again). The tar format
//! is the `tar` crate's; the walking and placing are by hand because the crate works on
//! paths.

pub mod into;
pub mod out;

pub use into::{unpack_at, Unpack};
pub use out::{open_source, write_tar};

use std::path::{Component, Path, PathBuf};

/// What can go wrong copying into or out of a root.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A file operation on the path shown.
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The tar stream itself.
    #[error("{0}")]
    Stream(std::io::Error),
    #[error("{}: a name with a NUL byte", .0.display())]
    Nul(PathBuf),
    #[error("no such directory: {}", .0.display())]
    NoSuchDirectory(PathBuf),
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{}: cannot overwrite a directory with a non-directory", .0.display())]
    OverwriteDirectory(PathBuf),
    #[error("{}: a link without a target", .0.display())]
    NoLinkTarget(PathBuf),
    #[error("{}: archive entries of this kind are not supported", .0.display())]
    UnsupportedEntry(PathBuf),
    #[error("refusing the archive entry {}", .0.display())]
    Refused(PathBuf),
    #[error("refusing the archive entry {}: it goes through a link", .0.display())]
    ThroughLink(PathBuf),
    #[error("refusing the archive entry {}: its link leaves the destination", .0.display())]
    LinkLeaves(PathBuf),
    #[error("{}: a link to nothing", .0.display())]
    LinkToNothing(PathBuf),
    /// Docker's words for a path that is not there.
    #[error("Could not find the file {path} in container {container}")]
    NotFound { path: String, container: String },
    #[error("cannot copy {path} from container {container}: it leads through a link that cannot be followed (too many links, or a /proc magic link)")]
    Loop { path: String, container: String },
    #[error("cannot copy {path} from container {container}: it is on a virtual filesystem ({kind}), whose files have no fixed content to archive")]
    Virtual {
        path: String,
        container: String,
        kind: &'static str,
    },
    #[error("cannot copy {path} from container {container}: {source}")]
    Source {
        path: String,
        container: String,
        source: std::io::Error,
    },
}

/// How deep a tree `cp` walks (and a deletion removes): each level holds descriptors
/// and a stack frame of the engine's.
pub const MAX_DEPTH: usize = crate::inroot::MAX_DEPTH;

/// The `.wh.` prefix of a whiteout entry.
pub const WHITEOUT: &str = ".wh.";

/// The name a copied item gets: the last component of its path (`.` for the root).
fn base_name(p: &Path) -> PathBuf {
    p.file_name().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

/// Where an entry of a copied item lands, relative to the destination directory when
/// `dest_is_dir`, else relative to the destination's parent with the item renamed to
/// `dest_name`, as `docker cp` does. `None` for an entry whose path is not plain (`..`,
/// absolute).
pub fn target(entry: &Path, dest_name: Option<&Path>) -> Option<PathBuf> {
    // `.` stands for the item itself when it is a root (`cp SERVICE:/ DIR`): kept here
    // as a part, so that renaming replaces it as it replaces a name.
    let parts: Vec<Option<&std::ffi::OsStr>> = entry
        .components()
        .map(|c| match c {
            Component::Normal(s) => Some(Some(s)),
            Component::CurDir => Some(None),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    match dest_name {
        None => Some(parts.iter().flatten().collect()),
        Some(name) => {
            let mut p = name.to_path_buf();
            p.extend(parts.iter().skip(1).flatten());
            Some(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_entries_land() {
        let renamed = Some(Path::new("dst"));
        assert_eq!(target(Path::new("app/x"), None), Some(PathBuf::from("app/x")));
        assert_eq!(target(Path::new("app/x"), renamed), Some(PathBuf::from("dst/x")));
        // The root of a container, copied out as `.`, renamed as a named item would be.
        assert_eq!(
            target(Path::new("./bin/sh"), renamed),
            Some(PathBuf::from("dst/bin/sh"))
        );
        assert_eq!(target(Path::new("."), renamed), Some(PathBuf::from("dst")));
        assert_eq!(target(Path::new("./bin/sh"), None), Some(PathBuf::from("bin/sh")));
        assert_eq!(target(Path::new("app"), renamed), Some(PathBuf::from("dst")));
        assert_eq!(target(Path::new("./app"), None), Some(PathBuf::from("app")));
        assert_eq!(target(Path::new("app/../../etc"), None), None);
        assert_eq!(target(Path::new("/etc/passwd"), None), None);
    }
}
