//! The watch session of a loaded project: what `rcompose watch` and `up --watch` run
//! (the commands themselves are `lifecycle`'s).

use super::{rules, Session};
use crate::global::Global;
use crate::project::{self, Loaded};
use anyhow::{anyhow, Result};

/// The watch session of a loaded project; `reload` also watches the project's files.
pub fn session(g: &Global, l: &Loaded, services: &[String], reload: bool) -> Result<Session> {
    let rules = rules::rules(&l.loaded.project, services).map_err(|e| anyhow!(e))?;
    let reload: Option<super::Reload> = if reload {
        let g = g.clone();
        let services = services.to_vec();
        Some(Box::new(move || project::load(&g, &services)))
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
