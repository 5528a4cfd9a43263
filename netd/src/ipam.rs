//! IP address management that survives restarts: each network's subnet, gateway and
//! allocated addresses, kept in one JSON file replaced atomically. Subnets come from a
//! pool (Docker's defaults) and never overlap a host route or another network;
//! `ipam.config` (`subnet`, `ip_range`, `gateway`, `aux_addresses`) and static addresses
//! are honoured; an exhausted pool or a taken address is a clear error.

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IpamError {
    #[error("no free subnet in the address pools for network {0} (every pool subnet overlaps a host route or another network)")]
    PoolExhausted(String),
    #[error("network {network}: subnet {subnet} overlaps {other}")]
    Overlap {
        network: String,
        subnet: Ipv4Net,
        other: String,
    },
    #[error("network {network}: {address} is outside its subnet {subnet}")]
    Outside {
        network: String,
        address: String,
        subnet: Ipv4Net,
    },
    #[error("network {network}: address {address} is already in use by {owner}")]
    Taken {
        network: String,
        address: Ipv4Addr,
        owner: String,
    },
    #[error("network {network}: address {address} is reserved (network, broadcast, gateway or aux address)")]
    Reserved { network: String, address: Ipv4Addr },
    #[error("network {network}: no free address left in {range}")]
    Exhausted { network: String, range: Ipv4Net },
    #[error("no such network {0}")]
    NoNetwork(String),
    #[error("invalid {what} {value:?}")]
    Invalid { what: &'static str, value: String },
    #[error("{path}: {message}")]
    State { path: PathBuf, message: String },
}

/// What a Compose network asks for (its IPv4 and IPv6 `ipam.config` entries).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    pub subnet: Option<String>,
    pub ip_range: Option<String>,
    pub gateway: Option<String>,
    pub aux_addresses: Vec<String>,
    /// `enable_ipv6`, with the IPv6 entry's `subnet` and `gateway` if any.
    pub ipv6: bool,
    pub subnet6: Option<String>,
    pub gateway6: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// Where dynamic addresses come from (the subnet when no `ip_range`).
    pub range: Ipv4Net,
    pub reserved: BTreeSet<Ipv4Addr>,
    /// Address -> owner (container name).
    pub allocated: BTreeMap<Ipv4Addr, String>,
    /// With `enable_ipv6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v6: Option<crate::ipam6::Net6>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    networks: BTreeMap<String, Network>,
}

/// Docker's default address pools: 172.17-31.x.x/16, then 192.168.x.x/20.
pub fn default_pools() -> Vec<Ipv4Net> {
    let mut v: Vec<Ipv4Net> = (17..=31)
        .filter_map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).ok())
        .collect();
    if let Ok(big) = Ipv4Net::new(Ipv4Addr::new(192, 168, 0, 0), 16) {
        v.extend(big.subnets(20).into_iter().flatten());
    }
    v
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// IPv4 routes of the host from `/proc/net/route` text (addresses in little-endian hex).
/// The default route is left out: it overlaps everything.
pub fn parse_routes(text: &str) -> Vec<Ipv4Net> {
    let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(|v| Ipv4Addr::from(v.swap_bytes()));
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (dest, mask) = (hex(f.get(1)?)?, hex(f.get(7)?)?);
            let prefix = u32::from(mask).count_ones() as u8;
            (prefix > 0).then(|| Ipv4Net::new(dest, prefix).ok()).flatten()
        })
        .collect()
}

pub struct Ipam {
    path: PathBuf,
    state: State,
    pools: Vec<Ipv4Net>,
}

