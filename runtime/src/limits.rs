//! Resource limits and how they are written into a container's cgroup, for v1 and v2
//! (memory, swap, CPU quota/period/shares/weight, cpuset, pids, device rules).

use super::cgroups::{Cgroup, CgroupError, Version};

/// Resource limits, as Compose expresses them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub memory: Option<i64>,
    pub memory_reservation: Option<i64>,
    /// Memory plus swap (Docker's `memswap_limit`); -1 is unlimited.
    pub memory_swap: Option<i64>,
    /// `memory_swap` is Docker's default (twice the memory), not asked for: a host
    /// without swap accounting goes without it, as Docker's does, instead of failing.
    pub memory_swap_implied: bool,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids: Option<i64>,
    /// Device access rules (`c 1:3 rwm`): `None` is Docker's default list; privileged
    /// containers get `a *:* rwm`.
    pub devices: Option<Vec<String>>,
}

/// Docker's default device rules: mknod of anything, access to the standard nodes.
pub const DEFAULT_DEVICE_RULES: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:200 rwm",
];

impl Limits {
    /// `cpus: 1.5` as a CFS quota over the default 100 ms period.
    pub fn set_cpus(&mut self, cpus: f64) {
        let period = self.cpu_period.unwrap_or(100_000);
        self.cpu_period = Some(period);
        self.cpu_quota = Some((cpus * period as f64) as i64);
    }
}

impl Cgroup {
    /// Writes the limits; unset ones stay at the kernel's defaults.
    pub fn apply(&self, l: &Limits) -> Result<(), CgroupError> {
        let v2 = self.version == Version::V2;
        if let Some(m) = l.memory {
            self.write(
                "memory",
                if v2 { "memory.max" } else { "memory.limit_in_bytes" },
                &m.to_string(),
            )?;
        }
        if let Some(r) = l.memory_reservation {
            self.write(
                "memory",
                if v2 { "memory.low" } else { "memory.soft_limit_in_bytes" },
                &r.to_string(),
            )?;
        }
        if let Some(s) = l.memory_swap {
            let written = if v2 {
                let swap = if s < 0 {
                    "max".to_string()
                } else {
                    (s - l.memory.unwrap_or(0)).max(0).to_string()
                };
                self.write("memory", "memory.swap.max", &swap)
            } else {
                self.write("memory", "memory.memsw.limit_in_bytes", &s.to_string())
            };
            match written {
                Err(CgroupError::Unsupported(_)) if l.memory_swap_implied => {}
                other => other?,
            }
        }
        if v2 {
            if l.cpu_quota.is_some() || l.cpu_period.is_some() {
                let quota = l
                    .cpu_quota
                    .filter(|q| *q > 0)
                    .map(|q| q.to_string())
                    .unwrap_or_else(|| "max".into());
                self.write(
                    "cpu",
                    "cpu.max",
                    &format!("{quota} {}", l.cpu_period.unwrap_or(100_000)),
                )?;
            }
            if let Some(s) = l.cpu_shares {
                // runc's conversion of shares [2, 262144] to weight [1, 10000].
                let w = 1 + ((s.clamp(2, 262_144) - 2) * 9999) / 262_142;
                self.write("cpu", "cpu.weight", &w.to_string())?;
            }
        } else {
            if let Some(p) = l.cpu_period {
                self.write("cpu", "cpu.cfs_period_us", &p.to_string())?;
            }
            if let Some(q) = l.cpu_quota {
                self.write("cpu", "cpu.cfs_quota_us", &q.to_string())?;
            }
            if let Some(s) = l.cpu_shares {
                self.write("cpu", "cpu.shares", &s.to_string())?;
            }
        }
        if let Some(c) = &l.cpuset_cpus {
            self.write("cpuset", "cpuset.cpus", c)?;
        }
        if let Some(m) = &l.cpuset_mems {
            self.write("cpuset", "cpuset.mems", m)?;
        }
        if let Some(p) = l.pids {
            self.write(
                "pids",
                "pids.max",
                &if p <= 0 { "max".to_string() } else { p.to_string() },
            )?;
        }
        // Device access: v1 writes devices.deny/allow; v2 attaches a BPF program.
        if let Some(rules) = &l.devices {
            if v2 {
                if let Some(dir) = self.dir("") {
                    super::devices_bpf::attach(dir, rules).map_err(|e| CgroupError::Unsupported(e.to_string()))?;
                }
            } else if self.dir("devices").is_some() {
                self.write("devices", "devices.deny", "a")?;
                for r in rules {
                    self.write("devices", "devices.allow", r)?;
                }
            }
        }
        Ok(())
    }
}
