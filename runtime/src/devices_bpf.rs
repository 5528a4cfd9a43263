//! Device access on cgroup v2: a `BPF_PROG_TYPE_CGROUP_DEVICE` program generated from
//! the device rules (`c 1:3 rwm`) and attached to the container's cgroup, as runc does.
//! Written by hand: the program is a short chain of comparisons, and no crate here
//! generates device filters.
//!
//! The kernel calls it with `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major;
//! u32 minor; }`, `access_type` being `(access << 16) | type`; it returns 1 to allow.

use std::io;
use std::os::unix::io::AsRawFd;
use std::path::Path;

const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// One allow rule; `None` is a wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub kind: Option<i32>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: i32,
}

/// A device cgroup rule that does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid device rule {0:?} (expected e.g. \"c 1:3 rwm\")")]
pub struct RuleError(pub String);

/// Parses `c 1:3 rwm`, `b *:* m`, `a` (everything).
pub fn parse_rule(s: &str) -> Result<Rule, RuleError> {
    let bad = || RuleError(s.to_string());
    let mut parts = s.split_whitespace();
    let kind = match parts.next().ok_or_else(bad)? {
        "a" => {
            return Ok(Rule {
                kind: None,
                major: None,
                minor: None,
                access: ACC_MKNOD | ACC_READ | ACC_WRITE,
            })
        }
        "b" => Some(DEV_BLOCK),
        "c" => Some(DEV_CHAR),
        _ => return Err(bad()),
    };
    let (maj, min) = parts.next().and_then(|n| n.split_once(':')).ok_or_else(bad)?;
    let num = |x: &str| {
        if x == "*" {
            Ok(None)
        } else {
            x.parse::<u32>().map(Some).map_err(|_| bad())
        }
    };
    let mut access = 0;
    for c in parts.next().unwrap_or("rwm").chars() {
        access |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return Err(bad()),
        };
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(Rule {
        kind,
        major: num(maj)?,
        minor: num(min)?,
        access,
    })
}

/// One eBPF instruction (`struct bpf_insn`).
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    (code as u64)
        | (((dst & 0xf) as u64) << 8)
        | (((src & 0xf) as u64) << 12)
        | ((off as u16 as u64) << 16)
        | ((imm as u32 as u64) << 32)
}

// Opcodes used.
const LDX_W: u8 = 0x61; // r_dst = *(u32 *)(r_src + off)
const MOV_REG: u8 = 0xbf; // 64-bit r_dst = r_src
const MOV_IMM: u8 = 0xb7; // 64-bit r_dst = imm
const AND_IMM: u8 = 0x57;
const RSH_IMM: u8 = 0x77;
const JNE_IMM: u8 = 0x55; // if r_dst != imm goto +off
const EXIT: u8 = 0x95;

