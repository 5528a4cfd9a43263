//! `pull_policy`: when a service's image is pulled.

use compose::model::parse_duration;

/// A `pull_policy` (or `--pull`) that is not one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid pull_policy {0:?}")]
pub struct PolicyError(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    Never,
    Missing,
    Build,
    /// Pull when the stored image is older than this many seconds.
    Every(u64),
}

impl PullPolicy {
    pub fn parse(s: &str) -> Result<PullPolicy, PolicyError> {
        Ok(match s {
            "always" => PullPolicy::Always,
            "never" => PullPolicy::Never,
            "missing" | "if_not_present" | "" => PullPolicy::Missing,
            "build" => PullPolicy::Build,
            "daily" => PullPolicy::Every(86_400),
            "weekly" => PullPolicy::Every(7 * 86_400),
            other => match other.strip_prefix("every_").map(parse_duration) {
                Some(Ok(d)) if d.0 >= 1_000_000_000 => PullPolicy::Every(d.0 / 1_000_000_000),
                _ => return Err(PolicyError(other.to_string())),
            },
        })
    }

    /// Whether to pull, given when the image was stored (if it is) and the time now.
    pub fn needs_pull(&self, stored_at: Option<u64>, now: u64) -> bool {
        match (self, stored_at) {
            (PullPolicy::Always, _) => true,
            (PullPolicy::Never | PullPolicy::Build, _) => false,
            (PullPolicy::Missing, s) => s.is_none(),
            (PullPolicy::Every(_), None) => true,
            (PullPolicy::Every(secs), Some(t)) => now.saturating_sub(t) >= *secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        let day = 86_400;
        let cases = [
            ("always", Some(0), true),
            ("never", None, false),
            ("missing", None, true),
            ("missing", Some(0), false),
            ("if_not_present", None, true),
            ("build", None, false),
            ("daily", Some(10 * day - day + 1), false),
            ("daily", Some(9 * day), true),
            ("weekly", Some(9 * day), false),
            ("every_12h", Some(10 * day - day / 2), true),
            ("every_12h", Some(10 * day - 60), false),
            ("every_1m", None, true),
        ];
        for (p, stored, want) in cases {
            assert_eq!(
                PullPolicy::parse(p).unwrap().needs_pull(stored, 10 * day),
                want,
                "{p} {stored:?}"
            );
        }
        for bad in ["sometimes", "every_", "every_x", "every_0s"] {
            assert!(PullPolicy::parse(bad).is_err(), "{bad}");
        }
    }
}
