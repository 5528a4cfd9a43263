//! Bridges and veths. The netlink operations netd needs are the [`Netlink`] trait; the
//! real one is rtnetlink's. A container is attached by a veth pair: the host end joins
//! the network's bridge, the other end is created straight inside the container's
//! network namespace under its final name, and is addressed and given its routes from
//! inside (a thread that joins that namespace, so the engine's own namespace is never
//! changed).

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::io::AsRawFd;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{what}: {message}")]
    Netlink { what: String, message: String },
    #[error("interface name {0:?} is longer than 15 bytes")]
    NameTooLong(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    let what = what.into();
    move |e| LinkError::Netlink {
        what,
        message: e.to_string(),
    }
}

/// The link operations netd performs; a fake implements them for tests without root.
#[allow(async_fn_in_trait)]
pub trait Netlink {
    async fn index_of(&self, name: &str) -> Result<Option<u32>, LinkError>;
    async fn create_bridge(&self, name: &str, mac: [u8; 6], mtu: Option<u32>) -> Result<u32, LinkError>;
    /// A veth pair whose peer is created straight inside `netns` (no move afterwards,
    /// which costs the kernel a network-wide synchronization); returns the host end.
    /// A veth pair whose `peer` end, with the hardware address `peer_mac`, is made in
    /// the namespace `netns`.
    async fn create_veth_in(
        &self,
        host: &str,
        peer: &str,
        peer_mac: [u8; 6],
        netns: &std::fs::File,
    ) -> Result<u32, LinkError>;
    async fn set_controller(&self, link: u32, bridge: u32) -> Result<(), LinkError>;
    async fn set_up(&self, link: u32) -> Result<(), LinkError>;
    async fn add_address(&self, link: u32, addr: IpAddr, prefix: u8) -> Result<(), LinkError>;
    async fn default_route(&self, gateway: IpAddr) -> Result<(), LinkError>;
    async fn delete(&self, link: u32) -> Result<(), LinkError>;
}

/// rtnetlink over a connection of the calling thread's network namespace.
pub struct Rtnl {
    handle: Handle,
}

impl Rtnl {
    /// Opens a connection; its driver runs on the current tokio runtime.
    pub fn connect() -> Result<Rtnl, LinkError> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Rtnl { handle })
    }

    pub(crate) fn handle(&self) -> Handle {
        self.handle.clone()
    }
}

fn check_name(name: &str) -> Result<(), LinkError> {
    if name.len() > 15 || name.is_empty() {
        return Err(LinkError::NameTooLong(name.into()));
    }
    Ok(())
}

impl Netlink for Rtnl {
    async fn index_of(&self, name: &str) -> Result<Option<u32>, LinkError> {
        let mut links = self.handle.link().get().match_name(name.to_string()).execute();
        match links.try_next().await {
            Ok(Some(m)) => Ok(Some(m.header.index)),
            Ok(None) => Ok(None),
            // No such device.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
            Err(e) => Err(nl(format!("looking up {name}"))(e)),
        }
    }

    async fn create_bridge(&self, name: &str, mac: [u8; 6], mtu: Option<u32>) -> Result<u32, LinkError> {
        check_name(name)?;
        let mut b = LinkBridge::new(name).address(mac.to_vec());
        if let Some(m) = mtu {
            b = b.mtu(m);
        }
        self.handle
            .link()
            .add(b.build())
            .execute()
            .await
            .map_err(nl(format!("creating bridge {name}")))?;
        self.index_of(name).await?.ok_or_else(|| LinkError::Netlink {
            what: format!("bridge {name}"),
            message: "missing after creation".into(),
        })
    }

