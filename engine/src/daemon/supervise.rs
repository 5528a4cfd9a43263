//! Watching containers end and applying restart policies, as Docker does: `no`,
//! `always`, `on-failure[:N]`, `unless-stopped`, and `deploy.restart_policy`
//! (`condition` none/on-failure/any, `delay`, `max_attempts`, `window`). Automatic
//! restarts back off: 100 ms doubling to a minute, back to 100 ms after a run of 10 s.
//! A container the user stopped (`stop`, `kill`, `down`) is never restarted.

use super::state::Record;
use super::{lock, Ctr, Engine};
use std::os::unix::io::{FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// A restart policy, normalized.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// `no`, `always`, `on-failure`, `unless-stopped`.
    pub mode: String,
    /// For `on-failure`: attempts allowed (0: unlimited).
    pub max_attempts: u32,
    /// A fixed delay between attempts (`deploy.restart_policy.delay`).
    pub delay: Option<Duration>,
    /// Attempts are counted within this window (`deploy.restart_policy.window`).
    pub window: Option<Duration>,
}

/// A restart policy that is not one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid restart policy {0:?}: the maximum retry count must be a number")]
    RetryCount(String),
    #[error("invalid restart policy {0:?}")]
    Restart(String),
    #[error("invalid deploy.restart_policy.condition {0:?}")]
    Condition(String),
}

pub fn policy(svc: &compose::model::Service) -> Result<Policy, PolicyError> {
    if let Some(r) = svc.restart.as_deref() {
        let (mode, max) = r.split_once(':').unwrap_or((r, ""));
        let max_attempts = if max.is_empty() {
            0
        } else {
            max.parse().map_err(|_| PolicyError::RetryCount(r.to_string()))?
        };
        return match mode {
            "no" | "always" | "unless-stopped" if max.is_empty() => Ok(Policy {
                mode: mode.into(),
                max_attempts: 0,
                delay: None,
                window: None,
            }),
            "on-failure" => Ok(Policy {
                mode: mode.into(),
                max_attempts,
                delay: None,
                window: None,
            }),
            _ => Err(PolicyError::Restart(r.to_string())),
        };
    }
    if let Some(rp) = svc.deploy.as_ref().and_then(|d| d.restart_policy.as_ref()) {
        let mode = match rp.condition.as_deref().unwrap_or("any") {
            "none" => "no",
            "on-failure" => "on-failure",
            "any" => "always",
            other => return Err(PolicyError::Condition(other.to_string())),
        };
        return Ok(Policy {
            mode: mode.into(),
            max_attempts: rp.max_attempts.unwrap_or(0) as u32,
            delay: rp.delay.map(|d| d.as_std()),
            window: rp.window.map(|d| d.as_std()),
        });
    }
    Ok(Policy {
        mode: "no".into(),
        max_attempts: 0,
        delay: None,
        window: None,
    })
}

/// Whether a container that ended with `exit_code` is started again.
pub fn should_restart(p: &Policy, rec: &Record) -> bool {
    if !rec.desired_running {
        return false;
    }
    let failed = rec.exit_code.unwrap_or(0) != 0;
    let under_max = p.max_attempts == 0 || rec.attempts < p.max_attempts;
    match p.mode.as_str() {
        "always" | "unless-stopped" => under_max,
        "on-failure" => failed && under_max,
        _ => false,
    }
}

