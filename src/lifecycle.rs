//! `up`, `create`, `down`, `start`, `stop`, `restart`, `kill`, `rm`, `pause`, `unpause`:
//! the project is loaded here and sent to the engine, whose progress is printed as
//! Docker Compose prints it in plain mode (` Container p-web-1  Started`, on stderr).

use crate::args::{
    CreateArgs, DownArgs, KillArgs, RmArgs, ScaleArgs, ServicesArgs, StopArgs, UpArgs, WaitArgs, WatchArgs,
};
use crate::client::{connect, runtime, Client};
use crate::global::Global;
use crate::logs_cmd::{self, Printer};
use crate::progress::{code, follow_operation, follow_operation_outcome};
use crate::project::{load, load_or_name, up_request, Loaded};
use anyhow::{bail, Context, Result};
use engine::api::{ActionRequest, DownRequest, UpRequest};
use hyper::Method;
use std::collections::BTreeMap;
use std::process::ExitCode;

fn parse_scale(v: &[String]) -> Result<BTreeMap<String, u32>> {
    v.iter()
        .map(|s| {
            let (k, n) = s
                .split_once('=')
                .with_context(|| format!("invalid --scale {s:?}: expected SERVICE=NUM"))?;
            let n: u32 = n
                .parse()
                .with_context(|| format!("invalid --scale {s:?}: NUM must be a number"))?;
            Ok((k.to_string(), n))
        })
        .collect()
}

pub fn up(g: &Global, a: UpArgs) -> Result<ExitCode> {
    if a.detach && (a.abort_on_container_exit || a.abort_on_container_failure || a.exit_code_from.is_some()) {
        bail!("--abort-on-container-exit, --abort-on-container-failure and --exit-code-from cannot be combined with --detach");
    }
    let l = load(g, &a.services)?;
    let scale = parse_scale(&a.scale)?;
    let req = UpRequest {
        no_deps: a.no_deps,
        force_recreate: a.force_recreate,
        no_recreate: a.no_recreate,
        always_recreate_deps: a.always_recreate_deps,
        remove_orphans: a.remove_orphans,
        no_start: a.no_start,
        renew_anon_volumes: a.renew_anon_volumes,
        scale,
        timeout: a.timeout,
        wait: a.wait,
        wait_timeout: a.wait_timeout,
        pull: a.pull.clone(),
        quiet_pull: a.quiet_pull,
        build: a.build,
        no_build: a.no_build,
        ..up_request(&l, &a.services)?
    };
    let detached = a.detach || a.wait || a.no_start;
    // Checked before anything starts: a bad rule is said at once.
    let session = if a.watch {
        Some(crate::watch::session::session(g, &l, &a.services, true)?)
    } else {
        None
    };
    runtime()?.block_on(async {
        let c = connect().await?;
        let lines = c
            .stream(Method::POST, &format!("/v1/projects/{}/up", l.name), Some(&req))
            .await?;
        let done = follow_operation_outcome(lines).await?;
        let (rc, selected) = (done.exit_code, done.services);
        if rc != 0 {
            return Ok(code(rc));
        }
        match session {
            None if detached => Ok(code(rc)),
            None => attached(&c, &l, &selected, &a).await,
            Some(s) if detached => crate::watch::run(&c, s).await.map(|_| code(0)),
            Some(s) => {
                // The logs, and the watch beside them, until the logs end (Ctrl-C).
                let watching = crate::watch::run(&c, s);
                tokio::pin!(watching);
                tokio::select! {
                    r = attached(&c, &l, &selected, &a) => r,
                    r = &mut watching => r.map(|_| code(0)),
                }
            }
        }
    })
}

