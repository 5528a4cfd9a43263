//! Looking at a running project: `images`, `port`, `events`, `top`, `stats`, printed as
//! Docker Compose prints them.

use crate::args::{EventsArgs, ImagesArgs, PortArgs, ServicesArgs, StatsArgs, TableFormat};
use crate::client::connect;
use crate::client::runtime;
use crate::global::Global;
use crate::project::load_or_name;
use anyhow::{bail, Result};
use engine::api::{ContainerSummary, Event};
use hyper::Method;
use std::process::ExitCode;

async fn containers(project: &str) -> Result<Vec<ContainerSummary>> {
    let c = connect().await?;
    let mut v: Vec<ContainerSummary> = c.get(&format!("/v1/containers?project={project}&all=1")).await?;
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(v)
}

/// `images`: the images the project's containers use.
pub fn images(g: &Global, a: ImagesArgs) -> Result<ExitCode> {
    let (name, _) = load_or_name(g, &a.services)?;
    let (list, inspected) = runtime()?.block_on(async {
        let list = containers(&name).await?;
        let c = connect().await?;
        let mut inspected = std::collections::HashMap::new();
        for ctr in &list {
            if !inspected.contains_key(&ctr.image) {
                let path = format!("/v1/images/{}/json", crate::client::query_escape(&ctr.image));
                inspected.insert(ctr.image.clone(), c.get::<serde_json::Value>(&path).await.ok());
            }
        }
        Ok::<_, anyhow::Error>((list, inspected))
    })?;
    let mut rows = vec![["CONTAINER", "REPOSITORY", "TAG", "PLATFORM", "IMAGE ID", "SIZE"]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()];
    let mut json = Vec::new();
    let mut ids = Vec::new();
    for c in list
        .iter()
        .filter(|c| a.services.is_empty() || a.services.contains(&c.service))
    {
        let (repo, tag) = crate::image_cmd::familiar(&c.image);
        let (id, size, platform) = match inspected.get(&c.image).cloned().flatten() {
            Some(i) => (
                i["Id"].as_str().unwrap_or_default().to_string(),
                i["Size"].as_u64().unwrap_or(0),
                format!(
                    "{}/{}",
                    i["Os"].as_str().unwrap_or_default(),
                    i["Architecture"].as_str().unwrap_or_default()
                ),
            ),
            None => (String::new(), 0, String::new()),
        };
        let short = id
            .strip_prefix("sha256:")
            .unwrap_or(&id)
            .chars()
            .take(12)
            .collect::<String>();
        if !ids.contains(&id) {
            ids.push(id.clone());
        }
        rows.push(vec![
            c.name.clone(),
            repo.clone(),
            tag.clone(),
            platform.clone(),
            short,
            crate::table::human_size(size),
        ]);
        json.push(serde_json::json!({
            "ID": id, "ContainerName": c.name, "Repository": repo, "Tag": tag,
            "Platform": platform, "Size": size,
        }));
    }
    if a.quiet {
        for id in ids {
            println!("{id}");
        }
    } else if a.format == TableFormat::Json {
        println!("{}", serde_json::Value::Array(json));
    } else {
        print!("{}", crate::table::table(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// `port SERVICE PRIVATE_PORT`: the public address a container port is published on.
pub fn port(g: &Global, a: PortArgs) -> Result<ExitCode> {
    let (name, _) = load_or_name(g, std::slice::from_ref(&a.service))?;
    let list = runtime()?.block_on(containers(&name))?;
    let Some(c) = list.iter().find(|c| c.service == a.service && c.number == a.index) else {
        bail!("service \"{}\" is not running container #{}", a.service, a.index);
    };
    match c
        .publishers
        .iter()
        .find(|p| p.target_port == a.private_port && p.protocol == a.protocol)
    {
        Some(p) => {
            println!("{}:{}", p.url, p.published_port);
            Ok(ExitCode::SUCCESS)
        }
        None => bail!("no port {}/{} for container {}", a.private_port, a.protocol, c.name),
    }
}

/// `events`: the project's container events as they happen.
pub fn events(g: &Global, a: EventsArgs) -> Result<ExitCode> {
    let (name, _) = load_or_name(g, &a.services)?;
    runtime()?.block_on(async {
        let c = connect().await?;
        let mut lines = c
            .stream(Method::GET, &format!("/v1/events?project={name}"), None::<&()>)
            .await?;
        while let Some(ev) = lines.next::<Event>().await? {
            if !a.services.is_empty() && !a.services.contains(&ev.service) {
                continue;
            }
            if a.json {
                println!("{}", serde_json::to_string(&ev)?);
            } else {
                let attrs: Vec<String> = ev.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
                // Compose: `2026-11-22 07:50:01.123456 container start <id> (image=..., name=...)`.
                let time = ev.time.replacen('T', " ", 1);
                let time = time.trim_end_matches('Z');
                let time = match time.split_once('.') {
                    Some((s, frac)) => format!("{s}.{}", &frac[..frac.len().min(6)]),
                    None => time.to_string(),
                };
                println!("{time} {} {} {} ({})", ev.kind, ev.action, ev.id, attrs.join(", "));
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `top`: each running container's processes.
pub fn top(g: &Global, a: ServicesArgs) -> Result<ExitCode> {
    let (name, _) = load_or_name(g, &a.services)?;
    runtime()?.block_on(async {
        let c = connect().await?;
        let list = containers(&name).await?;
        for s in list
            .iter()
            .filter(|s| s.state == "running" && (a.services.is_empty() || a.services.contains(&s.service)))
        {
            let rows: Vec<Vec<String>> = c.get(&format!("/v1/containers/{}/top", s.name)).await?;
            println!("{}", s.name);
            print!("{}", crate::table::table(&rows));
            println!();
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Docker's units for `stats`: binary for memory (`MiB`), decimal for I/O (`kB`, `MB`).
fn bytes(n: u64, binary: bool) -> String {
    let (base, units): (f64, [&str; 5]) = if binary {
        (1024.0, ["B", "KiB", "MiB", "GiB", "TiB"])
    } else {
        (1000.0, ["B", "kB", "MB", "GB", "TB"])
    };
    let mut v = n as f64;
    let mut i = 0;
    while v >= base && i < units.len() - 1 {
        v /= base;
        i += 1;
    }
    if i == 0 {
        format!("{n}{}", units[0])
    } else {
        format!("{v:.3}{}", units[i]).replace(".000", "")
    }
}

/// `stats`: CPU %, memory, network and block I/O and processes of each container, from
/// two samples half a second apart; streamed every second unless `--no-stream`.
pub fn stats(g: &Global, a: StatsArgs) -> Result<ExitCode> {
    let services: Vec<String> = a.service.iter().cloned().collect();
    let (name, _) = load_or_name(g, &services)?;
    runtime()?.block_on(async {
        let c = connect().await?;
        let list: Vec<ContainerSummary> = containers(&name)
            .await?
            .into_iter()
            .filter(|s| services.is_empty() || services.contains(&s.service))
            .filter(|s| a.all || s.state == "running")
            .collect();
        let sample = |id: String| {
            let c = &c;
            async move {
                c.get::<engine::api::StatsSample>(&format!("/v1/containers/{id}/stats"))
                    .await
                    .ok()
            }
        };
        let mut prev: Vec<Option<engine::api::StatsSample>> = Vec::new();
        for s in &list {
            prev.push(sample(s.id.clone()).await);
        }
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let mut rows = vec![[
                "CONTAINER ID",
                "NAME",
                "CPU %",
                "MEM USAGE / LIMIT",
                "MEM %",
                "NET I/O",
                "BLOCK I/O",
                "PIDS",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()];
            let mut json_lines = Vec::new();
            for (i, s) in list.iter().enumerate() {
                let now = sample(s.id.clone()).await;
                let row = match (&prev[i], &now) {
                    (Some(p), Some(n)) => {
                        let wall = n.at_ns.saturating_sub(p.at_ns).max(1) as f64;
                        let cpu = n.cpu_ns.saturating_sub(p.cpu_ns) as f64 / wall * 100.0;
                        let mem_pct = n.mem_usage as f64 / n.mem_limit.max(1) as f64 * 100.0;
                        vec![
                            format!("{cpu:.2}%"),
                            format!("{} / {}", bytes(n.mem_usage, true), bytes(n.mem_limit, true)),
                            format!("{mem_pct:.2}%"),
                            format!("{} / {}", bytes(n.net_rx, false), bytes(n.net_tx, false)),
                            format!("{} / {}", bytes(n.block_read, false), bytes(n.block_write, false)),
                            n.pids.to_string(),
                        ]
                    }
                    _ => ["0.00%", "0B / 0B", "0.00%", "0B / 0B", "0B / 0B", "0"]
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                };
                let id: String = if a.no_trunc {
                    s.id.clone()
                } else {
                    s.id.chars().take(12).collect()
                };
                json_lines.push(serde_json::json!({
                    "ID": id, "Name": s.name, "CPUPerc": row[0], "MemUsage": row[1], "MemPerc": row[2],
                    "NetIO": row[3], "BlockIO": row[4], "PIDs": row[5],
                }));
                let mut r = vec![id, s.name.clone()];
                r.extend(row);
                rows.push(r);
                prev[i] = now;
            }
            if a.format == TableFormat::Json {
                for l in &json_lines {
                    println!("{l}");
                }
            } else {
                if !a.no_stream {
                    // Redraw in place, as `docker stats` does.
                    print!("\x1b[2J\x1b[H");
                }
                print!("{}", crate::table::table(&rows));
            }
            if a.no_stream {
                return Ok(ExitCode::SUCCESS);
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    })
}
