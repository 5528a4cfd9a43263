//! Networks for rcompose. Built: IPAM, the embedded DNS server (answers and socket) and
//! the published-port proxy, all tested without root on loopback. Next: bridges and
//! veths over netlink, kernel NAT (see DESIGN.md). netd knows nothing of Compose files.

pub mod dns;
pub mod dns_server;
pub mod ipam;
pub mod links;
pub mod ports;
