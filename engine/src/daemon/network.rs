//! The engine's side of networking: Compose networks made real with `netd` (a bridge per
//! network, persistent IPAM, a veth per container per network), the embedded DNS server
//! of each network, and the published-port proxies.
//!
//! DNS scoping: each network's server (on its gateway address) answers only askers that
//! are on that network, and answers them from the zones of every network the asker is
//! on, as Docker's resolver does for a container on several networks.

use ipnet::Ipv4Net;
use netd::dns::{Reply, Zone};
use netd::ipam::{Ipam, Request};
use netd::links::{self, Attachment, Rtnl};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use tokio::task::JoinHandle;

/// The IPAM's state in `<root>/networks`.
const IPAM_STATE: &str = ".ipam.json";

/// What the engine keeps of a network it created (`<root>/networks/<name>.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub name: String,
    pub project: String,
    pub key: String,
    pub internal: bool,
    pub subnet: String,
    pub gateway: String,
    pub bridge: String,
    /// With `enable_ipv6`: its IPv6 subnet and gateway (empty otherwise).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subnet6: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway6: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

impl NetworkRecord {
    /// What it was made from, to make it again (its subnets as recorded).
    pub fn spec(&self) -> NetSpec {
        NetSpec {
            project: self.project.clone(),
            key: self.key.clone(),
            internal: self.internal,
            ipam: Request {
                subnet: Some(self.subnet.clone()),
                ipv6: !self.subnet6.is_empty(),
                subnet6: Some(self.subnet6.clone()).filter(|s| !s.is_empty()),
                ..Default::default()
            },
            mtu: self.mtu,
            ..Default::default()
        }
    }
}

/// What a Compose network asks for.
#[derive(Debug, Clone, Default)]
pub struct NetSpec {
    pub project: String,
    pub key: String,
    pub internal: bool,
    pub external: bool,
    pub ipam: Request,
    pub mtu: Option<u32>,
}

#[derive(Default)]
struct Resolver {
    zones: HashMap<String, Zone>,
    /// Every address of every container -> who holds it and on which networks.
    members: HashMap<IpAddr, Member>,
}

impl Resolver {
    /// The first answer of the zones of `nets`, in that order; else a forward.
    fn answer<'a>(&self, nets: impl IntoIterator<Item = &'a String>, q: &[u8]) -> Reply {
        for n in nets {
            if let Some(Reply::Answer(b)) = self.zones.get(n).map(|z| z.answer(q)) {
                return Reply::Answer(b);
            }
        }
        Reply::Forward
    }
}

struct Member {
    /// The container holding the address now. An address freed by one container may
    /// already be another's when the first one's exit is processed; only the holder's
    /// leaving takes it out of the zones.
    holder: String,
    /// The networks that container is on: the zones its queries are answered from.
    nets: Vec<String>,
}

