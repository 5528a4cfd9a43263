//! Image references normalized as Docker does: `redis` is
//! `docker.io/library/redis:latest`, `localhost:5000/app` keeps its registry, a digest
//! reference keeps its digest. Parsing is oci-spec's (the distribution grammar).

use oci_spec::distribution::Reference;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    inner: Reference,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid reference format {input:?}: {reason}")]
pub struct RefError {
    pub input: String,
    pub reason: String,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef, RefError> {
        let err = |reason: String| RefError {
            input: s.to_string(),
            reason,
        };
        if s.is_empty() || s.trim() != s {
            return Err(err("empty or surrounded by spaces".into()));
        }
        if s.chars().any(|c| c.is_ascii_uppercase()) && !s.contains('@') {
            // Docker refuses upper case in repository names; tags may have it.
            let repo = s
                .rsplit_once(':')
                .filter(|(_, t)| !t.contains('/'))
                .map(|(r, _)| r)
                .unwrap_or(s);
            if repo.chars().any(|c| c.is_ascii_uppercase()) {
                return Err(err("repository name must be lowercase".into()));
            }
        }
        let inner: Reference = s
            .parse()
            .map_err(|e: oci_spec::distribution::ParseError| err(e.to_string()))?;
        Ok(ImageRef { inner })
    }

    /// Registry host as used to connect (`docker.io` means Docker Hub).
    pub fn registry(&self) -> &str {
        self.inner.registry()
    }
    pub fn repository(&self) -> &str {
        self.inner.repository()
    }
    pub fn tag(&self) -> Option<&str> {
        self.inner.tag()
    }
    pub fn digest(&self) -> Option<&str> {
        self.inner.digest()
    }
    pub fn oci(&self) -> &Reference {
        &self.inner
    }

    /// The full name: `docker.io/library/redis:latest`, `host/repo@sha256:...`.
    pub fn full(&self) -> String {
        let base = format!("{}/{}", self.registry(), self.repository());
        match (self.tag(), self.digest()) {
            (_, Some(d)) => format!("{base}@{d}"),
            (Some(t), None) => format!("{base}:{t}"),
            (None, None) => format!("{base}:latest"),
        }
    }

    /// The repository as Docker shows it: `redis`, `user/app`, `localhost:5000/app`.
    pub fn familiar_repository(&self) -> String {
        if self.registry() == "docker.io" {
            self.repository()
                .strip_prefix("library/")
                .unwrap_or(self.repository())
                .to_string()
        } else {
            format!("{}/{}", self.registry(), self.repository())
        }
    }

    /// Whether the registry may be reached over plain HTTP (loopback only).
    pub fn is_local_registry(&self) -> bool {
        let host = self
            .registry()
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(self.registry());
        matches!(host, "localhost" | "127.0.0.1" | "[::1]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_as_docker() {
        for (input, full, familiar) in [
            ("redis", "docker.io/library/redis:latest", "redis"),
            ("redis:7", "docker.io/library/redis:7", "redis"),
            ("user/app:1.0", "docker.io/user/app:1.0", "user/app"),
            ("docker.io/library/redis", "docker.io/library/redis:latest", "redis"),
            ("localhost:5000/app", "localhost:5000/app:latest", "localhost:5000/app"),
            ("ghcr.io/org/tool:v2", "ghcr.io/org/tool:v2", "ghcr.io/org/tool"),
            (
                "redis@sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
                "docker.io/library/redis@sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
                "redis",
            ),
        ] {
            let r = ImageRef::parse(input).unwrap();
            assert_eq!(r.full(), full, "{input}");
            assert_eq!(r.familiar_repository(), familiar, "{input}");
        }
        assert!(ImageRef::parse("localhost:5000/app").unwrap().is_local_registry());
        assert!(ImageRef::parse("127.0.0.1:5000/app").unwrap().is_local_registry());
        assert!(!ImageRef::parse("example.com/app").unwrap().is_local_registry());
    }

    #[test]
    fn refuses_bad_references() {
        for bad in [
            "",
            " redis",
            "Redis",
            "redis:bad tag",
            "redis@sha256:short",
            "a//b",
            "-x",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?}");
        }
    }
}
