//! The SSH agent a `RUN --mount=type=ssh` step is given, as BuildKit gives it: the
//! client's agent socket (`build.ssh`, `build --ssh`) is never shown to the step. A
//! socket of the engine's own is, owned and moded as the mount asks, for as long as
//! the step runs, and each connection to it is relayed to the agent. Key files (which
//! BuildKit loads into an agent of its own) are refused by name.
//!
//! Written by hand: a byte relay between two Unix sockets is all there is to it.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// An agent's socket, held by an O_PATH descriptor from the moment it was checked:
/// every connection goes to that very socket, whatever its path is made to name later.
pub type Agent = Arc<OwnedFd>;

/// The agents of a build by id, from the service's `build.ssh` (the CLI has put its
/// `SSH_AUTH_SOCK` in for `default`, and its `--ssh` flags over them). A relative path
/// is the project directory's.
pub fn agents(
    ssh: Option<&BTreeMap<String, Option<String>>>,
    working_dir: &Path,
) -> Result<BTreeMap<String, Agent>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = BTreeMap::new();
    for (id, path) in ssh.into_iter().flatten() {
        let Some(path) = path.as_deref().filter(|p| !p.is_empty()) else {
            return Err(format!(
                "{id}: no agent socket given, and SSH_AUTH_SOCK is not set where rcompose ran"
            ));
        };
        let path = working_dir.join(path);
        let held = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(&path)
            .map_err(|e| format!("{id}={}: {e}", path.display()))?;
        let kind = nix::sys::stat::fstat(&held)
            .map(|st| st.st_mode & libc::S_IFMT)
            .map_err(|e| format!("{id}={}: {e}", path.display()))?;
        match kind {
            libc::S_IFSOCK => {}
            libc::S_IFREG => {
                return Err(format!(
                    "{id}={}: key files are not implemented yet (give an agent's socket, as default=$SSH_AUTH_SOCK)",
                    path.display()
                ))
            }
            _ => return Err(format!("{id}={}: not an agent's socket", path.display())),
        }
        out.insert(id.clone(), Arc::new(OwnedFd::from(held)));
    }
    Ok(out)
}

/// One `--mount=type=ssh`: which agent, and the socket the step sees.
#[derive(Debug, Clone)]
pub struct SshMount {
    pub agent: Agent,
    pub target: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl SshMount {
    /// The mount of options `o` (its `target` already cleaned), the `n`th of its step;
    /// `None` when its agent was not forwarded and it is not `required`.
    pub fn new(
        o: &BTreeMap<String, String>,
        target: Option<String>,
        n: usize,
        agents: &BTreeMap<String, Agent>,
    ) -> Result<Option<SshMount>, String> {
        let id = o.get("id").cloned().unwrap_or_else(|| "default".into());
        let Some(agent) = agents.get(&id) else {
            if o.get("required").is_some_and(|v| v != "false") {
                return Err(format!(
                    "no SSH agent {id:?} forwarded from the client (build.ssh or build --ssh gives one)"
                ));
            }
            return Ok(None);
        };
        let num = |k: &str, radix: u32, default: u32| -> Result<u32, String> {
            o.get(k).map_or(Ok(default), |v| {
                u32::from_str_radix(v, radix).map_err(|_| format!("{k}={v}: not a number"))
            })
        };
        Ok(Some(SshMount {
            agent: agent.clone(),
            target: target.unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{n}")),
            mode: num("mode", 8, 0o600)? & 0o777,
            uid: num("uid", 10, 0)?,
            gid: num("gid", 10, 0)?,
        }))
    }
}

/// The most connections a step's mount may hold open to its agent at once, and the
/// most the engine relays in all (counted in threads, two a connection): each takes
/// two threads of the engine's, and steps that open them without end must not
/// exhaust it.
const MAX_CONNECTIONS: usize = 32;
const MAX_RELAYED: usize = 512;

/// The most ssh mounts one `RUN` may have.
pub const MAX_MOUNTS: usize = 8;

/// Relay threads running now, engine-wide.
static RELAYED: AtomicUsize = AtomicUsize::new(0);

/// The connections being relayed (the step's end and the agent's of each), shut when
/// the step ends so that no relay thread outlives it.
type Open = Arc<std::sync::Mutex<Vec<[UnixStream; 2]>>>;

/// A socket relayed to an agent while the value lives.
pub struct Relay {
    stop: Arc<AtomicBool>,
    open: Open,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    /// Listens at `socket` (made with the mount's owner and mode) for the step.
    pub fn start(socket: &Path, m: &SshMount) -> io::Result<Relay> {
        use std::os::unix::fs::PermissionsExt;
        let listener = UnixListener::bind(socket)?;
        std::os::unix::fs::chown(socket, Some(m.uid), Some(m.gid))?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(m.mode))?;
        let stop = Arc::new(AtomicBool::new(false));
        let open = Open::default();
        let (flag, agent, conns) = (stop.clone(), m.agent.clone(), open.clone());
        let thread = std::thread::Builder::new()
            .name("build-ssh".into())
            .spawn(move || serve(&listener, &agent, &flag, &conns))?;
        Ok(Relay {
            stop,
            open,
            thread: Some(thread),
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for s in self.open.lock().unwrap_or_else(|p| p.into_inner()).drain(..).flatten() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Accepts until stopped (looked at every 100 ms); each connection is relayed on
/// threads of its own, which end when either side closes or the step ends.
fn serve(listener: &UnixListener, agent: &Agent, stop: &AtomicBool, open: &Open) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("build: the SSH agent relay: {e}");
                return;
            }
        }
        let Ok((step, _)) = listener.accept() else { continue };
        {
            let mut held = open.lock().unwrap_or_else(|p| p.into_inner());
            // Those whose relay ended are let go; past the limits the step's new
            // connection is closed at once.
            held.retain(|[a, b]| !(closed(a) && closed(b)));
            if held.len() >= MAX_CONNECTIONS || RELAYED.load(Ordering::Relaxed) >= MAX_RELAYED {
                continue;
            }
        }
        match connect(agent) {
            Ok(to) => {
                if let (Ok(a), Ok(b)) = (step.try_clone(), to.try_clone()) {
                    open.lock().unwrap_or_else(|p| p.into_inner()).push([a, b]);
                    relay(step, to);
                }
            }
            // The step sees its connection closed, as with an agent that went away.
            Err(e) => tracing::warn!("build: the SSH agent: {e}"),
        }
    }
}

