//! The container's names: its hostname, `/etc/hosts` (localhost, `extra_hosts`, legacy
//! `links`, its own address) and `/etc/resolv.conf` (the service's `dns` keys, else the
//! network's DNS server in front of the host's search and options, else the host's
//! file without its loopback resolvers).

use super::SpecProblem;
use compose::model::Service;
use std::net::IpAddr;

/// The service's `hostname`, else the container ID's first 12 characters, as Docker.
pub(super) fn hostname(svc: &Service, container_id: &str) -> String {
    svc.hostname
        .clone()
        .unwrap_or_else(|| container_id.chars().take(12).collect())
}

/// `/etc/hosts` with the container's own address (on its first network) and the legacy
/// links' (address, alias).
pub(super) fn hosts(
    svc: &Service,
    hostname: &str,
    own_ip: Option<&str>,
    links: &[(String, String)],
) -> Result<String, SpecProblem> {
    let mut hosts = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (h, ip) in svc.extra_hosts.iter().flat_map(|e| e.0.iter()) {
        if ip == "host-gateway" {
            return Err(SpecProblem::HostGateway);
        }
        hosts.push_str(&format!("{ip}\t{h}\n"));
    }
    for (ip, alias) in links {
        hosts.push_str(&format!("{ip}\t{alias}\n"));
    }
    if let Some(ip) = own_ip {
        hosts.push_str(&format!("{ip}\t{hostname}\n"));
    }
    Ok(hosts)
}

/// `/etc/resolv.conf`; `dns_server` is the network's embedded server, when the
/// container is on one.
pub(super) fn resolv_conf(svc: &Service, host_resolv_conf: &str, dns_server: Option<IpAddr>) -> String {
    if svc.dns.is_some() || svc.dns_search.is_some() || svc.dns_opt.is_some() {
        let mut r = String::new();
        for d in svc.dns.iter().flatten() {
            r.push_str(&format!("nameserver {d}\n"));
        }
        if let Some(s) = &svc.dns_search {
            r.push_str(&format!("search {}\n", s.join(" ")));
        }
        if let Some(o) = &svc.dns_opt {
            r.push_str(&format!("options {}\n", o.join(" ")));
        }
        if svc.dns.is_none() {
            if let Some(gw) = dns_server {
                r.insert_str(0, &format!("nameserver {gw}\n"));
            }
        }
        return r;
    }
    let keep = |l: &&str| match dns_server {
        Some(_) => !l.starts_with("nameserver"),
        // A loopback resolver of the host is unreachable from the container.
        None => !(l.starts_with("nameserver") && (l.contains(" 127.") || l.contains(" ::1"))),
    };
    let rest: String = host_resolv_conf
        .lines()
        .filter(keep)
        .map(|l| format!("{l}\n"))
        .collect();
    match dns_server {
        Some(gw) => format!("nameserver {gw}\n{rest}"),
        None => rest,
    }
}
