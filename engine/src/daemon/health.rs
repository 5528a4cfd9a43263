//! Health checks as Docker runs them: the service's `healthcheck` over the image's
//! HEALTHCHECK, `CMD` / `CMD-SHELL` / `NONE`, `interval`, `timeout`, `retries`,
//! `start_period` (failures then do not count) and `start_interval` (the probe rate
//! during the start period). A probe is an exec into the container with its user,
//! environment, namespaces and cgroup.

use super::{lock, Ctr, Engine};
use images::config::HealthConfig;
use runtime::spec::ContainerSpec;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub args: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u64,
    pub start_period: Duration,
    pub start_interval: Duration,
}

const DEFAULT: Duration = Duration::from_secs(30);

/// The check that applies, if any: the service's keys over the image's.
pub fn effective(svc: &compose::model::Service, image: Option<&HealthConfig>) -> Option<Check> {
    let hc = svc.healthcheck.clone().unwrap_or_default();
    if hc.disable == Some(true) {
        return None;
    }
    let test = hc.test.clone().or_else(|| image.and_then(|i| i.test.clone()))?;
    let args = match test.first().map(String::as_str) {
        Some("NONE") | None => return None,
        Some("CMD") => test[1..].to_vec(),
        Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")],
        // A bare list is a command, as Docker takes it.
        Some(_) => test.clone(),
    };
    if args.is_empty() {
        return None;
    }
    let ns = |n: Option<u64>| n.filter(|v| *v > 0).map(Duration::from_nanos);
    let pick = |svc: Option<compose::model::units::Duration>, img: Option<u64>, dflt: Duration| {
        svc.map(|d| d.as_std())
            .filter(|d| !d.is_zero())
            .or_else(|| ns(img))
            .unwrap_or(dflt)
    };
    Some(Check {
        args,
        interval: pick(hc.interval, image.and_then(|i| i.interval), DEFAULT),
        timeout: pick(hc.timeout, image.and_then(|i| i.timeout), DEFAULT),
        retries: hc
            .retries
            .or_else(|| image.and_then(|i| i.retries))
            .filter(|r| *r > 0)
            .unwrap_or(3),
        start_period: pick(hc.start_period, image.and_then(|i| i.start_period), Duration::ZERO),
        start_interval: pick(
            hc.start_interval,
            image.and_then(|i| i.start_interval),
            Duration::from_secs(5),
        ),
    })
}

impl Engine {
    pub(super) async fn probe_loop(self: Arc<Self>, ctr: Arc<Ctr>, check: Check) {
        let began = Instant::now();
        let mut failures = 0u64;
        loop {
            let in_start = began.elapsed() < check.start_period;
            let wait = if in_start {
                check.start_interval.min(check.interval)
            } else {
                check.interval
            };
            tokio::time::sleep(wait).await;
            let Some(c) = ctr.live() else { return };
            let spec: Option<ContainerSpec> = std::fs::read(ctr.dir.join("config.json"))
                .ok()
                .and_then(|d| serde_json::from_slice(&d).ok());
            let Some(spec) = spec else { return };
            let mut process = spec.process.clone();
            process.args = check.args.clone();
            process.tty = false;
            let me = self.clone();
            let timeout = check.timeout;
            let ok = tokio::task::spawn_blocking(move || me.runtime.exec_with(&c, &process, None, Some(timeout)))
                .await
                .ok()
                .and_then(|r| r.ok())
                == Some(0);
            let in_start = began.elapsed() < check.start_period;
            let new = if ok {
                failures = 0;
                "healthy"
            } else {
                if !in_start {
                    failures += 1;
                }
                if failures >= check.retries {
                    "unhealthy"
                } else {
                    // Keeps what it was: starting stays starting, healthy stays healthy.
                    ""
                }
            };
            if !new.is_empty() {
                let changed = {
                    let mut h = lock(&ctr.health);
                    let changed = *h != new;
                    *h = new.to_string();
                    changed
                };
                if changed {
                    self.emit(&ctr.rec(), &format!("health_status: {new}"), &[]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(y: &str) -> compose::model::Service {
        crate::daemon::state::test_service(y)
    }

    #[test]
    fn service_over_image_and_docker_defaults() {
        let img = HealthConfig {
            test: Some(vec!["CMD-SHELL".into(), "curl -f localhost".into()]),
            interval: Some(5_000_000_000),
            retries: Some(7),
            ..Default::default()
        };
        let c = effective(&svc(""), Some(&img)).unwrap();
        assert_eq!(c.args, vec!["/bin/sh", "-c", "curl -f localhost"]);
        assert_eq!((c.interval, c.timeout, c.retries), (Duration::from_secs(5), DEFAULT, 7));
        let c = effective(
            &svc("    healthcheck: {test: [CMD, nc, -z, localhost, '80'], interval: 2s}\n"),
            Some(&img),
        )
        .unwrap();
        assert_eq!(c.args, vec!["nc", "-z", "localhost", "80"]);
        assert_eq!((c.interval, c.retries), (Duration::from_secs(2), 7));
        assert_eq!(effective(&svc("    healthcheck: {disable: true}\n"), Some(&img)), None);
        assert_eq!(effective(&svc("    healthcheck: {test: [NONE]}\n"), Some(&img)), None);
        assert_eq!(effective(&svc(""), None), None);
        let c = effective(&svc("    healthcheck: {test: 'exit 0'}\n"), None).unwrap();
        assert_eq!((c.retries, c.start_interval), (3, Duration::from_secs(5)));
    }
}
