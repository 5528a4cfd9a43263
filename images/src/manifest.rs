//! Image manifests and indexes (OCI and Docker v2 schema 2), and platform selection.

use super::config::host_platform;
use super::media;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Manifest {
    /// An OCI manifest for a stored config and layers (blob digest, media type, size).
    pub fn oci(config: &super::Digest, config_size: u64, layers: &[(super::Digest, String, u64)]) -> Manifest {
        let desc = |digest: &super::Digest, media_type: &str, size: u64| Descriptor {
            media_type: media_type.to_string(),
            digest: digest.to_string(),
            size,
            platform: None,
            annotations: None,
        };
        Manifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            config: desc(config, media::OCI_CONFIG, config_size),
            layers: layers.iter().map(|(d, mt, s)| desc(d, mt, *s)).collect(),
            annotations: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone)]
pub enum Parsed {
    Manifest(Manifest),
    Index(Index),
}

/// Reads a manifest or an index, by its media type or, when absent, its shape.
pub fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("not a JSON manifest: {e}"))?;
    let mt = v.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
    let is_index =
        mt == media::OCI_INDEX || mt == media::DOCKER_LIST || (mt.is_empty() && v.get("manifests").is_some());
    if is_index {
        serde_json::from_value(v)
            .map(Parsed::Index)
            .map_err(|e| format!("invalid image index: {e}"))
    } else if v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1) {
        Err("schema 1 manifests are not supported (the image is too old; push it again with a current tool)".into())
    } else {
        serde_json::from_value(v)
            .map(Parsed::Manifest)
            .map_err(|e| format!("invalid image manifest: {e}"))
    }
}

/// Picks the manifest for `os`/`arch`/`variant` from an index: an exact variant match
/// first, then one without a variant, then any variant. Attestations are skipped.
pub fn select<'a>(index: &'a Index, want: (&str, &str, Option<&str>)) -> Option<&'a Descriptor> {
    let (os, arch, variant) = want;
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == os && p.architecture == arch)
        })
        .collect();
    candidates
        .iter()
        .find(|d| d.platform.as_ref().and_then(|p| p.variant.as_deref()) == variant)
        .or_else(|| {
            candidates
                .iter()
                .find(|d| d.platform.as_ref().is_some_and(|p| p.variant.is_none()))
        })
        .or_else(|| candidates.first())
        .copied()
}

/// [`select`] for the host.
pub fn select_host(index: &Index) -> Option<&Descriptor> {
    select(index, host_platform())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(os: &str, arch: &str, variant: Option<&str>, digest: &str) -> Descriptor {
        Descriptor {
            media_type: media::OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: os.into(),
                variant: variant.map(Into::into),
            }),
            annotations: None,
        }
    }

    #[test]
    fn platform_selection() {
        let idx = Index {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.into()),
            manifests: vec![
                d("unknown", "unknown", None, "att"),
                d("linux", "arm", Some("v6"), "armv6"),
                d("linux", "arm", Some("v7"), "armv7"),
                d("linux", "amd64", None, "amd64"),
                d("linux", "arm64", None, "arm64"),
                d("windows", "amd64", None, "win"),
            ],
        };
        assert_eq!(select(&idx, ("linux", "amd64", None)).unwrap().digest, "amd64");
        assert_eq!(select(&idx, ("linux", "arm64", Some("v8"))).unwrap().digest, "arm64");
        assert_eq!(select(&idx, ("linux", "arm", Some("v7"))).unwrap().digest, "armv7");
        assert_eq!(select(&idx, ("linux", "arm", Some("v5"))).unwrap().digest, "armv6");
        assert!(select(&idx, ("linux", "s390x", None)).is_none());
    }

    #[test]
    fn parse_by_media_type_or_shape() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"x","digest":"sha256:a","size":1},"layers":[]}"#;
        assert!(matches!(parse(m), Ok(Parsed::Manifest(_))));
        let i = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(parse(i), Ok(Parsed::Index(_))));
        assert!(parse(br#"{"schemaVersion":1,"fsLayers":[]}"#)
            .unwrap_err()
            .contains("schema 1"));
        assert!(parse(b"nope").is_err());
    }
}
