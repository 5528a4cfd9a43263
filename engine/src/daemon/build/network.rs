//! The default network of `RUN` steps, as BuildKit gives one: a bridge of the engine's
//! own (`rcompose_build`) with NAT to the outside (the engine's nftables table covers
//! it like any network), each step a veth and an address on it for as long as it
//! runs, its names resolved by the network's DNS server, which forwards to the host's
//! resolvers. It lives while some build uses it: the last one to finish removes it,
//! so nothing of a build is left on the host after it.

use super::super::network::{NetSpec, Plug};
use super::{BuildError, Ctx};
use std::net::{IpAddr, Ipv4Addr};

pub const NAME: &str = "rcompose_build";

/// A step's place on the build network, given back when dropped.
pub struct Lease<'a> {
    ctx: &'a Ctx,
    id: String,
    pub ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
}

/// The builds using the network now (the first makes it, the last removes it).
static USERS: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

fn net_err(e: super::super::network::NetError) -> BuildError {
    BuildError::Io(format!("the build network: {e}"))
}

/// The build `ctx` uses the network: made if no build has it.
fn join(ctx: &Ctx) -> Result<(), BuildError> {
    let mut users = USERS.lock().unwrap_or_else(|p| p.into_inner());
    if *users == 0 {
        let engine = ctx.engine.clone();
        ctx.rt
            .block_on(async move {
                engine.net.ensure(NAME, &NetSpec::default()).await?;
                // NAT and isolation for the bridge.
                engine.sync_nat().await;
                Ok::<(), super::super::network::NetError>(())
            })
            .map_err(net_err)?;
    }
    *users += 1;
    Ok(())
}

/// The build `ctx` is done with the network: removed if no other build has it.
pub fn leave(ctx: &Ctx) {
    let mut users = USERS.lock().unwrap_or_else(|p| p.into_inner());
    *users = users.saturating_sub(1);
    if *users > 0 {
        return;
    }
    let engine = ctx.engine.clone();
    let res = ctx.rt.block_on(async move {
        let r = engine.net.remove(NAME).await;
        engine.sync_nat().await;
        r
    });
    if let Err(e) = res {
        tracing::warn!("build: removing the network {NAME}: {e}");
    }
}

/// What an engine that ended mid-build left of the network (no build runs yet when
/// this is called, at the engine's start).
pub async fn sweep(engine: &super::super::Engine) {
    if engine.net.network(NAME).is_none() {
        return;
    }
    if let Err(e) = engine.net.remove(NAME).await {
        tracing::warn!("build: removing the network {NAME} an earlier engine left: {e}");
    }
}

/// Makes the network if needed and gives the step `id` an address on it.
pub fn lease<'a>(ctx: &'a Ctx, id: &str) -> Result<Lease<'a>, BuildError> {
    if !ctx.on_network.load(std::sync::atomic::Ordering::Relaxed) {
        join(ctx)?;
        ctx.on_network.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let (_, gateway) = ctx
        .engine
        .net
        .network(NAME)
        .ok_or_else(|| BuildError::Io(format!("the build network {NAME} has no address")))?;
    let ip = ctx.engine.net.allocate(NAME, id, None).map_err(net_err)?;
    // Known to the DNS server first: it drops queries from unknown addresses.
    ctx.engine
        .net
        .register(id, &[(NAME.to_string(), IpAddr::V4(ip), Vec::new())]);
    Ok(Lease {
        ctx,
        id: id.to_string(),
        ip,
        gateway,
    })
}

impl Lease<'_> {
    pub fn plug(&self) -> Plug {
        Plug {
            network: NAME.into(),
            ifname: "eth0".into(),
            ip: self.ip,
            default_route: true,
            mac: None,
            ip6: None,
        }
    }

    /// The step's resolv.conf: the network's DNS server, with the host's search list.
    pub fn resolv_conf(&self, host: &str) -> String {
        let mut out = format!("nameserver {}\n", self.gateway);
        for l in host.lines() {
            let t = l.trim_start();
            if t.starts_with("search") || t.starts_with("options") {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let net = &self.ctx.engine.net;
        net.unregister(&self.id, &[(NAME.to_string(), IpAddr::V4(self.ip))]);
        let engine = self.ctx.engine.clone();
        let id = self.id.clone();
        let left = self
            .ctx
            .rt
            .block_on(async move { engine.net.detach(&id, &[NAME.to_string()]).await });
        for l in left {
            tracing::warn!("build: {l}");
        }
        net.release(NAME, &self.id);
    }
}
