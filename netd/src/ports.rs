//! Published ports served by a proxy in the engine: works for loopback clients and needs
//! no firewall. TCP connections are relayed both ways; UDP datagrams are relayed with
//! one upstream socket per client, forgotten after a quiet minute.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Docker's wording, so that scripts matching it keep working.
    #[error("Bind for {addr} failed: port is already allocated")]
    InUse { addr: SocketAddr },
    #[error("Bind for {addr} failed: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

fn bind_err(addr: SocketAddr, e: std::io::Error) -> PortError {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        PortError::InUse { addr }
    } else {
        PortError::Bind { addr, source: e }
    }
}

pub async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, PortError> {
    TcpListener::bind(addr).await.map_err(|e| bind_err(addr, e))
}

pub async fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, PortError> {
    UdpSocket::bind(addr).await.map_err(|e| bind_err(addr, e))
}

/// Relays every connection to `listener` to `target` until the task is dropped.
pub async fn proxy_tcp(listener: TcpListener, target: SocketAddr) {
    while let Ok((mut client, _)) = listener.accept().await {
        tokio::spawn(async move {
            if let Ok(mut upstream) = TcpStream::connect(target).await {
                // No small writes held back (interactive protocols), and buffers large
                // enough for bulk transfers: the default 8 KiB costs two thirds of the
                // throughput in syscalls.
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                let _ =
                    tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, 256 << 10, 256 << 10).await;
            }
        });
    }
}

/// Relays datagrams between clients of `socket` and `target`.
pub async fn proxy_udp(socket: UdpSocket, target: SocketAddr, idle: Duration) {
    let socket = Arc::new(socket);
    let flows: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; 65536];
    while let Ok((n, client)) = socket.recv_from(&mut buf).await {
        let existing = flows.lock().await.get(&client).cloned();
        let up = match existing {
            Some(up) => up,
            None => {
                let bind: SocketAddr = if target.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    ([0u16; 8], 0).into()
                };
                let Ok(up) = UdpSocket::bind(bind).await else { continue };
                if up.connect(target).await.is_err() {
                    continue;
                }
                let up = Arc::new(up);
                flows.lock().await.insert(client, up.clone());
                // Replies from the target go back to this client until it falls quiet.
                let (up2, socket2, flows2) = (up.clone(), socket.clone(), flows.clone());
                tokio::spawn(async move {
                    let mut b = vec![0u8; 65536];
                    while let Ok(Ok(m)) = tokio::time::timeout(idle, up2.recv(&mut b)).await {
                        let _ = socket2.send_to(&b[..m], client).await;
                    }
                    flows2.lock().await.remove(&client);
                });
                up
            }
        };
        let _ = up.send(&buf[..n]).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(flavor = "current_thread")]
    async fn tcp_round_trip_and_port_in_use() {
        let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = backend.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = backend.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 64];
                    let n = s.read(&mut b).await.unwrap();
                    s.write_all(&[b"echo:".as_slice(), &b[..n]].concat()).await.unwrap();
                });
            }
        });
        let listener = bind_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let published = listener.local_addr().unwrap();
        let task = tokio::spawn(proxy_tcp(listener, target));
        for i in 0..3 {
            let mut c = TcpStream::connect(published).await.unwrap();
            c.write_all(format!("hi{i}").as_bytes()).await.unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).await.unwrap();
            assert_eq!(out, format!("echo:hi{i}"));
        }
        let e = bind_tcp(published).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("Bind for {published} failed: port is already allocated")
        );
        task.abort();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn udp_round_trip() {
        let backend = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let target = backend.local_addr().unwrap();
        tokio::spawn(async move {
            let mut b = [0u8; 64];
            while let Ok((n, from)) = backend.recv_from(&mut b).await {
                backend
                    .send_to(&[b"pong:".as_slice(), &b[..n]].concat(), from)
                    .await
                    .unwrap();
            }
        });
        let sock = bind_udp("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let published = sock.local_addr().unwrap();
        let task = tokio::spawn(proxy_udp(sock, target, Duration::from_secs(5)));
        for client in 0..2 {
            let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            c.send_to(format!("ping{client}").as_bytes(), published).await.unwrap();
            let mut b = [0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(5), c.recv(&mut b))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&b[..n], format!("pong:ping{client}").as_bytes());
        }
        assert!(matches!(bind_udp(published).await, Err(PortError::InUse { .. })));
        task.abort();
    }
}
