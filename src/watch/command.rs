//! The commands: `rcompose watch [SERVICE...]` (`--no-up`, `--prune`, `--quiet`) and
//! the session that `up --watch` runs beside its logs.

use super::{rules, Session};
use crate::cli::Global;
use crate::lifecycle::{self, Loaded};
use anyhow::{anyhow, Result};
use std::process::ExitCode;

#[derive(Debug, clap::Args, Clone, Default)]
pub struct WatchArgs {
    /// Do not build & start services before watching
    #[arg(long)]
    pub no_up: bool,
    /// Prune dangling images on rebuild
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub prune: bool,
    /// Hide build output
    #[arg(long)]
    pub quiet: bool,
    #[arg(add = crate::completion::services())]
    pub services: Vec<String>,
}

/// The watch session of a loaded project; `reload` also watches the project's files.
pub fn session(g: &Global, l: &Loaded, services: &[String], reload: bool) -> Result<Session> {
    let rules = rules::rules(&l.loaded.project, services).map_err(|e| anyhow!(e))?;
    let reload: Option<super::Reload> = if reload {
        let g = g.clone();
        let services = services.to_vec();
        Some(Box::new(move || lifecycle::load(&g, &services)))
    } else {
        None
    };
    Ok(Session {
        project: l.name.clone(),
        model: l.json.clone(),
        services: services.to_vec(),
        rules,
        inputs: l.loaded.inputs.clone(),
        reload,
    })
}

/// `rcompose watch`: the services brought up (unless `--no-up`), then watched.
pub fn watch(g: &Global, a: WatchArgs) -> Result<ExitCode> {
    let l = lifecycle::load(g, &a.services)?;
    let s = session(g, &l, &a.services, false)?;
    if !a.no_up {
        let up = crate::args::UpArgs {
            detach: true,
            services: a.services.clone(),
            ..Default::default()
        };
        let rc = lifecycle::up(g, up)?;
        if rc != ExitCode::SUCCESS {
            return Ok(rc);
        }
    }
    lifecycle::runtime()?.block_on(async {
        let c = crate::client::connect().await?;
        super::run(&c, s).await
    })?;
    Ok(ExitCode::SUCCESS)
}
