//! Kernel NAT end to end, as root, with nftables: a namespace made by the test stands
//! for the world outside the host (a veth away from the engine's namespace, with a web
//! server that answers with the address it sees). A container reaches it masqueraded
//! as the host; a client there reaches a published port by DNAT, seen by the container
//! with its own address (through the proxy it would be the gateway's); an internal
//! network's container reaches nothing; and `down` leaves no table.

mod engine_env;

use engine_env::{root, Env};
use std::process::{Child, Command, Stdio};

/// The outside: a process in a network namespace of its own, `198.18.0.2/24`, joined to
/// the engine's namespace (`198.18.0.1/24`) by a veth; killed (and with it its
/// namespace and the veth) on drop.
struct Outside {
    holder: Child,
    server: Option<Child>,
}

impl Drop for Outside {
    fn drop(&mut self) {
        if let Some(s) = self.server.as_mut() {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn sh(args: &[&str]) {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

impl Outside {
    fn new(env: &Env, www: &std::path::Path) -> Outside {
        let www = www.to_path_buf();
        env.in_netns(move || {
            let holder = Command::new("unshare")
                .args(["--net", "sleep", "600"])
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            let pid = holder.id().to_string();
            let mut out = Outside { holder, server: None };
            // The namespace exists once unshare has made it: until then the child is in
            // this thread's (the engine's, not the process's: hence thread-self).
            let own = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::fs::read_link(format!("/proc/{pid}/ns/net"))
                .map(|l| l == own)
                .unwrap_or(true)
            {
                assert!(std::time::Instant::now() < deadline);
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            sh(&[
                "ip", "link", "add", "rcnat0", "type", "veth", "peer", "name", "world0", "netns", &pid,
            ]);
            sh(&["ip", "addr", "add", "198.18.0.1/24", "dev", "rcnat0"]);
            sh(&["ip", "link", "set", "rcnat0", "up"]);
            let n = ["nsenter", "-t", &pid, "-n"];
            for cmd in [
                vec!["ip", "addr", "add", "198.18.0.2/24", "dev", "world0"],
                vec!["ip", "link", "set", "world0", "up"],
                vec!["ip", "link", "set", "lo", "up"],
            ] {
                let mut full = n.to_vec();
                full.extend(cmd);
                sh(&full);
            }
            let server = Command::new("nsenter")
                .args(["-t", &pid, "-n", "busybox", "httpd", "-f", "-p", "8000", "-h"])
                .arg(&www)
                .spawn()
                .unwrap();
            out.server = Some(server);
            out
        })
    }

    /// `wget` from the outside namespace.
    fn get(&self, env: &Env, url: &str) -> String {
        let pid = self.holder.id().to_string();
        let url = url.to_string();
        env.in_netns(move || {
            let o = Command::new("nsenter")
                .args(["-t", &pid, "-n", "busybox", "wget", "-q", "-O-", &url])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).into_owned()
        })
    }
}

const ADDR_CGI: &str = "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n%s\\n' \"$REMOTE_ADDR\"\n";

#[test]
fn containers_reach_out_and_published_ports_are_dnatted() {
    if !root() {
        return;
    }
    if Command::new("nft").arg("--version").output().is_err() {
        eprintln!("skipped: nftables is not installed");
        return;
    }
    let mut env = Env::new();
    // The outside's server: a CGI that prints who is asking.
    let www = env.project.path().join("www");
    std::fs::create_dir_all(www.join("cgi-bin")).unwrap();
    std::fs::write(www.join("cgi-bin/addr"), ADDR_CGI).unwrap();
    sh(&["chmod", "755", www.join("cgi-bin/addr").to_str().unwrap()]);
    let outside = Outside::new(&env, &www);
    // The same CGI inside the web service.
    env.write(
        "compose.yaml",
        &format!(
            r#"name: nat
services:
  web:
    image: rcompose/busybox:latest
    command: [sh, -c, 'mkdir -p /www/cgi-bin && printf "%s" "$$CGI" > /www/cgi-bin/addr && chmod 755 /www/cgi-bin/addr && httpd -f -p 80 -h /www']
    environment:
      CGI: {cgi:?}
    ports: ["8080:80"]
  client:
    image: rcompose/busybox:latest
    command: [sleep, '60']
  shut:
    image: rcompose/busybox:latest
    command: [sleep, '60']
    networks: [inside]
networks:
  inside:
    internal: true
"#,
            // `$$`: Compose's escape for a dollar sign.
            cgi = ADDR_CGI.replace('$', "$$")
        ),
    );
    env.ok(&["up", "-d"]);
    // Outbound: the outside sees the host's address, not the container's.
    let mut seen = String::new();
    env.wait_for("the outside to answer the container", || {
        let o = env.rc(&[
            "exec",
            "-T",
            "client",
            "wget",
            "-q",
            "-O-",
            "http://198.18.0.2:8000/cgi-bin/addr",
        ]);
        seen = String::from_utf8_lossy(&o.stdout).into_owned();
        !seen.is_empty()
    });
    // busybox httpd listens on IPv6 too: `[::ffff:198.18.0.1]`.
    assert!(seen.contains("198.18.0.1]"), "{seen}");
    // Inbound by DNAT: the container sees the outside client's own address.
    env.wait_for("the web service", || {
        env.http(8080, "GET", "/cgi-bin/addr", "").contains("200 OK")
    });
    let mut seen = String::new();
    env.wait_for("the published port from outside", || {
        seen = outside.get(&env, "http://198.18.0.1:8080/cgi-bin/addr");
        !seen.is_empty()
    });
    assert!(seen.contains("198.18.0.2]"), "{seen}");
    // Loopback clients still go through the proxy.
    let r = env.http(8080, "GET", "/cgi-bin/addr", "");
    assert!(r.contains("200 OK"), "{r}");
    // A crashed engine's table is made again by the next one: a rule nothing stands
    // for goes, the adopted container's stay.
    fn nft(env: &Env, args: &'static [&'static str]) -> String {
        env.in_netns(move || {
            let o = Command::new("nft").args(args).output().unwrap();
            String::from_utf8_lossy(&o.stdout).into_owned()
        })
    }
    let tables = nft(&env, &["list", "tables"]);
    let table = tables
        .split_whitespace()
        .find(|w| w.starts_with("rcompose_"))
        .unwrap()
        .to_string();
    let t = table.clone();
    env.in_netns(move || {
        sh(&[
            "nft",
            "add",
            "rule",
            "ip",
            &t,
            "prerouting",
            "tcp",
            "dport",
            "9999",
            "dnat",
            "to",
            "10.9.9.9:1",
        ]);
    });
    assert!(nft(&env, &["list", "ruleset"]).contains("10.9.9.9"));
    // And a bridge half made (its address gone, as a crash between its parts leaves it)
    // is made whole.
    let bridge_addrs = |env: &Env| {
        env.in_netns(|| {
            let o = Command::new("ip")
                .args(["-o", "addr", "show", "type", "bridge"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).into_owned()
        })
    };
    let before = bridge_addrs(&env);
    assert!(before.contains("inet 172."), "{before}");
    env.in_netns(|| {
        let o = Command::new("ip")
            .args(["-o", "link", "show", "type", "bridge"])
            .output()
            .unwrap();
        for l in String::from_utf8_lossy(&o.stdout).lines() {
            let name = l.split(": ").nth(1).unwrap().to_string();
            sh(&["ip", "addr", "flush", "dev", &name]);
        }
    });
    assert!(!bridge_addrs(&env).contains("inet 172."));
    let ns = std::fs::File::open(format!("/proc/{}/ns/net", env.daemon.id())).unwrap();
    env.daemon.kill().unwrap();
    env.daemon.wait().unwrap();
    std::fs::remove_file(env.state.path().join("run/rcompose.sock")).unwrap();
    env.daemon = engine_env::spawn_engine(env.state.path(), &ns);
    let sock = env.state.path().join("run/rcompose.sock");
    env.wait_for("the new engine", || sock.exists());
    let rules = nft(&env, &["list", "ruleset"]);
    assert!(
        !rules.contains("10.9.9.9") && rules.contains("dport 8080 dnat"),
        "{rules}"
    );
    let after = bridge_addrs(&env);
    let gw = |t: &str| {
        t.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .map(String::from)
    };
    assert_eq!(gw(&after), gw(&before), "{after}");
    // Still reachable from outside through it.
    assert!(outside
        .get(&env, "http://198.18.0.1:8080/cgi-bin/addr")
        .contains("198.18.0.2]"));
    // An internal network has no way out.
    let o = env.rc(&[
        "exec",
        "-T",
        "shut",
        "wget",
        "-q",
        "-O-",
        "http://198.18.0.2:8000/cgi-bin/addr",
    ]);
    assert!(!o.status.success());
    env.ok(&["down", "-t", "0"]);
    // No table; the outside answers nobody from the former containers.
    env.assert_nothing_left();
    drop(outside);
}
