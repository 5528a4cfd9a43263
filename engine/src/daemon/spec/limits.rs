//! What the container may use: cgroup limits (the service keys, else
//! `deploy.resources`), `/dev/shm`'s size, sysctls (with Docker's defaults for a network
//! namespace of its own), and the log files' rotation.

use super::SpecProblem;
use compose::model::Service;
use runtime::cgroups::Limits;
use runtime::spec::LogConfig;

pub(super) fn limits(svc: &Service) -> Result<Limits, SpecProblem> {
    let res = svc.deploy.as_ref().and_then(|d| d.resources.as_ref());
    let lim = res.and_then(|r| r.limits.as_ref());
    let resv = res.and_then(|r| r.reservations.as_ref());
    let mut limits = Limits {
        memory: svc
            .mem_limit
            .map(|b| b.0)
            .or_else(|| lim.and_then(|l| l.memory).map(|b| b.0)),
        memory_reservation: svc
            .mem_reservation
            .map(|b| b.0)
            .or_else(|| resv.and_then(|r| r.memory).map(|b| b.0)),
        memory_swap: svc.memswap_limit.map(|b| b.0),
        cpu_quota: svc.cpu_quota,
        cpu_period: svc.cpu_period.map(|p| p as u64),
        cpu_shares: svc.cpu_shares.map(|s| s as u64),
        cpuset_cpus: svc.cpuset.clone(),
        cpuset_mems: None,
        pids: svc.pids_limit.or_else(|| lim.and_then(|l| l.pids)),
        devices: None,
        memory_swap_implied: false,
    };
    // Docker's default: as much swap as memory (memory + swap twice the memory); 0 is
    // unset, as in Docker.
    if let (Some(m), None | Some(0)) = (limits.memory.filter(|m| *m > 0), limits.memory_swap) {
        limits.memory_swap = m.checked_mul(2);
        limits.memory_swap_implied = true;
    }
    if let Some(cpus) = svc.cpus.or_else(|| lim.and_then(|l| l.cpus)) {
        if cpus <= 0.0 {
            return Err(SpecProblem::Cpus(cpus));
        }
        limits.set_cpus(cpus);
    }
    Ok(limits)
}

/// `/dev/shm`'s size in bytes (Docker's 64 MiB unless `shm_size`).
pub(super) fn shm_size(svc: &Service) -> u64 {
    svc.shm_size.map(|b| b.0.max(0) as u64).unwrap_or(64 << 20)
}

/// The service's sysctls; with a network namespace of its own, Docker's defaults for
/// any port and ICMP echo without capabilities (which a user namespace's root lacks).
pub(super) fn sysctls(svc: &Service, own_netns: bool) -> Vec<(String, String)> {
    let mut sysctls: Vec<(String, String)> = svc
        .sysctls
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if own_netns {
        for (k, v) in [
            ("net.ipv4.ip_unprivileged_port_start", "0"),
            ("net.ipv4.ping_group_range", "0 2147483647"),
        ] {
            if !sysctls.iter().any(|(sk, _)| sk == k) {
                sysctls.push((k.into(), v.into()));
            }
        }
    }
    sysctls
}

/// `logging`: json-file's (and local's) `max-size` and `max-file`; other drivers are
/// refused by name.
pub(super) fn log(svc: &Service) -> Result<LogConfig, SpecProblem> {
    if let Some(d) = svc
        .logging
        .as_ref()
        .and_then(|l| l.driver.as_deref())
        .filter(|d| *d != "json-file" && *d != "local")
    {
        return Err(SpecProblem::LoggingDriver(d.to_string()));
    }
    Ok(svc
        .logging
        .as_ref()
        .and_then(|l| l.options.as_ref())
        .map(|o| LogConfig {
            max_size: o
                .get("max-size")
                .and_then(|s| compose::model::parse_bytes(s).ok())
                .map(|b| b.0.max(0) as u64)
                .unwrap_or(0),
            max_file: o.get("max-file").and_then(|s| s.parse().ok()).unwrap_or(1),
        })
        .unwrap_or_default())
}