/// The program for `rules` (allow-list, default deny).
pub fn program(rules: &[Rule]) -> Vec<u64> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0), // r2 = access_type
        insn(MOV_REG, 3, 2, 0, 0),
        insn(AND_IMM, 3, 0, 0, 0xffff), // r3 = type
        insn(MOV_REG, 4, 2, 0, 0),
        insn(RSH_IMM, 4, 0, 0, 16), // r4 = access
        insn(LDX_W, 5, 1, 4, 0),    // r5 = major
        insn(LDX_W, 6, 1, 8, 0),    // r6 = minor
    ];
    for r in rules {
        let mut block = Vec::new();
        if let Some(k) = r.kind {
            block.push((JNE_IMM, 3, k));
        }
        // Every requested access must be allowed: (access & ~allowed) == 0.
        let mut checks = vec![(MOV_REG, 7u8, 4i32), (AND_IMM, 7, !r.access), (JNE_IMM, 7, 0)];
        if let Some(m) = r.major {
            checks.push((JNE_IMM, 5, m as i32));
        }
        if let Some(m) = r.minor {
            checks.push((JNE_IMM, 6, m as i32));
        }
        block.extend(checks);
        // Each jump skips to the end of this rule's block (past `r0 = 1; exit`).
        let n = block.len();
        for (i, (code, reg, imm)) in block.into_iter().enumerate() {
            let off = (n - i - 1 + 2) as i16;
            match code {
                MOV_REG => p.push(insn(MOV_REG, reg, 4, 0, 0)),
                AND_IMM => p.push(insn(AND_IMM, reg, 0, 0, imm)),
                _ => p.push(insn(JNE_IMM, reg, 0, off, imm)),
            }
        }
        p.push(insn(MOV_IMM, 0, 0, 0, 1));
        p.push(insn(EXIT, 0, 0, 0, 0));
    }
    p.push(insn(MOV_IMM, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

#[repr(C)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

const BPF_PROG_LOAD: i64 = 5;
const BPF_PROG_ATTACH: i64 = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// Loads the program for `rules` and attaches it to the cgroup directory `dir`.
pub fn attach(dir: &Path, rules: &[String]) -> io::Result<()> {
    let parsed: Vec<Rule> = rules
        .iter()
        .map(|r| parse_rule(r))
        .collect::<Result<_, _>>()
        .map_err(io::Error::other)?;
    let insns = program(&parsed);
    let license = b"Apache-2.0\0";
    // Without a verifier log first: a log that does not fit its buffer fails the load
    // with ENOSPC on some kernels (6.12 does) even when the program is fine. The log is
    // asked for only to explain a refusal.
    let load = |log: Option<&mut Vec<u8>>| {
        let (log_level, log_size, log_buf) = match log {
            Some(l) => (1, l.len() as u32, l.as_mut_ptr() as u64),
            None => (0, 0, 0),
        };
        let attr = ProgLoad {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level,
            log_size,
            log_buf,
            kern_version: 0,
            prog_flags: 0,
        };
        // SAFETY: `attr` and everything it points to live across the call.
        unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &attr as *const ProgLoad,
                std::mem::size_of::<ProgLoad>(),
            )
        }
    };
    let prog = load(None);
    if prog < 0 {
        let e = io::Error::last_os_error();
        let mut log = vec![0u8; 1 << 20];
        let again = load(Some(&mut log));
        if again >= 0 {
            // SAFETY: a descriptor the kernel just returned, closed at once.
            unsafe { libc::close(again as i32) };
        }
        let verifier = String::from_utf8_lossy(&log).trim_end_matches('\0').to_string();
        return Err(io::Error::other(format!("loading the device filter: {e} {verifier}")));
    }
    // SAFETY: `prog` is a descriptor the kernel just returned; owned here.
    let prog = unsafe { std::os::unix::io::OwnedFd::from_raw_fd_checked(prog as i32) };
    let cg = std::fs::File::open(dir)?;
    let attach = ProgAttach {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
    };
    // SAFETY: `attach` lives across the call; the descriptors are open.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attach as *const ProgAttach,
            std::mem::size_of::<ProgAttach>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::other(format!(
            "attaching the device filter: {}",
            io::Error::last_os_error()
        )));
    }
    Ok(())
}

trait FromRawChecked {
    /// # Safety
    /// `fd` must be an open descriptor owned by nobody else.
    unsafe fn from_raw_fd_checked(fd: i32) -> Self;
}

impl FromRawChecked for std::os::unix::io::OwnedFd {
    unsafe fn from_raw_fd_checked(fd: i32) -> Self {
        use std::os::unix::io::FromRawFd;
        // SAFETY: the caller guarantees `fd` is open and unowned.
        unsafe { std::os::unix::io::OwnedFd::from_raw_fd(fd) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse() {
        assert_eq!(
            parse_rule("c 1:3 rwm").unwrap(),
            Rule {
                kind: Some(DEV_CHAR),
                major: Some(1),
                minor: Some(3),
                access: 7
            }
        );
        assert_eq!(
            parse_rule("b *:* m").unwrap(),
            Rule {
                kind: Some(DEV_BLOCK),
                major: None,
                minor: None,
                access: ACC_MKNOD
            }
        );
        assert_eq!(parse_rule("c 136:* rw").unwrap().minor, None);
        assert_eq!(parse_rule("a").unwrap().kind, None);
        for bad in ["x 1:3 rwm", "c 1-3 rwm", "c 1:3 rwx", "c a:b r", ""] {
            assert!(parse_rule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn program_shape() {
        let p = program(&[parse_rule("c 1:3 rw").unwrap()]);
        // prologue 7, rule: type, mov, and, jne, major, minor = 6, allow 2, deny 2.
        assert_eq!(p.len(), 7 + 6 + 2 + 2);
        assert_eq!(p.last().copied(), Some(insn(EXIT, 0, 0, 0, 0)));
    }
}