pub struct Net {
    dir: PathBuf,
    nl: Rtnl,
    ipam: Mutex<Ipam>,
    resolver: Arc<RwLock<Resolver>>,
    dns: Mutex<HashMap<String, JoinHandle<()>>>,
    /// Each container's own server at 127.0.0.11.
    embedded: super::embedded_dns::EmbeddedDns,
    upstreams: Vec<SocketAddr>,
    /// The policy-routing table that keeps networks apart (`netd::isolation`).
    isolation_table: u32,
    /// One isolation update at a time, each from the records as they are then.
    isolation_lock: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a container joins one of its networks.
#[derive(Debug, Clone)]
pub struct Plug {
    pub network: String,
    /// Its interface inside (`eth0`, or `interface_name`).
    pub ifname: String,
    pub ip: Ipv4Addr,
    /// Through this network's gateway (the first non-internal network only).
    pub default_route: bool,
    /// `mac_address`, when given.
    pub mac: Option<[u8; 6]>,
    /// With `enable_ipv6`.
    pub ip6: Option<std::net::Ipv6Addr>,
}

/// What can go wrong with a network: the errors of netd's parts, with the network's
/// name where there is one.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A name the engine never puts on disk (see `compose::names`).
    #[error("{0}")]
    Refused(String),
    #[error("network {0} declared as external, but could not be found")]
    ExternalMissing(String),
    #[error("network {0} not found")]
    NotFound(String),
    #[error("network {0}: its bridge is gone")]
    BridgeGone(String),
    #[error(transparent)]
    Ipam(#[from] netd::ipam::IpamError),
    #[error(transparent)]
    Link(#[from] links::LinkError),
    #[error("isolating the networks: {}", .0.join("; "))]
    Isolation(Vec<String>),
    #[error("network {network}: DNS server on {at}: {source}")]
    Dns {
        network: String,
        at: SocketAddr,
        source: std::io::Error,
    },
    /// The network's state on disk.
    #[error("{}: {source}", .path.display())]
    State { path: PathBuf, source: std::io::Error },
    /// Any of the above, for the network named.
    #[error("network {network}: {source}")]
    On { network: String, source: Box<NetError> },
    #[error("attaching to network {network}: {source}")]
    Attach { network: String, source: links::LinkError },
    #[error("{at}: {source}")]
    Mac { at: String, source: links::MacError },
}

impl NetError {
    fn on(network: &str) -> impl FnOnce(NetError) -> NetError + '_ {
        move |e| NetError::On {
            network: network.to_string(),
            source: Box::new(e),
        }
    }
}

/// The hardware address a container gets on its network `key`: the network's own
/// `mac_address`, else the service's on its first network, else none (one is made from
/// its address).
pub fn mac_address(svc: &compose::model::Service, key: &str, first: bool) -> Result<Option<[u8; 6]>, NetError> {
    let on_net = svc
        .networks
        .as_ref()
        .and_then(|m| m.get(key))
        .and_then(|o| o.as_ref())
        .and_then(|o| o.mac_address.clone());
    let (value, at) = match (on_net, &svc.mac_address) {
        (Some(m), _) => (m, format!("networks.{key}.mac_address")),
        (None, Some(m)) if first => (m.clone(), "mac_address".to_string()),
        _ => return Ok(None),
    };
    netd::links::parse_mac(&value)
        .map(Some)
        .map_err(|source| NetError::Mac { at, source })
}

/// A veth host-end name that fits in 15 bytes, stable for a container and network.
pub fn veth_name(container_id: &str, network: &str) -> String {
    let h = links::stable_hash(container_id.bytes().chain([0]).chain(network.bytes()));
    format!("rv{:013x}", h & 0xf_ffff_ffff_ffff)
}

impl Net {
    /// Opens the state under `<root>/networks` (the tokio runtime must be running).
    pub fn open(root: &Path) -> Result<Net, NetError> {
        let dir = root.join("networks");
        std::fs::create_dir_all(&dir).map_err(|source| NetError::State {
            path: dir.clone(),
            source,
        })?;
        // The IPAM state lives beside the records, under a name no network can have
        // (names start with a letter or digit): `ipam.json` was also the record of a
        // network named `ipam`. A state of an older engine is moved to its new name.
        let state = dir.join(IPAM_STATE);
        let old = dir.join("ipam.json");
        if !state.exists() && Ipam::load(&old, Vec::new()).is_ok() && old.exists() {
            std::fs::rename(&old, &state).map_err(|source| NetError::State {
                path: old.clone(),
                source,
            })?;
        }
        let ipam = Ipam::load(&state, netd::ipam::default_pools())?;
        let nl = Rtnl::connect()?;
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        Ok(Net {
            dir,
            nl,
            ipam: Mutex::new(ipam),
            resolver: Arc::default(),
            dns: Mutex::default(),
            embedded: Default::default(),
            upstreams: netd::dns_server::upstreams(&resolv),
            isolation_table: netd::isolation::table_id(root),
            isolation_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Makes the isolation between networks match the records: every bridge of this
    /// engine is kept from routing to any of its networks' subnets.
    pub async fn isolate(&self) -> Result<(), NetError> {
        let _one = self.isolation_lock.lock().await;
        let members: Vec<netd::isolation::Member> = self
            .records()
            .into_iter()
            .map(|r| netd::isolation::Member {
                subnets: [r.subnet.as_str(), r.subnet6.as_str()]
                    .iter()
                    .filter_map(|s| s.parse().ok())
                    .collect(),
                bridge: r.bridge,
            })
            .collect();
        netd::isolation::sync(&self.nl, self.isolation_table, &members)
            .await
            .map_err(|errors| NetError::Isolation(errors.iter().map(|e| e.to_string()).collect()))
    }

    fn record_path(&self, name: &str) -> PathBuf {
        super::state::child(&self.dir, &format!("{name}.json"))
    }

    pub fn record(&self, name: &str) -> Option<NetworkRecord> {
        serde_json::from_slice(&std::fs::read(self.record_path(name)).ok()?).ok()
    }

    /// Every network this engine created.
    pub fn records(&self) -> Vec<NetworkRecord> {
        let mut v: Vec<NetworkRecord> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json") && e.file_name() != IPAM_STATE)
            .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
            .collect();
        v.sort_by(|a: &NetworkRecord, b| a.name.cmp(&b.name));
        v
    }

    /// Creates the network (bridge, addresses, DNS server) or finds it. Returns whether
    /// it was created now.
    pub async fn ensure(&self, name: &str, spec: &NetSpec) -> Result<bool, NetError> {
        // Whatever the request's project said: a name made from its keys is checked too.
        compose::names::resource("network", name).map_err(NetError::Refused)?;
        let existing = self.record(name);
        if spec.external && existing.is_none() {
            return Err(NetError::ExternalMissing(name.into()));
        }
        let created = existing.is_none();
        let host_routes = netd::ipam::parse_routes(&std::fs::read_to_string("/proc/net/route").unwrap_or_default());
        let alloc = lock(&self.ipam)
            .create_network(name, &spec.ipam, &host_routes)
            .map_err(|e| NetError::on(name)(e.into()))?;
        let bridge = links::bridge_name(name);
        let rec = NetworkRecord {
            name: name.into(),
            project: spec.project.clone(),
            key: spec.key.clone(),
            internal: spec.internal,
            subnet: alloc.subnet.to_string(),
            gateway: alloc.gateway.to_string(),
            bridge: bridge.clone(),
            subnet6: alloc.v6.as_ref().map(|v| v.subnet.to_string()).unwrap_or_default(),
            gateway6: alloc.v6.as_ref().map(|v| v.gateway.to_string()).unwrap_or_default(),
            mtu: spec.mtu,
        };
        if created {
            // On disk first: a crash from here on is cleaned up by `down` or the next start.
            let path = self.record_path(name);
            let data = serde_json::to_vec_pretty(&rec).map_err(|e| NetError::State {
                path: path.clone(),
                source: e.into(),
            })?;
            safefs::atomic::write(&path, &data).map_err(|source| NetError::State { path, source })?;
        }
        // Kept apart from the other networks before anything can join it.
        self.isolate().await.map_err(NetError::on(name))?;
        let gateway6 = alloc.v6.as_ref().map(|v| (v.gateway, v.subnet.prefix_len()));
        links::ensure_bridge(&self.nl, &bridge, alloc.subnet, alloc.gateway, gateway6, spec.mtu)
            .await
            .map_err(|e| NetError::on(name)(e.into()))?;
        self.ensure_dns(name, alloc.gateway)?;
        Ok(created)
    }

    fn ensure_dns(&self, name: &str, gateway: Ipv4Addr) -> Result<(), NetError> {
        let mut dns = lock(&self.dns);
        if dns.get(name).is_some_and(|t| !t.is_finished()) {
            return Ok(());
        }
        self.resolver
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .zones
            .entry(name.to_string())
            .or_default();
        let at = SocketAddr::new(IpAddr::V4(gateway), 53);
        let sock = std::net::UdpSocket::bind(at)
            .and_then(|s| s.set_nonblocking(true).map(|_| s))
            .and_then(tokio::net::UdpSocket::from_std)
            .map_err(|source| NetError::Dns {
                network: name.to_string(),
                at,
                source,
            })?;
        let resolver = self.resolver.clone();
        let me = name.to_string();
        let answer: netd::dns_server::Answerer = Arc::new(move |from: IpAddr, q: &[u8]| {
            let r = resolver.read().unwrap_or_else(|p| p.into_inner());
            let Some(nets) = r.members.get(&from).map(|m| &m.nets).filter(|n| n.contains(&me)) else {
                tracing::debug!("DNS on {me}: a query from {from}, not on the network, dropped");
                return None;
            };
            Some(r.answer(std::iter::once(&me).chain(nets.iter().filter(|n| **n != me)), q))
        });
        let upstreams = self.upstreams.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = netd::dns_server::serve_with(sock, answer, upstreams).await {
                tracing::warn!("DNS server stopped: {e}");
            }
        });
        dns.insert(name.to_string(), task);
        Ok(())
    }

    /// Removes a network this engine created: DNS server, bridge, addresses, record.
    pub async fn remove(&self, name: &str) -> Result<(), NetError> {
        if let Some(t) = lock(&self.dns).remove(name) {
            t.abort();
        }
        self.resolver
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .zones
            .remove(name);
        links::remove_bridge(&self.nl, &links::bridge_name(name))
            .await
            .map_err(|e| NetError::on(name)(e.into()))?;
        lock(&self.ipam).remove_network(name)?;
        let path = self.record_path(name);
        match std::fs::remove_file(&path) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                return Err(NetError::State { path, source })
            }
            _ => {}
        }
        self.isolate().await.map_err(NetError::on(name))
    }

