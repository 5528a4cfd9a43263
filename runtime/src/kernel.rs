//! The kernel calls that build a container's root — mount, umount, chdir, pivot_root,
//! mknod, idmapped bind mounts and writes under `/proc/sys` — behind one small trait, so
//! that the mount plan ([`super::mounts::setup_with`]) runs against the real kernel in
//! the container's init ([`Host`]) and against a [`Recording`] fake in unit tests,
//! without root. Plain file work (directories, mount points, symlinks in `/dev`) is done
//! on the file system either way: the fake's root is a temporary directory.

use super::mounts::{err, os, MountError};
use nix::mount::{MntFlags, MsFlags};
use std::os::unix::io::RawFd;
use std::path::{Path, PathBuf};

pub trait Kernel {
    fn mount(
        &mut self,
        src: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), MountError>;
    /// An overlay of `stack` at `target` (however many layers it has).
    fn overlay(&mut self, stack: &super::overlay::Stack, target: &Path) -> Result<(), MountError>;
    /// Detaches the mount at `target` (the old root after `pivot_root`).
    fn umount_detach(&mut self, target: &Path) -> Result<(), MountError>;
    fn chdir(&mut self, dir: &Path) -> Result<(), MountError>;
    /// `pivot_root(".", ".")`: the working directory becomes `/`.
    fn pivot_root(&mut self) -> Result<(), MountError>;
    /// A character device node, mode 0666.
    fn mknod_char(&mut self, path: &Path, major: u64, minor: u64) -> Result<(), MountError>;
    /// `source` bound at `target`, its owners seen through the user namespace `userns`.
    fn bind_idmapped(&mut self, source: &Path, target: &Path, userns: RawFd) -> Result<(), MountError>;
    /// Makes the bind mount at `target` read-only with every mount below it, as
    /// Docker's `ro` binds are where the kernel can (5.12's `mount_setattr`): a mount
    /// nested in a bound directory must not stay writable.
    fn readonly_tree(&mut self, target: &Path) -> Result<(), MountError>;
    /// Writes a file the kernel serves (a sysctl under `/proc/sys`).
    fn write(&mut self, path: &Path, value: &str) -> Result<(), MountError>;
    /// Whether `path` (after `pivot_root`, in the container) is a directory, another
    /// file, or missing.
    fn kind(&self, path: &Path) -> Option<bool>;
}

/// The real kernel, for the container's init in its new mount namespace.
pub struct Host;

impl Kernel for Host {
    fn mount(
        &mut self,
        src: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), MountError> {
        nix::mount::mount(src, target, fstype, flags, data)
            .map_err(|e| err(&format!("mounting {}", fstype.or(src).unwrap_or("")), target, e))
    }

    fn overlay(&mut self, stack: &super::overlay::Stack, target: &Path) -> Result<(), MountError> {
        super::overlay::mount(stack, target).map_err(|e| err("mounting overlay", target, e))
    }

    fn umount_detach(&mut self, target: &Path) -> Result<(), MountError> {
        nix::mount::umount2(target, MntFlags::MNT_DETACH).map_err(|e| os("detaching the old root", e))
    }

    fn chdir(&mut self, dir: &Path) -> Result<(), MountError> {
        nix::unistd::chdir(dir).map_err(|e| err("chdir", dir, e))
    }

    fn pivot_root(&mut self) -> Result<(), MountError> {
        nix::unistd::pivot_root(".", ".").map_err(|e| os("pivot_root", e))
    }

    fn mknod_char(&mut self, p: &Path, major: u64, minor: u64) -> Result<(), MountError> {
        use nix::sys::stat::{fchmodat, makedev, mknod, FchmodatFlags, Mode, SFlag};
        let mode = Mode::from_bits_truncate(0o666);
        mknod(p, SFlag::S_IFCHR, mode, makedev(major, minor)).map_err(|e| err("creating device", p, e))?;
        // The umask took bits off.
        fchmodat(nix::fcntl::AT_FDCWD, p, mode, FchmodatFlags::FollowSymlink).map_err(|e| err("chmod", p, e))
    }

    fn bind_idmapped(&mut self, source: &Path, target: &Path, userns: RawFd) -> Result<(), MountError> {
        Ok(super::userns::attach(
            &super::userns::idmapped_tree(source, userns, false)?,
            target,
        )?)
    }

    fn readonly_tree(&mut self, target: &Path) -> Result<(), MountError> {
        match super::userns::set_readonly_recursive(target) {
            Ok(()) => Ok(()),
            // Older kernels: the mount itself, as before 5.12.
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => self.mount(
                None,
                target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None,
            ),
            Err(e) => Err(err("making read-only", target, e)),
        }
    }

    fn write(&mut self, path: &Path, value: &str) -> Result<(), MountError> {
        std::fs::write(path, value).map_err(|e| err("writing", path, e))
    }

