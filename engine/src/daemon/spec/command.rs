//! The process's command line and stop signal, as Docker merges a service's with its
//! image's: a service `entrypoint` replaces the image's and clears its `Cmd`.

use super::SpecProblem;
use super::StopConfig;
use compose::model::Service;
use images::config::ContainerConfig;
use std::time::Duration;

/// Entrypoint then command; an empty line is refused by the caller.
pub(super) fn args(svc: &Service, ic: &ContainerConfig) -> Vec<String> {
    let entrypoint = svc
        .entrypoint
        .clone()
        .or_else(|| ic.entrypoint.clone())
        .unwrap_or_default();
    let cmd = match (&svc.command, &svc.entrypoint) {
        (Some(c), _) => c.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => ic.cmd.clone().unwrap_or_default(),
    };
    entrypoint.into_iter().chain(cmd).collect()
}

/// The stop signal (the service's, the image's, else SIGTERM) and grace period.
pub(super) fn stop(svc: &Service, ic: &ContainerConfig) -> Result<StopConfig, SpecProblem> {
    let signal = svc
        .stop_signal
        .as_deref()
        .or(ic.stop_signal.as_deref())
        .unwrap_or("SIGTERM");
    Ok(StopConfig {
        signal: conventions::signals::number(signal).ok_or_else(|| SpecProblem::StopSignal(signal.to_string()))?,
        grace: svc
            .stop_grace_period
            .map(|d| d.as_std())
            .unwrap_or(Duration::from_secs(10)),
    })
}
