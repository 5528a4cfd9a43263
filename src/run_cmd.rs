//! `run`: a one-off container of a service, as `docker compose run` makes it. Attached,
//! the terminal is joined to it (a terminal of its own when ours is one, our standard
//! input with `-i`, the default) until it exits, and its exit code is ours; one that has
//! ended before the attachment has its log printed instead.

use crate::args::RunArgs;
use crate::client::connect;
use crate::client::runtime;
use crate::global::Global;
use crate::progress::follow_operation_outcome;
use crate::project::{file_values, load};
use anyhow::{bail, Context, Result};
use engine::api::{ContainerSummary, RunRequest};
use hyper::Method;
use std::io::IsTerminal;
use std::process::ExitCode;

/// `-v SRC:DST[:ro]` in the long syntax: a host path (absolute, or relative to the
/// working directory) is a bind, anything else a named volume of the project.
fn volume(spec: &str) -> Result<serde_json::Value> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, ro) = match parts.as_slice() {
        [d] => ("", *d, false),
        [s, d] => (*s, *d, false),
        [s, d, m] if *m == "ro" || *m == "rw" => (*s, *d, *m == "ro"),
        _ => bail!("invalid volume {spec:?}: expected SRC:DST[:ro]"),
    };
    if src.starts_with('/') || src.starts_with('.') || src.starts_with('~') {
        let abs = std::path::absolute(src).with_context(|| format!("volume {spec:?}"))?;
        Ok(serde_json::json!({"type": "bind", "source": abs, "target": dst, "read_only": ro}))
    } else if src.is_empty() {
        Ok(serde_json::json!({"type": "volume", "target": dst, "read_only": ro}))
    } else {
        Ok(serde_json::json!({"type": "volume", "source": src, "target": dst, "read_only": ro}))
    }
}

/// `-p [IP:][HOST:]CONTAINER[/PROTO]` in the long syntax.
fn port(spec: &str) -> Result<serde_json::Value> {
    let (main, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let parts: Vec<&str> = main.rsplitn(3, ':').collect();
    let (target, published, ip) = match parts.as_slice() {
        [t] => (*t, "", ""),
        [t, p] => (*t, *p, ""),
        [t, p, ip] => (*t, *p, *ip),
        _ => bail!("invalid port {spec:?}"),
    };
    let target: u16 = target.parse().with_context(|| format!("invalid port {spec:?}"))?;
    let mut v = serde_json::json!({"target": target, "protocol": proto, "mode": "ingress"});
    if !published.is_empty() {
        v["published"] = published.into();
    }
    if !ip.is_empty() {
        v["host_ip"] = ip.trim_matches(['[', ']']).into();
    }
    Ok(v)
}

pub fn run(g: &Global, a: RunArgs) -> Result<ExitCode> {
    let l = load(g, std::slice::from_ref(&a.service))?;
    // A terminal when ours is one, unless -T; `-t` cannot make one out of a pipe.
    let term = std::io::stdin().is_terminal();
    if a.tty && !term && !a.detach {
        bail!("the input device is not a TTY");
    }
    let tty = !a.no_tty && term;
    let size = if tty {
        crate::session::term_size().unwrap_or((24, 80))
    } else {
        (0, 0)
    };
    let req = RunRequest {
        project: l.json.clone(),
        working_dir: l.loaded.project_dir.display().to_string(),
        config_files: l.loaded.files.iter().map(|f| f.display().to_string()).collect(),
        service: a.service.clone(),
        pull: a.pull.clone(),
        build: a.build,
        // As Compose: a run's pulls are quiet.
        quiet_pull: true,
        auths: crate::project::auths(&l.loaded.project),
        command: (!a.command.is_empty()).then(|| a.command.clone()),
        entrypoint: a
            .entrypoint
            .as_deref()
            .map(shell_words::split)
            .transpose()
            .context("invalid --entrypoint")?,
        env: a.env.clone(),
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        volumes: a.volumes.iter().map(|v| volume(v)).collect::<Result<_>>()?,
        ports: a.publish.iter().map(|p| port(p)).collect::<Result<_>>()?,
        service_ports: a.service_ports,
        use_aliases: a.use_aliases,
        name: a.name.clone(),
        no_deps: a.no_deps,
        file_values: file_values(&l.loaded)?,
        tty,
        interactive: a.interactive,
        detach: a.detach,
        rows: size.0,
        cols: size.1,
    };
    let name = l.name.clone();
    let rt = runtime()?;
    let code = rt.block_on(async {
        let c = connect().await?;
        let lines = c
            .stream(Method::POST, &format!("/v1/projects/{name}/run"), Some(&req))
            .await?;
        let crate::progress::Outcome {
            exit_code: rc, created, ..
        } = follow_operation_outcome(lines).await?;
        let Some(container) = created else {
            return Ok(rc);
        };
        if rc != 0 {
            if a.rm {
                let _ = c
                    .stream(Method::DELETE, &format!("/v1/containers/{container}"), None::<&()>)
                    .await;
            }
            return Ok(rc);
        }
        if a.detach {
            println!("{container}");
            return Ok(0);
        }
        let how = crate::attach_cmd::Attachment {
            tty,
            input: a.interactive,
            detach_keys: crate::session::parse_detach_keys(crate::session::DEFAULT_DETACH_KEYS)?,
            sig_proxy: true,
        };
        match crate::attach_cmd::attach_to(&c, &container, &how).await? {
            Ok(crate::session::End::Exited(code)) => {
                if a.rm {
                    c.stream(Method::DELETE, &format!("/v1/containers/{container}"), None::<&()>)
                        .await?;
                }
                return Ok(code);
            }
            // Left running, as Docker leaves it (and removes nothing).
            Ok(crate::session::End::Detached) => return Ok(0),
            // Ended before the attachment: its output is in the log.
            Err(_) => {}
        }
        let printer = crate::logs_cmd::Printer::new(false, false, false);
        crate::logs_cmd::follow_one(
            container.clone(),
            printer,
            crate::logs_cmd::LogOpts {
                follow: true,
                ..Default::default()
            },
        )
        .await?;
        // The followed log ends when the container has stopped: its exit code is ours.
        let code = loop {
            let all: Vec<ContainerSummary> = c.get(&format!("/v1/containers?project={name}&all=1")).await?;
            match all.iter().find(|s| s.name == container) {
                Some(s) if s.state == "exited" => break s.exit_code,
                Some(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                None => bail!("container {container} is gone"),
            }
        };
        if a.rm {
            c.stream(Method::DELETE, &format!("/v1/containers/{container}"), None::<&()>)
                .await?;
        }
        Ok(code)
    });
    rt.shutdown_background();
    Ok(ExitCode::from(code?.clamp(0, 255) as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_and_ports_in_the_long_syntax() {
        let v = volume("/data:/d:ro").unwrap();
        assert_eq!(
            (v["type"].as_str(), v["read_only"].as_bool()),
            (Some("bind"), Some(true))
        );
        assert_eq!(volume("cache:/c").unwrap()["type"], "volume");
        assert!(volume("a:b:c:d").is_err());
        let p = port("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(
            p,
            serde_json::json!({"target": 80, "published": "8080", "host_ip": "127.0.0.1", "protocol": "udp", "mode": "ingress"})
        );
        assert_eq!(port("80").unwrap()["target"], 80);
        assert!(port("x").is_err());
    }
}