    async fn create_veth_in(
        &self,
        host: &str,
        peer: &str,
        peer_mac: [u8; 6],
        netns: &std::fs::File,
    ) -> Result<u32, LinkError> {
        use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkInfo};
        check_name(host)?;
        check_name(peer)?;
        let mut msg = LinkVeth::new(host, peer).build();
        for a in msg.attributes.iter_mut() {
            if let LinkAttribute::LinkInfo(infos) = a {
                for i in infos.iter_mut() {
                    if let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) = i {
                        p.attributes.push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
                        p.attributes.push(LinkAttribute::Address(peer_mac.to_vec()));
                    }
                }
            }
        }
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(nl(format!("creating veth {host}")))?;
        self.index_of(host).await?.ok_or_else(|| LinkError::Netlink {
            what: format!("veth {host}"),
            message: "missing after creation".into(),
        })
    }

    async fn set_controller(&self, link: u32, bridge: u32) -> Result<(), LinkError> {
        let m = LinkUnspec::new_with_index(link).controller(bridge).build();
        self.handle
            .link()
            .set(m)
            .execute()
            .await
            .map_err(nl("attaching to the bridge"))
    }

    async fn set_up(&self, link: u32) -> Result<(), LinkError> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(link).up().build())
            .execute()
            .await
            .map_err(nl("setting a link up"))
    }

    async fn add_address(&self, link: u32, addr: IpAddr, prefix: u8) -> Result<(), LinkError> {
        use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
        let mut req = self.handle.address().add(link, addr, prefix);
        if addr.is_ipv6() {
            // Usable at once: duplicate address detection would hold it back for a
            // second or more, and the addresses are the IPAM's, unique by construction.
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match req.execute().await {
            // Already there: adding an address is idempotent for netd.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
            r => r.map_err(nl(format!("adding {addr}/{prefix}"))),
        }
    }

    async fn default_route(&self, gateway: IpAddr) -> Result<(), LinkError> {
        let r = match gateway {
            IpAddr::V4(g) => RouteMessageBuilder::<Ipv4Addr>::new().gateway(g).build(),
            IpAddr::V6(g) => RouteMessageBuilder::<std::net::Ipv6Addr>::new().gateway(g).build(),
        };
        self.handle
            .route()
            .add(r)
            .execute()
            .await
            .map_err(nl(format!("default route via {gateway}")))
    }

    async fn delete(&self, link: u32) -> Result<(), LinkError> {
        self.handle
            .link()
            .del(link)
            .execute()
            .await
            .map_err(nl("deleting a link"))
    }
}

/// FNV-1a of some bytes: a short, stable name part (std's hasher is not stable across
/// versions), for names that must fit an interface or a cgroup.
pub fn stable_hash(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// A bridge name for a network that fits in 15 bytes: `rc-` and a hash of its name.
pub fn bridge_name(network: &str) -> String {
    format!("rc-{:012x}", stable_hash(network.bytes()) & 0xffff_ffff_ffff)
}

/// Creates the network's bridge with its gateway address (and IPv6 gateway with its
/// prefix length, with `enable_ipv6`) or finds it, up.
pub async fn ensure_bridge(
    nl: &impl Netlink,
    name: &str,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    gateway6: Option<(std::net::Ipv6Addr, u8)>,
    mtu: Option<u32>,
) -> Result<u32, LinkError> {
    if let Some(i) = nl.index_of(name).await? {
        // Found: made whole, should a crash have come between its parts.
        nl.add_address(i, IpAddr::V4(gateway), subnet.prefix_len()).await?;
        if let Some((g6, prefix)) = gateway6 {
            nl.add_address(i, IpAddr::V6(g6), prefix).await?;
        }
        nl.set_up(i).await?;
        return Ok(i);
    }
    // A bridge without an address of its own takes its lowest port's, and changes it as
    // ports come and go: the containers' neighbour entries for the gateway would go
    // stale. A fixed one, from the gateway address, as a container's from its own.
    let idx = nl.create_bridge(name, mac_for(gateway), mtu).await?;
    nl.add_address(idx, IpAddr::V4(gateway), subnet.prefix_len()).await?;
    if let Some((g6, prefix)) = gateway6 {
        nl.add_address(idx, IpAddr::V6(g6), prefix).await?;
    }
    nl.set_up(idx).await?;
    Ok(idx)
}

/// Removes a network's bridge if it exists (its veths' host ends go with their
/// containers' namespaces, or are detached from it by the kernel).
pub async fn remove_bridge(nl: &impl Netlink, name: &str) -> Result<(), LinkError> {
    if let Some(i) = nl.index_of(name).await? {
        nl.delete(i).await?;
    }
    Ok(())
}

/// How a container joins a network.
pub struct Attachment<'a> {
    pub bridge: u32,
    /// `/proc/<init pid>/ns/net`.
    pub netns: &'a std::path::Path,
    /// The host end's name (15 bytes at most); the container end is `ifname`.
    pub host_name: &'a str,
    pub ifname: &'a str,
    pub address: Ipv4Addr,
    pub prefix: u8,
    /// Only for the first non-internal network.
    pub gateway: Option<Ipv4Addr>,
    /// `mac_address`; otherwise one made from `address` ([`mac_for`]).
    pub mac: Option<[u8; 6]>,
    /// With `enable_ipv6`: the address and its prefix length, and the IPv6 gateway for
    /// the default route (as `gateway`, on the first non-internal network only).
    pub address6: Option<(std::net::Ipv6Addr, u8)>,
    pub gateway6: Option<std::net::Ipv6Addr>,
}