    pub fn allocate(&self, network: &str, owner: &str, wanted: Option<&str>) -> Result<Ipv4Addr, NetError> {
        Ok(lock(&self.ipam).allocate(network, owner, wanted)?)
    }

    pub fn release(&self, network: &str, owner: &str) {
        let _ = lock(&self.ipam).release(network, owner);
    }

    pub fn network(&self, name: &str) -> Option<(Ipv4Net, Ipv4Addr)> {
        lock(&self.ipam).network(name).map(|n| (n.subnet, n.gateway))
    }

    /// The network's IPv6 prefix length and gateway, with `enable_ipv6`.
    pub fn network6(&self, name: &str) -> Option<(u8, std::net::Ipv6Addr)> {
        lock(&self.ipam)
            .network(name)
            .and_then(|n| n.v6.as_ref())
            .map(|v| (v.subnet.prefix_len(), v.gateway))
    }

    /// An IPv6 address on a network with `enable_ipv6` (`None` without).
    pub fn allocate6(
        &self,
        network: &str,
        owner: &str,
        wanted: Option<&str>,
    ) -> Result<Option<std::net::Ipv6Addr>, NetError> {
        Ok(lock(&self.ipam).allocate6(network, owner, wanted)?)
    }

    /// Plugs a container (its init is `pid`) into a network; blocking, for the runtime's
    /// start hook (which runs on a blocking thread of the engine's runtime).
    pub fn attach_blocking(
        &self,
        rt: &tokio::runtime::Handle,
        pid: i32,
        container_id: &str,
        plug: &Plug,
    ) -> Result<(), NetError> {
        let Plug {
            network,
            ifname,
            ip,
            default_route,
            mac,
            ip6,
        } = plug;
        let v6 = ip6.and_then(|a| self.network6(network).map(|(prefix, gw)| ((a, prefix), gw)));
        let (network, ip) = (network.as_str(), *ip);
        let (subnet, gateway) = self
            .network(network)
            .ok_or_else(|| NetError::NotFound(network.to_string()))?;
        let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
        let host_name = veth_name(container_id, network);
        rt.block_on(async {
            let bridge = self
                .nl_index(&links::bridge_name(network))
                .await?
                .ok_or_else(|| NetError::BridgeGone(network.to_string()))?;
            // A leftover host end (a container that died with the engine away) goes first.
            if let Some(old) = self.nl_index(&host_name).await? {
                let _ = netd::links::Netlink::delete(&self.nl, old).await;
            }
            links::attach(
                &self.nl,
                &Attachment {
                    bridge,
                    netns: &netns,
                    host_name: &host_name,
                    ifname,
                    address: ip,
                    prefix: subnet.prefix_len(),
                    gateway: default_route.then_some(gateway),
                    mac: *mac,
                    address6: v6.map(|v| v.0),
                    gateway6: v6.filter(|_| *default_route).map(|v| v.1),
                },
            )
            .await
            .map_err(|source| NetError::Attach {
                network: network.to_string(),
                source,
            })
        })
    }

