//! Networks for rcompose: IPAM, bridges and veths over netlink, the embedded DNS server
//! (answers and socket), the published-port proxy, and kernel NAT with nftables (see
//! DESIGN.md). netd knows nothing of Compose files.

pub mod dns;
pub mod dns_server;
pub mod ipam;
pub mod ipam6;
pub mod links;
pub mod nat;
pub mod ports;