/// A `mac_address` that is not a unicast hardware address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {value:?}{why}")]
pub struct MacError {
    pub value: String,
    pub why: &'static str,
}

/// A `mac_address` value, `02:42:ac:11:00:02` (or with dashes): a unicast address.
pub fn parse_mac(s: &str) -> Result<[u8; 6], MacError> {
    let invalid = |why: &'static str| MacError {
        value: s.to_string(),
        why,
    };
    let bad = || invalid("");
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(&parts) {
        if p.len() != 2 {
            return Err(bad());
        }
        *m = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if mac[0] & 1 == 1 {
        return Err(invalid(": a multicast address"));
    }
    if mac == [0; 6] {
        return Err(invalid(": all zeroes"));
    }
    Ok(mac)
}

/// A container's hardware address, made from its IPv4 address as Docker makes it
/// (`02:42` and the four bytes). The same address always has the same MAC, so the
/// neighbour entry the host still holds for a container just replaced at that address
/// stays right: with a new random MAC, the host (which ignores ARP updates within a
/// second of the last, `locktime`) would answer the new container at the old MAC for
/// half a minute, and its DNS queries would go unanswered.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// Plugs a container into a bridge. On any failure the veth is removed again.
pub async fn attach(host: &impl Netlink, a: &Attachment<'_>) -> Result<(), LinkError> {
    let ns = std::fs::File::open(a.netns)?;
    // The container end is made inside the container's namespace under its final name.
    let hidx = host
        .create_veth_in(a.host_name, a.ifname, a.mac.unwrap_or_else(|| mac_for(a.address)), &ns)
        .await?;
    let res = async {
        host.set_controller(hidx, a.bridge).await?;
        host.set_up(hidx).await?;
        configure_inside(a).await
    }
    .await;
    if res.is_err() {
        let _ = host.delete(hidx).await;
    }
    res
}