impl Ipam {
    /// Loads the state at `path` (empty if absent).
    pub fn load(path: &Path, pools: Vec<Ipv4Net>) -> Result<Ipam, IpamError> {
        let err = |m: String| IpamError::State {
            path: path.to_path_buf(),
            message: m,
        };
        let state = match std::fs::read(path) {
            Ok(d) => serde_json::from_slice(&d).map_err(|e| err(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(err(e.to_string())),
        };
        Ok(Ipam {
            path: path.to_path_buf(),
            state,
            pools,
        })
    }

    fn save(&self) -> Result<(), IpamError> {
        let err = |m: String| IpamError::State {
            path: self.path.clone(),
            message: m,
        };
        let data = serde_json::to_vec_pretty(&self.state).map_err(|e| err(e.to_string()))?;
        let tmp = self.path.with_extension(format!("tmp{}", std::process::id()));
        let res = (|| -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res.map_err(|e| err(e.to_string()))
    }

    pub fn network(&self, name: &str) -> Option<&Network> {
        self.state.networks.get(name)
    }

    /// Creates (or returns the existing) allocation for a network.
    pub fn create_network(&mut self, name: &str, req: &Request, host_routes: &[Ipv4Net]) -> Result<Network, IpamError> {
        if let Some(n) = self.state.networks.get(name) {
            return Ok(n.clone());
        }
        let parse_net = |what: &'static str, s: &str| {
            s.parse::<Ipv4Net>().map(|n| n.trunc()).map_err(|_| IpamError::Invalid {
                what,
                value: s.to_string(),
            })
        };
        let parse_ip = |what: &'static str, s: &str| {
            s.parse::<Ipv4Addr>().map_err(|_| IpamError::Invalid {
                what,
                value: s.to_string(),
            })
        };
        let subnet = match &req.subnet {
            Some(s) => {
                let subnet = parse_net("subnet", s)?;
                if subnet.prefix_len() > 30 {
                    return Err(IpamError::Invalid {
                        what: "subnet (too small, /30 at most)",
                        value: s.clone(),
                    });
                }
                for (other, n) in &self.state.networks {
                    if overlaps(&subnet, &n.subnet) {
                        return Err(IpamError::Overlap {
                            network: name.into(),
                            subnet,
                            other: format!("network {other} ({})", n.subnet),
                        });
                    }
                }
                for r in host_routes {
                    if overlaps(&subnet, r) {
                        return Err(IpamError::Overlap {
                            network: name.into(),
                            subnet,
                            other: format!("the host route {r}"),
                        });
                    }
                }
                subnet
            }
            None => *self
                .pools
                .iter()
                .find(|p| {
                    !self.state.networks.values().any(|n| overlaps(p, &n.subnet))
                        && !host_routes.iter().any(|r| overlaps(p, r))
                })
                .ok_or_else(|| IpamError::PoolExhausted(name.into()))?,
        };
        let outside = |a: String| IpamError::Outside {
            network: name.into(),
            address: a,
            subnet,
        };
        let gateway = match &req.gateway {
            Some(g) => parse_ip("gateway", g)?,
            None => subnet.hosts().next().ok_or_else(|| outside("gateway".into()))?,
        };
        if !subnet.contains(&gateway) || gateway == subnet.network() || gateway == subnet.broadcast() {
            return Err(outside(gateway.to_string()));
        }
        let range = match &req.ip_range {
            Some(r) => {
                let r = parse_net("ip_range", r)?;
                if !subnet.contains(&r.network()) || !subnet.contains(&r.broadcast()) {
                    return Err(outside(r.to_string()));
                }
                r
            }
            None => subnet,
        };
        let mut reserved = BTreeSet::from([gateway]);
        for a in &req.aux_addresses {
            let ip = parse_ip("aux address", a)?;
            if !subnet.contains(&ip) {
                return Err(outside(ip.to_string()));
            }
            reserved.insert(ip);
        }
        let v6 = if req.ipv6 {
            let taken: Vec<_> = self
                .state
                .networks
                .values()
                .filter_map(|n| n.v6.as_ref().map(|v| v.subnet))
                .collect();
            Some(crate::ipam6::create(
                name,
                req.subnet6.as_deref(),
                req.gateway6.as_deref(),
                &taken,
            )?)
        } else {
            None
        };
        let n = Network {
            subnet,
            gateway,
            range,
            reserved,
            allocated: BTreeMap::new(),
            v6,
        };
        self.state.networks.insert(name.into(), n.clone());
        self.save()?;
        Ok(n)
    }

    pub fn remove_network(&mut self, name: &str) -> Result<(), IpamError> {
        if self.state.networks.remove(name).is_some() {
            self.save()?;
        }
        Ok(())
    }

    /// An address for `owner`: the one asked for (`ipv4_address`), else the next free
    /// one in the range.
    pub fn allocate(&mut self, network: &str, owner: &str, wanted: Option<&str>) -> Result<Ipv4Addr, IpamError> {
        let n = self
            .state
            .networks
            .get_mut(network)
            .ok_or_else(|| IpamError::NoNetwork(network.into()))?;
        if let Some((ip, _)) = n.allocated.iter().find(|(_, o)| *o == owner) {
            return Ok(*ip);
        }
        let ip = match wanted {
            Some(w) => {
                let ip = w.parse::<Ipv4Addr>().map_err(|_| IpamError::Invalid {
                    what: "ipv4_address",
                    value: w.into(),
                })?;
                if !n.subnet.contains(&ip) {
                    return Err(IpamError::Outside {
                        network: network.into(),
                        address: ip.to_string(),
                        subnet: n.subnet,
                    });
                }
                if ip == n.subnet.network() || ip == n.subnet.broadcast() || n.reserved.contains(&ip) {
                    return Err(IpamError::Reserved {
                        network: network.into(),
                        address: ip,
                    });
                }
                if let Some(o) = n.allocated.get(&ip) {
                    return Err(IpamError::Taken {
                        network: network.into(),
                        address: ip,
                        owner: o.clone(),
                    });
                }
                ip
            }
            None => {
                let (net, bcast) = (n.subnet.network(), n.subnet.broadcast());
                n.range
                    .hosts()
                    .find(|ip| *ip != net && *ip != bcast && !n.reserved.contains(ip) && !n.allocated.contains_key(ip))
                    .ok_or_else(|| IpamError::Exhausted {
                        network: network.into(),
                        range: n.range,
                    })?
            }
        };
        n.allocated.insert(ip, owner.into());
        self.save()?;
        Ok(ip)
    }

    /// An IPv6 address for `owner` on a network with `enable_ipv6` (`ipv6_address`, or
    /// the lowest free one); `None` when the network has no IPv6.
    pub fn allocate6(
        &mut self,
        network: &str,
        owner: &str,
        wanted: Option<&str>,
    ) -> Result<Option<std::net::Ipv6Addr>, IpamError> {
        let n = self
            .state
            .networks
            .get_mut(network)
            .ok_or_else(|| IpamError::NoNetwork(network.into()))?;
        let Some(v6) = n.v6.as_mut() else {
            return match wanted {
                Some(w) => Err(IpamError::Invalid {
                    what: "ipv6_address (the network does not have enable_ipv6)",
                    value: format!("{w} on {network}"),
                }),
                None => Ok(None),
            };
        };
        let before = v6.allocated.len();
        let ip = v6.allocate(network, owner, wanted)?;
        if v6.allocated.len() != before {
            self.save()?;
        }
        Ok(Some(ip))
    }

    /// Frees whatever `owner` holds on `network`.
    pub fn release(&mut self, network: &str, owner: &str) -> Result<(), IpamError> {
        if let Some(n) = self.state.networks.get_mut(network) {
            let held = |n: &Network| n.allocated.len() + n.v6.as_ref().map_or(0, |v| v.allocated.len());
            let before = held(n);
            n.allocated.retain(|_, o| o != owner);
            if let Some(v) = n.v6.as_mut() {
                v.allocated.retain(|_, o| o != owner);
            }
            if held(n) != before {
                self.save()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn subnets_avoid_routes_and_each_other_and_persist() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("ipam.json");
        let routes = vec![net("172.17.0.0/16"), net("10.0.0.0/8")];
        let mut ipam = Ipam::load(&path, default_pools()).unwrap();
        let a = ipam.create_network("p_default", &Request::default(), &routes).unwrap();
        assert_eq!(
            (a.subnet, a.gateway),
            (net("172.18.0.0/16"), Ipv4Addr::new(172, 18, 0, 1))
        );
        let b = ipam.create_network("p_back", &Request::default(), &routes).unwrap();
        assert_eq!(b.subnet, net("172.19.0.0/16"));
        assert_eq!(
            ipam.allocate("p_default", "p-web-1", None).unwrap(),
            Ipv4Addr::new(172, 18, 0, 2)
        );
        assert_eq!(
            ipam.allocate("p_default", "p-db-1", None).unwrap(),
            Ipv4Addr::new(172, 18, 0, 3)
        );
        // The same owner keeps its address; a restart finds everything again.
        assert_eq!(
            ipam.allocate("p_default", "p-web-1", None).unwrap(),
            Ipv4Addr::new(172, 18, 0, 2)
        );
        let mut again = Ipam::load(&path, default_pools()).unwrap();
        assert_eq!(
            again.network("p_default"),
            Some(&a)
                .map(|n| {
                    let mut n = n.clone();
                    n.allocated.insert(Ipv4Addr::new(172, 18, 0, 2), "p-web-1".into());
                    n.allocated.insert(Ipv4Addr::new(172, 18, 0, 3), "p-db-1".into());
                    n
                })
                .as_ref()
        );
        again.release("p_default", "p-web-1").unwrap();
        assert_eq!(
            again.allocate("p_default", "p-new-1", None).unwrap(),
            Ipv4Addr::new(172, 18, 0, 2)
        );
        again.remove_network("p_back").unwrap();
        assert!(again.network("p_back").is_none());
    }

    #[test]
    fn ipam_config_and_static_addresses() {
        let t = tempfile::tempdir().unwrap();
        let mut ipam = Ipam::load(&t.path().join("s.json"), default_pools()).unwrap();
        let req = Request {
            subnet: Some("10.1.0.0/16".into()),
            ip_range: Some("10.1.5.0/24".into()),
            gateway: Some("10.1.0.254".into()),
            aux_addresses: vec!["10.1.5.1".into()],
            ..Default::default()
        };
        let n = ipam.create_network("p_default", &req, &[]).unwrap();
        assert_eq!(n.gateway, Ipv4Addr::new(10, 1, 0, 254));
        assert_eq!(
            ipam.allocate("p_default", "a", None).unwrap(),
            Ipv4Addr::new(10, 1, 5, 2)
        );
        assert_eq!(
            ipam.allocate("p_default", "b", Some("10.1.0.100")).unwrap(),
            Ipv4Addr::new(10, 1, 0, 100)
        );
        assert_eq!(
            ipam.allocate("p_default", "c", Some("10.1.0.100"))
                .unwrap_err()
                .to_string(),
            "network p_default: address 10.1.0.100 is already in use by b"
        );
        assert!(matches!(
            ipam.allocate("p_default", "d", Some("10.2.0.1")),
            Err(IpamError::Outside { .. })
        ));
        assert!(matches!(
            ipam.allocate("p_default", "e", Some("10.1.0.254")),
            Err(IpamError::Reserved { .. })
        ));
        assert!(matches!(
            ipam.allocate("p_default", "f", Some("nope")),
            Err(IpamError::Invalid { .. })
        ));
        // Overlaps with another network or a host route are refused, naming both.
        let e = ipam
            .create_network(
                "p_other",
                &Request {
                    subnet: Some("10.1.2.0/24".into()),
                    ..Default::default()
                },
                &[],
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "network p_other: subnet 10.1.2.0/24 overlaps network p_default (10.1.0.0/16)"
        );
        let e = ipam
            .create_network(
                "p_x",
                &Request {
                    subnet: Some("192.168.9.0/24".into()),
                    ..Default::default()
                },
                &[net("192.168.0.0/16")],
            )
            .unwrap_err();
        assert!(e.to_string().contains("the host route 192.168.0.0/16"));
        for (field, bad) in [("subnet", "10.9.0.0/33"), ("gateway", "10.9.9.9")] {
            let mut r = Request {
                subnet: Some("10.3.0.0/16".into()),
                ..Default::default()
            };
            if field == "subnet" {
                r.subnet = Some(bad.into());
            } else {
                r.gateway = Some(bad.into());
            }
            assert!(ipam.create_network("p_bad", &r, &[]).is_err(), "{field}");
        }
    }

    #[test]
    fn exhaustion() {
        let t = tempfile::tempdir().unwrap();
        let mut ipam = Ipam::load(&t.path().join("s.json"), vec![net("10.50.0.0/30")]).unwrap();
        ipam.create_network("n", &Request::default(), &[]).unwrap();
        // /30: network, gateway .1, one host .2, broadcast.
        assert_eq!(ipam.allocate("n", "a", None).unwrap(), Ipv4Addr::new(10, 50, 0, 2));
        assert!(matches!(
            ipam.allocate("n", "b", None),
            Err(IpamError::Exhausted { .. })
        ));
        assert!(matches!(
            ipam.create_network("m", &Request::default(), &[]),
            Err(IpamError::PoolExhausted(_))
        ));
    }

    #[test]
    fn routes_from_proc() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert_eq!(parse_routes(text), vec![net("192.168.0.0/24"), net("172.17.0.0/16")]);
    }

    #[test]
    fn ipv6_addresses_persist_and_are_released() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("ipam.json");
        let mut ipam = Ipam::load(&path, default_pools()).unwrap();
        let req = Request {
            ipv6: true,
            subnet6: Some("fd00:db8:5::/64".into()),
            ..Default::default()
        };
        let n = ipam.create_network("p_v6", &req, &[]).unwrap();
        assert_eq!(n.v6.as_ref().unwrap().gateway.to_string(), "fd00:db8:5::1");
        let a = ipam.allocate6("p_v6", "a", None).unwrap().unwrap();
        assert_eq!(a.to_string(), "fd00:db8:5::2");
        // A network without enable_ipv6: no address, and a static one is refused.
        ipam.create_network("p_v4", &Request::default(), &[]).unwrap();
        assert_eq!(ipam.allocate6("p_v4", "a", None).unwrap(), None);
        let e = ipam.allocate6("p_v4", "a", Some("fd00::5")).unwrap_err().to_string();
        assert!(e.contains("does not have enable_ipv6"), "{e}");
        let mut again = Ipam::load(&path, default_pools()).unwrap();
        assert_eq!(again.allocate6("p_v6", "a", None).unwrap(), Some(a));
        again.release("p_v6", "a").unwrap();
        assert_eq!(again.allocate6("p_v6", "b", None).unwrap(), Some(a));
    }
}
