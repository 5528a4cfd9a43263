//! Registry logins, read where Docker's client reads them (`$DOCKER_CONFIG/config.json`
//! or `~/.docker/config.json`, `auths.<registry>.auth` = base64("user:password")) and
//! sent with the request, as Docker's `X-Registry-Auth`: the engine never reads a
//! user's configuration.

use base64::Engine as _;
use engine::api::Credentials;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The registry host of an image reference, by Docker's rule: the first component when
/// it has a `.` or a `:` or is `localhost`, else Docker Hub.
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first.to_string(),
        _ => "docker.io".to_string(),
    }
}

/// The login for `registry`, if the configuration has one.
pub fn for_registry(registry: &str) -> Option<Credentials> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")))?;
    // A config file is small; anything larger is not one.
    let data = compose::read::bytes(&dir.join("config.json")).ok()?;
    let cfg = serde_json::from_slice::<serde_json::Value>(&data).ok()?;
    let keys: Vec<String> = if registry == "docker.io" {
        vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
            "registry-1.docker.io".into(),
        ]
    } else {
        vec![
            registry.into(),
            format!("https://{registry}"),
            format!("http://{registry}"),
        ]
    };
    keys.iter().find_map(|k| {
        let auth = cfg.get("auths")?.get(k)?.get("auth")?.as_str()?;
        let decoded = base64::engine::general_purpose::STANDARD.decode(auth.trim()).ok()?;
        let (user, pass) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
        Some(Credentials {
            username: user.to_string(),
            password: pass.to_string(),
        })
    })
}

/// The logins for the registries of `images`.
pub fn for_images<'a>(images: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, Credentials> {
    images
        .into_iter()
        .map(registry_of)
        .filter_map(|r| for_registry(&r).map(|c| (r, c)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_by_docker_s_rule() {
        assert_eq!(registry_of("busybox"), "docker.io");
        assert_eq!(registry_of("library/busybox:1"), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000/tools/x:1"), "127.0.0.1:5000");
        assert_eq!(registry_of("ghcr.io/o/x"), "ghcr.io");
        assert_eq!(registry_of("localhost/x"), "localhost");
    }
}
