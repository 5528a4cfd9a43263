//! `userns_mode`: whether the container gets a user namespace, of how many IDs, and the
//! keys Docker refuses with one. The range itself is the engine's to allocate (it knows
//! the other containers').

use compose::model::Service;
use runtime::userns::DEFAULT_SIZE;

/// A `userns_mode` this engine does not take, or one Docker refuses with other keys.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UsernsModeError {
    #[error("userns_mode {0:?} is not supported: use \"host\", \"auto\" or \"auto:size=N\" (1 to {DEFAULT_SIZE})")]
    Unsupported(String),
    #[error("privileged mode is incompatible with user namespaces (userns_mode): use userns_mode \"host\"")]
    Privileged,
    #[error("cannot share the host's network namespace when user namespaces are enabled (userns_mode)")]
    HostNetwork,
    #[error("cannot share the host PID namespace when user namespaces are enabled (userns_mode)")]
    HostPid,
}

/// `userns_mode` as the runtime reads it: `None` for the host's namespace, otherwise
/// the number of IDs the container gets.
pub(crate) fn parse_mode(mode: Option<&str>) -> Result<Option<u32>, UsernsModeError> {
    let Some(m) = mode else { return Ok(None) };
    if m.is_empty() || m == "host" {
        return Ok(None);
    }
    let bad = || UsernsModeError::Unsupported(m.to_string());
    let Some(rest) = m.strip_prefix("auto") else {
        return Err(bad());
    };
    if rest.is_empty() {
        return Ok(Some(DEFAULT_SIZE));
    }
    let size: u32 = rest
        .strip_prefix(":size=")
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    if size == 0 || size > DEFAULT_SIZE {
        return Err(bad());
    }
    Ok(Some(size))
}

/// A service's `userns_mode` with its other keys: as [`parse_mode`], and refused with
/// `privileged` or the host's network or PID namespace, as Docker refuses them (the
/// host's devices, capabilities and processes would be the namespace root's).
pub(crate) fn check_service(svc: &Service) -> Result<Option<u32>, UsernsModeError> {
    let size = parse_mode(svc.userns_mode.as_deref())?;
    if size.is_some() {
        if svc.privileged == Some(true) {
            return Err(UsernsModeError::Privileged);
        }
        if svc.network_mode.as_deref() == Some("host") {
            return Err(UsernsModeError::HostNetwork);
        }
        if svc.pid.as_deref() == Some("host") {
            return Err(UsernsModeError::HostPid);
        }
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode(None), Ok(None));
        assert_eq!(parse_mode(Some("host")), Ok(None));
        assert_eq!(parse_mode(Some("auto")), Ok(Some(65536)));
        assert_eq!(parse_mode(Some("auto:size=1024")), Ok(Some(1024)));
        for bad in [
            "remap",
            "auto:size=0",
            "auto:size=70000",
            "auto:size=x",
            "keep-id",
            "autox",
        ] {
            let e = parse_mode(Some(bad)).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")) && e.contains("\"auto\""), "{e}");
        }
    }
}
