//! `run`: a one-off container of a service (`<project>-<service>-run-<slug>`), with the
//! command, entrypoint, environment, user, working directory, volumes and ports the
//! command line gives, its dependencies started first. It never takes part in `up`'s
//! convergence, has no restart policy, and answers to its service name in DNS only with
//! `--use-aliases`, as with Compose.

use super::container::NewContainer;
use super::project::{OpError, Out};
use super::{state, Ctr, Engine};
use crate::api::{RunRequest, StreamMsg, UpRequest};
use std::sync::Arc;

impl Engine {
    pub async fn run(self: &Arc<Self>, req: RunRequest, out: Out) -> Result<(), OpError> {
        let project = state::project_from_json(&req.project)?;
        let name = project.name.clone().unwrap_or_default();
        let Some(base) = project.services.get(&req.service) else {
            return Err(format!("no such service: {}", req.service).into());
        };
        // Checked before its dependencies start: nothing is made for a run that cannot be.
        let graph = compose::Graph::new(&project).map_err(|e| e.to_string())?;
        let service = std::slice::from_ref(&req.service);
        let pulled = graph.selection(&project, service, req.no_deps);
        super::admission::check(&super::admission::Admission {
            project: &project,
            selected: service,
            named: service,
            scale: &Default::default(),
            file_values: &req.file_values,
        })?;
        let builds =
            super::build::service::Builds::for_up(&project, &req.working_dir, &pulled, &req.file_values, &req.auths);
        self.build_for_up(builds, req.build, false, &out).await?;
        self.pull_for_services(&project, &pulled, req.pull.as_deref(), req.quiet_pull, &req.auths, &out)
            .await?;
        if !req.no_deps {
            let deps: Vec<String> = pulled.iter().filter(|s| **s != req.service).cloned().collect();
            if !deps.is_empty() {
                self.up(
                    UpRequest {
                        project: req.project.clone(),
                        working_dir: req.working_dir.clone(),
                        config_files: req.config_files.clone(),
                        services: deps,
                        file_values: req.file_values.clone(),
                        pull: req.pull.clone(),
                        quiet_pull: req.quiet_pull,
                        auths: req.auths.clone(),
                        ..Default::default()
                    },
                    out.clone(),
                )
                .await?;
            }
        }
        let mut svc = base.clone();
        if let Some(c) = &req.command {
            svc.command = Some(c.clone());
        }
        if let Some(e) = &req.entrypoint {
            svc.entrypoint = Some(e.clone());
            if req.command.is_none() {
                svc.command = None;
            }
        }
        let env = svc.environment.get_or_insert_with(Default::default);
        for kv in &req.env {
            match kv.split_once('=') {
                Some((k, v)) => env.insert(k.to_string(), Some(v.to_string())),
                None => env.insert(kv.clone(), None),
            };
        }
        if req.user.is_some() {
            svc.user = req.user.clone();
        }
        if req.workdir.is_some() {
            svc.working_dir = req.workdir.clone();
        }
        // The extra volumes and ports arrive in the long syntax: decoded as the model's.
        let extra = state::service_from_json(&serde_json::json!({
            "image": "x", "volumes": req.volumes, "ports": req.ports,
        }))?;
        svc.volumes
            .get_or_insert_with(Vec::new)
            .extend(extra.volumes.unwrap_or_default());
        svc.ports = if req.service_ports {
            let mut p = svc.ports.take().unwrap_or_default();
            p.extend(extra.ports.unwrap_or_default());
            Some(p)
        } else {
            extra.ports.filter(|p| !p.is_empty())
        };
        if !req.use_aliases {
            for o in svc.networks.iter_mut().flat_map(|m| m.values_mut()).flatten() {
                o.aliases = None;
            }
        }
        // One-off containers are not restarted.
        svc.restart = None;
        if let Some(d) = svc.deploy.as_mut() {
            d.restart_policy = None;
        }
        svc.container_name = None;
        svc.tty = Some(req.tty);
        svc.stdin_open = Some(req.interactive);
        // Its networks and volumes (`--no-deps` or none: `up` has not made them).
        self.ensure_resources(&project, &name, &[&svc], &out).await?;
        let image_id = self.image_id(&svc)?;
        let cname = req
            .name
            .clone()
            .unwrap_or_else(|| format!("{name}-{}-run-{}", req.service, super::random_hex(6)));
        compose::names::container(&cname)?;
        let files = super::files::file_mounts(&project, &svc, &req.file_values)?;
        let ctr: Arc<Ctr> = self.create(&NewContainer {
            project: &project,
            project_name: &name,
            service_name: &req.service,
            service: &svc,
            number: 1,
            image_id,
            working_dir: &req.working_dir,
            config_files: &req.config_files,
            files,
            oneoff: Some((cname.clone(), req.use_aliases)),
            attached_run: !req.detach,
            console_size: (req.tty && req.rows > 0).then_some((req.rows, req.cols)),
        })?;
        let _ = out.0.send(StreamMsg::Created(cname.clone()));
        let _op = ctr.op.lock().await;
        if let Err(e) = self.start(&ctr).await {
            // As `docker run`'s: 127 for a command not found, 126 for one that cannot
            // be run, and 126 for any other failure to start.
            let exit_code = match &e {
                super::container::ContainerError::Start(runtime::RuntimeError::Start { exit_code, .. }) => *exit_code,
                _ => 126,
            };
            return Err(OpError {
                message: e.to_string(),
                exit_code,
            });
        }
        Ok(())
    }
}
