//! Published ports: each bound by the engine (ranges, random host ports, `host_ip`,
//! tcp and udp) before the container runs, and served by netd's proxy.

use super::network::Proxies;
use super::state::PortBinding;
use compose::model::Service;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A published port that cannot be bound as asked.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("container {0}: published ports need a network")]
    NoNetwork(String),
    #[error("ports: protocol {0:?} is not implemented yet")]
    Protocol(String),
    #[error("invalid published port range {0:?}")]
    InvalidRange(String),
    #[error("invalid published port {0:?}")]
    InvalidPort(String),
    #[error("invalid host_ip {0:?}")]
    InvalidHostIp(String),
    #[error("Error response from daemon: failed to set up container networking: driver failed programming external connectivity on endpoint {endpoint}: {source}")]
    Unavailable { endpoint: String, source: Box<PortError> },
    #[error(transparent)]
    Bind(#[from] netd::ports::PortError),
}

/// Binds one recorded port again (an adopted container) and serves it.
pub(super) async fn spawn_proxy(b: &PortBinding, target: IpAddr) -> Result<tokio::task::JoinHandle<()>, PortError> {
    bind_one(b, target).await.map(|(h, _)| h)
}

/// Binds every published port of the service (ranges, random ports, `host_ip`).
pub(super) async fn bind_ports(
    svc: &Service,
    target: Option<IpAddr>,
    name: &str,
    previous: &[PortBinding],
) -> Result<(Proxies, Vec<PortBinding>), PortError> {
    let mut proxies = Proxies::default();
    let mut out = Vec::new();
    let ports = svc.ports.clone().unwrap_or_default();
    if ports.is_empty() {
        return Ok((proxies, out));
    }
    let target = target.ok_or_else(|| PortError::NoNetwork(name.to_string()))?;
    for p in ports {
        let Some(container_port) = p.target.and_then(|t| u16::try_from(t).ok()) else {
            continue;
        };
        let protocol = p.protocol.clone().unwrap_or_else(|| "tcp".into());
        if protocol != "tcp" && protocol != "udp" {
            return Err(PortError::Protocol(protocol.clone()));
        }
        let host_ip = p
            .host_ip
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "0.0.0.0".into());
        let published = p.published.clone().unwrap_or_default();
        let candidates: Vec<u16> = if published.is_empty() {
            // A random port: the one this container had before if it is still free, so
            // that a restart keeps its address.
            let prev = previous
                .iter()
                .find(|b| b.container_port == container_port && b.protocol == protocol && b.host_ip == host_ip)
                .map(|b| b.host_port);
            prev.into_iter().chain([0]).collect()
        } else if let Some((a, b)) = published.split_once('-') {
            let (a, b) = (a.parse::<u16>(), b.parse::<u16>());
            match (a, b) {
                (Ok(a), Ok(b)) if a <= b => (a..=b).collect(),
                _ => return Err(PortError::InvalidRange(published.clone())),
            }
        } else {
            vec![published
                .parse::<u16>()
                .map_err(|_| PortError::InvalidPort(published.clone()))?]
        };
        let mut last_err = None;
        let mut bound = None;
        for port in &candidates {
            let b = PortBinding {
                host_ip: host_ip.clone(),
                host_port: *port,
                container_port,
                protocol: protocol.clone(),
            };
            match bind_one(&b, target).await {
                Ok(x) => {
                    bound = Some(x);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let Some((handle, binding)) = bound else {
            return Err(PortError::Unavailable {
                endpoint: name.to_string(),
                source: Box::new(last_err.unwrap_or_else(|| PortError::InvalidPort(published.clone()))),
            });
        };
        proxies.0.push(handle);
        out.push(binding);
    }
    Ok((proxies, out))
}

async fn bind_one(b: &PortBinding, target: IpAddr) -> Result<(tokio::task::JoinHandle<()>, PortBinding), PortError> {
    let ip: IpAddr = b
        .host_ip
        .parse()
        .map_err(|_| PortError::InvalidHostIp(b.host_ip.clone()))?;
    let addr = SocketAddr::new(ip, b.host_port);
    let to = SocketAddr::new(target, b.container_port);
    let mut bound = b.clone();
    let handle = if b.protocol == "udp" {
        let s = netd::ports::bind_udp(addr).await?;
        bound.host_port = s.local_addr().map(|a| a.port()).unwrap_or(b.host_port);
        tokio::spawn(netd::ports::proxy_udp(s, to, Duration::from_secs(60)))
    } else {
        let l = netd::ports::bind_tcp(addr).await?;
        bound.host_port = l.local_addr().map(|a| a.port()).unwrap_or(b.host_port);
        tokio::spawn(netd::ports::proxy_tcp(l, to))
    };
    Ok((handle, bound))
}
