//! Types with a short and a long syntax, and the small structs nested in a service.

use super::model;
use super::short::{FromShort, Labels, StringOrList};
use super::units::Bytes;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

model! {
    /// A published or exposed port, long syntax.
    pub struct Port {
        name: Option<String>,
        mode: Option<String>,
        host_ip: Option<String>,
        target: Option<u32>,
        published: Option<String>,
        protocol: Option<String>,
        app_protocol: Option<String>,
    }
}

fn port_range(s: &str, what: &str, spec: &str) -> Result<(u32, u32), String> {
    let bad = || format!("invalid {what} port {s:?} in {spec:?}");
    let num = |p: &str| {
        p.parse::<u32>()
            .ok()
            .filter(|n| (1..=65535).contains(n) || what == "published" && *n == 0)
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (num(a).ok_or_else(bad)?, num(b).ok_or_else(bad)?);
            if a > b {
                return Err(bad());
            }
            Ok((a, b))
        }
        None => num(s).map(|n| (n, n)).ok_or_else(bad),
    }
}

impl FromShort for Port {
    const EXPECTING: &'static str = "a port (\"[[HOST_IP:][HOST_PORT]:]CONTAINER_PORT[/PROTOCOL]\") or a port mapping";
    fn from_short(spec: &str) -> Result<Vec<Self>, String> {
        let (rest, protocol) = match spec.rsplit_once('/') {
            Some((r, p)) => (r, p.to_string()),
            None => (spec, "tcp".to_string()),
        };
        if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
            return Err(format!(
                "invalid protocol {protocol:?} in port {spec:?} (tcp, udp or sctp)"
            ));
        }
        // An IPv6 host address is written in brackets: [::1]:8080:80.
        let (host_ip, rest) = if let Some(r) = rest.strip_prefix('[') {
            let (ip, r) = r
                .split_once("]:")
                .ok_or_else(|| format!("invalid port {spec:?}: unclosed [ in host address"))?;
            (Some(ip.to_string()), r)
        } else {
            (None, rest)
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (host_ip, published, container) = match (host_ip, parts.as_slice()) {
            (None, [c]) => (None, None, *c),
            (h, [p, c]) => (h, Some(*p), *c),
            (None, [ip, p, c]) => (Some(ip.to_string()), Some(*p), *c),
            _ => {
                return Err(format!(
                    "invalid port {spec:?}: expected [[HOST_IP:][HOST_PORT]:]CONTAINER_PORT[/PROTOCOL]"
                ))
            }
        };
        let published = published.filter(|p| !p.is_empty());
        let (c0, c1) = port_range(container, "container", spec)?;
        let host = published.map(|p| port_range(p, "published", spec)).transpose()?;
        let one = |target: u32, published: Option<String>| Port {
            mode: Some("ingress".into()),
            host_ip: host_ip.clone(),
            target: Some(target),
            published,
            protocol: Some(protocol.clone()),
            ..Port::default()
        };
        if c0 == c1 {
            return Ok(vec![one(c0, published.map(str::to_string))]);
        }
        match host {
            None => Ok((c0..=c1).map(|t| one(t, None)).collect()),
            Some((h0, h1)) if h1 - h0 == c1 - c0 => Ok((c0..=c1)
                .zip(h0..=h1)
                .map(|(t, h)| one(t, Some(h.to_string())))
                .collect()),
            Some(_) => Err(format!(
                "invalid port {spec:?}: the host and container port ranges differ in size"
            )),
        }
    }
}

model! {
    pub struct BindOptions {
        propagation: Option<String>,
        create_host_path: Option<bool>,
        selinux: Option<String>,
        recursive: Option<String>,
    }
}

model! {
    pub struct VolumeOptions {
        @via(Labels) labels: Option<BTreeMap<String, String>>,
        nocopy: Option<bool>,
        subpath: Option<String>,
    }
}

model! {
    pub struct TmpfsOptions {
        size: Option<Bytes>,
        mode: Option<FileMode>,
    }
}

model! {
    pub struct ImageOptions {
        subpath: Option<String>,
    }
}

model! {
    /// A service mount, long syntax.
    pub struct ServiceVolume {
        r#type: Option<String>,
        source: Option<String>,
        target: Option<String>,
        read_only: Option<bool>,
        consistency: Option<String>,
        bind: Option<BindOptions>,
        volume: Option<VolumeOptions>,
        tmpfs: Option<TmpfsOptions>,
        image: Option<ImageOptions>,
    }
}

/// Whether a short-syntax source is a host path rather than a volume name.
pub fn is_path(source: &str) -> bool {
    source.starts_with(['.', '/', '~'])
}

