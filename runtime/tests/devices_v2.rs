//! The cgroup v2 device filter against the real kernel: a process in a v2 group with
//! the filter may use the allowed device and not another. Uses the host's v2 hierarchy
//! (the unified mount on hybrid hosts). Needs root; skipped with a message otherwise.

use runtime::cgroups::{Limits, Manager};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn only_allowed_devices_open() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let root = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        Path::new("/sys/fs/cgroup")
    } else if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
        Path::new("/sys/fs/cgroup/unified")
    } else {
        eprintln!("skipped: no cgroup v2 hierarchy on this host");
        return;
    };
    let m = Manager::with_root(root, &own);
    let parent = format!("rcompose-devtest-{}", std::process::id());
    let limits = Limits {
        devices: Some(vec!["c 1:3 rwm".into(), "c 1:5 rwm".into()]),
        ..Default::default()
    };
    let cg = m.create(&parent, "c", &limits).unwrap();
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg("read x; head -c1 /dev/zero >/dev/null && echo zero=ok || echo zero=denied; head -c1 /dev/urandom >/dev/null 2>&1 && echo urandom=ok || echo urandom=denied")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let added = cg.add(child.id() as i32);
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.wait().unwrap();
    let removed = cg.remove();
    m.remove_tree(&parent);
    added.unwrap();
    removed.unwrap();
    assert_eq!(out, "zero=ok\nurandom=denied\n");
}
