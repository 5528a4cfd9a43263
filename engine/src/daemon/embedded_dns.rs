//! A container's own resolver at 127.0.0.11, as Docker's embedded DNS server: a UDP
//! socket and a TCP listener that the engine binds inside the container's network
//! namespace (from a thread that joins it only for the bind) and serves from its own
//! runtime. The asker is known by the socket, not by its address, so a container on
//! several networks gets the names of every one of them, and its `dns` servers (else
//! the host's) answer the rest. The sockets live in the engine, never in the container,
//! and go with the container's namespace or when the container stops.

use netd::dns_server::Answerer;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::io::AsRawFd;
use std::sync::Mutex;
use tokio::task::JoinHandle;

/// Docker's port for it (the container's resolv.conf names only the address).
const PORT: u16 = 53;

/// The servers that are running, by the container they serve.
#[derive(Default)]
pub struct EmbeddedDns {
    tasks: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl EmbeddedDns {
    /// Serves `holder` (a container) at 127.0.0.11 in the network namespace of the
    /// process `pid`, replacing an earlier server of it (a restart's old namespace).
    /// With `start_time`, the process must still be the one that started then (an
    /// adopted container's PID may have been reused).
    pub fn serve(
        &self,
        rt: &tokio::runtime::Handle,
        (pid, start_time): (i32, Option<u64>),
        holder: &str,
        answer: Answerer,
        upstreams: Vec<SocketAddr>,
    ) -> std::io::Result<()> {
        let (udp, tcp) = bind_in(pid, start_time)?;
        let _in_rt = rt.enter();
        let udp = tokio::net::UdpSocket::from_std(udp)?;
        let tcp = tokio::net::TcpListener::from_std(tcp)?;
        let who = holder.to_string();
        let task = rt.spawn(async move {
            let over_tcp = netd::dns_server::serve_tcp_with(tcp, answer.clone(), upstreams.clone());
            let served = tokio::select! {
                r = netd::dns_server::serve_with(udp, answer, upstreams) => r,
                r = over_tcp => r,
            };
            if let Err(e) = served {
                tracing::warn!("DNS server of {who}: {e}");
            }
        });
        let old = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(holder.to_string(), task);
        if let Some(old) = old {
            old.abort();
        }
        Ok(())
    }

    pub fn stop(&self, holder: &str) {
        if let Some(t) = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).remove(holder) {
            t.abort();
        }
    }
}

/// A UDP socket and a TCP listener on 127.0.0.11:53 of the network namespace of `pid`.
fn bind_in(pid: i32, start_time: Option<u64>) -> std::io::Result<(UdpSocket, TcpListener)> {
    // Through the process's /proc directory, held: it names that process only.
    let proc_dir = std::fs::File::open(format!("/proc/{pid}"))?;
    if start_time.is_some_and(|t| runtime::start_time_at(&proc_dir) != Some(t)) {
        return Err(std::io::Error::other(format!(
            "process {pid} is not the container's any more"
        )));
    }
    // `ns/net` is a magic link into nsfs: followed on purpose, from that directory.
    // SAFETY: a valid directory descriptor and C string; the result is checked.
    let fd = unsafe {
        libc::openat(
            std::os::fd::AsRawFd::as_raw_fd(&proc_dir),
            c"ns/net".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    let ns = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    std::thread::spawn(move || -> std::io::Result<(UdpSocket, TcpListener)> {
        // SAFETY: setns on this thread only, which ends after the bind.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let at = SocketAddr::from((super::spec::hosts::EMBEDDED_DNS, PORT));
        let udp = UdpSocket::bind(at)?;
        udp.set_nonblocking(true)?;
        let tcp = TcpListener::bind(at)?;
        tcp.set_nonblocking(true)?;
        Ok((udp, tcp))
    })
    .join()
    .map_err(|_| std::io::Error::other("the DNS socket's thread failed"))?
}