impl FromShort for ServiceVolume {
    const EXPECTING: &'static str = "a volume (\"[SOURCE:]TARGET[:MODE]\") or a volume mapping";
    fn from_short(spec: &str) -> Result<Vec<Self>, String> {
        let parts: Vec<&str> = spec.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [t] => (None, *t, None),
            [s, t] => (Some(*s), *t, None),
            [s, t, m] => (Some(*s), *t, Some(*m)),
            _ => return Err(format!("invalid volume {spec:?}: expected [SOURCE:]TARGET[:MODE]")),
        };
        if target.is_empty() {
            return Err(format!("invalid volume {spec:?}: empty target"));
        }
        let mut v = ServiceVolume {
            target: Some(target.to_string()),
            ..Default::default()
        };
        match source {
            Some(s) if is_path(s) => {
                v.r#type = Some("bind".into());
                v.source = Some(s.to_string());
                v.bind = Some(BindOptions {
                    create_host_path: Some(true),
                    ..Default::default()
                });
            }
            Some("") => return Err(format!("invalid volume {spec:?}: empty source")),
            Some(s) => {
                v.r#type = Some("volume".into());
                v.source = Some(s.to_string());
            }
            None => v.r#type = Some("volume".into()),
        }
        for opt in mode.into_iter().flat_map(|m| m.split(',')) {
            match opt {
                "ro" => v.read_only = Some(true),
                "rw" => v.read_only = None,
                "z" | "Z" => v.bind.get_or_insert_with(Default::default).selinux = Some(opt.to_string()),
                "nocopy" => v.volume.get_or_insert_with(Default::default).nocopy = Some(true),
                "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                    v.bind.get_or_insert_with(Default::default).propagation = Some(opt.to_string())
                }
                "consistent" | "cached" | "delegated" => v.consistency = Some(opt.to_string()),
                other => return Err(format!("invalid volume {spec:?}: unknown mode {other:?}")),
            }
        }
        Ok(vec![v])
    }
}

/// An octal file mode; written `0440` or `"0440"`, printed as an octal string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileMode(pub u32);

impl Serialize for FileMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("0{:o}", self.0))
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = FileMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a file mode such as 0440")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<FileMode, E> {
                let t = s.trim_start_matches("0o");
                u32::from_str_radix(t, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .map(FileMode)
                    .ok_or_else(|| E::custom(format!("invalid file mode {s:?}")))
            }
            // A plain integer is read as its octal digits (0440 and 440 mean r--r-----),
            // as YAML 1.1 and Compose read them.
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<FileMode, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<FileMode, E> {
                self.visit_str(&n.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

model! {
    /// A secret or config granted to a service.
    pub struct FileRef {
        source: Option<String>,
        target: Option<String>,
        uid: Option<String>,
        gid: Option<String>,
        mode: Option<FileMode>,
    }
}

impl FromShort for FileRef {
    const EXPECTING: &'static str = "a name or a mapping with source/target/uid/gid/mode";
    fn from_short(s: &str) -> Result<Vec<Self>, String> {
        Ok(vec![FileRef {
            source: Some(s.to_string()),
            ..Default::default()
        }])
    }
}

model! {
    pub struct Device {
        source: Option<String>,
        target: Option<String>,
        permissions: Option<String>,
    }
}

impl FromShort for Device {
    const EXPECTING: &'static str = "a device (\"HOST[:CONTAINER[:PERMISSIONS]]\") or a device mapping";
    fn from_short(s: &str) -> Result<Vec<Self>, String> {
        let p: Vec<&str> = s.split(':').collect();
        let (src, dst, perm) = match p.as_slice() {
            [a] => (*a, *a, "rwm"),
            [a, b] => (*a, *b, "rwm"),
            [a, b, c] => (*a, *b, *c),
            _ => return Err(format!("invalid device {s:?}")),
        };
        if perm.is_empty() || !perm.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(format!("invalid device {s:?}: permissions must be made of r, w and m"));
        }
        Ok(vec![Device {
            source: Some(src.into()),
            target: Some(dst.into()),
            permissions: Some(perm.into()),
            ..Default::default()
        }])
    }
}

model! {
    pub struct EnvFile {
        path: Option<String>,
        required: Option<bool>,
        format: Option<String>,
    }
}

impl FromShort for EnvFile {
    const EXPECTING: &'static str = "a path or a mapping with path/required/format";
    fn from_short(s: &str) -> Result<Vec<Self>, String> {
        Ok(vec![EnvFile {
            path: Some(s.to_string()),
            ..Default::default()
        }])
    }
}

model! {
    pub struct DependsOn {
        condition: Option<String>,
        restart: Option<bool>,
        required: Option<bool>,
    }
}

model! {
    pub struct ServiceNetwork {
        @via(StringOrList) aliases: Option<Vec<String>>,
        interface_name: Option<String>,
        ipv4_address: Option<String>,
        ipv6_address: Option<String>,
        @via(StringOrList) link_local_ips: Option<Vec<String>>,
        mac_address: Option<String>,
        @via(Labels) driver_opts: Option<BTreeMap<String, String>>,
        priority: Option<i64>,
        gw_priority: Option<i64>,
    }
}

model! {
    pub struct ServiceModel {
        endpoint_var: Option<String>,
        model_var: Option<String>,
    }
}

/// A ulimit: one number for both limits, or `soft`/`hard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ulimit {
    Single(i64),
    Range { soft: i64, hard: i64 },
}