/// `up` without `-d`: the services' logs with prefixes until they have all exited or
/// the user presses Ctrl-C (then they are stopped, as Compose does).
async fn attached(c: &Client, l: &Loaded, selected: &[String], a: &UpArgs) -> Result<ExitCode> {
    let mut attach: Vec<String> = if a.attach.is_empty() {
        selected.to_vec()
    } else {
        a.attach.clone()
    };
    attach.retain(|s| !a.no_attach.contains(s));
    let printer = Printer::new(!a.no_color, !a.no_log_prefix, a.timestamps);
    let abort = a.abort_on_container_exit || a.abort_on_container_failure || a.exit_code_from.is_some();
    let mut events = c
        .stream(Method::GET, &format!("/v1/events?project={}", l.name), None::<&()>)
        .await?;
    let containers: Vec<engine::api::ContainerSummary> =
        c.get(&format!("/v1/containers?project={}&all=1", l.name)).await?;
    let followed: Vec<engine::api::ContainerSummary> =
        containers.into_iter().filter(|s| attach.contains(&s.service)).collect();
    printer.set_width(&followed);
    let mut tasks = Vec::new();
    for s in &followed {
        tasks.push(tokio::spawn(logs_cmd::follow_one(
            s.name.clone(),
            printer.clone(),
            logs_cmd::LogOpts {
                follow: true,
                ..Default::default()
            },
        )));
    }
    let mut running: std::collections::BTreeSet<String> = followed
        .iter()
        .filter(|s| s.state == "running" || s.state == "restarting")
        .map(|s| s.name.clone())
        .collect();
    let mut exit_code = 0;
    let stop_all = |reason: Option<&str>| {
        if let Some(r) = reason {
            eprintln!("{r}");
        }
        eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
    };
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut interrupted = false;
    loop {
        if running.is_empty() && !followed.is_empty() && !abort {
            break;
        }
        tokio::select! {
            _ = sigint.recv() => {
                stop_all(None);
                // Compose's code for an interrupted `up`.
                interrupted = true;
                break;
            }
            ev = events.next::<engine::api::Event>() => {
                let Some(ev) = ev? else { break };
                let name = ev.attributes.get("name").cloned().unwrap_or_default();
                match ev.action.as_str() {
                    "start" => { running.insert(name); }
                    "die" => {
                        let code: i32 = ev.attributes.get("exitCode").and_then(|c| c.parse().ok()).unwrap_or(0);
                        // Let the last lines arrive before the exit line.
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        printer.line_raw(&format!("{name} exited with code {code}"));
                        running.remove(&name);
                        if a.exit_code_from.as_deref() == Some(ev.service.as_str()) {
                            exit_code = code;
                        }
                        let trigger = match (&a.exit_code_from, a.abort_on_container_exit, a.abort_on_container_failure) {
                            (Some(s), _, _) => *s == ev.service,
                            (None, true, _) => true,
                            (None, false, true) => code != 0,
                            _ => false,
                        };
                        if trigger {
                            if a.abort_on_container_failure && code != 0 {
                                exit_code = code;
                            }
                            eprintln!("Aborting on container exit...");
                            break;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    for t in tasks {
        t.abort();
    }
    // Stop what runs (Compose does on Ctrl-C and on abort).
    let req = ActionRequest {
        project: Some(l.json.clone()),
        timeout: a.timeout,
        ..Default::default()
    };
    if !running.is_empty() || abort || interrupted {
        let lines = c
            .stream(Method::POST, &format!("/v1/projects/{}/stop", l.name), Some(&req))
            .await?;
        let rc = follow_operation(lines).await?;
        if rc != 0 {
            return Ok(code(rc));
        }
    }
    Ok(code(if interrupted { 130 } else { exit_code }))
}

pub fn create(g: &Global, a: CreateArgs) -> Result<ExitCode> {
    up(
        g,
        UpArgs {
            force_recreate: a.force_recreate,
            no_recreate: a.no_recreate,
            remove_orphans: a.remove_orphans,
            scale: a.scale,
            pull: a.pull,
            quiet_pull: a.quiet_pull,
            build: a.build,
            no_build: a.no_build,
            no_start: true,
            services: a.services,
            ..Default::default()
        },
    )
}

pub fn down(g: &Global, a: DownArgs) -> Result<ExitCode> {
    let rmi = match a.rmi.as_deref() {
        None => None,
        Some(m @ ("all" | "local")) => Some(m.to_string()),
        Some(other) => bail!("invalid --rmi {other:?}: all or local"),
    };
    if !a.services.is_empty() {
        bail!("down SERVICE... is not implemented yet");
    }
    let (name, l) = load_or_name(g, &[])?;
    if rmi.is_some() && l.is_none() {
        bail!("down --rmi needs the Compose file");
    }
    let req = DownRequest {
        project: l.map(|l| l.json),
        volumes: a.volumes,
        remove_orphans: a.remove_orphans,
        timeout: a.timeout,
        rmi,
    };
    let rc = send_down(&name, &req)?;
    if rc != 0 {
        return Ok(code(rc));
    }
    Ok(code(0))
}

fn send_down(name: &str, req: &DownRequest) -> Result<i32> {
    runtime()?.block_on(async {
        let c = connect().await?;
        let lines = c
            .stream(Method::POST, &format!("/v1/projects/{name}/down"), Some(req))
            .await?;
        follow_operation(lines).await
    })
}

/// `wait SERVICE...`: until their containers have stopped; the exit code of the first
/// to stop. `--down-project` then takes the project down.
pub fn wait(g: &Global, a: WaitArgs) -> Result<ExitCode> {
    let (name, l) = load_or_name(g, &a.services)?;
    let first = runtime()?.block_on(async {
        let c = connect().await?;
        let mut first: Option<i32> = None;
        loop {
            let all: Vec<engine::api::ContainerSummary> =
                c.get(&format!("/v1/containers?project={name}&all=1")).await?;
            let mine: Vec<_> = all.iter().filter(|s| a.services.contains(&s.service)).collect();
            if mine.is_empty() {
                bail!("no containers for services {:?} of project {name}", a.services);
            }
            if first.is_none() {
                first = mine.iter().find(|s| s.state == "exited").map(|s| s.exit_code);
            }
            if first.is_some() && (a.down_project || mine.iter().all(|s| s.state == "exited" || s.state == "created")) {
                return Ok(first.unwrap_or(0));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })?;
    if a.down_project {
        let req = DownRequest {
            project: l.map(|l| l.json),
            ..Default::default()
        };
        let rc = send_down(&name, &req)?;
        if rc != 0 {
            return Ok(code(rc));
        }
    }
    Ok(code(first))
}

/// `start`, `stop`, `restart`, `kill`, `rm`, `pause`, `unpause`.
pub fn action(g: &Global, verb: &str, services: Vec<String>, mut req: ActionRequest) -> Result<ExitCode> {
    let (name, l) = load_or_name(g, &services)?;
    req.services = services;
    req.project = l.map(|l| l.json);
    runtime()?.block_on(async {
        let c = connect().await?;
        let lines = c
            .stream(Method::POST, &format!("/v1/projects/{name}/{verb}"), Some(&req))
            .await?;
        Ok(code(follow_operation(lines).await?))
    })
}

pub fn start(g: &Global, a: ServicesArgs) -> Result<ExitCode> {
    action(g, "start", a.services, ActionRequest::default())
}

pub fn pause(g: &Global, a: ServicesArgs, pause: bool) -> Result<ExitCode> {
    action(
        g,
        if pause { "pause" } else { "unpause" },
        a.services,
        ActionRequest::default(),
    )
}

pub fn stop(g: &Global, a: StopArgs, verb: &str) -> Result<ExitCode> {
    let mut services = a.services;
    if verb == "restart" && !services.is_empty() {
        // Dependents that asked for it (`depends_on: {x: {restart: true}}`) go too.
        if let Ok(l) = load(g, &services) {
            let p = &l.loaded.project;
            let mut i = 0;
            while i < services.len() {
                let dep = services[i].clone();
                for (name, s) in &p.services {
                    let wants = s
                        .depends_on
                        .as_ref()
                        .and_then(|d| d.get(&dep))
                        .and_then(|o| o.as_ref())
                        .and_then(|o| o.restart)
                        == Some(true);
                    if wants && !services.contains(name) {
                        services.push(name.clone());
                    }
                }
                i += 1;
            }
        }
    }
    action(
        g,
        verb,
        services,
        ActionRequest {
            timeout: a.timeout,
            ..Default::default()
        },
    )
}

pub fn kill(g: &Global, a: KillArgs) -> Result<ExitCode> {
    if conventions::signals::number(&a.signal).is_none() {
        bail!("invalid signal: {}", a.signal);
    }
    let rc = action(
        g,
        "kill",
        a.services,
        ActionRequest {
            signal: Some(a.signal),
            ..Default::default()
        },
    )?;
    if a.remove_orphans {
        let (name, l) = load_or_name(g, &[])?;
        let Some(l) = l else {
            bail!("kill --remove-orphans needs the Compose file");
        };
        runtime()?.block_on(async {
            let c = connect().await?;
            let all: Vec<engine::api::ContainerSummary> =
                c.get(&format!("/v1/containers?project={name}&all=1")).await?;
            let mut orphans: Vec<String> = all
                .into_iter()
                .map(|s| s.service)
                .filter(|s| !l.loaded.project.services.contains_key(s))
                .collect();
            orphans.dedup();
            if orphans.is_empty() {
                return Ok::<_, anyhow::Error>(());
            }
            let req = ActionRequest {
                services: orphans,
                stop: true,
                ..Default::default()
            };
            let lines = c
                .stream(Method::POST, &format!("/v1/projects/{name}/rm"), Some(&req))
                .await?;
            follow_operation(lines).await?;
            Ok(())
        })?;
    }
    Ok(rc)
}

pub fn rm(g: &Global, a: RmArgs) -> Result<ExitCode> {
    if !a.force && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!("rm: interactive confirmation is not implemented yet; pass -f");
    }
    action(
        g,
        "rm",
        a.services,
        ActionRequest {
            stop: a.stop,
            volumes: a.volumes,
            ..Default::default()
        },
    )
}

/// `scale SERVICE=N...`: `up -d` of those services at those counts.
pub fn scale(g: &Global, a: ScaleArgs) -> Result<ExitCode> {
    let map = parse_scale(&a.scale)?;
    up(
        g,
        UpArgs {
            detach: true,
            no_deps: a.no_deps,
            scale: a.scale.clone(),
            services: map.keys().cloned().collect(),
            ..Default::default()
        },
    )
}

/// `rcompose watch`: the services brought up (unless `--no-up`), then watched.
pub fn watch(g: &Global, a: WatchArgs) -> Result<ExitCode> {
    let l = load(g, &a.services)?;
    let s = crate::watch::session::session(g, &l, &a.services, false)?;
    if !a.no_up {
        let args = UpArgs {
            detach: true,
            services: a.services.clone(),
            ..Default::default()
        };
        let rc = up(g, args)?;
        if rc != ExitCode::SUCCESS {
            return Ok(rc);
        }
    }
    runtime()?.block_on(async {
        let c = connect().await?;
        crate::watch::run(&c, s).await
    })?;
    Ok(ExitCode::SUCCESS)
}
