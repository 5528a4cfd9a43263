//! The blocks nested in a service: build, healthcheck, logging, hooks, develop.watch,
//! deploy, device requests (gpus), blkio, credential spec and provider.

use super::model;
use super::short::{Command, FromShort, Labels, ListOrMap, Many, StringOrList};
use super::syntax::{ExtraHosts, FileRef, Ulimit};
use super::units::{Bytes, Duration};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

model! {
    pub struct Build {
        context: Option<String>,
        dockerfile: Option<String>,
        dockerfile_inline: Option<String>,
        @via(StringOrList) entitlements: Option<Vec<String>>,
        @via(ListOrMap) args: Option<BTreeMap<String, Option<String>>>,
        @via(ListOrMap) ssh: Option<BTreeMap<String, Option<String>>>,
        @via(Labels) labels: Option<BTreeMap<String, String>>,
        @via(StringOrList) cache_from: Option<Vec<String>>,
        @via(StringOrList) cache_to: Option<Vec<String>>,
        no_cache: Option<bool>,
        @via(StringOrList) no_cache_filter: Option<Vec<String>>,
        @via(Labels) additional_contexts: Option<BTreeMap<String, String>>,
        network: Option<String>,
        provenance: Option<String>,
        sbom: Option<String>,
        pull: Option<bool>,
        target: Option<String>,
        shm_size: Option<Bytes>,
        extra_hosts: Option<ExtraHosts>,
        isolation: Option<String>,
        privileged: Option<bool>,
        @via(Many<FileRef>) secrets: Option<Vec<FileRef>>,
        @via(StringOrList) tags: Option<Vec<String>>,
        ulimits: Option<indexmap::IndexMap<String, Ulimit>>,
        @via(StringOrList) platforms: Option<Vec<String>>,
    }
}

impl FromShort for Build {
    const EXPECTING: &'static str = "a build context path or a build mapping";
    fn from_short(s: &str) -> Result<Vec<Self>, String> {
        Ok(vec![Build {
            context: Some(s.to_string()),
            ..Default::default()
        }])
    }
}

/// `healthcheck.test`: a string means `CMD-SHELL string`.
pub struct HealthTest(pub Option<Vec<String>>);

impl From<HealthTest> for Option<Vec<String>> {
    fn from(v: HealthTest) -> Self {
        v.0
    }
}

impl<'de> Deserialize<'de> for HealthTest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<Vec<String>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a shell command string or a list such as [\"CMD\", \"curl\", \"-f\", \"http://localhost\"]",
                )
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Some(vec!["CMD-SHELL".into(), s.into()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Command::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(|c| c.0)
            }
        }
        d.deserialize_any(V).map(HealthTest)
    }
}

model! {
    pub struct Healthcheck {
        @via(HealthTest) test: Option<Vec<String>>,
        timeout: Option<Duration>,
        interval: Option<Duration>,
        retries: Option<u64>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        disable: Option<bool>,
    }
}

model! {
    pub struct Logging {
        driver: Option<String>,
        @via(Labels) options: Option<BTreeMap<String, String>>,
    }
}

model! {
    pub struct Hook {
        @via(Command) command: Option<Vec<String>>,
        user: Option<String>,
        privileged: Option<bool>,
        working_dir: Option<String>,
        @via(ListOrMap) environment: Option<BTreeMap<String, Option<String>>>,
    }
}

model! {
    pub struct PreStartHook {
        @via(Command) command: Option<Vec<String>>,
        image: Option<String>,
        user: Option<String>,
        privileged: Option<bool>,
        working_dir: Option<String>,
        @via(ListOrMap) environment: Option<BTreeMap<String, Option<String>>>,
        per_replica: Option<bool>,
    }
}

model! {
    pub struct Watch {
        @via(StringOrList) ignore: Option<Vec<String>>,
        @via(StringOrList) include: Option<Vec<String>>,
        path: Option<String>,
        action: Option<String>,
        target: Option<String>,
        exec: Option<Hook>,
        initial_sync: Option<bool>,
    }
}

