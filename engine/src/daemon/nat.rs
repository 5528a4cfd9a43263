//! The engine's kernel NAT (see `netd::nat`): after every change of its networks or of
//! a container's published ports, the engine's nftables table is made again from what
//! it knows, so it never holds a rule for something gone, a crash included (the table
//! is made again at start). Without `nft`, published ports are the proxy's alone and
//! containers do not reach beyond the host; the engine says so once.

use super::Engine;
use netd::nat::{Bridge, Forward};
use std::net::{Ipv4Addr, SocketAddrV4};

pub struct Nat {
    table: String,
    enabled: bool,
    /// One update at a time, each from the state as it is then.
    lock: tokio::sync::Mutex<()>,
}

impl Nat {
    pub fn new(root: &std::path::Path) -> Nat {
        let enabled = netd::nat::available();
        if !enabled {
            tracing::warn!(
                "nft not found: published ports are served by the proxy only, and containers do not reach beyond this host (install nftables)"
            );
        }
        Nat {
            table: netd::nat::table_name(root),
            enabled,
            lock: tokio::sync::Mutex::new(()),
        }
    }
}

impl Engine {
    /// Makes the isolation between networks and the NAT table match the networks and
    /// the running containers' ports.
    pub async fn sync_nat(&self) {
        // Isolation is policy routing, with or without nft.
        if let Err(e) = self.net.isolate().await {
            tracing::warn!("{e}");
        }
        if !self.nat.enabled {
            return;
        }
        let _one = self.nat.lock.lock().await;
        let bridges: Vec<Bridge> = self
            .net
            .records()
            .into_iter()
            .filter_map(|r| {
                Some(Bridge {
                    subnet: r.subnet.parse().ok()?,
                    name: r.bridge,
                    internal: r.internal,
                })
            })
            .collect();
        let mut forwards = Vec::new();
        for c in self.containers() {
            if c.live().is_none() {
                continue;
            }
            let rec = c.rec();
            // The address the proxy forwards to: the first network's.
            let Some(target) = rec
                .networks
                .iter()
                .find_map(|n| n.ip.as_deref()?.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            for p in &rec.ports {
                // IPv6 host addresses are the proxy's (the table is IPv4).
                let Ok(host_ip) = p.host_ip.parse::<Ipv4Addr>() else {
                    continue;
                };
                forwards.push(Forward {
                    host_ip,
                    port: p.host_port,
                    protocol: p.protocol.clone(),
                    to: SocketAddrV4::new(target, p.container_port),
                });
            }
        }
        if bridges.iter().any(|b| !b.internal) {
            if let Err(e) = netd::nat::enable_forwarding() {
                tracing::warn!("enabling IPv4 forwarding: {e}");
            }
        }
        let script = netd::nat::script(&self.nat.table, &bridges, &forwards);
        let res = tokio::task::spawn_blocking(move || netd::nat::apply(&script)).await;
        match res {
            Ok(Ok(())) => tracing::debug!("nat: {} networks, {} published ports", bridges.len(), forwards.len()),
            Ok(Err(e)) => tracing::warn!("nat: {e}"),
            Err(e) => tracing::warn!("nat: {e}"),
        }
    }
}
