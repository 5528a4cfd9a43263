//! User namespaces (`userns_mode: auto`): the container's root is an unprivileged host
//! ID of a range of its own, as with Docker's `userns-remap` and Podman's `auto`.
//!
//! The shape: the container's first process stays in the host's user namespace while it
//! builds the root filesystem, devices and network as for any container, and enters the
//! container's user namespace just before `execve` (as every exec does). Its monitor,
//! outside the container, keeps writing the logs and exit status in the engine's
//! directory, which the container's IDs cannot reach. The image layers and the engine's volumes are mounted
//! with an ID mapping (idmapped mounts, Linux 5.12+; overlayfs over them 5.19+), so the
//! image's root-owned files are the container root's without copying or chowning them.
//! The namespace is made by a short-lived child of the monitor; once the workload runs,
//! exec helpers find it as the first process's `/proc/<pid>/ns/user`.
//!
//! The new mount API has no wrapper in nix or libc, hence the few raw syscalls here.
//! Range allocation is pure ([`pick_base`], [`pool_from_subid`]) and unit-tested.

use super::spec::IdMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// What can go wrong making, mapping or joining a user namespace.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error(
        "creating a user namespace: refused (user namespaces may be disabled on this host: user.max_user_namespaces)"
    )]
    Disabled,
    #[error("creating namespaces in the user namespace: refused")]
    OwnedNamespaces,
    /// A system call or file operation failed: what was being done, and the system's words.
    #[error("{what}: {message}")]
    Os { what: String, message: String },
}

fn os(what: impl Into<String>, e: impl std::fmt::Display) -> UsernsError {
    UsernsError::Os {
        what: what.into(),
        message: e.to_string(),
    }
}

/// IDs per container unless `auto:size=N` says otherwise (as Podman's default).
pub const DEFAULT_SIZE: u32 = 65536;
/// The host IDs handed out when `/etc/subuid` has no `rcompose` entry: far above any
/// account's, below 2^31 (some tools treat IDs as signed).
pub const DEFAULT_POOL: (u32, u32) = (1_000_000_000, 1_000_000_000);

const OPEN_TREE_CLONE: u32 = 1;
const AT_RECURSIVE: u32 = 0x8000;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_T_SYMLINKS: u32 = 0x10;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// The first `rcompose` range of an `/etc/subuid`-style file: (start, count).
pub fn pool_from_subid(text: &str, user: &str) -> Option<(u32, u32)> {
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        if f.next()? != user {
            return None;
        }
        let start = f.next()?.parse().ok()?;
        let count = f.next()?.parse().ok()?;
        Some((start, count))
    })
}

/// The pool of host IDs (start, count), for UIDs or GIDs (`/etc/subuid`, `/etc/subgid`).
pub fn pool(file: &str) -> (u32, u32) {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| pool_from_subid(&t, "rcompose"))
        .unwrap_or(DEFAULT_POOL)
}

/// The lowest start in `pool` for `size` IDs, aligned to [`DEFAULT_SIZE`], that overlaps
/// none of `used` ((start, size) pairs).
pub fn pick_base(pool: (u32, u32), used: &[(u32, u32)], size: u32) -> Option<u32> {
    let (start, count) = (pool.0 as u64, pool.1 as u64);
    let step = DEFAULT_SIZE as u64;
    let mut base = start;
    while base + size as u64 <= start + count {
        let clash = used
            .iter()
            .any(|&(s, n)| base < s as u64 + n as u64 && (s as u64) < base + size as u64);
        if !clash {
            return u32::try_from(base).ok();
        }
        base += step;
    }
    None
}

fn os_err(what: &str) -> UsernsError {
    os(what, std::io::Error::last_os_error())
}

/// Makes a user namespace with `map` (container IDs 0.. onto the host's range) and
/// returns it open, with new namespaces of the kinds in `owned` that belong to it (so
/// the container's root has its capabilities there: raw sockets, low ports, its own
/// hostname). A child enters it and waits while this (privileged) process writes its
/// maps; the child is gone when this returns. Call from a single-threaded process whose
/// children get PIDs of the namespace its `/proc` shows.
pub fn create(
    map: &IdMap,
    owned: nix::sched::CloneFlags,
) -> Result<(OwnedFd, Vec<(File, nix::sched::CloneFlags)>), UsernsError> {
    let (to_parent_r, to_parent_w) = nix::unistd::pipe().map_err(|e| os("pipe", e))?;
    let (to_child_r, to_child_w) = nix::unistd::pipe().map_err(|e| os("pipe", e))?;
    // SAFETY: the caller is single-threaded; the child only makes syscalls and exits.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            drop(to_parent_r);
            drop(to_child_w);
            let (mut tell, mut hear) = (File::from(to_parent_w), File::from(to_child_r));
            let mut b = [0u8; 1];
            let ok = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = tell.write_all(if ok { b"1" } else { b"0" });
            // Mapped now: the rest are made as the namespace's root.
            if ok && hear.read(&mut b).is_ok_and(|n| n == 1) {
                let ok = owned.is_empty() || nix::sched::unshare(owned).is_ok();
                let _ = tell.write_all(if ok { b"1" } else { b"0" });
                let _ = hear.read(&mut b);
            }
            // SAFETY: _exit after fork, no destructors of the parent's state run.
            unsafe { libc::_exit(0) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(to_parent_w);
            drop(to_child_r);
            let (mut hear, mut tell) = (File::from(to_parent_r), File::from(to_child_w));
            let mut said = || {
                let mut b = [0u8; 1];
                hear.read(&mut b).is_ok_and(|n| n == 1) && b[0] == b'1'
            };
            let result = if !said() {
                Err(UsernsError::Disabled)
            } else {
                open_with_maps(child.as_raw(), map).and_then(|ns| {
                    let _ = tell.write_all(b"1");
                    if !said() {
                        return Err(UsernsError::OwnedNamespaces);
                    }
                    let mut files = Vec::new();
                    for (flag, kind) in [
                        (nix::sched::CloneFlags::CLONE_NEWNET, "net"),
                        (nix::sched::CloneFlags::CLONE_NEWIPC, "ipc"),
                        (nix::sched::CloneFlags::CLONE_NEWUTS, "uts"),
                    ] {
                        if owned.contains(flag) {
                            let path = format!("/proc/{child}/ns/{kind}");
                            let f = File::open(&path).map_err(|e| os(format!("opening {path}"), e))?;
                            files.push((f, flag));
                        }
                    }
                    Ok((ns, files))
                })
            };
            drop(tell);
            let _ = nix::sys::wait::waitpid(child, None);
            result
        }
        Err(e) => Err(os("fork", e)),
    }
}

