//! Networks for rcompose: IPAM, bridges and veths over netlink, the embedded DNS server
//! (answers and socket), the published-port proxy, isolation between networks by
//! policy routing, and kernel NAT with nftables (see DESIGN.md). netd knows nothing of
//! Compose files.

pub mod dns;
pub mod dns_server;
pub mod ipam;
pub mod ipam6;
pub mod isolation;
pub mod links;
pub mod nat;
pub mod ports;

/// Runs a future to completion on a runtime of its own: the netlink fakes' tests.
#[cfg(test)]
pub(crate) fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
        .block_on(f)
}
