//! The top level of a Compose file: networks, volumes, secrets, configs, models, include.

use super::model;
use super::short::{FromShort, Labels, NullableMap, StringOrList};
use super::Service;
use indexmap::IndexMap;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// `external: true`, or the obsolete `external: {name: x}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum External {
    Flag(bool),
    Named(Option<String>),
}

impl External {
    pub fn is_external(&self) -> bool {
        !matches!(self, External::Flag(false))
    }
}

impl Serialize for External {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(self.is_external())
    }
}

model! {
    pub struct ExternalName {
        name: Option<String>,
    }
}

impl<'de> Deserialize<'de> for External {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = External;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or a mapping with a name")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<External, E> {
                Ok(External::Flag(b))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<External, E> {
                match s {
                    "true" => Ok(External::Flag(true)),
                    "false" => Ok(External::Flag(false)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(s), &self)),
                }
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<External, A::Error> {
                let n = ExternalName::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(External::Named(n.name))
            }
        }
        d.deserialize_any(V)
    }
}

model! {
    pub struct IpamPool {
        subnet: Option<String>,
        ip_range: Option<String>,
        gateway: Option<String>,
        @via(Labels) aux_addresses: Option<BTreeMap<String, String>>,
    }
}

model! {
    pub struct Ipam {
        driver: Option<String>,
        config: Option<Vec<IpamPool>>,
        @via(Labels) options: Option<BTreeMap<String, String>>,
    }
}

model! {
    pub struct Network {
        name: Option<String>,
        driver: Option<String>,
        @via(Labels) driver_opts: Option<BTreeMap<String, String>>,
        ipam: Option<Ipam>,
        external: Option<External>,
        internal: Option<bool>,
        enable_ipv4: Option<bool>,
        enable_ipv6: Option<bool>,
        attachable: Option<bool>,
        @via(Labels) labels: Option<BTreeMap<String, String>>,
    }
}

model! {
    pub struct Volume {
        name: Option<String>,
        driver: Option<String>,
        @via(Labels) driver_opts: Option<BTreeMap<String, String>>,
        external: Option<External>,
        @via(Labels) labels: Option<BTreeMap<String, String>>,
    }
}

model! {
    pub struct Secret {
        name: Option<String>,
        environment: Option<String>,
        file: Option<String>,
        external: Option<External>,
        @via(Labels) labels: Option<BTreeMap<String, String>>,
        driver: Option<String>,
        @via(Labels) driver_opts: Option<BTreeMap<String, String>>,
        template_driver: Option<String>,
    }
}

model! {
    pub struct Config {
        name: Option<String>,
        content: Option<String>,
        environment: Option<String>,
        file: Option<String>,
        external: Option<External>,
        @via(Labels) labels: Option<BTreeMap<String, String>>,
        template_driver: Option<String>,
    }
}

model! {
    pub struct Model {
        name: Option<String>,
        model: Option<String>,
        context_size: Option<i64>,
        @via(StringOrList) runtime_flags: Option<Vec<String>>,
    }
}

model! {
    pub struct Include {
        @via(StringOrList) path: Option<Vec<String>>,
        @via(StringOrList) env_file: Option<Vec<String>>,
        project_directory: Option<String>,
    }
}

impl FromShort for Include {
    const EXPECTING: &'static str = "a path or a mapping with path/env_file/project_directory";
    fn from_short(s: &str) -> Result<Vec<Self>, String> {
        Ok(vec![Include {
            path: Some(vec![s.to_string()]),
            ..Default::default()
        }])
    }
}

model! {
    /// A whole Compose project, in the order `docker compose config` prints it.
    pub struct Project {
        name: Option<String>,
        version: Option<String>,
        @via(super::short::Many<Include>) include: Option<Vec<Include>>,
        @via(NullableMap<Service>) services: IndexMap<String, Service>,
        @via(NullableMap<Network>) networks: IndexMap<String, Network>,
        @via(NullableMap<Volume>) volumes: IndexMap<String, Volume>,
        @via(NullableMap<Secret>) secrets: IndexMap<String, Secret>,
        @via(NullableMap<Config>) configs: IndexMap<String, Config>,
        @via(NullableMap<Model>) models: IndexMap<String, Model>,
    }
}
