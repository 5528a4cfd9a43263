//! A Compose service and its image, made into what the runtime runs, as Docker does it:
//! entrypoint and command merged with the image's (a service `entrypoint` clears the
//! image's `Cmd`), environment from the image then the service, user, working directory,
//! hostname, capabilities, security options, sysctls, ulimits, tmpfs and bind mounts,
//! devices, namespace modes, and the cgroup limits from both the service keys and
//! `deploy.resources`. Pure: no root, no files written.

use super::cgroups::Limits;
use super::process;
use super::spec::{ContainerSpec, Device, LogConfig, Mount, Namespaces, Process};
use crate::images::config::ImageConfigFile;
use compose::model::Service;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("service {service:?}: {message}")]
pub struct SpecError {
    pub service: String,
    pub message: String,
}

/// What the caller decides: names, directories, and how `service:`/`container:`
/// namespace references resolve.
pub struct SpecContext<'a> {
    pub service: &'a str,
    pub container_id: &'a str,
    pub container_name: &'a str,
    pub layers: Vec<PathBuf>,
    pub dir: PathBuf,
    /// Directory of a named volume, by its Compose key.
    pub volume_dir: &'a dyn Fn(&str) -> Option<PathBuf>,
    /// `/proc/<pid>/ns/<kind>` of a service's or container's init.
    pub namespace_of: &'a dyn Fn(&str, &str) -> Option<String>,
    /// The host's resolv.conf (used when the service sets no `dns`).
    pub host_resolv_conf: &'a str,
}

/// How a container is stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct StopConfig {
    pub signal: i32,
    pub grace: Duration,
}

pub fn signal_number(name: &str) -> Option<i32> {
    let n = name.trim().to_ascii_uppercase();
    let n = n.strip_prefix("SIG").unwrap_or(&n);
    if let Ok(num) = n.parse::<i32>() {
        return (1..=64).contains(&num).then_some(num);
    }
    Some(match n {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        "WINCH" => libc::SIGWINCH,
        "ALRM" => libc::SIGALRM,
        "PWR" => libc::SIGPWR,
        _ => return None,
    })
}

/// `/run:size=10m,mode=1777`-style tmpfs entries as mounts.
fn tmpfs_mount(entry: &str) -> Mount {
    let (target, opts) = entry.split_once(':').unwrap_or((entry, ""));
    let data = if opts.is_empty() {
        "mode=1777".to_string()
    } else {
        opts.to_string()
    };
    Mount {
        kind: "tmpfs".into(),
        target: target.into(),
        data,
        ..Default::default()
    }
}

