//! A throwaway virtual machine for what this host cannot be: QEMU (software emulation,
//! since nested KVM is not dependable here) boots the kernel that
//! `scripts/vm-kernel.sh` cached, with an initramfs made of the given host files at
//! their own paths (ELF files stripped, with the libraries they load), busybox and a
//! shell script run as root. The machine's serial console is the result.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Kernel {
    pub vmlinuz: PathBuf,
    pub overlay: PathBuf,
}

/// The cached kernel, or why there is none.
pub fn kernel() -> Result<Kernel, String> {
    let dir = PathBuf::from(std::env::var("RCOMPOSE_VM_CACHE").unwrap_or_else(|_| "/var/cache/rcompose-vm".into()));
    let k = Kernel {
        vmlinuz: dir.join("vmlinuz"),
        overlay: dir.join("overlay.ko"),
    };
    if !k.vmlinuz.exists() || !k.overlay.exists() {
        return Err(format!("no kernel in {} (run scripts/vm-kernel.sh)", dir.display()));
    }
    if Command::new("qemu-system-x86_64").arg("--version").output().is_err() {
        return Err("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)".into());
    }
    Ok(k)
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Copies `src` to the same path under `root`: stripped when it is an ELF file, with
/// the shared libraries it needs.
fn install(root: &Path, src: &Path) {
    let to = root.join(src.strip_prefix("/").unwrap());
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let head = std::fs::read(src)
        .map(|b| b.get(..4) == Some(b"\x7fELF"))
        .unwrap_or(false);
    if !head {
        std::fs::copy(src, &to).unwrap();
        return;
    }
    run(Command::new("strip").arg("-o").arg(&to).arg(src));
    let ldd = Command::new("ldd").arg(src).output().unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = line
            .split("=>")
            .last()
            .and_then(|r| r.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(lib) = path {
            let dest = root.join(lib.trim_start_matches('/'));
            if !dest.exists() {
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                std::fs::copy(lib, &dest).unwrap();
            }
        }
    }
}

/// Boots a machine with `files` and runs `script` (sh, as root, with /proc, /sys, /dev
/// and overlayfs loaded, on a tmpfs root; cgroups are the script's to mount). Returns the
/// console output once the machine powers off, or panics past `timeout`.
pub fn boot(k: &Kernel, files: &[&Path], script: &str, timeout: Duration) -> String {
    let stage = tempfile::tempdir().unwrap();
    let root = stage.path().join("root");
    for d in ["proc", "sys", "dev", "tmp", "mnt", "bin"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    install(&root, Path::new("/bin/busybox"));
    for f in files {
        install(&root, f);
    }
    std::fs::copy(&k.overlay, root.join("overlay.ko")).unwrap();
    // Stage 1 moves everything onto a tmpfs and switches to it: pivot_root (which every
    // container does) cannot leave the initramfs's own root.
    let init = "#!/bin/busybox sh\n\
        /bin/busybox mkdir -p /sbin /usr/bin /usr/sbin\n\
        /bin/busybox --install -s\n\
        mount -t proc proc /proc\n\
        mount -t tmpfs -o size=1500m root /mnt\n\
        for d in /*; do case $d in /proc|/sys|/dev|/mnt) mkdir -p /mnt$d ;; *) cp -a $d /mnt/ ;; esac; done\n\
        umount /proc\n\
        exec switch_root /mnt /stage2\n";
    let stage2 = format!(
        "#!/bin/sh\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sys /sys\n\
         mount -t devtmpfs dev /dev\n\
         mkdir -p /dev/pts && mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts\n\
         insmod /overlay.ko\n\
         echo VM-BOOTED\n\
         ( {script}\n ) 2>&1\n\
         echo VM-EXIT=$?\n\
         poweroff -f\n"
    );
    for (name, text) in [("init", init.to_string()), ("stage2", stage2)] {
        let p = root.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let cpio = stage.path().join("initramfs.cpio");
    let list = run(Command::new("/bin/busybox").args(["find", "."]).current_dir(&root));
    let mut c = Command::new("/bin/busybox")
        .args(["cpio", "-o", "-H", "newc"])
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&cpio).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), list.as_bytes()).unwrap();
    drop(c.stdin.take());
    assert!(c.wait().unwrap().success());

    // One vCPU: under multi-threaded TCG a second vCPU can run a stale
    // translation of kernel text that another vCPU is live-patching (the
    // int3 of text_poke_bp, hit when the first device-cgroup program turns
    // its static key on), and the guest kernel oopses. Real hardware and KVM
    // keep such code coherent; emulation with one vCPU does too.
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-cpu", "max", "-m", "3072", "-smp", "1"])
        .args(["-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"])
        .arg("-kernel")
        .arg(&k.vmlinuz)
        .arg("-initrd")
        .arg(&cpio)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = qemu.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let deadline = Instant::now() + timeout;
    loop {
        if qemu.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = qemu.kill();
            let _ = qemu.wait();
            panic!(
                "the machine did not power off within {timeout:?}:\n{}",
                reader.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}