/// Addresses and routes the container end, from a thread inside the namespace.
async fn configure_inside(a: &Attachment<'_>) -> Result<(), LinkError> {
    let netns = a.netns.to_path_buf();
    let (ifname, address, prefix, gateway) = (a.ifname.to_string(), a.address, a.prefix, a.gateway);
    let (address6, gateway6) = (a.address6, a.gateway6);
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A plain thread (never a blocking task waiting on another, which can starve the
    // runtime's blocking pool), reporting back through a channel.
    std::thread::spawn(move || {
        let r = (move || -> Result<(), LinkError> {
            let f = std::fs::File::open(&netns)?;
            // SAFETY: setns on this thread only; the thread ends after this work.
            if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error().into());
            }
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let nl = Rtnl::connect()?;
                if let Some(lo) = nl.index_of("lo").await? {
                    nl.set_up(lo).await?;
                }
                let idx = nl.index_of(&ifname).await?.ok_or_else(|| LinkError::Netlink {
                    what: ifname.clone(),
                    message: "not in the container".into(),
                })?;
                nl.add_address(idx, IpAddr::V4(address), prefix).await?;
                if let Some((a6, p6)) = address6 {
                    nl.add_address(idx, IpAddr::V6(a6), p6).await?;
                }
                nl.set_up(idx).await?;
                if let Some(gw) = gateway {
                    nl.default_route(IpAddr::V4(gw)).await?;
                }
                if let Some(gw) = gateway6 {
                    nl.default_route(IpAddr::V6(gw)).await?;
                }
                Ok(())
            })
        })();
        let _ = tx.send(r);
    });
    rx.await
        .map_err(|_| LinkError::Io(std::io::Error::other("the namespace thread ended early")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_on;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    #[test]
    fn mac_addresses_are_parsed_and_checked() {
        assert_eq!(parse_mac("02:42:AC:11:00:02"), Ok([2, 0x42, 0xac, 0x11, 0, 2]));
        assert_eq!(parse_mac("02-aa-00-00-00-01"), Ok([2, 0xaa, 0, 0, 0, 1]));
        for bad in [
            "",
            "02:42:ac:11:00",
            "02:42:ac:11:00:02:03",
            "02:42:ac:11:0:02",
            "zz:42:ac:11:00:02",
        ] {
            assert!(
                parse_mac(bad).unwrap_err().to_string().contains("invalid MAC address"),
                "{bad}"
            );
        }
        assert!(parse_mac("01:00:5e:00:00:01")
            .unwrap_err()
            .to_string()
            .contains("multicast"));
        assert!(parse_mac("00:00:00:00:00:00")
            .unwrap_err()
            .to_string()
            .contains("zeroes"));
    }

    /// A link: name, MTU, up, addresses, controller.
    type FakeLink = (String, Option<u32>, bool, Vec<(IpAddr, u8)>, Option<u32>);

    /// Links in memory: what netd asked for, and a switch to make one operation fail.
    #[derive(Default)]
    struct Fake {
        links: RefCell<BTreeMap<u32, FakeLink>>,
        next: RefCell<u32>,
        fail_controller: bool,
    }

    impl Fake {
        fn add(&self, name: &str, mtu: Option<u32>) -> u32 {
            let mut n = self.next.borrow_mut();
            *n += 1;
            self.links
                .borrow_mut()
                .insert(*n, (name.into(), mtu, false, vec![], None));
            *n
        }
        fn names(&self) -> Vec<String> {
            self.links.borrow().values().map(|l| l.0.clone()).collect()
        }
    }

    impl Netlink for Fake {
        async fn index_of(&self, name: &str) -> Result<Option<u32>, LinkError> {
            Ok(self.links.borrow().iter().find(|(_, l)| l.0 == name).map(|(i, _)| *i))
        }
        async fn create_bridge(&self, name: &str, _mac: [u8; 6], mtu: Option<u32>) -> Result<u32, LinkError> {
            check_name(name)?;
            Ok(self.add(name, mtu))
        }
        async fn create_veth_in(
            &self,
            host: &str,
            peer: &str,
            _: [u8; 6],
            _: &std::fs::File,
        ) -> Result<u32, LinkError> {
            check_name(host)?;
            check_name(peer)?;
            // The peer is in another namespace: not among this namespace's links.
            Ok(self.add(host, None))
        }
        async fn set_controller(&self, link: u32, bridge: u32) -> Result<(), LinkError> {
            if self.fail_controller {
                return Err(LinkError::Netlink {
                    what: "enslaving".into(),
                    message: "refused by the fake".into(),
                });
            }
            if let Some(l) = self.links.borrow_mut().get_mut(&link) {
                l.4 = Some(bridge);
            }
            Ok(())
        }
        async fn set_up(&self, link: u32) -> Result<(), LinkError> {
            if let Some(l) = self.links.borrow_mut().get_mut(&link) {
                l.2 = true;
            }
            Ok(())
        }
        async fn add_address(&self, link: u32, addr: IpAddr, prefix: u8) -> Result<(), LinkError> {
            // As the kernel: an address already there is no change.
            if let Some(l) = self.links.borrow_mut().get_mut(&link) {
                if !l.3.contains(&(addr, prefix)) {
                    l.3.push((addr, prefix));
                }
            }
            Ok(())
        }
        async fn default_route(&self, _: IpAddr) -> Result<(), LinkError> {
            Ok(())
        }
        async fn delete(&self, link: u32) -> Result<(), LinkError> {
            self.links.borrow_mut().remove(&link);
            Ok(())
        }
    }

    #[test]
    fn a_container_mac_is_docker_s_and_follows_its_address() {
        assert_eq!(mac_for(Ipv4Addr::new(172, 17, 0, 3)), [0x02, 0x42, 172, 17, 0, 3]);
        assert_ne!(
            mac_for(Ipv4Addr::new(172, 17, 0, 3)),
            mac_for(Ipv4Addr::new(172, 17, 0, 4))
        );
    }

    #[test]
    fn a_bridge_is_made_once_with_its_gateway_mtu_and_up() {
        let nl = Fake::default();
        let subnet: Ipv4Net = "172.18.0.0/16".parse().unwrap();
        let gw: Ipv4Addr = "172.18.0.1".parse().unwrap();
        let name = bridge_name("p_default");
        let a = block_on(ensure_bridge(&nl, &name, subnet, gw, None, Some(1400))).unwrap();
        // Half made (a crash before its address): found, not made twice, and completed.
        nl.links.borrow_mut().get_mut(&a).unwrap().3.clear();
        let b = block_on(ensure_bridge(&nl, &name, subnet, gw, None, Some(1400))).unwrap();
        assert_eq!(a, b, "found, not made twice");
        let links = nl.links.borrow();
        let l = &links[&a];
        assert_eq!((l.1, l.2), (Some(1400), true));
        assert_eq!(l.3, vec![(IpAddr::V4(gw), 16)]);
        drop(links);
        block_on(remove_bridge(&nl, &name)).unwrap();
        block_on(remove_bridge(&nl, &name)).unwrap();
        assert!(nl.names().is_empty());
    }

    #[test]
    fn a_failed_attach_leaves_no_veth() {
        let nl = Fake {
            fail_controller: true,
            ..Default::default()
        };
        let bridge = nl.add("rc-bridge", None);
        let netns = std::path::PathBuf::from("/proc/self/ns/net");
        let a = Attachment {
            bridge,
            netns: &netns,
            host_name: "rvhostend",
            ifname: "eth0",
            address: "172.18.0.2".parse().unwrap(),
            prefix: 16,
            gateway: None,
            mac: None,
            address6: None,
            gateway6: None,
        };
        let e = block_on(attach(&nl, &a)).unwrap_err();
        assert!(e.to_string().contains("refused by the fake"), "{e}");
        assert_eq!(nl.names(), vec!["rc-bridge"]);
        // Names that do not fit an interface are refused before anything is made.
        let long = Attachment {
            ifname: "an-interface-name-too-long",
            ..a
        };
        let e = block_on(attach(&Fake::default(), &long)).unwrap_err();
        assert!(e.to_string().contains("longer than 15 bytes"), "{e}");
    }

    #[test]
    fn bridge_names_fit_and_are_stable() {
        let a = bridge_name("myproject_default");
        assert_eq!(a.len(), 15);
        assert_eq!(a, bridge_name("myproject_default"));
        assert_ne!(a, bridge_name("myproject_back"));
    }
}
