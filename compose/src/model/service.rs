//! A service, every key of the canonical schema.

use super::blocks::*;
use super::model;
use super::short::{Command, Labels, ListOrMap, Many, NamesOrMap, One, StringOrList};
use super::syntax::*;
use super::units::{Bytes, Duration};
use indexmap::IndexMap;
use std::collections::BTreeMap;

model! {
    /// One service. Fields are in the order `docker compose config` prints them.
    pub struct Service {
        @via(StringOrList) profiles: Option<Vec<String>>,
        @via(Labels) annotations: Option<BTreeMap<String, String>>,
        attach: Option<bool>,
        @via(One<Build>) build: Option<Build>,
        develop: Option<Develop>,
        blkio_config: Option<BlkioConfig>,
        @via(StringOrList) cap_add: Option<Vec<String>>,
        @via(StringOrList) cap_drop: Option<Vec<String>>,
        cgroup_parent: Option<String>,
        cgroup: Option<String>,
        cpu_count: Option<i64>,
        cpu_percent: Option<f64>,
        cpu_period: Option<i64>,
        cpu_quota: Option<i64>,
        cpu_rt_period: Option<i64>,
        cpu_rt_runtime: Option<i64>,
        cpus: Option<f64>,
        cpuset: Option<String>,
        cpu_shares: Option<i64>,
        @via(Command) command: Option<Vec<String>>,
        @via(Many<FileRef>) configs: Option<Vec<FileRef>>,
        container_name: Option<String>,
        credential_spec: Option<CredentialSpec>,
        @via(NamesOrMap<DependsOn>) depends_on: Option<IndexMap<String, Option<DependsOn>>>,
        deploy: Option<Deploy>,
        @via(StringOrList) device_cgroup_rules: Option<Vec<String>>,
        @via(Many<Device>) devices: Option<Vec<Device>>,
        @via(StringOrList) dns: Option<Vec<String>>,
        @via(StringOrList) dns_opt: Option<Vec<String>>,
        @via(StringOrList) dns_search: Option<Vec<String>>,
        domainname: Option<String>,
        @via(Command) entrypoint: Option<Vec<String>>,
        provider: Option<Provider>,
        @via(ListOrMap) environment: Option<BTreeMap<String, Option<String>>>,
        @via(Many<EnvFile>) env_file: Option<Vec<EnvFile>>,
        @via(StringOrList) expose: Option<Vec<String>>,
        @via(One<Extends>) extends: Option<Extends>,
        @via(StringOrList) external_links: Option<Vec<String>>,
        extra_hosts: Option<ExtraHosts>,
        @via(StringOrList) group_add: Option<Vec<String>>,
        @via(Gpus) gpus: Option<Vec<DeviceRequest>>,
        hostname: Option<String>,
        healthcheck: Option<Healthcheck>,
        image: Option<String>,
        init: Option<bool>,
        ipc: Option<String>,
        isolation: Option<String>,
        @via(Labels) labels: Option<BTreeMap<String, String>>,
        @via(StringOrList) label_file: Option<Vec<String>>,
        @via(StringOrList) links: Option<Vec<String>>,
        logging: Option<Logging>,
        mem_limit: Option<Bytes>,
        mem_reservation: Option<Bytes>,
        memswap_limit: Option<Bytes>,
        mem_swappiness: Option<i64>,
        mac_address: Option<String>,
        @via(NamesOrMap<ServiceModel>) models: Option<IndexMap<String, Option<ServiceModel>>>,
        network_mode: Option<String>,
        @via(NamesOrMap<ServiceNetwork>) networks: Option<IndexMap<String, Option<ServiceNetwork>>>,
        oom_kill_disable: Option<bool>,
        oom_score_adj: Option<i64>,
        pid: Option<String>,
        pids_limit: Option<i64>,
        platform: Option<String>,
        @via(Many<Port>) ports: Option<Vec<Port>>,
        privileged: Option<bool>,
        pull_policy: Option<String>,
        pull_refresh_after: Option<String>,
        read_only: Option<bool>,
        restart: Option<String>,
        runtime: Option<String>,
        scale: Option<i64>,
        @via(Many<FileRef>) secrets: Option<Vec<FileRef>>,
        @via(StringOrList) security_opt: Option<Vec<String>>,
        shm_size: Option<Bytes>,
        stdin_open: Option<bool>,
        stop_grace_period: Option<Duration>,
        stop_signal: Option<String>,
        storage_opt: Option<IndexMap<String, String>>,
        @via(Labels) sysctls: Option<BTreeMap<String, String>>,
        @via(StringOrList) tmpfs: Option<Vec<String>>,
        tty: Option<bool>,
        ulimits: Option<IndexMap<String, Ulimit>>,
        use_api_socket: Option<bool>,
        user: Option<String>,
        userns_mode: Option<String>,
        uts: Option<String>,
        @via(Many<ServiceVolume>) volumes: Option<Vec<ServiceVolume>>,
        @via(StringOrList) volumes_from: Option<Vec<String>>,
        working_dir: Option<String>,
        post_start: Option<Vec<Hook>>,
        pre_start: Option<Vec<PreStartHook>>,
        pre_stop: Option<Vec<Hook>>,
    }
}

impl Service {
    /// The number of containers this service wants (`scale`, else `deploy.replicas`, else 1).
    pub fn replicas(&self) -> i64 {
        self.scale
            .or_else(|| self.deploy.as_ref().and_then(|d| d.replicas))
            .unwrap_or(1)
    }

    /// Services this one needs, with why: `depends_on`, `links`, `volumes_from`,
    /// and `service:` in `network_mode`, `ipc`, `pid`.
    pub fn dependencies(&self) -> Vec<(String, DependencyKind)> {
        let mut out = Vec::new();
        for (name, d) in self.depends_on.iter().flatten() {
            let required = d.as_ref().and_then(|d| d.required).unwrap_or(true);
            out.push((name.clone(), DependencyKind::DependsOn { required }));
        }
        for l in self.links.iter().flatten() {
            let name = l.split(':').next().unwrap_or(l);
            out.push((name.to_string(), DependencyKind::Link));
        }
        for v in self.volumes_from.iter().flatten() {
            if !v.starts_with("container:") {
                let name = v.strip_prefix("service:").unwrap_or(v);
                let name = name.split(':').next().unwrap_or(name);
                out.push((name.to_string(), DependencyKind::VolumesFrom));
            }
        }
        for (key, val) in [
            ("network_mode", &self.network_mode),
            ("ipc", &self.ipc),
            ("pid", &self.pid),
        ] {
            if let Some(name) = val.as_deref().and_then(|v| v.strip_prefix("service:")) {
                out.push((name.to_string(), DependencyKind::Namespace(key)));
            }
        }
        out
    }
}

/// Why one service needs another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DependencyKind {
    DependsOn {
        required: bool,
    },
    Link,
    VolumesFrom,
    /// `network_mode`, `ipc` or `pid` set to `service:X`.
    Namespace(&'static str),
}

impl DependencyKind {
    pub fn required(&self) -> bool {
        !matches!(self, DependencyKind::DependsOn { required: false })
    }
}
