//! Namespace modes: the container's own, the host's, or another service's or
//! container's (`network_mode: service:db`, `ipc: container:x`).

use super::SpecProblem;
use compose::model::Service;
use runtime::spec::Namespaces;

/// `namespace_of(target, kind)` is `/proc/<pid>/ns/<kind>` of a running container.
pub(super) fn namespaces(
    svc: &Service,
    namespace_of: &dyn Fn(&str, &str) -> Option<String>,
) -> Result<Namespaces, SpecProblem> {
    let ns = |kind: &str, key: &str, mode: &Option<String>| -> Result<Option<String>, SpecProblem> {
        match mode.as_deref() {
            None | Some("") | Some("private") | Some("shareable") | Some("bridge") | Some("none") | Some("default") => {
                Ok(None)
            }
            Some("host") => Ok(Some("host".into())),
            Some(m) => {
                let target = m
                    .strip_prefix("service:")
                    .or_else(|| m.strip_prefix("container:"))
                    .ok_or_else(|| SpecProblem::NamespaceMode {
                        key: key.to_string(),
                        mode: m.to_string(),
                    })?;
                namespace_of(target, kind)
                    .map(Some)
                    .ok_or_else(|| SpecProblem::NamespaceNotRunning {
                        key: key.to_string(),
                        mode: m.to_string(),
                        target: target.to_string(),
                    })
            }
        }
    };
    Ok(Namespaces {
        net: ns("net", "network_mode", &svc.network_mode)?,
        ipc: ns("ipc", "ipc", &svc.ipc)?,
        pid: ns("pid", "pid", &svc.pid)?,
        uts: ns("uts", "uts", &svc.uts)?,
    })
}
