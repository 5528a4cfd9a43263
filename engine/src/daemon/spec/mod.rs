//! The one translation of a Compose service into what the runtime runs: the service,
//! its image's config and what the engine allocated for the container (addresses, the
//! DNS server, links, secrets' files, the user-namespace range) become a
//! [`ContainerSpec`], its cgroup [`Limits`] and its [`StopConfig`], as Docker makes a
//! container of them. One file per section of the spec: [`command`], [`environment`],
//! [`security`], [`namespaces`], [`userns`], [`mounts`], [`hosts`], [`limits`].
//! Pure but for making missing volume and `create_host_path` directories and reading a
//! seccomp profile the service names.

mod command;
mod environment;
pub(super) mod hosts;
mod limits;
mod mounts;
mod namespaces;
mod security;
pub(crate) mod userns;

use compose::model::Service;
use images::config::ImageConfigFile;
use runtime::cgroups::Limits;
use runtime::spec::{ContainerSpec, IdMap, Mount, Process};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A service that cannot be made into a container here: which, and why.
#[derive(Debug, thiserror::Error)]
#[error("service {service:?}: {problem}")]
pub struct SpecError {
    pub service: String,
    pub problem: SpecProblem,
}

/// Why a service cannot be made into a container spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecProblem {
    #[error("no command specified (neither the service nor its image sets one)")]
    NoCommand,
    #[error("invalid stop_signal {0:?}")]
    StopSignal(String),
    #[error("extra_hosts host-gateway needs the network (not implemented yet)")]
    HostGateway,
    #[error("cpus must be positive, got {0}")]
    Cpus(f64),
    #[error("logging driver {0:?} is not implemented yet (json-file is)")]
    LoggingDriver(String),
    #[error("creating {}: {source}", .path.display())]
    Create { path: PathBuf, source: std::io::Error },
    #[error("bind source path does not exist: {}", .0.display())]
    NoBindSource(PathBuf),
    #[error("volume {0:?} is not available")]
    NoVolume(String),
    #[error("volume type {0:?} is not implemented yet")]
    VolumeType(String),
    #[error("unsupported {key} {mode:?}")]
    NamespaceMode { key: String, mode: String },
    #[error("{key} {mode:?}: {target} is not running")]
    NamespaceNotRunning { key: String, mode: String, target: String },
    #[error("security_opt seccomp={file}: {source}")]
    SeccompProfile { file: String, source: std::io::Error },
    #[error("security_opt {0:?}: SELinux and AppArmor labels are not implemented yet")]
    Labels(String),
    #[error("security_opt {0:?} is not supported")]
    SecurityOpt(String),
    #[error("ulimit {0}: limits cannot be negative")]
    NegativeUlimit(String),
    #[error(transparent)]
    Capabilities(#[from] runtime::process::ProcessError),
    #[error(transparent)]
    UsernsMode(#[from] userns::UsernsModeError),
}

/// What the engine allocated or found for this container before it starts.
#[derive(Default)]
pub struct Allocated {
    /// Secrets and configs the engine wrote: (file in the container's directory, target).
    pub files: Vec<(PathBuf, String)>,
    /// The mounts of `volumes_from`.
    pub volumes_from: Vec<Mount>,
    /// `userns_mode: auto`: the container's host ID range.
    pub userns: Option<IdMap>,
    /// Legacy links: (address, alias).
    pub links: Vec<(String, String)>,
    /// Its addresses, network by network (IPv4, then IPv6).
    pub own_ips: Vec<String>,
    /// The embedded DNS server it is given, when it is on a network.
    pub dns_server: Option<IpAddr>,
    /// A `run` with its client attached, with this terminal size.
    pub attached_run: bool,
    pub console_size: Option<(u16, u16)>,
}

/// What the caller decides: names, directories, how `service:`/`container:`
/// namespace references resolve, and what it allocated.
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
    pub allocated: Allocated,
}

/// How a container is stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct StopConfig {
    pub signal: i32,
    pub grace: Duration,
}

pub fn container_spec(
    ctx: &SpecContext,
    svc: &Service,
    image: &ImageConfigFile,
) -> Result<(ContainerSpec, Limits, StopConfig), SpecError> {
    let err = |problem: SpecProblem| SpecError {
        service: ctx.service.to_string(),
        problem,
    };
    let ic = &image.config;
    let got = &ctx.allocated;
    let args = command::args(svc, ic);
    if args.is_empty() {
        return Err(err(SpecProblem::NoCommand));
    }
    let hostname = hosts::hostname(svc, ctx.container_id);
    let env = environment::env(svc, ic, &hostname);
    let sec = security::security(svc).map_err(err)?;
    let namespaces = namespaces::namespaces(svc, ctx.namespace_of).map_err(err)?;
    userns::check_service(svc).map_err(|e| err(e.into()))?;
    let mut mounts = mounts::mounts(svc, &ctx.dir, ctx.volume_dir).map_err(err)?;
    mounts.extend(mounts::files(&got.files));
    mounts.extend(got.volumes_from.iter().cloned());
    let hosts = hosts::hosts(svc, &hostname, &got.own_ips, &got.links).map_err(err)?;
    let resolv_conf = hosts::resolv_conf(svc, ctx.host_resolv_conf, got.dns_server);
    let log = limits::log(svc).map_err(err)?;
    let stdin_open = svc.stdin_open == Some(true);
    let spec = ContainerSpec {
        id: ctx.container_id.to_string(),
        name: ctx.container_name.to_string(),
        domainname: svc.domainname.clone().unwrap_or_default(),
        layers: ctx.layers.clone(),
        dir: ctx.dir.clone(),
        read_only: svc.read_only == Some(true),
        mounts,
        process: Process {
            args,
            env,
            cwd: svc
                .working_dir
                .clone()
                .or_else(|| ic.working_dir.clone())
                .unwrap_or_else(|| "/".into()),
            user: svc.user.clone().or_else(|| ic.user.clone()).unwrap_or_default(),
            group_add: svc.group_add.clone().unwrap_or_default(),
            tty: svc.tty == Some(true),
            stdin_open,
            stdin_once: got.attached_run && stdin_open,
            attach_replay: got.attached_run,
            console_size: got.console_size,
            capabilities: sec.capabilities,
            no_new_privileges: sec.no_new_privileges,
            seccomp: sec.seccomp,
            rlimits: sec.rlimits,
        },
        sysctls: limits::sysctls(svc, namespaces.net.is_none()),
        namespaces,
        hostname,
        hosts,
        resolv_conf,
        shm_size: limits::shm_size(svc),
        log,
        privileged: sec.privileged,
        devices: mounts::devices(svc),
        device_cgroup_rules: svc.device_cgroup_rules.clone().unwrap_or_default(),
        userns: got.userns,
        init: svc.init == Some(true),
        cgroupns: svc.cgroup.clone(),
        ends_with_engine: false,
    };
    let limits = limits::limits(svc).map_err(err)?;
    let stop = command::stop(svc, ic).map_err(err)?;
    Ok((spec, limits, stop))
}

/// The image's layers as directories of the store, lowest first.
pub fn layer_dirs(store: &images::Store, rec: &images::ImageRecord) -> Vec<PathBuf> {
    store.layer_dirs(&rec.layers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use images::config::ContainerConfig;

    /// The service `s` of a file whose `services.s` is `yaml` (the other modules' tests
    /// use it too).
    pub(super) fn svc(yaml: &str) -> Service {
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
            allocated: Allocated::default(),
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
            .problem
            .to_string()
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
            assert!(e.problem.to_string().contains(want), "{y}: {e}");
        }
    }
}
