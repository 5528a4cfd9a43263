//! Bridges and veths for real, as root: everything happens in network namespaces this
//! test makes (one standing for the host, one for a container), and goes with them.

use netd::links::{attach, ensure_bridge, remove_bridge, Attachment, Netlink, Rtnl};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::io::AsRawFd;
use std::process::Command;
use std::time::Duration;

#[test]
fn a_container_namespace_joins_a_bridge_and_is_reachable() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    std::thread::spawn(|| {
        // This thread's namespace stands for the host.
        // SAFETY: unshare affects this thread only.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        let ours = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let mut container = Command::new("unshare").args(["--net", "sleep", "60"]).spawn().unwrap();
        let pid = container.id();
        let netns = std::path::PathBuf::from(format!("/proc/{pid}/ns/net"));
        for _ in 0..200 {
            if std::fs::read_link(&netns).is_ok_and(|n| n != ours) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let result = rt.block_on(async {
            let nl = Rtnl::connect().unwrap();
            let gw = Ipv4Addr::new(10, 99, 0, 1);
            let br = ensure_bridge(&nl, "rc-test0", "10.99.0.0/24".parse().unwrap(), gw, None, Some(1400)).await?;
            // Found again, not made twice.
            assert_eq!(
                ensure_bridge(&nl, "rc-test0", "10.99.0.0/24".parse().unwrap(), gw, None, None).await?,
                br
            );
            let a = Attachment {
                bridge: br,
                netns: &netns,
                host_name: "vethrctest0",
                ifname: "eth0",
                address: Ipv4Addr::new(10, 99, 0, 2),
                prefix: 24,
                gateway: Some(gw),
                mac: None,
                address6: None,
                gateway6: None,
            };
            attach(&nl, &a).await?;
            // A name too long for an interface is refused by name.
            let bad = Attachment {
                host_name: "a-name-far-too-long",
                ..a
            };
            let e = attach(&nl, &bad).await.unwrap_err();
            assert!(e.to_string().contains("longer than 15 bytes"), "{e}");
            // 14 ASCII bytes and a two-byte character: refused by name, never a panic (a
            // byte slice through the character).
            let odd = Attachment {
                host_name: "abcdefghijklmné",
                ..a
            };
            let e = attach(&nl, &odd).await.unwrap_err();
            assert!(e.to_string().contains("longer than 15 bytes"), "{e}");
            assert!(nl.index_of("vethrctest0").await?.is_some());
            Ok::<_, netd::links::LinkError>(())
        });
        let checks = (|| {
            result.map_err(|e| e.to_string())?;
            // Inside the container: eth0 and a default route via the gateway.
            let dev = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap();
            let route = std::fs::read_to_string(format!("/proc/{pid}/net/route")).unwrap();
            if !dev.contains("eth0:") {
                return Err(format!("no eth0 in the container: {dev}"));
            }
            if !route.lines().any(|l| l.starts_with("eth0\t00000000\t0100630A")) {
                return Err(format!("no default route via 10.99.0.1: {route}"));
            }
            // Its hardware address is Docker's, made from its IPv4 address.
            let ns_mac = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
            let mac = std::thread::spawn(move || {
                // SAFETY: setns on this thread only.
                assert_eq!(unsafe { libc::setns(ns_mac.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
                // (sysfs would show the test's own namespace: ask netlink, through ip.)
                let o = std::process::Command::new("ip")
                    .args(["-o", "link", "show", "eth0"])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&o.stdout).into_owned()
            })
            .join()
            .unwrap();
            if !mac.contains("link/ether 02:42:0a:63:00:02 ") {
                return Err(format!("eth0's address is {mac}"));
            }
            // And the bridge's is fixed, from the gateway's, whatever its ports' are.
            let o = Command::new("ip")
                .args(["-o", "link", "show", "rc-test0"])
                .output()
                .unwrap();
            let br = String::from_utf8_lossy(&o.stdout);
            if !br.contains("link/ether 02:42:0a:63:00:01 ") {
                return Err(format!("the bridge's address is {br}"));
            }
            // And reachable: a listener inside the container, a client on the "host".
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let server = std::thread::spawn(move || {
                // SAFETY: setns on this thread only.
                assert_eq!(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
                let l = TcpListener::bind("10.99.0.2:0").unwrap();
                tx.send(l.local_addr().unwrap().port()).unwrap();
                let (mut s, _) = l.accept().unwrap();
                s.write_all(b"hello from the container").unwrap();
            });
            let port = rx.recv_timeout(Duration::from_secs(5)).map_err(|e| e.to_string())?;
            let mut c = TcpStream::connect_timeout(&(Ipv4Addr::new(10, 99, 0, 2), port).into(), Duration::from_secs(5))
                .map_err(|e| e.to_string())?;
            let mut got = String::new();
            c.read_to_string(&mut got).map_err(|e| e.to_string())?;
            server.join().map_err(|_| "server thread".to_string())?;
            if got != "hello from the container" {
                return Err(got);
            }
            Ok(())
        })();
        let _ = container.kill();
        let _ = container.wait();
        // `down`: the bridge goes, and with the container gone its veth went too.
        let gone = rt.block_on(async {
            let nl = Rtnl::connect().unwrap();
            remove_bridge(&nl, "rc-test0").await.unwrap();
            (
                nl.index_of("rc-test0").await.unwrap(),
                nl.index_of("vethrctest0").await.unwrap(),
            )
        });
        checks.unwrap();
        assert_eq!(gone, (None, None));
    })
    .join()
    .unwrap();
}