pub fn container_spec(
    ctx: &SpecContext,
    svc: &Service,
    image: &ImageConfigFile,
) -> Result<(ContainerSpec, Limits, StopConfig), SpecError> {
    let err = |message: String| SpecError {
        service: ctx.service.to_string(),
        message,
    };
    let ic = &image.config;

    // Entrypoint and command, as Docker merges them.
    let entrypoint = svc
        .entrypoint
        .clone()
        .or_else(|| ic.entrypoint.clone())
        .unwrap_or_default();
    let cmd = match (&svc.command, &svc.entrypoint) {
        (Some(c), _) => c.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => ic.cmd.clone().unwrap_or_default(),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(err(
            "no command specified (neither the service nor its image sets one)".into()
        ));
    }

    // Environment: the image's, then the service's (unset values drop the variable).
    let mut env: Vec<(String, String)> = ic
        .env
        .iter()
        .flatten()
        .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    for (k, v) in svc.environment.iter().flatten() {
        env.retain(|(ek, _)| ek != k);
        if let Some(v) = v {
            env.push((k.clone(), v.clone()));
        }
    }
    if !env.iter().any(|(k, _)| k == "HOSTNAME") {
        env.push((
            "HOSTNAME".into(),
            svc.hostname
                .clone()
                .unwrap_or_else(|| ctx.container_id.chars().take(12).collect()),
        ));
    }

    // Security options.
    let mut no_new_privileges = false;
    let mut seccomp = if svc.privileged == Some(true) {
        "unconfined".to_string()
    } else {
        "default".to_string()
    };
    for opt in svc.security_opt.iter().flatten() {
        let (k, v) = opt.split_once(['=', ':']).unwrap_or((opt.as_str(), "true"));
        match k {
            "no-new-privileges" => no_new_privileges = v != "false",
            "seccomp" if v == "unconfined" => seccomp = "unconfined".into(),
            "seccomp" => {
                seccomp = std::fs::read_to_string(v).map_err(|e| err(format!("security_opt seccomp={v}: {e}")))?;
            }
            "label" | "apparmor" => {
                return Err(err(format!(
                    "security_opt {opt:?}: SELinux and AppArmor labels are not implemented yet"
                )))
            }
            _ => return Err(err(format!("security_opt {opt:?} is not supported"))),
        }
    }
    let privileged = svc.privileged == Some(true);
    let capabilities = process::capabilities(
        svc.cap_add.as_deref().unwrap_or_default(),
        svc.cap_drop.as_deref().unwrap_or_default(),
        privileged,
    )
    .map_err(err)?;

    let mut rlimits = Vec::new();
    for (name, u) in svc.ulimits.iter().flatten() {
        let (soft, hard) = (u.soft(), u.hard());
        if soft < 0 || hard < 0 {
            return Err(err(format!("ulimit {name}: limits cannot be negative")));
        }
        rlimits.push((name.clone(), soft as u64, hard as u64));
    }

    // Namespaces: own, the host's, or another service's/container's.
    let ns = |kind: &str, key: &str, mode: &Option<String>| -> Result<Option<String>, SpecError> {
        match mode.as_deref() {
            None | Some("") | Some("private") | Some("shareable") | Some("bridge") | Some("none") | Some("default") => {
                Ok(None)
            }
            Some("host") => Ok(Some("host".into())),
            Some(m) => {
                let target = m
                    .strip_prefix("service:")
                    .or_else(|| m.strip_prefix("container:"))
                    .ok_or_else(|| err(format!("unsupported {key} {m:?}")))?;
                (ctx.namespace_of)(target, kind)
                    .map(Some)
                    .ok_or_else(|| err(format!("{key} {m:?}: {target} is not running")))
            }
        }
    };
    let namespaces = Namespaces {
        net: ns("net", "network_mode", &svc.network_mode)?,
        ipc: ns("ipc", "ipc", &svc.ipc)?,
        pid: ns("pid", "pid", &svc.pid)?,
        uts: ns("uts", "uts", &svc.uts)?,
    };
    // Checked here; the range itself is the engine's to allocate (it knows the other
    // containers') and to set in the spec.
    super::userns::check_service(svc).map_err(err)?;

    // Mounts: bind and volume mounts, tmpfs (both syntaxes).
    let mut mounts: Vec<Mount> = svc.tmpfs.iter().flatten().map(|t| tmpfs_mount(t)).collect();
    for v in svc.volumes.iter().flatten() {
        let target = PathBuf::from(v.target.clone().unwrap_or_default());
        let ro = v.read_only == Some(true);
        match v.r#type.as_deref().unwrap_or("volume") {
            "bind" => {
                let src = PathBuf::from(v.source.clone().unwrap_or_default());
                let create = v.bind.as_ref().and_then(|b| b.create_host_path).unwrap_or(false);
                if !src.exists() {
                    if create {
                        std::fs::create_dir_all(&src).map_err(|e| err(format!("creating {}: {e}", src.display())))?;
                    } else {
                        return Err(err(format!("bind source path does not exist: {}", src.display())));
                    }
                }
                let propagation = v.bind.as_ref().and_then(|b| b.propagation.clone()).unwrap_or_default();
                mounts.push(Mount {
                    kind: "bind".into(),
                    source: src,
                    target,
                    read_only: ro,
                    propagation,
                    ..Default::default()
                });
            }
            "volume" => {
                let key = v.source.clone().unwrap_or_default();
                let dir = if key.is_empty() {
                    ctx.dir
                        .join("anonymous")
                        .join(target.to_string_lossy().trim_start_matches('/').replace('/', "_"))
                } else {
                    (ctx.volume_dir)(&key).ok_or_else(|| err(format!("volume {key:?} is not available")))?
                };
                std::fs::create_dir_all(&dir).map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
                mounts.push(Mount {
                    kind: "bind".into(),
                    source: dir,
                    target,
                    read_only: ro,
                    idmap: true,
                    ..Default::default()
                });
            }
            "tmpfs" => {
                let size = v.tmpfs.as_ref().and_then(|t| t.size).map(|b| format!("size={}", b.0));
                let mode = v.tmpfs.as_ref().and_then(|t| t.mode).map(|m| format!("mode={:o}", m.0));
                let data = [size, mode].into_iter().flatten().collect::<Vec<_>>().join(",");
                mounts.push(Mount {
                    kind: "tmpfs".into(),
                    target,
                    read_only: ro,
                    data,
                    ..Default::default()
                });
            }
            other => return Err(err(format!("volume type {other:?} is not implemented yet"))),
        }
    }

    let mut devices = Vec::new();
    for d in svc.devices.iter().flatten() {
        let host = PathBuf::from(d.source.clone().unwrap_or_default());
        let container = d.target.clone().map(PathBuf::from).unwrap_or_else(|| host.clone());
        devices.push(Device {
            host,
            container,
            permissions: d.permissions.clone().unwrap_or_else(|| "rwm".into()),
        });
    }

    // /etc/hosts and /etc/resolv.conf (the network's own entries are added by netd).
    let hostname = svc
        .hostname
        .clone()
        .unwrap_or_else(|| ctx.container_id.chars().take(12).collect());
    let mut hosts = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (h, ip) in svc.extra_hosts.iter().flat_map(|e| e.0.iter()) {
        let ip = if ip == "host-gateway" {
            return Err(err(
                "extra_hosts host-gateway needs the network (not implemented yet)".into()
            ));
        } else {
            ip
        };
        hosts.push_str(&format!("{ip}\t{h}\n"));
    }
    let resolv_conf = match (&svc.dns, &svc.dns_search, &svc.dns_opt) {
        (None, None, None) => ctx
            .host_resolv_conf
            .lines()
            // A loopback resolver of the host is unreachable from the container.
            .filter(|l| !(l.starts_with("nameserver") && (l.contains(" 127.") || l.contains(" ::1"))))
            .map(|l| format!("{l}\n"))
            .collect(),
        _ => {
            let mut r = String::new();
            for d in svc.dns.iter().flatten() {
                r.push_str(&format!("nameserver {d}\n"));
            }
            if let Some(s) = &svc.dns_search {
                r.push_str(&format!("search {}\n", s.join(" ")));
            }
            if let Some(o) = &svc.dns_opt {
                r.push_str(&format!("options {}\n", o.join(" ")));
            }
            r
        }
    };

    let log = svc
        .logging
        .as_ref()
        .and_then(|l| l.options.as_ref())
        .map(|o| LogConfig {
            max_size: o
                .get("max-size")
                .and_then(|s| compose::model::parse_bytes(s).ok())
                .map(|b| b.0.max(0) as u64)
                .unwrap_or(0),
            max_file: o.get("max-file").and_then(|s| s.parse().ok()).unwrap_or(1),
        })
        .unwrap_or_default();
    if let Some(d) = svc
        .logging
        .as_ref()
        .and_then(|l| l.driver.as_deref())
        .filter(|d| *d != "json-file" && *d != "local")
    {
        return Err(err(format!(
            "logging driver {d:?} is not implemented yet (json-file is)"
        )));
    }

    let mut sysctls: Vec<(String, String)> = svc
        .sysctls
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if namespaces.net.is_none() {
        // Docker's defaults for a network namespace of the container's own: any port
        // and ICMP echo without capabilities (which a user namespace's root lacks there).
        for (k, v) in [
            ("net.ipv4.ip_unprivileged_port_start", "0"),
            ("net.ipv4.ping_group_range", "0 2147483647"),
        ] {
            if !sysctls.iter().any(|(sk, _)| sk == k) {
                sysctls.push((k.into(), v.into()));
            }
        }
    }
    let spec = ContainerSpec {
        id: ctx.container_id.to_string(),
        name: ctx.container_name.to_string(),
        hostname,
        domainname: svc.domainname.clone().unwrap_or_default(),
        layers: ctx.layers.clone(),
        dir: ctx.dir.clone(),
        read_only: svc.read_only == Some(true),
        mounts,
        process: Process {
            args,
            env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd: svc
                .working_dir
                .clone()
                .or_else(|| ic.working_dir.clone())
                .unwrap_or_else(|| "/".into()),
            user: svc.user.clone().or_else(|| ic.user.clone()).unwrap_or_default(),
            group_add: svc.group_add.clone().unwrap_or_default(),
            tty: svc.tty == Some(true),
            stdin_open: svc.stdin_open == Some(true),
            stdin_once: false,
            attach_replay: false,
            console_size: None,
            capabilities,
            no_new_privileges,
            seccomp,
            rlimits,
        },
        namespaces,
        hosts,
        resolv_conf,
        shm_size: svc.shm_size.map(|b| b.0.max(0) as u64).unwrap_or(64 << 20),
        sysctls,
        log,
        privileged,
        devices,
        device_cgroup_rules: svc.device_cgroup_rules.clone().unwrap_or_default(),
        userns: None,
        init: svc.init == Some(true),
    };

    // Limits: service keys, else deploy.resources.
    let res = svc.deploy.as_ref().and_then(|d| d.resources.as_ref());
    let lim = res.and_then(|r| r.limits.as_ref());
    let resv = res.and_then(|r| r.reservations.as_ref());
    let mut limits = Limits {
        memory: svc
            .mem_limit
            .map(|b| b.0)
            .or_else(|| lim.and_then(|l| l.memory).map(|b| b.0)),
        memory_reservation: svc
            .mem_reservation
            .map(|b| b.0)
            .or_else(|| resv.and_then(|r| r.memory).map(|b| b.0)),
        memory_swap: svc.memswap_limit.map(|b| b.0),
        cpu_quota: svc.cpu_quota,
        cpu_period: svc.cpu_period.map(|p| p as u64),
        cpu_shares: svc.cpu_shares.map(|s| s as u64),
        cpuset_cpus: svc.cpuset.clone(),
        cpuset_mems: None,
        pids: svc.pids_limit.or_else(|| lim.and_then(|l| l.pids)),
        devices: None,
    };
    if let Some(cpus) = svc.cpus.or_else(|| lim.and_then(|l| l.cpus)) {
        if cpus <= 0.0 {
            return Err(err(format!("cpus must be positive, got {cpus}")));
        }
        limits.set_cpus(cpus);
    }

    let signal = svc
        .stop_signal
        .as_deref()
        .or(ic.stop_signal.as_deref())
        .unwrap_or("SIGTERM");
    let stop = StopConfig {
        signal: signal_number(signal).ok_or_else(|| err(format!("invalid stop_signal {signal:?}")))?,
        grace: svc
            .stop_grace_period
            .map(|d| d.as_std())
            .unwrap_or(Duration::from_secs(10)),
    };
    Ok((spec, limits, stop))
}