    fn kind(&self, path: &Path) -> Option<bool> {
        std::fs::symlink_metadata(path).ok().map(|m| m.is_dir())
    }
}

/// One call the plan made, with paths inside the container's root shown from its `/`
/// (before `pivot_root`, relative to the root directory; after it, as they are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount {
        src: Option<String>,
        target: String,
        fstype: Option<String>,
        flags: MsFlags,
        data: Option<String>,
    },
    UmountDetach(String),
    Chdir(String),
    PivotRoot,
    Mknod(String, u64, u64),
    BindIdmapped {
        source: String,
        target: String,
    },
    Write(String, String),
}

/// A fake kernel that records every call, for tests of the mount plan. Paths under
/// `root` (the container's root directory) are recorded as the container sees them.
pub struct Recording {
    pub root: PathBuf,
    pub calls: Vec<Call>,
    /// Set by `pivot_root`: from then on `kind` looks inside `root`.
    pivoted: bool,
}

impl Recording {
    pub fn new(root: &Path) -> Recording {
        Recording {
            root: root.to_path_buf(),
            calls: Vec::new(),
            pivoted: false,
        }
    }

    fn shown(&self, p: &Path) -> String {
        // A held mount point (`/proc/self/fd/N[/more]`) is shown as what it names.
        let real;
        let p = match p.strip_prefix("/proc/self/fd") {
            Ok(rest) => {
                let mut parts = rest.components();
                let fd = parts
                    .next()
                    .map(|c| Path::new("/proc/self/fd").join(c))
                    .unwrap_or_default();
                let named = std::fs::read_link(&fd).unwrap_or(fd);
                real = match parts.as_path() {
                    rest if rest.as_os_str().is_empty() => named,
                    rest => named.join(rest),
                };
                real.as_path()
            }
            Err(_) => p,
        };
        match p.strip_prefix(&self.root) {
            Ok(rel) => format!("/{}", rel.display()),
            Err(_) => p.display().to_string(),
        }
    }

    /// The mounts made, as (fstype or source, target, data) for a compact assertion.
    pub fn mounts(&self) -> Vec<(String, String, String, MsFlags)> {
        self.calls
            .iter()
            .filter_map(|c| match c {
                Call::Mount {
                    src,
                    target,
                    fstype,
                    flags,
                    data,
                } => Some((
                    fstype.clone().or(src.clone()).unwrap_or_default(),
                    target.clone(),
                    data.clone().unwrap_or_default(),
                    *flags,
                )),
                _ => None,
            })
            .collect()
    }
}

impl Kernel for Recording {
    fn mount(
        &mut self,
        src: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), MountError> {
        let target = self.shown(target);
        let src = src.map(|s| self.shown(Path::new(s)));
        self.calls.push(Call::Mount {
            src,
            target,
            fstype: fstype.map(str::to_string),
            flags,
            data: data.map(str::to_string),
        });
        Ok(())
    }

    /// Recorded as the `mount(2)` call it is when it fits one.
    fn overlay(&mut self, stack: &super::overlay::Stack, target: &Path) -> Result<(), MountError> {
        let o = stack.options();
        self.mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(&o))
    }

    fn umount_detach(&mut self, target: &Path) -> Result<(), MountError> {
        let t = self.shown(target);
        self.calls.push(Call::UmountDetach(t));
        Ok(())
    }

    fn chdir(&mut self, dir: &Path) -> Result<(), MountError> {
        let d = self.shown(dir);
        self.calls.push(Call::Chdir(d));
        Ok(())
    }

    fn pivot_root(&mut self) -> Result<(), MountError> {
        self.pivoted = true;
        self.calls.push(Call::PivotRoot);
        Ok(())
    }

    fn mknod_char(&mut self, path: &Path, major: u64, minor: u64) -> Result<(), MountError> {
        let p = self.shown(path);
        self.calls.push(Call::Mknod(p, major, minor));
        Ok(())
    }

    fn bind_idmapped(&mut self, source: &Path, target: &Path, _userns: RawFd) -> Result<(), MountError> {
        let (source, target) = (self.shown(source), self.shown(target));
        self.calls.push(Call::BindIdmapped { source, target });
        Ok(())
    }

    /// Recorded as the remount it amounts to, with `MS_REC` for "and below".
    fn readonly_tree(&mut self, target: &Path) -> Result<(), MountError> {
        self.mount(
            None,
            target,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
            None,
        )
    }

    fn write(&mut self, path: &Path, value: &str) -> Result<(), MountError> {
        let p = self.shown(path);
        self.calls.push(Call::Write(p, value.to_string()));
        Ok(())
    }

    fn kind(&self, path: &Path) -> Option<bool> {
        let p = if self.pivoted {
            self.root.join(path.strip_prefix("/").unwrap_or(path))
        } else {
            path.to_path_buf()
        };
        std::fs::symlink_metadata(p).ok().map(|m| m.is_dir())
    }
}
