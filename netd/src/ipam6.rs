//! The IPv6 side of a network's IPAM (`enable_ipv6`): a subnet, given in `ipam.config`
//! or else a /64 of a unique local prefix made from the network's name (as Docker
//! takes them from `fd00::/8`), its gateway (the first address unless given), and the
//! addresses of its containers, persisted with the IPv4 side in [`crate::ipam`].

use crate::ipam::IpamError;
use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv6Addr;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Net6 {
    pub subnet: Ipv6Net,
    pub gateway: Ipv6Addr,
    /// Address -> owner.
    pub allocated: BTreeMap<Ipv6Addr, String>,
}

fn overlaps(a: &Ipv6Net, b: &Ipv6Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// A /64 in `fd00::/8` from a hash of `name`, the next one along while it overlaps one
/// of `taken`.
fn unique_local(name: &str, taken: &[Ipv6Net]) -> Ipv6Net {
    let h = crate::links::stable_hash(name.bytes());
    for i in 0..u16::MAX as u64 {
        // fd + 40 bits of global ID + 16 bits of subnet ID.
        let global = (h.wrapping_add(i)) & 0xff_ffff_ffff;
        let bits: u128 = (0xfdu128 << 120) | (u128::from(global) << 80);
        if let Ok(n) = Ipv6Net::new(Ipv6Addr::from(bits), 64) {
            if !taken.iter().any(|t| overlaps(&n, t)) {
                return n;
            }
        }
    }
    // 65,535 collisions in 2^40 cannot happen with the few networks of one host.
    Ipv6Net::new(Ipv6Addr::from(0xfdu128 << 120), 64).unwrap_or_default()
}

/// The IPv6 side of network `name`: `subnet` and `gateway` as `ipam.config` gives them.
pub fn create(name: &str, subnet: Option<&str>, gateway: Option<&str>, taken: &[Ipv6Net]) -> Result<Net6, IpamError> {
    let invalid = |what: &'static str, v: &str| IpamError::Invalid {
        what,
        value: v.to_string(),
    };
    let subnet = match subnet {
        Some(s) => {
            let n = s.parse::<Ipv6Net>().map_err(|_| invalid("IPv6 subnet", s))?.trunc();
            if n.prefix_len() > 126 {
                return Err(invalid("IPv6 subnet (too small, /126 at most)", s));
            }
            if let Some(t) = taken.iter().find(|t| overlaps(&n, t)) {
                return Err(IpamError::Invalid {
                    what: "IPv6 subnet (it overlaps another network's)",
                    value: format!("{n} and {t}"),
                });
            }
            n
        }
        None => unique_local(name, taken),
    };
    let gateway = match gateway {
        Some(g) => g.parse::<Ipv6Addr>().map_err(|_| invalid("IPv6 gateway", g))?,
        None => Ipv6Addr::from(u128::from(subnet.network()) + 1),
    };
    if !subnet.contains(&gateway) || gateway == subnet.network() {
        return Err(IpamError::Invalid {
            what: "IPv6 gateway (outside its subnet)",
            value: format!("{gateway} for {subnet} of network {name}"),
        });
    }
    Ok(Net6 {
        subnet,
        gateway,
        allocated: BTreeMap::new(),
    })
}

impl Net6 {
    /// An address for `owner`: the one asked for (`ipv6_address`), else the lowest free.
    pub fn allocate(&mut self, network: &str, owner: &str, wanted: Option<&str>) -> Result<Ipv6Addr, IpamError> {
        if let Some((ip, _)) = self.allocated.iter().find(|(_, o)| *o == owner) {
            return Ok(*ip);
        }
        let ip = match wanted {
            Some(w) => {
                let ip = w.parse::<Ipv6Addr>().map_err(|_| IpamError::Invalid {
                    what: "ipv6_address",
                    value: w.into(),
                })?;
                if !self.subnet.contains(&ip) || ip == self.subnet.network() || ip == self.gateway {
                    return Err(IpamError::Invalid {
                        what: "ipv6_address (outside its network's subnet, or reserved)",
                        value: format!("{ip} in {}", self.subnet),
                    });
                }
                if let Some(o) = self.allocated.get(&ip) {
                    return Err(IpamError::Invalid {
                        what: "ipv6_address (already in use)",
                        value: format!("{ip} by {o}"),
                    });
                }
                ip
            }
            None => {
                let first = u128::from(self.subnet.network()) + 1;
                let last = u128::from(self.subnet.broadcast());
                (first..=last)
                    .map(Ipv6Addr::from)
                    .find(|ip| *ip != self.gateway && !self.allocated.contains_key(ip))
                    .ok_or_else(|| IpamError::Invalid {
                        what: "IPv6 subnet (no free address left)",
                        value: format!("{} of {network}", self.subnet),
                    })?
            }
        };
        self.allocated.insert(ip, owner.into());
        Ok(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_gateways_and_addresses() {
        let a = create("p_default", None, None, &[]).unwrap();
        assert!(
            a.subnet.to_string().starts_with("fd") && a.subnet.prefix_len() == 64,
            "{}",
            a.subnet
        );
        assert_eq!(u128::from(a.gateway), u128::from(a.subnet.network()) + 1);
        // The same name gives the same subnet; a taken one is stepped over.
        assert_eq!(create("p_default", None, None, &[]).unwrap().subnet, a.subnet);
        assert_ne!(create("p_default", None, None, &[a.subnet]).unwrap().subnet, a.subnet);
        let mut n = create("p_x", Some("fd00:db8:1::/64"), None, &[a.subnet]).unwrap();
        assert_eq!(n.gateway, "fd00:db8:1::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(n.allocate("p_x", "a", None).unwrap().to_string(), "fd00:db8:1::2");
        assert_eq!(
            n.allocate("p_x", "b", Some("fd00:db8:1::99")).unwrap().to_string(),
            "fd00:db8:1::99"
        );
        assert_eq!(n.allocate("p_x", "a", None).unwrap().to_string(), "fd00:db8:1::2");
        assert!(n
            .allocate("p_x", "c", Some("fd00:db8:1::99"))
            .unwrap_err()
            .to_string()
            .contains("already in use"));
        assert!(n
            .allocate("p_x", "d", Some("fd00:db8:2::1"))
            .unwrap_err()
            .to_string()
            .contains("outside"));
        assert!(n.allocate("p_x", "e", Some("fd00:db8:1::1")).is_err());
        assert!(create("p_y", Some("fd00:db8:1::/80"), None, &[n.subnet])
            .unwrap_err()
            .to_string()
            .contains("overlaps"));
        assert!(create("p_z", Some("nope"), None, &[]).is_err());
        assert!(create("p_z", Some("fd00:db8:9::/64"), Some("fd00:db8:8::1"), &[]).is_err());
    }
}