impl Ulimit {
    pub fn soft(&self) -> i64 {
        match self {
            Ulimit::Single(n) => *n,
            Ulimit::Range { soft, .. } => *soft,
        }
    }
    pub fn hard(&self) -> i64 {
        match self {
            Ulimit::Single(n) => *n,
            Ulimit::Range { hard, .. } => *hard,
        }
    }
}

model! {
    pub struct UlimitRange {
        soft: Option<i64>,
        hard: Option<i64>,
    }
}

impl Serialize for Ulimit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Ulimit::Single(n) => s.serialize_i64(*n),
            Ulimit::Range { soft, hard } => UlimitRange {
                soft: Some(*soft),
                hard: Some(*hard),
                ..Default::default()
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Ulimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ulimit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a mapping with soft and hard")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Ulimit, E> {
                Ok(Ulimit::Single(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Ulimit, E> {
                i64::try_from(n)
                    .map(Ulimit::Single)
                    .map_err(|_| E::custom("ulimit too large"))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Ulimit, E> {
                s.parse()
                    .map(Ulimit::Single)
                    .map_err(|_| E::custom(format!("invalid ulimit {s:?}")))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Ulimit, A::Error> {
                use de::Error as _;
                let r = UlimitRange::deserialize(de::value::MapAccessDeserializer::new(map))?;
                match (r.soft, r.hard) {
                    (Some(soft), Some(hard)) if soft <= hard => Ok(Ulimit::Range { soft, hard }),
                    (Some(_), Some(_)) => Err(A::Error::custom("ulimit soft limit is above its hard limit")),
                    _ => Err(A::Error::custom("ulimit needs both soft and hard")),
                }
            }
        }
        d.deserialize_any(V)
    }
}

model! {
    pub struct Extends {
        service: Option<String>,
        file: Option<String>,
    }
}

impl FromShort for Extends {
    const EXPECTING: &'static str = "a service name or a mapping with service and file";
    fn from_short(s: &str) -> Result<Vec<Self>, String> {
        Ok(vec![Extends {
            service: Some(s.to_string()),
            ..Default::default()
        }])
    }
}

/// `extra_hosts`: a list of `host=ip` / `host:ip` or a mapping; printed as `host=ip`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExtraHosts(pub Vec<(String, String)>);

impl super::Empty for ExtraHosts {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub fn parse_host_entry(s: &str) -> Result<(String, String), String> {
    // `host=ip` is unambiguous; `host:ip` splits at the first colon (IPv6 needs `=`).
    s.split_once('=')
        .or_else(|| s.split_once(':'))
        .map(|(h, ip)| {
            (
                h.trim().to_string(),
                ip.trim().trim_start_matches('[').trim_end_matches(']').to_string(),
            )
        })
        .filter(|(h, ip)| !h.is_empty() && !ip.is_empty())
        .ok_or_else(|| format!("invalid extra_hosts entry {s:?}: expected HOST=IP"))
}

impl Serialize for ExtraHosts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(h, ip)| format!("{h}={ip}")))
    }
}

impl<'de> Deserialize<'de> for ExtraHosts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExtraHosts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of HOST=IP or a mapping of host to address")
            }
            fn visit_unit<E: de::Error>(self) -> Result<ExtraHosts, E> {
                Ok(ExtraHosts::default())
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<ExtraHosts, A::Error> {
                use de::Error as _;
                let mut out = Vec::new();
                while let Some(super::short::Scalar(s)) = seq.next_element()? {
                    out.push(parse_host_entry(&s).map_err(A::Error::custom)?);
                }
                Ok(ExtraHosts(out))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<ExtraHosts, A::Error> {
                let mut out = Vec::new();
                while let Some(h) = map.next_key::<String>()? {
                    let ips = StringOrList::deserialize(de::value::MapAccessDeserializer::new(OneValue(&mut map)))?;
                    for ip in ips.0.unwrap_or_default() {
                        out.push((h.clone(), ip));
                    }
                }
                Ok(ExtraHosts(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Adapts "the next value of a map" into a deserializer (for a value of several shapes).
struct OneValue<'m, A>(&'m mut A);

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for OneValue<'_, A> {
    type Error = A::Error;
    fn next_key_seed<K: de::DeserializeSeed<'de>>(&mut self, _seed: K) -> Result<Option<K::Value>, A::Error> {
        Ok(None)
    }
    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.0.next_value_seed(seed)
    }
}
