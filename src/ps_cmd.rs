//! `ps` and `ls`: the containers of a project, and the projects, as Compose lists them.

use crate::args::{LsArgs, PsArgs, TableFormat};
use crate::client::{connect, runtime};
use crate::global::Global;
use crate::project::load_or_name;
use crate::table::table;
use anyhow::{bail, Result};
use engine::api::{ContainerSummary, ProjectSummary};
use std::process::ExitCode;

fn ports_column(s: &ContainerSummary) -> String {
    s.publishers
        .iter()
        .map(|p| format!("{}:{}->{}/{}", p.url, p.published_port, p.target_port, p.protocol))
        .collect::<Vec<_>>()
        .join(", ")
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n - 1).collect();
        format!("{t}…")
    }
}

pub fn ps(g: &Global, a: PsArgs) -> Result<ExitCode> {
    let (name, _) = load_or_name(g, &a.service)?;
    let mut statuses = a.status.clone();
    if let Some(f) = &a.filter {
        match f.split_once('=') {
            Some(("status", v)) => statuses.push(v.to_string()),
            _ => bail!("invalid filter {f:?}: only status=<state> is supported"),
        }
    }
    const STATES: [&str; 8] = [
        "paused",
        "restarting",
        "removing",
        "running",
        "dead",
        "created",
        "exited",
        "",
    ];
    for s in &statuses {
        if !STATES.contains(&s.as_str()) || s.is_empty() {
            bail!("invalid status {s:?}: one of paused, restarting, removing, running, dead, created, exited");
        }
    }
    let all_flag = a.all || !statuses.is_empty();
    let list: Vec<ContainerSummary> = runtime()?.block_on(async {
        let c = connect().await?;
        c.get::<Vec<ContainerSummary>>(&format!("/v1/containers?project={name}&all={}", all_flag as u8))
            .await
    })?;
    let mut list: Vec<ContainerSummary> = list
        .into_iter()
        .filter(|s| a.service.is_empty() || a.service.contains(&s.service))
        .filter(|s| statuses.is_empty() || statuses.contains(&s.state))
        .collect();
    list.sort_by(|x, y| x.name.cmp(&y.name));
    let mut out = String::new();
    if a.services {
        let mut names: Vec<&str> = list.iter().map(|s| s.service.as_str()).collect();
        names.dedup();
        for n in names {
            out.push_str(n);
            out.push('\n');
        }
    } else if a.quiet {
        for s in &list {
            out.push_str(&s.id);
            out.push('\n');
        }
    } else if a.format == TableFormat::Json {
        for s in &list {
            out.push_str(&serde_json::to_string(s)?);
            out.push('\n');
        }
    } else {
        let mut rows = vec![["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()];
        for s in &list {
            let cmd = if a.no_trunc {
                s.command.clone()
            } else {
                truncate(&s.command, 20)
            };
            rows.push(vec![
                s.name.clone(),
                s.image.clone(),
                format!("\"{cmd}\""),
                s.service.clone(),
                format!(
                    "{} ago",
                    conventions::durations::human_duration(conventions::durations::now() - s.created)
                ),
                s.status.clone(),
                ports_column(s),
            ]);
        }
        out = table(&rows);
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

pub fn ls(a: LsArgs) -> Result<ExitCode> {
    let projects: Vec<ProjectSummary> = runtime()?.block_on(async { connect().await?.get("/v1/projects").await })?;
    let name_filter = match &a.filter {
        Some(f) => match f.split_once('=') {
            Some(("name", v)) => Some(v.to_string()),
            _ => bail!("invalid filter {f:?}: only name=<project> is supported"),
        },
        None => None,
    };
    let list: Vec<ProjectSummary> = projects
        .into_iter()
        .filter(|p| a.all || p.status.contains("running"))
        .filter(|p| name_filter.as_ref().is_none_or(|n| p.name.contains(n.as_str())))
        .collect();
    if a.quiet {
        for p in &list {
            println!("{}", p.name);
        }
    } else if a.format == TableFormat::Json {
        println!("{}", serde_json::to_string(&list)?);
    } else {
        let mut rows = vec![vec!["NAME".to_string(), "STATUS".into(), "CONFIG FILES".into()]];
        for p in &list {
            rows.push(vec![p.name.clone(), p.status.clone(), p.config_files.clone()]);
        }
        print!("{}", table(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_commands_are_cut() {
        assert_eq!(truncate("sh -c 'while true; do x; done'", 20), "sh -c 'while true; …");
    }
}
