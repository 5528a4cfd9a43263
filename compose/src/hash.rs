//! The configuration hash of a service, as Compose computes it to decide whether a
//! container must be recreated: a SHA-256 of the service's canonical JSON, leaving out
//! what does not change the container (build, pull policy, scale/replicas, depends_on,
//! profiles, develop).

use crate::model::Service;
use sha2::{Digest, Sha256};

pub fn service_hash(s: &Service) -> String {
    let mut s = s.clone();
    s.build = None;
    s.pull_policy = None;
    s.scale = None;
    if let Some(d) = &mut s.deploy {
        d.replicas = None;
    }
    s.depends_on = None;
    s.profiles = None;
    s.develop = None;
    // Serializing plain data with string keys cannot fail; fall back to Debug anyway.
    let bytes = serde_json::to_vec(&s).unwrap_or_else(|_| format!("{s:?}").into_bytes());
    let digest = Sha256::digest(&bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
