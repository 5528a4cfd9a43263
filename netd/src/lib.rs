//! Networks for rcompose: IPAM and the embedded DNS answers are built (pure, tested
//! without root); bridges and veths over netlink, the DNS server and published ports come
//! next (see DESIGN.md). netd knows nothing of Compose files.

pub mod dns;
pub mod ipam;