/// The image's layers as directories of the store, lowest first.
pub fn layer_dirs(store: &crate::images::Store, rec: &crate::images::ImageRecord) -> Vec<PathBuf> {
    rec.layers.iter().map(|l| store.layer_dir(&l.diff_id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::config::ContainerConfig;

    fn svc(yaml: &str) -> Service {
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&format!(
            "services:\n  s:\n{}",
            yaml.lines().map(|l| format!("    {l}\n")).collect::<String>()
        ))
        .unwrap();
        compose::decode(&doc).unwrap().services.shift_remove("s").unwrap()
    }

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>, env: &[&str]) -> ImageConfigFile {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        ImageConfigFile {
            config: ContainerConfig {
                entrypoint: entrypoint.map(v),
                cmd: cmd.map(v),
                env: Some(v(env)),
                working_dir: Some("/app".into()),
                user: Some("daemon".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn build(s: &Service, img: &ImageConfigFile) -> Result<(ContainerSpec, Limits, StopConfig), SpecError> {
        let none = |_: &str| None;
        let ns = |t: &str, k: &str| (t == "db").then(|| format!("/proc/4242/ns/{k}"));
        let ctx = SpecContext {
            service: "s",
            container_id: "0123456789abcdef",
            container_name: "p-s-1",
            layers: vec![],
            dir: std::env::temp_dir().join("rcompose-spec-test"),
            volume_dir: &none,
            namespace_of: &ns,
            host_resolv_conf: "nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch example\n",
        };
        container_spec(&ctx, s, img)
    }

    #[test]
    fn entrypoint_and_command_as_docker_merges_them() {
        let img = image(Some(&["/entry.sh"]), Some(&["serve"]), &[]);
        let args = |y: &str| build(&svc(y), &img).map(|r| r.0.process.args);
        assert_eq!(args("image: x").unwrap(), vec!["/entry.sh", "serve"]);
        assert_eq!(
            args("image: x\ncommand: run fast").unwrap(),
            vec!["/entry.sh", "run", "fast"]
        );
        // A new entrypoint drops the image's command.
        assert_eq!(args("image: x\nentrypoint: [sh, -c]").unwrap(), vec!["sh", "-c"]);
        assert_eq!(
            args("image: x\nentrypoint: [sh, -c]\ncommand: [date]").unwrap(),
            vec!["sh", "-c", "date"]
        );
        assert_eq!(args("image: x\ncommand: []").unwrap(), vec!["/entry.sh"]);
        let bare = image(None, None, &[]);
        assert!(build(&svc("image: x"), &bare)
            .unwrap_err()
            .message
            .contains("no command specified"));
    }

    #[test]
    fn environment_user_workdir_and_defaults() {
        let img = image(None, Some(&["run"]), &["PATH=/usr/bin", "A=image", "B=image"]);
        let (spec, limits, stop) = build(&svc("image: x\nenvironment: {A: service, C: '3'}\nworking_dir: /srv\nstop_signal: SIGUSR1\nstop_grace_period: 3s"), &img).unwrap();
        assert_eq!(
            spec.process.env,
            vec!["PATH=/usr/bin", "B=image", "A=service", "C=3", "HOSTNAME=0123456789ab"]
        );
        assert_eq!(
            (spec.process.cwd.as_str(), spec.process.user.as_str()),
            ("/srv", "daemon")
        );
        assert_eq!(spec.hostname, "0123456789ab");
        assert_eq!(
            stop,
            StopConfig {
                signal: libc::SIGUSR1,
                grace: Duration::from_secs(3)
            }
        );
        assert_eq!(limits, Limits::default());
        assert_eq!(spec.shm_size, 64 << 20);
        assert_eq!(spec.resolv_conf, "nameserver 10.0.0.2\nsearch example\n");
        assert!(spec.hosts.starts_with("127.0.0.1\tlocalhost\n"));
        // Docker's sysctls for a network namespace of its own; a service's value wins.
        assert_eq!(
            spec.sysctls,
            vec![
                ("net.ipv4.ip_unprivileged_port_start".to_string(), "0".to_string()),
                ("net.ipv4.ping_group_range".to_string(), "0 2147483647".to_string())
            ]
        );
        let (spec, ..) = build(
            &svc("image: x\nsysctls: {net.ipv4.ip_unprivileged_port_start: '1024'}"),
            &img,
        )
        .unwrap();
        assert_eq!(
            spec.sysctls[0],
            ("net.ipv4.ip_unprivileged_port_start".into(), "1024".into())
        );
        assert_eq!(spec.sysctls.len(), 2);
        assert_eq!(spec.userns, None);
        let (spec, ..) = build(&svc("image: x\nuserns_mode: auto:size=4096\nvolumes: [/d]"), &img).unwrap();
        assert_eq!(spec.userns, None, "the engine's to set");
        assert!(spec.mounts[0].idmap);
    }

    #[test]
    fn limits_security_and_namespaces() {
        let img = image(None, Some(&["run"]), &[]);
        let (spec, limits, _) = build(
            &svc("image: x\nmem_limit: 64m\ncpus: 1.5\npids_limit: 50\ndeploy:\n  resources:\n    limits: {memory: 1g}\n    reservations: {memory: 32m}\ncap_add: [NET_ADMIN]\ncap_drop: [CHOWN]\nsecurity_opt: [no-new-privileges:true, seccomp=unconfined]\nulimits: {nofile: {soft: 10, hard: 20}}\nsysctls: {net.core.somaxconn: 1024}\ntmpfs: [/run:size=1m]\nnetwork_mode: service:db\nipc: host\nread_only: true\ndns: [1.1.1.1]\nextra_hosts: [h=10.1.1.1]\ndevices: ['/dev/null:/dev/x:rw']\nlogging: {options: {max-size: 1m, max-file: '3'}}"),
            &img,
        )
        .unwrap();
        assert_eq!(
            (limits.memory, limits.memory_reservation, limits.pids),
            (Some(64 << 20), Some(32 << 20), Some(50))
        );
        assert_eq!((limits.cpu_quota, limits.cpu_period), (Some(150_000), Some(100_000)));
        assert!(
            spec.process.capabilities.contains(&"CAP_NET_ADMIN".to_string())
                && !spec.process.capabilities.contains(&"CAP_CHOWN".to_string())
        );
        assert!(spec.process.no_new_privileges);
        assert_eq!(spec.process.seccomp, "unconfined");
        assert_eq!(spec.process.rlimits, vec![("nofile".to_string(), 10, 20)]);
        assert_eq!(
            spec.sysctls,
            vec![("net.core.somaxconn".to_string(), "1024".to_string())]
        );
        assert_eq!(spec.mounts[0].data, "size=1m");
        assert_eq!(spec.namespaces.net.as_deref(), Some("/proc/4242/ns/net"));
        assert_eq!(spec.namespaces.ipc.as_deref(), Some("host"));
        assert!(spec.read_only);
        assert_eq!(spec.resolv_conf, "nameserver 1.1.1.1\n");
        assert!(spec.hosts.ends_with("10.1.1.1\th\n"));
        assert_eq!(spec.devices[0].container, PathBuf::from("/dev/x"));
        assert_eq!((spec.log.max_size, spec.log.max_file), (1 << 20, 3));
        // Errors name the service and the key.
        for (y, want) in [
            (
                "image: x\nnetwork_mode: service:web",
                "network_mode \"service:web\": web is not running",
            ),
            ("image: x\nsecurity_opt: [apparmor=x]", "not implemented yet"),
            (
                "image: x\nuserns_mode: remap",
                "userns_mode \"remap\" is not supported: use \"host\", \"auto\"",
            ),
            (
                "image: x\nuserns_mode: auto\nprivileged: true",
                "privileged mode is incompatible with user namespaces",
            ),
            (
                "image: x\nuserns_mode: auto\nnetwork_mode: host",
                "cannot share the host's network namespace when user namespaces are enabled",
            ),
            (
                "image: x\nuserns_mode: auto\npid: host",
                "cannot share the host PID namespace when user namespaces are enabled",
            ),
            ("image: x\nstop_signal: SIGNOPE", "invalid stop_signal"),
            ("image: x\nlogging: {driver: syslog}", "logging driver \"syslog\""),
            ("image: x\nvolumes: ['/no/such/dir/anywhere:/x']", ""),
        ] {
            let r = build(&svc(y), &img);
            if want.is_empty() {
                continue;
            }
            let e = r.unwrap_err();
            assert_eq!(e.service, "s");
            assert!(e.message.contains(want), "{y}: {e}");
        }
    }
}