/// Resolves when `pid` has exited (at once if it is already gone).
async fn wait_exit(pid: i32) {
    // SAFETY: pidfd_open takes a pid and flags; the result is checked and then owned.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd < 0 {
        return;
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `owned` is an open pidfd that the AsyncFd owns until it is dropped, and
    // OwnedFd always returns that same descriptor.
    match unsafe { AsyncFd::register(owned) } {
        Ok(a) => {
            let _ = a.readable().await;
        }
        Err(_) => {
            while !runtime::wait_gone(pid, Duration::ZERO) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl Engine {
    /// `start` behind a declared `Send` future: start -> supervise -> restart -> start
    /// is a cycle that the compiler cannot see through otherwise.
    fn start_boxed(self: &Arc<Self>, ctr: Arc<Ctr>) -> BoxFuture<Result<(), super::container::ContainerError>> {
        let me = self.clone();
        Box::pin(async move { me.start(&ctr).await })
    }

    /// Waits for the container's monitor to end (it has recorded the exit then), then
    /// records it and applies the policy.
    pub(super) async fn supervise(self: Arc<Self>, ctr: Arc<Ctr>, monitor: i32, start_time: u64) {
        wait_exit(monitor).await;
        {
            let _op = ctr.op.lock().await;
            let same = ctr
                .live()
                .is_some_and(|c| c.monitor == monitor && c.monitor_start == start_time);
            if !same {
                // Someone else (stop, remove) took care of it.
                return;
            }
            self.finish_exit(&ctr).await;
        }
        self.after_exit(ctr).await;
    }

    /// Tears down what a container held while it ran and records how it ended. Called
    /// with its `op` lock held; does nothing if it is not running.
    pub(super) async fn finish_exit(self: &Arc<Self>, ctr: &Arc<Ctr>) {
        // It stays "running" until its exit is recorded: nobody may see it exited with
        // no exit code yet (a `run` would report 0 for its command's 5).
        let Some(c) = ctr.live() else {
            return;
        };
        ctr.paused.store(false, Ordering::SeqCst);
        if let Some(t) = lock(&ctr.health_task).take() {
            t.abort();
        }
        let proxies = std::mem::take(&mut *lock(&ctr.proxies));
        proxies.close().await;
        let rec = ctr.rec();
        self.net.unregister(&rec.id, &super::container::dns_addresses(&rec));
        let me = self.clone();
        let c2 = c.clone();
        let status = tokio::task::spawn_blocking(move || {
            let s = me.runtime.status(&c2);
            (s, me.runtime.cleanup(&c2))
        })
        .await
        .ok();
        let status = match status {
            Some((s, left)) => {
                ctr.note_left(left);
                s
            }
            None => None,
        };
        // The veths go with the container's network namespace; a netlink call here would
        // only wait for the kernel's teardown of that namespace. A leftover host end is
        // removed when the container starts again or is removed.
        let exit_code = status.as_ref().map(|s| s.exit_code).unwrap_or(137);
        let oom = status.as_ref().is_some_and(|s| s.oom_killed);
        let ran = conventions::durations::now() - rec.started_at.unwrap_or(0);
        // Docker's back-off: doubles while the container keeps dying young.
        let prev = ctr.backoff_ms.load(Ordering::SeqCst);
        let next = if ran >= 10 || prev == 0 {
            100
        } else {
            (prev * 2).min(60_000)
        };
        ctr.backoff_ms.store(next, Ordering::SeqCst);
        // A run longer than the policy's window was a success: attempts count afresh.
        let window = policy(&rec.model).ok().and_then(|p| p.window);
        let _ = ctr.update(|r| {
            r.exit_code = Some(exit_code);
            r.oom_killed = oom;
            r.finished_at = Some(conventions::durations::now());
            if window.is_some_and(|w| ran >= w.as_secs() as i64) {
                r.attempts = 0;
            }
        });
        lock(&ctr.live).take();
        if !rec.ports.is_empty() {
            self.sync_nat().await;
        }
        self.bump();
        if oom {
            self.emit(&rec, "oom", &[]);
        }
        self.emit(&rec, "die", &[("exitCode", exit_code.to_string())]);
    }

    /// Applies the restart policy to a container that has ended.
    pub(super) async fn after_exit(self: Arc<Self>, ctr: Arc<Ctr>) {
        let rec = ctr.rec();
        let Ok(p) = policy(&rec.model) else {
            return;
        };
        if !should_restart(&p, &rec) {
            return;
        }
        let delay = p
            .delay
            .unwrap_or_else(|| Duration::from_millis(ctr.backoff_ms.load(Ordering::SeqCst).max(100)));
        ctr.restarting.store(true, Ordering::SeqCst);
        self.bump();
        tokio::time::sleep(delay).await;
        let _op = ctr.op.lock().await;
        if !ctr.restarting.load(Ordering::SeqCst) || ctr.live().is_some() || !ctr.rec().desired_running {
            ctr.restarting.store(false, Ordering::SeqCst);
            return;
        }
        let _ = ctr.update(|r| {
            r.restart_count += 1;
            r.attempts += 1;
        });
        if let Err(e) = self.start_boxed(ctr.clone()).await {
            tracing::warn!("restarting {}: {e}", rec.name);
            ctr.restarting.store(false, Ordering::SeqCst);
            self.bump();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(y: &str) -> compose::model::Service {
        crate::daemon::state::test_service(y)
    }

    fn ended(code: i32, count: u32, wanted: bool) -> Record {
        Record {
            exit_code: Some(code),
            restart_count: count,
            attempts: count,
            desired_running: wanted,
            ..Default::default()
        }
    }

    #[test]
    fn policies_as_docker_applies_them() {
        let p = policy(&svc("    restart: on-failure:2\n")).unwrap();
        assert!(should_restart(&p, &ended(1, 0, true)));
        assert!(should_restart(&p, &ended(1, 1, true)));
        assert!(!should_restart(&p, &ended(1, 2, true)), "two attempts, then no more");
        assert!(!should_restart(&p, &ended(0, 0, true)), "success is not a failure");
        let p = policy(&svc("    restart: always\n")).unwrap();
        assert!(should_restart(&p, &ended(0, 10, true)));
        assert!(!should_restart(&p, &ended(0, 0, false)), "stopped by the user");
        let p = policy(&svc("    restart: unless-stopped\n")).unwrap();
        assert!(should_restart(&p, &ended(3, 0, true)));
        let p = policy(&svc("")).unwrap();
        assert!(!should_restart(&p, &ended(1, 0, true)));
        let p = policy(&svc(
            "    deploy:\n      restart_policy: {condition: on-failure, max_attempts: 1, delay: 2s}\n",
        ))
        .unwrap();
        assert_eq!(
            (p.mode.as_str(), p.max_attempts, p.delay),
            ("on-failure", 1, Some(Duration::from_secs(2)))
        );
        assert!(policy(&svc("    restart: sometimes\n"))
            .unwrap_err()
            .to_string()
            .contains("invalid restart policy"));
        assert!(policy(&svc("    restart: on-failure:x\n")).is_err());
    }
}
