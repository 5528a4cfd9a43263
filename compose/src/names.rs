//! Names as Docker and Compose accept them, checked before anything is made of them:
//! they become file names in the engine's state, interface and DNS names, and Docker
//! refuses the same ones. Service names follow the Compose schema's pattern
//! (`[a-zA-Z0-9._-]+`); container, network, volume, secret and config names Docker's
//! `[a-zA-Z0-9][a-zA-Z0-9_.-]` (containers and volumes with at least two characters, as
//! Docker's pattern has them). Every name is at most 255 bytes, a file name's limit.

use crate::model::Project;

/// The longest name, in bytes.
pub const MAX: usize = 255;

fn restricted(name: &str, min: usize) -> bool {
    let mut chars = name.chars();
    name.len() >= min
        && name.len() <= MAX
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A service name (a key of `services`).
pub fn service(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name != "."
        && name != "..";
    ok.then_some(()).ok_or_else(|| {
        format!("invalid service name {name:?}: only [a-zA-Z0-9._-] are allowed, at most {MAX} characters")
    })
}

/// A container's name (`container_name`, or the one made from the project and service).
pub fn container(name: &str) -> Result<(), String> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    restricted(bare, 2)
        .then_some(())
        .ok_or_else(|| format!("Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"))
}

/// A network, volume, secret or config name as the engine stores it.
pub fn resource(kind: &str, name: &str) -> Result<(), String> {
    let min = if kind == "volume" { 2 } else { 1 };
    restricted(name, min).then_some(()).ok_or_else(|| {
        if kind == "volume" {
            format!("{name:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path")
        } else {
            format!("invalid {kind} name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at most {MAX} characters")
        }
    })
}

/// Every name a loaded project gives the engine, with the key path of the first bad
/// one. External resources are checked too: their names are looked up on disk.
pub fn check(p: &Project) -> Result<(), (String, String)> {
    for (key, s) in &p.services {
        service(key).map_err(|e| (format!("services.{key}"), e))?;
        if let Some(c) = &s.container_name {
            container(c).map_err(|e| (format!("services.{key}.container_name"), e))?;
        }
    }
    // (section, what one is called, its keys and names).
    type Section<'a> = (&'a str, &'a str, Vec<(&'a String, Option<&'a String>)>);
    let sections: [Section; 4] = [
        (
            "networks",
            "network",
            p.networks.iter().map(|(k, n)| (k, n.name.as_ref())).collect(),
        ),
        (
            "volumes",
            "volume",
            p.volumes.iter().map(|(k, v)| (k, v.name.as_ref())).collect(),
        ),
        (
            "secrets",
            "secret",
            p.secrets.iter().map(|(k, s)| (k, s.name.as_ref())).collect(),
        ),
        (
            "configs",
            "config",
            p.configs.iter().map(|(k, c)| (k, c.name.as_ref())).collect(),
        ),
    ];
    for (section, kind, entries) in sections {
        for (key, name) in entries {
            let name = name.unwrap_or(key);
            resource(kind, name).map_err(|e| (format!("{section}.{key}.name"), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_docker_checks_them() {
        for ok in ["web", "web-1", "a.b_c", "0"] {
            assert!(service(ok).is_ok(), "{ok}");
        }
        for bad in ["we b/../x", "a/b", "..", "", "x y", "é"] {
            assert!(service(bad).is_err(), "{bad}");
        }
        assert!(container("shop-web-1").is_ok());
        assert!(container("/named").is_ok());
        let e = container("../../../x").unwrap_err();
        assert_eq!(
            e,
            "Invalid container name (../../../x), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        );
        assert!(container("a").is_err(), "Docker's pattern wants two characters");
        assert!(container(&"a".repeat(256)).is_err());
        assert!(resource("network", "p_default").is_ok());
        assert!(resource("network", "../../x y").is_err());
        assert!(resource("network", ".hidden").is_err());
        assert!(resource("volume", "p_data").is_ok());
        assert!(resource("volume", "/abs").unwrap_err().contains("use absolute path"));
        assert!(resource("secret", "a/b").is_err());
    }
}
