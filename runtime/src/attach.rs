//! Attaching to a container's main process. The container's init (PID 1, which owns the
//! workload's standard streams) serves a Unix socket, [`SOCKET`] in the container's
//! directory, in the spirit of conmon's attach socket: every client gets the output as
//! it is produced, as `api::frames` STDOUT/STDERR frames, and may send input (STDIN,
//! STDIN_EOF) and terminal sizes (RESIZE). Because the init serves it, attaching works
//! across engine restarts, and output reaches a client at once rather than line by line
//! as the log has it.
//!
//! Written by hand: the frames are the engine's own format, and the init is a
//! single-threaded poll loop that cannot host an async runtime.

use nix::poll::PollFlags;
use nix::sys::socket::{accept4, bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
use std::ffi::CString;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The socket's name in the container's directory.
pub const SOCKET: &str = "attach.sock";

// The frame kinds, as `api::frames` numbers them.
const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
const STDIN_EOF: u8 = 5;
const RESIZE: u8 = 6;

/// Output queued for one client beyond this means it does not keep up: it is dropped
/// rather than let it stall the container's output.
const MAX_QUEUED: usize = 4 << 20;
/// Output kept for the first client of a `run`.
const MAX_REPLAY: usize = 8 << 20;
/// A longer frame from a client is a broken peer.
const MAX_FRAME: usize = 1 << 20;
/// Input waiting for the workload beyond this stops reading from clients.
const MAX_PENDING: usize = 64 << 10;

/// A path that reaches `name` in the directory open as `dir`, whatever its length
/// (a socket's path must fit 108 bytes; the state root may be deep).
pub fn path_in(dir: RawFd, name: &str) -> String {
    format!("/proc/self/fd/{dir}/{name}")
}

/// The listening socket, bound afresh in the directory open as `dir`.
pub fn listen_in(dir: RawFd) -> nix::Result<OwnedFd> {
    unlink(dir);
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind(fd.as_raw_fd(), &UnixAddr::new(path_in(dir, SOCKET).as_str())?)?;
    listen(&fd, Backlog::new(8)?)?;
    Ok(fd)
}

pub fn unlink(dir: RawFd) {
    let name = CString::new(SOCKET).unwrap_or_default();
    // SAFETY: a valid C string; unlinkat does not keep it.
    unsafe { libc::unlinkat(dir, name.as_ptr(), 0) };
}

/// Applies a RESIZE frame's payload (rows and columns, big-endian `u16` each) to the
/// terminal whose master is `master`; any other payload is ignored.
pub fn resize(master: RawFd, payload: &[u8]) {
    let [r0, r1, c0, c1] = payload else { return };
    let ws = libc::winsize {
        ws_row: u16::from_be_bytes([*r0, *r1]),
        ws_col: u16::from_be_bytes([*c0, *c1]),
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer.
    unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
}

pub fn frame(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(5 + data.len());
    f.push(kind);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}

struct Client {
    fd: OwnedFd,
    out: Vec<u8>,
    input: Vec<u8>,
    dead: bool,
}

/// How the workload's input is handled.
#[derive(Debug, Clone, Copy, Default)]
pub struct Opts {
    /// `stdin_open`: clients' input is taken.
    pub input: bool,
    pub tty: bool,
    /// `run -i`: the input ends with the client's.
    pub stdin_once: bool,
    /// `run` attached: output is kept for the first client.
    pub replay: bool,
}

/// What a descriptor in the poll set stands for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slot {
    Listener,
    Stdin,
    Client(usize),
}

/// The init's side of attaching.
pub struct Attach {
    dir: RawFd,
    listener: Option<OwnedFd>,
    clients: Vec<Client>,
    /// The workload's input: a pipe's write end, or the terminal's master.
    stdin: Option<OwnedFd>,
    /// Whether clients' input is taken (`stdin_open`); a terminal's resizes always are.
    input: bool,
    pending: Vec<u8>,
    /// Close `stdin` once `pending` is written (a pipe whose input ended).
    closing: bool,
    tty: bool,
    stdin_once: bool,
    /// Output kept until the first client comes (`run`), or `None`.
    replay: Option<Vec<u8>>,
}

fn errno_again(e: nix::errno::Errno) -> bool {
    matches!(e, nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR)
}

fn set_nonblocking(fd: &OwnedFd) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFL) {
        let _ = fcntl(
            fd,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        );
    }
}

impl Attach {
    /// `stdin` is the workload's input, a pipe or (`tty`) a terminal's master, which
    /// also takes the resizes; clients' input goes there only with `input`.
    pub fn new(dir: RawFd, listener: Option<OwnedFd>, stdin: Option<OwnedFd>, opts: Opts) -> Attach {
        if let Some(fd) = &stdin {
            set_nonblocking(fd);
        }
        Attach {
            dir,
            listener,
            clients: Vec::new(),
            stdin,
            input: opts.input,
            pending: Vec::new(),
            closing: false,
            tty: opts.tty,
            stdin_once: opts.stdin_once,
            replay: opts.replay.then(Vec::new),
        }
    }