fn open_with_maps(pid: i32, map: &IdMap) -> Result<OwnedFd, UsernsError> {
    let write = |file: &str, text: String| {
        std::fs::write(format!("/proc/{pid}/{file}"), text).map_err(|e| os(format!("writing {file}"), e))
    };
    write("uid_map", format!("0 {} {}\n", map.uid, map.size))?;
    write("gid_map", format!("0 {} {}\n", map.gid, map.size))?;
    let f = File::open(format!("/proc/{pid}/ns/user")).map_err(|e| os("opening the user namespace", e))?;
    Ok(OwnedFd::from(f))
}

/// A detached copy of the mount at `path` whose file owners are seen through
/// `userns`'s mapping (host 0 appears as the container's 0).
pub fn idmapped_tree(path: &Path, userns: RawFd, recursive: bool) -> Result<OwnedFd, UsernsError> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| os("a path", e))?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as u32;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: open_tree takes a path string and flags; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(os_err(&format!("cloning the mount of {}", path.display())));
    }
    // SAFETY: a fresh descriptor we own.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns as u64,
    };
    let empty = c"";
    let mut at = libc::AT_EMPTY_PATH as u32;
    if recursive {
        at |= AT_RECURSIVE;
    }
    // SAFETY: `attr` is a valid mount_attr of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            at,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(os_err(&format!(
            "mapping the owners of {} into the user namespace (its filesystem may not support idmapped mounts)",
            path.display()
        )));
    }
    Ok(tree)
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// Makes the mount at `path` and every mount below it read-only.
pub fn set_readonly_recursive(path: &Path) -> std::io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a valid C path and a mount_attr of the size passed; the result is checked.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Attaches a detached tree from [`idmapped_tree`] at `target`.
pub fn attach(tree: &OwnedFd, target: &Path) -> Result<(), UsernsError> {
    let c = std::ffi::CString::new(target.as_os_str().as_encoded_bytes()).map_err(|e| os("a path", e))?;
    let empty = c"";
    // SAFETY: move_mount takes two (fd, path) pairs and flags; the result is checked.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            // The target may be a held mount point (`/proc/self/fd/N`): followed.
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_SYMLINKS,
        )
    };
    if r < 0 {
        return Err(os_err(&format!("mounting at {}", target.display())));
    }
    Ok(())
}

/// Enters the user namespace open at `fd` and becomes its root (the container's 0, so
/// later `setuid` to another user drops capabilities as the kernel does for root).
pub fn join(fd: RawFd) -> Result<(), UsernsError> {
    // SAFETY: the descriptor stays open for the call.
    let f = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWUSER)
        .map_err(|e| os("joining the container's user namespace", e))?;
    let zero_g = nix::unistd::Gid::from_raw(0);
    let zero_u = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresgid(zero_g, zero_g, zero_g).map_err(|e| os("setresgid 0 in the user namespace", e))?;
    nix::unistd::setresuid(zero_u, zero_u, zero_u).map_err(|e| os("setresuid 0 in the user namespace", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_to_host_ids() {
        let m = IdMap {
            uid: 200000,
            gid: 300000,
            size: 1024,
        };
        assert_eq!((m.host_uid(0), m.host_gid(5)), (Some(200000), Some(300005)));
        assert_eq!(
            (m.host_uid(1023), m.host_uid(1024), m.host_uid(u64::MAX)),
            (Some(201023), None, None)
        );
        let top = IdMap {
            uid: u32::MAX - 1,
            gid: 0,
            size: 10,
        };
        assert_eq!((top.host_uid(1), top.host_uid(2)), (Some(u32::MAX), None));
    }

    #[test]
    fn subid_entries() {
        let text = "alice:100000:65536\nrcompose:200000:131072\nrcompose:900000:1\n";
        assert_eq!(pool_from_subid(text, "rcompose"), Some((200000, 131072)));
        assert_eq!(pool_from_subid(text, "bob"), None);
        assert_eq!(pool_from_subid("rcompose:x:1\n", "rcompose"), None);
    }

    #[test]
    fn ranges_do_not_overlap() {
        let pool = (200000, 65536 * 3);
        assert_eq!(pick_base(pool, &[], 65536), Some(200000));
        assert_eq!(pick_base(pool, &[(200000, 65536)], 65536), Some(265536));
        // A small range elsewhere still blocks its slot.
        assert_eq!(
            pick_base(pool, &[(200000, 65536), (265536 + 10, 5)], 1024),
            Some(331072)
        );
        assert_eq!(pick_base(pool, &[(200000, 65536 * 3)], 1), None);
        // A freed slot is used again.
        assert_eq!(pick_base(pool, &[(265536, 65536)], 65536), Some(200000));
        // Never past the pool's end, nor past u32.
        assert_eq!(pick_base((u32::MAX - 10, 10), &[], 65536), None);
    }
}
