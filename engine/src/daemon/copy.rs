//! `cp` with a running container: the tar streams of [`safefs::archive`] read from and
//! written into the container's root as its first process sees it, each copy on a
//! thread of its own (the walk is blocking file work).

use runtime::Container;
use safefs::archive::{self, Unpack};
use safefs::inroot;
use std::io::{Read, Write};
use std::os::unix::io::OwnedFd;
use std::path::Path;

/// The root of the container `c`, as its first process sees it. Checked after it is
/// opened to be that process's still: a workload that has just exited may have left
/// its PID to another process (the host's root, then).
fn container_root(c: &Container) -> Result<OwnedFd, String> {
    let root = std::fs::File::open(format!("/proc/{}/root", c.pid))
        .map(OwnedFd::from)
        .map_err(|e| format!("the container's root: {e}"))?;
    if runtime::start_time(c.pid) != Some(c.start_time) {
        return Err("the container's process has exited".into());
    }
    Ok(root)
}

/// Unpacks a tar stream into the container `c`, at `dest`.
pub fn write_in(
    c: Container,
    dest: String,
    how: Unpack,
    src: impl Read + Send + 'static,
) -> std::thread::JoinHandle<Result<(), String>> {
    std::thread::spawn(move || {
        let root = container_root(&c)?;
        archive::unpack_at(src, inroot::borrow(&root), Path::new(&dest), how)
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
) -> std::thread::JoinHandle<Result<(), String>> {
    std::thread::spawn(move || {
        let fd = container_root(&c).and_then(|root| archive::open_source(&root, &path, follow, &container));
        let fd = match fd {
            Ok(fd) => fd,
            Err(msg) => {
                let _ = ready.send(Err(msg.clone()));
                return Err(msg);
            }
        };
        let _ = ready.send(Ok(()));
        let res = archive::write_tar(fd, &path, out);
        if let Err(e) = &res {
            tracing::warn!("cp {container}:{path}: {e}");
        }
        res.map_err(|e| e.to_string())
    })
}