model! {
    pub struct Develop {
        watch: Option<Vec<Watch>>,
    }
}

model! {
    pub struct DeviceRequest {
        @via(StringOrList) capabilities: Option<Vec<String>>,
        count: Option<String>,
        @via(StringOrList) device_ids: Option<Vec<String>>,
        driver: Option<String>,
        @via(Labels) options: Option<BTreeMap<String, String>>,
    }
}

/// `gpus: all` or a list of device requests.
pub struct Gpus(pub Option<Vec<DeviceRequest>>);

impl From<Gpus> for Option<Vec<DeviceRequest>> {
    fn from(v: Gpus) -> Self {
        v.0
    }
}

impl<'de> Deserialize<'de> for Gpus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<Vec<DeviceRequest>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"all\" or a list of device requests")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                if s == "all" {
                    Ok(Some(vec![DeviceRequest {
                        count: Some("all".into()),
                        ..Default::default()
                    }]))
                } else {
                    Err(E::custom(format!(
                        "invalid gpus value {s:?}: expected \"all\" or a list"
                    )))
                }
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::<DeviceRequest>::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Some)
            }
        }
        d.deserialize_any(V).map(Gpus)
    }
}

model! {
    pub struct BlkioLimit {
        path: Option<String>,
        rate: Option<Bytes>,
    }
}

model! {
    pub struct BlkioWeight {
        path: Option<String>,
        weight: Option<u16>,
    }
}

model! {
    pub struct BlkioConfig {
        device_read_bps: Option<Vec<BlkioLimit>>,
        device_read_iops: Option<Vec<BlkioLimit>>,
        device_write_bps: Option<Vec<BlkioLimit>>,
        device_write_iops: Option<Vec<BlkioLimit>>,
        weight: Option<u16>,
        weight_device: Option<Vec<BlkioWeight>>,
    }
}

model! {
    pub struct CredentialSpec {
        config: Option<String>,
        file: Option<String>,
        registry: Option<String>,
    }
}

model! {
    pub struct Provider {
        r#type: Option<String>,
        options: Option<indexmap::IndexMap<String, serde_yaml_ng::Value>>,
    }
}

model! {
    pub struct UpdateConfig {
        parallelism: Option<u64>,
        delay: Option<Duration>,
        failure_action: Option<String>,
        monitor: Option<Duration>,
        max_failure_ratio: Option<f64>,
        order: Option<String>,
    }
}

model! {
    pub struct ResourceLimits {
        cpus: Option<f64>,
        memory: Option<Bytes>,
        pids: Option<i64>,
    }
}

model! {
    pub struct DiscreteResourceSpec {
        kind: Option<String>,
        value: Option<i64>,
    }
}

model! {
    pub struct GenericResource {
        discrete_resource_spec: Option<DiscreteResourceSpec>,
    }
}

model! {
    pub struct ResourceReservations {
        cpus: Option<f64>,
        memory: Option<Bytes>,
        generic_resources: Option<Vec<GenericResource>>,
        devices: Option<Vec<DeviceRequest>>,
    }
}

model! {
    pub struct Resources {
        limits: Option<ResourceLimits>,
        reservations: Option<ResourceReservations>,
    }
}

model! {
    pub struct RestartPolicy {
        condition: Option<String>,
        delay: Option<Duration>,
        max_attempts: Option<u64>,
        window: Option<Duration>,
    }
}

model! {
    pub struct PlacementPreference {
        spread: Option<String>,
    }
}

model! {
    pub struct Placement {
        constraints: Option<Vec<String>>,
        preferences: Option<Vec<PlacementPreference>>,
        max_replicas_per_node: Option<u64>,
    }
}

model! {
    pub struct Deploy {
        mode: Option<String>,
        endpoint_mode: Option<String>,
        replicas: Option<i64>,
        @via(Labels) labels: Option<BTreeMap<String, String>>,
        rollback_config: Option<UpdateConfig>,
        update_config: Option<UpdateConfig>,
        resources: Option<Resources>,
        restart_policy: Option<RestartPolicy>,
        placement: Option<Placement>,
    }
}