/// A connection to the agent's socket, never waiting: an agent whose backlog is full
/// is one that went away, so no relay thread hangs on it.
fn connect(agent: &Agent) -> io::Result<UnixStream> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let s = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    let addr = UnixAddr::new(format!("/proc/self/fd/{}", agent.as_raw_fd()).as_str())?;
    nix::sys::socket::connect(s.as_raw_fd(), &addr)?;
    let stream = UnixStream::from(s);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Whether both directions of `s` have been shut (its relay is over).
fn closed(s: &UnixStream) -> bool {
    let mut fds = [nix::poll::PollFd::new(s.as_fd(), nix::poll::PollFlags::empty())];
    matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLHUP))
}

fn relay(a: UnixStream, b: UnixStream) {
    let pipe = |mut from: UnixStream, mut to: UnixStream| {
        let _ = io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
        RELAYED.fetch_sub(1, Ordering::Relaxed);
    };
    let (a2, b2) = match (a.try_clone(), b.try_clone()) {
        (Ok(a2), Ok(b2)) => (a2, b2),
        _ => return,
    };
    for (from, to) in [(a, b), (b2, a2)] {
        RELAYED.fetch_add(1, Ordering::Relaxed);
        if std::thread::Builder::new().spawn(move || pipe(from, to)).is_err() {
            RELAYED.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &str) -> BTreeMap<String, String> {
        s.split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn mounts_take_buildkit_defaults_and_skip_what_was_not_forwarded() {
        let held: OwnedFd = std::fs::File::open("/").unwrap().into();
        let agents = BTreeMap::from([("default".to_string(), Arc::new(held))]);
        let m = SshMount::new(&opts("type=ssh"), None, 1, &agents).unwrap().unwrap();
        assert_eq!(
            (m.target.as_str(), m.mode, m.uid),
            ("/run/buildkit/ssh_agent.1", 0o600, 0)
        );
        let m = SshMount::new(&opts("type=ssh,mode=0644,uid=7"), Some("/s".into()), 0, &agents)
            .unwrap()
            .unwrap();
        assert_eq!((m.target.as_str(), m.mode, m.uid), ("/s", 0o644, 7));
        assert!(SshMount::new(&opts("id=other"), None, 0, &agents).unwrap().is_none());
        let e = SshMount::new(&opts("id=other,required=true"), None, 0, &agents).unwrap_err();
        assert!(e.contains("\"other\""), "{e}");
        assert!(SshMount::new(&opts("mode=9x"), None, 0, &agents).is_err());
    }

    #[test]
    fn agents_are_sockets_and_key_files_are_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        let _l = UnixListener::bind(d.path().join("agent.sock")).unwrap();
        std::fs::write(d.path().join("id_ed25519"), "key").unwrap();
        let one = |id: &str, p: Option<&str>| {
            agents(
                Some(&BTreeMap::from([(id.to_string(), p.map(str::to_string))])),
                d.path(),
            )
        };
        assert!(one("default", Some("agent.sock")).unwrap().contains_key("default"));
        assert!(one("k", Some("id_ed25519"))
            .unwrap_err()
            .contains("key files are not implemented yet"));
        assert!(one("default", None).unwrap_err().contains("SSH_AUTH_SOCK"));
        assert!(one("x", Some("missing")).is_err());
    }
}
