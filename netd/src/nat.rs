//! Kernel NAT with nftables, when `nft` is installed: outbound masquerade so that
//! containers on non-internal networks reach beyond the host, DNAT of published ports
//! as the fast path for clients that are not on loopback (loopback clients, and
//! containers calling a published port, keep going through the engine's proxy, as with
//! Docker's userland proxy), and a forward filter that keeps internal networks in.
//!
//! The whole table is computed from the engine's state and replaced in one `nft -f`
//! transaction each time that state changes, so a rule can never outlive what it was
//! made for: whatever an engine that crashed left behind is replaced at the next start,
//! and the table goes when the last network does. The rules are written as nft's own
//! text (a handful of lines) rather than through a crate: the available ones wrap the
//! same `nft` binary in a JSON model, which would make the rules harder to read in a
//! review and in `nft list ruleset` alike.

use ipnet::Ipv4Net;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum NatError {
    #[error("nft: {0}")]
    Nft(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A network's bridge.
#[derive(Debug, Clone, PartialEq)]
pub struct Bridge {
    pub name: String,
    pub subnet: Ipv4Net,
    pub internal: bool,
}

/// A published port: traffic for `host_ip:port` (any local address when unspecified)
/// goes to `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    pub host_ip: Ipv4Addr,
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    pub to: SocketAddrV4,
}

/// The table of an engine: named after its state root, so that engines of different
/// roots in one network namespace keep to their own.
pub fn table_name(root: &std::path::Path) -> String {
    let h = crate::links::stable_hash(root.to_string_lossy().bytes());
    format!("rcompose_{:08x}", h & 0xffff_ffff)
}

/// The nft script that makes `table` hold exactly the rules for `bridges` and
/// `forwards` (and removes it when there are none).
pub fn script(table: &str, bridges: &[Bridge], forwards: &[Forward]) -> String {
    // Declaring the table first makes deleting it valid when it does not exist yet.
    let mut s = format!("table ip {table}\ndelete table ip {table}\n");
    if bridges.is_empty() {
        return s;
    }
    s.push_str(&format!("table ip {table} {{\n"));
    s.push_str("\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n");
    for f in forwards.iter().filter(|f| !f.host_ip.is_loopback()) {
        // Containers reach published ports through the proxy (no hairpin NAT needed).
        s.push_str(&format!("\t\tiifname != \"rc-*\" {} dnat to {}\n", matcher(f), f.to));
    }
    s.push_str("\t}\n");
    s.push_str("\tchain output {\n\t\ttype nat hook output priority -100; policy accept;\n");
    for f in forwards.iter().filter(|f| !f.host_ip.is_loopback()) {
        // The host's own non-loopback addresses; loopback is the proxy's.
        s.push_str(&format!(
            "\t\tip daddr != 127.0.0.0/8 {} dnat to {}\n",
            matcher(f),
            f.to
        ));
    }
    s.push_str("\t}\n");
    s.push_str("\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n");
    for b in bridges.iter().filter(|b| !b.internal) {
        s.push_str(&format!(
            "\t\tip saddr {} oifname != \"{}\" masquerade\n",
            b.subnet.trunc(),
            b.name
        ));
    }
    s.push_str("\t}\n");
    s.push_str("\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n");
    for b in bridges.iter().filter(|b| b.internal) {
        s.push_str(&format!("\t\tiifname \"{0}\" oifname != \"{0}\" drop\n", b.name));
        s.push_str(&format!("\t\toifname \"{0}\" iifname != \"{0}\" drop\n", b.name));
    }
    s.push_str("\t}\n}\n");
    s
}

fn matcher(f: &Forward) -> String {
    let daddr = if f.host_ip.is_unspecified() {
        "fib daddr type local".to_string()
    } else {
        format!("ip daddr {}", f.host_ip)
    };
    format!("{daddr} {} dport {}", f.protocol, f.port)
}

/// Whether `nft` can be run here.
pub fn available() -> bool {
    Command::new("nft")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs an nft script as one transaction.
pub fn apply(script: &str) -> Result<(), NatError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(NatError::Nft(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(())
}

/// IPv4 forwarding, which masquerading and DNAT to a bridge need (as Docker sets it).
pub fn enable_forwarding() -> std::io::Result<()> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(path)?.trim() != "1" {
        std::fs::write(path, "1")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_follows_the_networks_and_ports() {
        let bridges = vec![
            Bridge {
                name: "rc-front".into(),
                subnet: "10.1.0.0/24".parse().unwrap(),
                internal: false,
            },
            Bridge {
                name: "rc-back".into(),
                subnet: "10.2.0.0/24".parse().unwrap(),
                internal: true,
            },
        ];
        let forwards = vec![
            Forward {
                host_ip: Ipv4Addr::UNSPECIFIED,
                port: 8080,
                protocol: "tcp".into(),
                to: "10.1.0.2:80".parse().unwrap(),
            },
            Forward {
                host_ip: "192.0.2.7".parse().unwrap(),
                port: 5353,
                protocol: "udp".into(),
                to: "10.1.0.3:53".parse().unwrap(),
            },
            // Loopback only: the proxy's alone.
            Forward {
                host_ip: Ipv4Addr::LOCALHOST,
                port: 9000,
                protocol: "tcp".into(),
                to: "10.1.0.4:9000".parse().unwrap(),
            },
        ];
        let s = script("rcompose_x", &bridges, &forwards);
        assert!(s.starts_with("table ip rcompose_x\ndelete table ip rcompose_x\ntable ip rcompose_x {\n"));
        for line in [
            "iifname != \"rc-*\" fib daddr type local tcp dport 8080 dnat to 10.1.0.2:80",
            "iifname != \"rc-*\" ip daddr 192.0.2.7 udp dport 5353 dnat to 10.1.0.3:53",
            "ip daddr != 127.0.0.0/8 fib daddr type local tcp dport 8080 dnat to 10.1.0.2:80",
            "ip saddr 10.1.0.0/24 oifname != \"rc-front\" masquerade",
            "iifname \"rc-back\" oifname != \"rc-back\" drop",
            "oifname \"rc-back\" iifname != \"rc-back\" drop",
        ] {
            assert!(s.contains(line), "{line}\n{s}");
        }
        assert!(!s.contains("9000"), "{s}");
        assert!(
            !s.contains("10.2.0.0/24 oifname"),
            "an internal network is not masqueraded: {s}"
        );
        // Nothing left to serve: the table goes.
        assert_eq!(
            script("rcompose_x", &[], &forwards),
            "table ip rcompose_x\ndelete table ip rcompose_x\n"
        );
        assert_ne!(
            table_name(std::path::Path::new("/a")),
            table_name(std::path::Path::new("/b"))
        );
    }
}
