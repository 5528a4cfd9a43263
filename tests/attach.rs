//! `attach` and `run`'s streams end to end, as root: a service's output from the moment
//! of attaching, its input with `stdin_open`, a terminal driven by a pty in the test
//! (raw input, its size, the detach keys), signals passed on without one, and `run`
//! with a terminal, with piped input, and with a command that is over at once.

mod engine_env;

use engine_env::{root, Env};
use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Everything the other side of a pty writes, collected by a thread.
struct Screen {
    text: Arc<Mutex<Vec<u8>>>,
    master: std::fs::File,
}

impl Screen {
    fn new(rows: u16, cols: u16) -> (Screen, std::fs::File) {
        let ws = nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&ws), None).unwrap();
        let master = std::fs::File::from(pty.master);
        let text = Arc::new(Mutex::new(Vec::new()));
        let (mut rd, sink) = (master.try_clone().unwrap(), text.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = rd.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        (Screen { text, master }, std::fs::File::from(pty.slave))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap()).into_owned()
    }

    fn wait_for(&self, what: &str) {
        let end = Instant::now() + Duration::from_secs(20);
        while !self.text().contains(what) {
            assert!(Instant::now() < end, "no {what:?} on the screen: {:?}", self.text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn type_in(&mut self, keys: &[u8]) {
        self.master.write_all(keys).unwrap();
    }
}

fn spawn_on(env: &Env, args: &[&str], slave: std::fs::File) -> Child {
    env.command(args)
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap()
}

fn wait_exit(child: &mut Child) -> Option<i32> {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("the CLI did not end");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads a child's stdout until `what` has come (on a thread: reads block); the pipe is
/// handed back so that the child can go on writing.
type Reading = std::thread::JoinHandle<(String, std::process::ChildStdout)>;
fn read_until(out: std::process::ChildStdout, what: &'static str) -> Reading {
    std::thread::spawn(move || {
        let mut out = out;
        let (mut text, mut buf) = (Vec::new(), [0u8; 1024]);
        while !String::from_utf8_lossy(&text).contains(what) {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => text.extend_from_slice(&buf[..n]),
            }
        }
        (String::from_utf8_lossy(&text).into_owned(), out)
    })
}

fn interrupt(child: &Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
}

#[test]
fn attach_to_services_with_and_without_a_terminal() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write(
        "compose.yaml",
        r#"name: att
services:
  echo:
    image: rcompose/busybox:latest
    stdin_open: true
    command: [sh, -c, 'while read l; do echo "got $$l"; done']
  ticker:
    image: rcompose/busybox:latest
    command: [sh, -c, 'trap "echo bye; exit 7" INT; i=0; while true; do echo tick $$i; i=$$((i+1)); sleep 0.2; done']
  term:
    image: rcompose/busybox:latest
    tty: true
    stdin_open: true
    command: [sh]
"#,
    );
    env.ok(&["up", "-d"]);

    // Input reaches a stdin_open service; ^C goes to it (sig-proxy) and its exit code is ours.
    let mut child = env
        .command(&["attach", "echo"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let reader = read_until(child.stdout.take().unwrap(), "got hello");
    let mut stdin = child.stdin.take().unwrap();
    // Input before the attachment is made would be lost to nobody: it waits in the pipe.
    stdin.write_all(b"hello\n").unwrap();
    let (text, _out) = reader.join().unwrap();
    assert!(text.contains("got hello"), "{text:?}");
    interrupt(&child);
    assert_eq!(wait_exit(&mut child), Some(130));
    env.wait_for("echo to exit", || env.container("att-echo-1")["State"] == "exited");

    // Output from now on, not the log's history; the service's own trap answers ^C.
    env.wait_for("a few ticks", || env.ok(&["logs", "ticker"]).contains("tick 3"));
    let mut child = env
        .command(&["attach", "ticker"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let reader = read_until(child.stdout.take().unwrap(), "tick");
    let (text, _out) = reader.join().unwrap();
    assert!(!text.contains("tick 0\n"), "{text:?}");
    interrupt(&child);
    assert_eq!(wait_exit(&mut child), Some(7));
    assert!(env.ok(&["logs", "ticker"]).contains("bye"));

    // A terminal: typed keys reach the shell, its size is ours, ctrl-p ctrl-q detaches.
    let (mut screen, slave) = Screen::new(33, 111);
    let mut child = spawn_on(&env, &["attach", "term"], slave);
    // Typed until the shell answers: the attachment may not be made yet.
    let end = Instant::now() + Duration::from_secs(20);
    while !screen.text().contains("42") {
        assert!(Instant::now() < end, "{:?}", screen.text());
        screen.type_in(b"echo $((6*7)); stty size\r");
        std::thread::sleep(Duration::from_millis(300));
    }
    screen.wait_for("33 111");
    screen.type_in(b"\x10\x11");
    assert_eq!(wait_exit(&mut child), Some(0), "{}", screen.text());
    assert_eq!(env.container("att-term-1")["State"], "running");
    // Attaching again finds the same shell; `exit` ends it, and its code is ours.
    let (mut screen, slave) = Screen::new(24, 80);
    let mut child = spawn_on(&env, &["attach", "term"], slave);
    std::thread::sleep(Duration::from_millis(500));
    screen.type_in(b"exit 5\r");
    assert_eq!(wait_exit(&mut child), Some(5), "{}", screen.text());

    // Compose's messages.
    let o = env.rc(&["attach", "echo"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("You cannot attach to a stopped container, start it first"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = env.rc(&["attach", "--index", "2", "ticker"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("service \"ticker\" is not running container #2"));
    let o = env.rc(&["attach", "--detach-keys", "ctrl-1", "ticker"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid detach keys (ctrl-1) provided"));
    env.ok(&["down", "-t", "0"]);
    env.assert_nothing_left();
}

#[test]
fn run_with_a_terminal_and_with_piped_input() {
    if !root() {
        return;
    }
    let env = Env::new();
    env.write(
        "compose.yaml",
        "name: runio\nservices:\n  app:\n    image: rcompose/busybox:latest\n    command: [sleep, '30']\n",
    );
    // Piped input reaches the command, and its end ends the command's input.
    let mut child = env
        .command(&["run", "--rm", "-T", "app", "sh", "-c", "cat; echo end"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"line 1\nline 2\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "line 1\nline 2\nend\n");
    assert_eq!(o.status.code(), Some(0));
    // A command over before the attachment: its output all the same.
    let o = env.rc(&["run", "--rm", "-T", "app", "echo", "fast"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "fast\n");
    // With a terminal: the command has one, of our size; keys typed reach it.
    let (mut screen, slave) = Screen::new(30, 100);
    let mut child = spawn_on(
        &env,
        &[
            "run",
            "--rm",
            "app",
            "sh",
            "-c",
            "[ -t 0 ] && echo is-a-tty; stty size; read x; echo \"got $x\"; exit 3",
        ],
        slave,
    );
    screen.wait_for("30 100");
    assert!(screen.text().contains("is-a-tty"), "{}", screen.text());
    screen.type_in(b"typed\r");
    assert_eq!(wait_exit(&mut child), Some(3), "{}", screen.text());
    assert!(screen.text().contains("got typed"), "{}", screen.text());
    // An output-heavy command comes out whole, in order.
    let o = env.rc(&["run", "--rm", "-T", "app", "seq", "1", "20000"]);
    let want: String = (1..=20000).map(|i| format!("{i}\n")).collect();
    assert!(String::from_utf8_lossy(&o.stdout) == want, "{} bytes", o.stdout.len());
    assert!(
        env.ps().iter().all(|c| !c["Name"].as_str().unwrap().contains("-run-")),
        "{:?}",
        env.ps()
    );
    // A network key no container can have is refused before anything is made, as by `up`.
    env.write(
        "bad.yaml",
        "name: runio\nservices:\n  x:\n    image: rcompose/busybox:latest\n    mac_address: 01:00:5e:00:00:01\n",
    );
    let o = env.rc(&["-f", "bad.yaml", "run", "--rm", "-T", "x", "true"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("service \"x\": mac_address: invalid MAC address"), "{e}");
    assert!(!e.contains("Creating"), "{e}");
    env.ok(&["down", "-t", "0"]);
    env.assert_nothing_left();
}
