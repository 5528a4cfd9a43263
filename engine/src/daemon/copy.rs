//! `cp` with a running container: the tar streams of [`safefs::archive`] read from and
//! written into the container's root as its first process sees it, each copy on a
//! thread of its own (the walk is blocking file work).

use runtime::Container;
use safefs::archive::{self, Unpack};
use safefs::inroot;
use std::io::{Read, Write};
use std::os::unix::io::OwnedFd;
use std::path::Path;

/// Why a copy with a container did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the container's root: {0}")]
    Root(std::io::Error),
    #[error("the container's process has exited")]
    Exited,
    #[error(transparent)]
    Archive(#[from] safefs::archive::ArchiveError),
    /// Writing the stream out.
    #[error("{0}")]
    Stream(#[from] std::io::Error),
}

/// The root of the container `c`, as its first process sees it. Checked after it is
/// opened to be that process's still: a workload that has just exited may have left
/// its PID to another process (the host's root, then).
fn container_root(c: &Container) -> Result<OwnedFd, CopyError> {
    let root = std::fs::File::open(format!("/proc/{}/root", c.pid))
        .map(OwnedFd::from)
        .map_err(CopyError::Root)?;
    if runtime::start_time(c.pid) != Some(c.start_time) {
        return Err(CopyError::Exited);
    }
    Ok(root)
}

/// Unpacks a tar stream into the container `c`, at `dest`.
pub fn write_in(
    c: Container,
    dest: String,
    how: Unpack,
    src: impl Read + Send + 'static,
) -> std::thread::JoinHandle<Result<(), CopyError>> {
    std::thread::spawn(move || {
        let root = container_root(&c)?;
        Ok(archive::unpack_at(src, inroot::borrow(&root), Path::new(&dest), how)?)
    })
}

/// Writes `path` of the container `c` (a file, a link or a whole tree) as a tar stream
/// to `out`. `ready` says first whether it can be copied (with the reason when not).
pub fn read_out(
    c: Container,
    container: String,
    path: String,
    follow: bool,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
    out: impl Write + Send + 'static,
) -> std::thread::JoinHandle<Result<(), CopyError>> {
    std::thread::spawn(move || {
        let fd = container_root(&c).and_then(|root| Ok(archive::open_source(&root, &path, follow, &container)?));
        let fd = match fd {
            Ok(fd) => fd,
            Err(e) => {
                // Why, for the answer's status line (the stream has not begun).
                let _ = ready.send(Err(e.to_string()));
                return Err(e);
            }
        };
        let _ = ready.send(Ok(()));
        let res = archive::write_tar(fd, &path, out);
        if let Err(e) = &res {
            tracing::warn!("cp {container}:{path}: {e}");
        }
        Ok(res?)
    })
}
