//! The process's environment: the image's, then the service's (a variable set without a
//! value drops it), and `HOSTNAME` as Docker sets it.

use compose::model::Service;
use images::config::ContainerConfig;

pub(super) fn env(svc: &Service, ic: &ContainerConfig, hostname: &str) -> Vec<String> {
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
        env.push(("HOSTNAME".into(), hostname.to_string()));
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}
