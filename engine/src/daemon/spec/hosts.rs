//! The container's names: its hostname, `/etc/hosts` (localhost, `extra_hosts`, legacy
//! `links`, its own addresses) and `/etc/resolv.conf` (on a network, the embedded DNS
//! server at 127.0.0.11 with the search and options; else the service's `dns` keys,
//! or the host's file without its loopback resolvers), as Docker writes them.

use super::SpecProblem;
use compose::model::Service;
use std::net::IpAddr;

/// The service's `hostname`, else the container ID's first 12 characters, as Docker.
pub(super) fn hostname(svc: &Service, container_id: &str) -> String {
    svc.hostname
        .clone()
        .unwrap_or_else(|| container_id.chars().take(12).collect())
}

/// What Docker's `/etc/hosts` begins with.
const DEFAULTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// `/etc/hosts` as Docker writes it: localhost and the IPv6 names, `extra_hosts`, the
/// legacy links' (address, alias), and a line for each of the container's own
/// addresses (one per network, and per family) naming its hostname, fully qualified
/// first when `domainname` is set.
pub(super) fn hosts(
    svc: &Service,
    hostname: &str,
    own_ips: &[String],
    links: &[(String, String)],
) -> Result<String, SpecProblem> {
    let mut hosts = String::from(DEFAULTS);
    for (h, ip) in svc.extra_hosts.iter().flat_map(|e| e.0.iter()) {
        if ip == "host-gateway" {
            return Err(SpecProblem::HostGateway);
        }
        hosts.push_str(&format!("{ip}\t{h}\n"));
    }
    for (ip, alias) in links {
        hosts.push_str(&format!("{ip}\t{alias}\n"));
    }
    let names = match svc.domainname.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => format!("{hostname}.{d} {hostname}"),
        None => hostname.to_string(),
    };
    for ip in own_ips {
        hosts.push_str(&format!("{ip}\t{names}\n"));
    }
    Ok(hosts)
}

/// The address of the resolver a container on a network is given, as Docker's
/// embedded DNS server (served in the container's own network namespace).
pub const EMBEDDED_DNS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 11);

/// `/etc/resolv.conf`. On a network (`embedded` is the resolver's address) as
/// Docker's: the embedded server only (the service's `dns` servers are where it
/// forwards), the service's `dns_search` and `dns_opt` else the host's search and
/// options, and `ndots:0` unless an `ndots` is given. Off networks: the service's
/// `dns` keys, else the host's file without its loopback resolvers.
pub(super) fn resolv_conf(svc: &Service, host_resolv_conf: &str, embedded: Option<IpAddr>) -> String {
    let host_lines = |key: &str| -> Vec<String> {
        host_resolv_conf
            .lines()
            .filter_map(|l| l.trim().strip_prefix(key))
            .filter(|rest| rest.starts_with([' ', '\t']))
            .flat_map(|rest| rest.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .collect()
    };
    if let Some(ns) = embedded {
        let search = svc.dns_search.clone().unwrap_or_else(|| host_lines("search"));
        let mut options = svc.dns_opt.clone().unwrap_or_else(|| host_lines("options"));
        if !options.iter().any(|o| o.starts_with("ndots:")) {
            options.push("ndots:0".into());
        }
        let mut r = format!("nameserver {ns}\n");
        if !search.is_empty() {
            r.push_str(&format!("search {}\n", search.join(" ")));
        }
        r.push_str(&format!("options {}\n", options.join(" ")));
        return r;
    }
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
        return r;
    }
    // A loopback resolver of the host is unreachable from the container.
    host_resolv_conf
        .lines()
        .filter(|l| !(l.starts_with("nameserver") && (l.contains(" 127.") || l.contains(" ::1"))))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::tests::svc;

    const HOST: &str =
        "# host's\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp.example lab\noptions edns0 trust-ad\n";

    #[test]
    fn hosts_as_docker_writes_them() {
        let s = svc("image: x\ndomainname: example.com\nextra_hosts: [h=10.1.1.1]");
        let ips = [
            "172.18.0.2".to_string(),
            "fd00::2".to_string(),
            "172.19.0.3".to_string(),
        ];
        let h = hosts(&s, "web", &ips, &[]).unwrap();
        assert_eq!(
            h,
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
             ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n10.1.1.1\th\n\
             172.18.0.2\tweb.example.com web\nfd00::2\tweb.example.com web\n172.19.0.3\tweb.example.com web\n"
        );
        let plain = hosts(&svc("image: x"), "0123456789ab", &ips[..1], &[]).unwrap();
        assert!(
            plain.ends_with("ff02::2\tip6-allrouters\n172.18.0.2\t0123456789ab\n"),
            "{plain}"
        );
    }

    #[test]
    fn on_a_network_the_resolver_is_the_embedded_one_with_ndots_0() {
        let at = Some(IpAddr::V4(EMBEDDED_DNS));
        assert_eq!(
            resolv_conf(&svc("image: x"), HOST, at),
            "nameserver 127.0.0.11\nsearch corp.example lab\noptions edns0 trust-ad ndots:0\n"
        );
        // The service's servers are where the embedded one forwards; its search and
        // options replace the host's; a given ndots stays.
        let s = svc("image: x\ndns: [1.1.1.1]\ndns_search: [a.example]\ndns_opt: ['ndots:2', rotate]");
        assert_eq!(
            resolv_conf(&s, HOST, at),
            "nameserver 127.0.0.11\nsearch a.example\noptions ndots:2 rotate\n"
        );
        assert_eq!(
            resolv_conf(&svc("image: x"), "nameserver 10.0.0.2\n", at),
            "nameserver 127.0.0.11\noptions ndots:0\n"
        );
    }

    #[test]
    fn off_networks_the_host_resolvers_that_a_container_can_reach() {
        assert_eq!(
            resolv_conf(&svc("image: x"), HOST, None),
            "# host's\nnameserver 10.0.0.2\nsearch corp.example lab\noptions edns0 trust-ad\n"
        );
        assert_eq!(
            resolv_conf(&svc("image: x\ndns: 9.9.9.9"), HOST, None),
            "nameserver 9.9.9.9\n"
        );
    }
}
