//! "Can this project run here?": the one check `up` and `run` make before anything is
//! made, so that the CLI shows the engine's answer and a refused project leaves nothing
//! behind. The file's own validity is the loader's (`compose::validate`); what is
//! checked here is what this engine, with these flags, can run: services that exist,
//! keys it implements, images it can get or build, one container per
//! `container_name`, restart policies, network keys, user namespaces, and the secrets'
//! and configs' sources.

use super::spec::userns;
use super::{files, supervise};
use compose::model::Service;
use compose::Project;
use std::collections::BTreeMap;

/// What a check is asked about.
pub struct Admission<'a> {
    pub project: &'a Project,
    /// The services acted on, dependencies included.
    pub selected: &'a [String],
    /// The services the user named (which must exist).
    pub named: &'a [String],
    /// `up --scale`.
    pub scale: &'a BTreeMap<String, u32>,
    /// Secrets' and configs' values from the CLI's environment.
    pub file_values: &'a BTreeMap<String, String>,
}

/// Why a project cannot run here, in Compose's words.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("no such service: {0}")]
    NoSuchService(String),
    /// One of the service's reasons below.
    #[error("service {service:?}: {reason}")]
    Service {
        service: String,
        reason: Box<AdmissionError>,
    },
    #[error("{0} is not implemented yet")]
    Unimplemented(&'static str),
    #[error("has neither an image nor a build context specified")]
    NoImage,
    /// Compose's own rule (`compose::container_name_unique`).
    #[error("{0}")]
    ContainerName(String),
    #[error("networks.{key}.interface_name {name:?}: an interface name is 1 to 15 bytes, without '/', ':' or spaces")]
    InterfaceName { key: String, name: String },
    #[error("networks.{key}.ipv6_address {address:?}: network {key:?} does not have enable_ipv6")]
    NoIpv6 { key: String, address: String },
    #[error(transparent)]
    Network(#[from] super::network::NetError),
    #[error(transparent)]
    Policy(#[from] supervise::PolicyError),
    #[error(transparent)]
    UsernsMode(#[from] userns::UsernsModeError),
    #[error(transparent)]
    Files(#[from] files::FilesError),
}

/// The first reason the project cannot run.
pub fn check(a: &Admission) -> Result<(), AdmissionError> {
    for s in a.named.iter().chain(a.scale.keys()) {
        if !a.project.services.contains_key(s) {
            return Err(AdmissionError::NoSuchService(s.clone()));
        }
    }
    for s in a.selected {
        let Some(svc) = a.project.services.get(s) else {
            return Err(AdmissionError::NoSuchService(s.clone()));
        };
        service(a, s, svc).map_err(|e| AdmissionError::Service {
            service: s.clone(),
            reason: Box::new(e),
        })?;
    }
    Ok(())
}

fn service(a: &Admission, s: &str, svc: &Service) -> Result<(), AdmissionError> {
    if let Some(key) = unsupported(svc) {
        return Err(AdmissionError::Unimplemented(key));
    }
    if svc.image.is_none() && svc.build.is_none() {
        return Err(AdmissionError::NoImage);
    }
    let replicas = a.scale.get(s).map(|n| i64::from(*n)).unwrap_or_else(|| svc.replicas());
    compose::container_name_unique(s, svc, replicas).map_err(AdmissionError::ContainerName)?;
    supervise::policy(svc)?;
    check_networks(a.project, svc)?;
    userns::check_service(svc)?;
    files::file_mounts(a.project, svc, a.file_values)?;
    Ok(())
}

/// Keys the engine does not implement yet: refused by name rather than ignored.
pub fn unsupported(svc: &Service) -> Option<&'static str> {
    [
        (svc.pre_start.is_some(), "pre_start"),
        (svc.external_links.is_some(), "external_links"),
        (svc.cgroup_parent.is_some(), "cgroup_parent"),
    ]
    .into_iter()
    .find(|(set, _)| *set)
    .map(|(_, k)| k)
}

/// A service's network keys, checked before anything is made (by `up` and `run`):
/// every `mac_address`, `interface_name`, and `ipv6_address` (on a network with IPv6).
pub fn check_networks(project: &compose::Project, svc: &Service) -> Result<(), AdmissionError> {
    if let Some(m) = &svc.mac_address {
        netd::links::parse_mac(m).map_err(|source| super::network::NetError::Mac {
            at: "mac_address".into(),
            source,
        })?;
    }
    for (key, o) in svc.networks.iter().flatten() {
        super::network::mac_address(svc, key, false)?;
        let Some(o) = o else { continue };
        if let Some(name) = &o.interface_name {
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', ':']) {
                return Err(AdmissionError::InterfaceName {
                    key: key.clone(),
                    name: name.clone(),
                });
            }
        }
        let six = project.networks.get(key).and_then(|n| n.enable_ipv6) == Some(true);
        if let Some(a) = o.ipv6_address.as_ref().filter(|_| !six) {
            return Err(AdmissionError::NoIpv6 {
                key: key.clone(),
                address: a.clone(),
            });
        }
    }
    Ok(())
}