    async fn nl_index(&self, name: &str) -> Result<Option<u32>, NetError> {
        Ok(netd::links::Netlink::index_of(&self.nl, name).await?)
    }

    /// Removes a container's host-side veth ends (they usually go with its namespace);
    /// returns those it could not remove.
    #[must_use = "what teardown could not undo is to be reported"]
    pub async fn detach(&self, container_id: &str, networks: &[String]) -> Vec<String> {
        let mut left = Vec::new();
        for n in networks {
            let name = veth_name(container_id, n);
            let res = match self.nl_index(&name).await {
                Ok(Some(i)) => netd::links::Netlink::delete(&self.nl, i).await.map_err(NetError::from),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = res {
                left.push(format!("removing its veth {name} on network {n}: {e}"));
            }
        }
        left
    }

    /// Makes a container's names resolvable: `entries` are (network, address, names).
    pub fn register(&self, holder: &str, entries: &[(String, IpAddr, Vec<String>)]) {
        let mut r = self.resolver.write().unwrap_or_else(|p| p.into_inner());
        let nets: Vec<String> = entries.iter().map(|e| e.0.clone()).collect();
        for (net, ip, names) in entries {
            tracing::debug!("DNS on {net}: {ip} is {names:?} ({holder})");
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let zone = r.zones.entry(net.clone()).or_default();
            // Whatever names a former holder of the address left go first.
            zone.remove(*ip);
            zone.add(&names, *ip);
            let member = Member {
                holder: holder.to_string(),
                nets: nets.clone(),
            };
            r.members.insert(*ip, member);
        }
    }

    /// Serves the container `holder` (its first process `pid`) at 127.0.0.11 in its
    /// network namespace: the names of its networks `nets`, in that order, and the
    /// rest from `dns` (its servers; else the host's).
    /// A container only on `internal` networks gets no forwarding: nothing of it
    /// leaves through the engine. (Forwards go from the engine's namespace, so a
    /// loopback server of `dns:` would be the host's: those are left out.)
    pub fn serve_embedded_dns(
        &self,
        rt: &tokio::runtime::Handle,
        process: (i32, Option<u64>),
        holder: &str,
        nets: Vec<String>,
        dns: Option<&[String]>,
        internal_only: bool,
    ) -> Result<(), NetError> {
        let upstreams = match dns {
            _ if internal_only => Vec::new(),
            Some(servers) => servers
                .iter()
                .filter_map(|s| s.parse::<IpAddr>().ok())
                .filter(|ip| !ip.is_loopback())
                .map(|ip| SocketAddr::new(ip, 53))
                .collect(),
            None => self.upstreams.clone(),
        };
        let resolver = self.resolver.clone();
        let answer: netd::dns_server::Answerer = Arc::new(move |_: IpAddr, q: &[u8]| {
            Some(resolver.read().unwrap_or_else(|p| p.into_inner()).answer(&nets, q))
        });
        self.embedded
            .serve(rt, process, holder, answer, upstreams)
            .map_err(|source| NetError::Dns {
                network: "(the container's own, 127.0.0.11)".into(),
                at: SocketAddr::from((super::spec::hosts::EMBEDDED_DNS, 53)),
                source,
            })
    }

    /// Takes `holder`'s names out; addresses that another container holds by now stay.
    pub fn unregister(&self, holder: &str, entries: &[(String, IpAddr)]) {
        self.embedded.stop(holder);
        let mut r = self.resolver.write().unwrap_or_else(|p| p.into_inner());
        for (net, ip) in entries {
            if r.members.get(ip).is_some_and(|m| m.holder != holder) {
                continue;
            }
            tracing::debug!("DNS on {net}: {ip} is gone ({holder})");
            if let Some(z) = r.zones.get_mut(net) {
                z.remove(*ip);
            }
            r.members.remove(ip);
        }
    }
}

/// The Compose network's request as netd's.
pub fn net_spec(project: &str, key: &str, n: &compose::model::Network) -> NetSpec {
    // One `ipam.config` entry per family; an IPv6 one is told by its subnet.
    let configs = || n.ipam.iter().flat_map(|i| i.config.iter().flatten());
    let is_v6 = |c: &compose::model::IpamPool| c.subnet.as_deref().is_some_and(|s| s.contains(':'));
    let pool = configs().find(|c| !is_v6(c));
    let pool6 = configs().find(|c| is_v6(c));
    let aux: Vec<String> = pool
        .and_then(|p| p.aux_addresses.as_ref())
        .map(|m: &BTreeMap<String, String>| m.values().cloned().collect())
        .unwrap_or_default();
    NetSpec {
        project: project.into(),
        key: key.into(),
        internal: n.internal == Some(true),
        external: n.external.as_ref().is_some_and(|e| e.is_external()),
        ipam: Request {
            subnet: pool.and_then(|p| p.subnet.clone()),
            ip_range: pool.and_then(|p| p.ip_range.clone()),
            gateway: pool.and_then(|p| p.gateway.clone()),
            aux_addresses: aux,
            ipv6: n.enable_ipv6 == Some(true),
            subnet6: pool6.and_then(|p| p.subnet.clone()),
            gateway6: pool6.and_then(|p| p.gateway.clone()),
        },
        mtu: n
            .driver_opts
            .as_ref()
            .and_then(|o| o.get("com.docker.network.driver.mtu"))
            .and_then(|m| m.parse().ok()),
    }
}

/// Port proxies of one container; dropped (aborted) when it stops.
#[derive(Default)]
pub struct Proxies(pub Vec<JoinHandle<()>>);

impl Proxies {
    /// Stops the proxies and waits until they are gone, their sockets closed: a
    /// restart binds the same ports at once, which an abort alone (effective at the
    /// task's next poll) would leave still taken.
    pub async fn close(mut self) {
        let tasks = std::mem::take(&mut self.0);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_and_differ() {
        let a = veth_name("abc", "p_default");
        assert_eq!(a.len(), 15);
        assert_ne!(a, veth_name("abc", "p_back"));
        assert_ne!(a, veth_name("abd", "p_default"));
    }
}