    /// The descriptors to poll, with what to wait for.
    pub fn poll_set(&self) -> Vec<(RawFd, PollFlags, Slot)> {
        let mut set = Vec::new();
        if let Some(l) = &self.listener {
            set.push((l.as_raw_fd(), PollFlags::POLLIN, Slot::Listener));
        }
        if let Some(s) = &self.stdin {
            if !self.pending.is_empty() {
                set.push((s.as_raw_fd(), PollFlags::POLLOUT, Slot::Stdin));
            }
        }
        for (i, c) in self.clients.iter().enumerate() {
            let mut want = PollFlags::empty();
            if self.pending.len() < MAX_PENDING {
                want |= PollFlags::POLLIN;
            }
            if !c.out.is_empty() {
                want |= PollFlags::POLLOUT;
            }
            set.push((c.fd.as_raw_fd(), want, Slot::Client(i)));
        }
        set
    }

    /// Handles what poll reported for `slot`. Clients that went away are removed by
    /// [`Attach::reap`], after the whole poll set was handled.
    pub fn ready(&mut self, slot: Slot, revents: PollFlags) {
        match slot {
            Slot::Listener => self.accept(),
            Slot::Stdin => self.write_stdin(),
            Slot::Client(i) => {
                if revents.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                    self.read_client(i);
                }
                if revents.contains(PollFlags::POLLOUT) {
                    self.write_client(i);
                }
            }
        }
    }

    pub fn reap(&mut self) {
        let before = self.clients.len();
        self.clients.retain(|c| !c.dead);
        // `run -i`: the client's going ends the input, as Docker's StdinOnce does.
        if self.clients.len() < before && self.input && self.stdin_once && !self.tty {
            self.closing = true;
        }
        if self.closing && self.pending.is_empty() {
            self.stdin = None;
        }
    }

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        loop {
            match accept4(l.as_raw_fd(), SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC) {
                Ok(fd) => {
                    // SAFETY: accept4 returned a fresh descriptor owned by nobody else.
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    let out = self.replay.take().unwrap_or_default();
                    self.clients.push(Client {
                        fd,
                        out,
                        input: Vec::new(),
                        dead: false,
                    });
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            }
        }
    }

    fn read_client(&mut self, i: usize) {
        let mut buf = [0u8; 16 * 1024];
        let c = &mut self.clients[i];
        match nix::unistd::read(&c.fd, &mut buf) {
            Ok(0) => c.dead = true,
            Ok(n) => c.input.extend_from_slice(&buf[..n]),
            Err(e) if errno_again(e) => {}
            Err(_) => c.dead = true,
        }
        while self.clients[i].input.len() >= 5 {
            let input = &self.clients[i].input;
            let len = u32::from_be_bytes([input[1], input[2], input[3], input[4]]) as usize;
            if len > MAX_FRAME {
                self.clients[i].dead = true;
                return;
            }
            if input.len() < 5 + len {
                break;
            }
            let kind = input[0];
            let data: Vec<u8> = input[5..5 + len].to_vec();
            self.clients[i].input.drain(..5 + len);
            self.command(kind, &data);
        }
    }

    fn command(&mut self, kind: u8, data: &[u8]) {
        match kind {
            STDIN if self.input && self.stdin.is_some() && !self.closing => self.pending.extend_from_slice(data),
            // A terminal ends input with ^D; a pipe by closing. Without `stdin_once`, an
            // attached client's input ending leaves the container's open, as Docker does.
            STDIN_EOF if self.input && self.stdin_once && self.stdin.is_some() => {
                if self.tty {
                    self.pending.push(4);
                } else {
                    self.closing = true;
                }
            }
            RESIZE if self.tty => {
                if let Some(m) = &self.stdin {
                    resize(m.as_raw_fd(), data);
                }
            }
            _ => {}
        }
    }

    fn write_client(&mut self, i: usize) {
        let c = &mut self.clients[i];
        match nix::unistd::write(&c.fd, &c.out) {
            Ok(n) => {
                c.out.drain(..n);
            }
            Err(e) if errno_again(e) => {}
            Err(_) => c.dead = true,
        }
    }

    fn write_stdin(&mut self) {
        let Some(s) = &self.stdin else { return };
        match nix::unistd::write(s, &self.pending) {
            Ok(n) => {
                self.pending.drain(..n);
            }
            Err(e) if errno_again(e) => {}
            // The workload closed its input: what is left has nowhere to go.
            Err(_) => {
                self.pending.clear();
                self.stdin = None;
            }
        }
    }

    /// The workload's output, for every client (and the replay).
    pub fn output(&mut self, kind: u8, data: &[u8]) {
        // The usual case, on every write of the workload's: nobody attached.
        if self.clients.is_empty() && self.replay.is_none() {
            return;
        }
        let f = frame(kind, data);
        for c in self.clients.iter_mut().filter(|c| !c.dead) {
            if c.out.len() + f.len() > MAX_QUEUED {
                c.dead = true;
            } else {
                c.out.extend_from_slice(&f);
            }
        }
        if let Some(r) = self.replay.as_mut() {
            if r.len() + f.len() <= MAX_REPLAY {
                r.extend_from_slice(&f);
            }
        }
    }

    /// The workload has ended and its output is read: what is queued goes out (to the
    /// `run` client too, if it has not come yet), within a few seconds, then the
    /// socket goes.
    pub fn finish(&mut self) {
        use nix::poll::{poll, PollFd, PollTimeout};
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let left = || {
            let ms = deadline
                .saturating_duration_since(std::time::Instant::now())
                .as_millis();
            PollTimeout::from(ms.min(u16::MAX as u128) as u16)
        };
        if self.replay.is_some() {
            if let Some(l) = &self.listener {
                // SAFETY: the listener stays open while polled.
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(l.as_raw_fd()) };
                let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
                if poll(&mut fds, left()).is_ok_and(|n| n > 0) {
                    self.accept();
                }
            }
        }
        self.listener = None;
        unlink(self.dir);
        self.stdin = None;
        loop {
            self.clients.retain(|c| !c.dead && !c.out.is_empty());
            if self.clients.is_empty() || std::time::Instant::now() >= deadline {
                break;
            }
            let mut fds: Vec<PollFd> = self
                .clients
                .iter()
                // SAFETY: the clients stay open while polled.
                .map(|c| {
                    PollFd::new(
                        unsafe { std::os::fd::BorrowedFd::borrow_raw(c.fd.as_raw_fd()) },
                        PollFlags::POLLOUT,
                    )
                })
                .collect();
            if poll(&mut fds, left()).is_err() {
                break;
            }
            let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
            for (i, r) in ready.into_iter().enumerate() {
                if r {
                    self.write_client(i);
                }
            }
        }
        self.clients.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    fn pair() -> (OwnedFd, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        // The init's side is non-blocking, as accept4 makes it.
        a.set_nonblocking(true).unwrap();
        (OwnedFd::from(a), b)
    }

    fn pump(a: &mut Attach) {
        for _ in 0..4 {
            for (_, _, slot) in a.poll_set() {
                a.ready(slot, PollFlags::POLLIN | PollFlags::POLLOUT);
            }
            a.reap();
        }
    }

    #[test]
    fn output_reaches_clients_and_input_the_workload() {
        let (stdin_w, mut stdin_r) = pair();
        let opts = Opts {
            input: true,
            tty: false,
            stdin_once: true,
            replay: true,
        };
        let mut a = Attach::new(-1, None, Some(stdin_w), opts);
        a.output(STDOUT, b"before\n");
        let (fd, mut client) = pair();
        client.set_nonblocking(true).unwrap();
        // Handed over as accept would: the replay goes to the first client.
        a.clients.push(Client {
            fd,
            out: a.replay.take().unwrap(),
            input: Vec::new(),
            dead: false,
        });
        a.output(STDERR, b"after");
        let mut sent = frame(STDIN, b"hello");
        sent.extend(frame(STDIN_EOF, b""));
        client.write_all(&sent).unwrap();
        pump(&mut a);
        let mut got = Vec::new();
        let _ = client.read_to_end(&mut got);
        let mut want = frame(STDOUT, b"before\n");
        want.extend(frame(STDERR, b"after"));
        assert_eq!(got, want);
        // Input delivered, then the pipe closed (stdin_once).
        assert!(a.stdin.is_none());
        let mut input = Vec::new();
        stdin_r.read_to_end(&mut input).unwrap();
        assert_eq!(input, b"hello");
    }

    #[test]
    fn a_broken_or_slow_client_is_dropped() {
        let mut a = Attach::new(-1, None, None, Opts::default());
        let (fd, mut client) = pair();
        a.clients.push(Client {
            fd,
            out: Vec::new(),
            input: Vec::new(),
            dead: false,
        });
        client.write_all(&[STDIN, 0xff, 0xff, 0xff, 0xff]).unwrap();
        pump(&mut a);
        assert!(a.clients.is_empty());
        let (fd, _client) = pair();
        a.clients.push(Client {
            fd,
            out: Vec::new(),
            input: Vec::new(),
            dead: false,
        });
        let big = vec![0u8; 1 << 20];
        for _ in 0..6 {
            a.output(STDOUT, &big);
        }
        a.reap();
        assert!(a.clients.is_empty());
    }
}
