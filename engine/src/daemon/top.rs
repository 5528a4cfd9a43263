//! `top` and `stats`. `top`: a running container's processes as `ps -ef` shows them (the columns Docker's
//! `top` prints by default), read from its cgroup and `/proc`. The monitor is outside
//! the container's cgroup, so only the container's own processes are there.

use super::Ctr;

/// Header and one row per process; `None` when the container does not run.
pub fn rows(ctr: &Ctr) -> Option<Vec<Vec<String>>> {
    let live = ctr.live()?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let now = conventions::durations::now();
    let boot = now - uptime as i64;
    let mut out = vec![["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()];
    let mut pids = live.cgroup.pids();
    pids.sort_unstable();
    for pid in pids {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let comm = head.split_once(" (").map(|(_, c)| c).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // Fields after the command: state(0) ppid(1) ... utime(11) stime(12) ... starttime(19).
        let (ppid, cpu, start) = (num(1), num(11) + num(12), num(19));
        let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|l| l.split_whitespace().next()?.parse::<u32>().ok())
            })
            .unwrap_or(0);
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| uid.to_string());
        let started = boot + (start / ticks) as i64;
        let ran = (now - started).max(1) as u64;
        let cpu_secs = cpu / ticks;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                b.split(|c| *c == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        out.push(vec![
            user,
            pid.to_string(),
            ppid.to_string(),
            (cpu_secs * 100 / ran).to_string(),
            format!(
                "{:02}:{:02}",
                started.rem_euclid(86400) / 3600,
                started.rem_euclid(3600) / 60
            ),
            "?".into(),
            format!("{:02}:{:02}:{:02}", cpu_secs / 3600, cpu_secs / 60 % 60, cpu_secs % 60),
            if cmd.is_empty() { format!("[{comm}]") } else { cmd },
        ]);
    }
    Some(out)
}

/// One `stats` sample: CPU time and memory from the cgroup, network bytes from the
/// container's namespace (every interface but `lo`), processes without the init.
pub fn sample(ctr: &Ctr) -> Option<crate::api::StatsSample> {
    let live = ctr.live()?;
    let cg = &live.cgroup;
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let host_mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0);
    let (mut rx, mut tx) = (0, 0);
    for line in std::fs::read_to_string(format!("/proc/{}/net/dev", live.pid))
        .unwrap_or_default()
        .lines()
        .skip(2)
    {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest.split_whitespace().filter_map(|v| v.parse().ok()).collect();
        rx += f.first().copied().unwrap_or(0);
        tx += f.get(8).copied().unwrap_or(0);
    }
    let (block_read, block_write) = cg.block_io();
    Some(crate::api::StatsSample {
        cpu_ns: cg.cpu_usage_ns().unwrap_or(0),
        at_ns: ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64,
        mem_usage: cg.memory_usage().unwrap_or(0),
        mem_limit: cg.memory_limit().unwrap_or(host_mem).min(host_mem.max(1)),
        net_rx: rx,
        net_tx: tx,
        block_read,
        block_write,
        pids: cg.pids().len() as u64,
    })
}
