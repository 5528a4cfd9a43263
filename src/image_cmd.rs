//! `rcompose image ...` and `rcompose pull`: the image store, used directly until the
//! engine's API exists (then these go through it); writers take the store's lock.

use crate::cli::{Global, ImageCommand, PullArgs, TableFormat};
use anyhow::{bail, Context, Result};
use engine::images::archive::{self, display_name};
use engine::images::policy::PullPolicy;
use engine::images::registry::{self, Progress};
use engine::images::{import, ImageRecord, ImageRef, Store};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// `RCOMPOSE_ROOT`, else `/var/lib/rcompose` (the engine's own rule).
pub fn state_root() -> PathBuf {
    engine::daemon::paths().0
}

fn open_store() -> Result<Store> {
    let root = state_root();
    Store::open(&root).with_context(|| format!("opening the image store in {}", root.display()))
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Docker's human sizes (decimal units).
pub fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!(
            "{}{}",
            format!("{v:.3}").trim_end_matches('0').trim_end_matches('.'),
            units[i]
        )
        .replace(".000", "")
    }
}

/// Seconds since the epoch of an RFC 3339 time (`2024-05-01T10:00:00.123Z`).
fn parse_rfc3339(s: &str) -> Option<u64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let hms: Vec<i64> = time
        .get(..8)?
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let (yy, mm) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86400 + hms.first()? * 3600 + hms.get(1)? * 60 + hms.get(2)?).ok()
}

pub(crate) fn ago(then: u64) -> String {
    let d = now().saturating_sub(then);
    let (n, unit) = match d {
        0..=59 => return "Less than a minute ago".into(),
        60..=3599 => (d / 60, "minute"),
        3600..=86_399 => (d / 3600, "hour"),
        86_400..=1_209_599 => (d / 86_400, "day"),
        1_209_600..=5_183_999 => (d / 604_800, "week"),
        5_184_000..=63_071_999 => (d / 2_592_000, "month"),
        _ => (d / 31_536_000, "year"),
    };
    match n {
        1 if unit == "hour" => "About an hour ago".into(),
        1 => format!("1 {unit} ago"),
        n => format!("{n} {unit}s ago"),
    }
}

pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let line: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i + 1 == r.len() {
                        c.clone()
                    } else {
                        format!("{c:<w$}", w = widths[i] + 3)
                    }
                })
                .collect();
            line.join("").trim_end().to_string() + "\n"
        })
        .collect()
}

fn split_tag(full: &str) -> (String, String) {
    match ImageRef::parse(full) {
        Ok(r) => (r.familiar_repository(), r.tag().unwrap_or("latest").to_string()),
        Err(_) => (full.to_string(), "<none>".into()),
    }
}

fn inspect_json(store: &Store, rec: &ImageRecord, tags: &[String]) -> Result<serde_json::Value> {
    let cfg = store.config(rec)?;
    let repo_tags: Vec<String> = tags
        .iter()
        .filter_map(|t| ImageRef::parse(t).ok())
        .map(|r| display_name(&r))
        .collect();
    let repo_digests: Vec<String> = tags
        .iter()
        .filter_map(|t| ImageRef::parse(t).ok())
        .map(|r| format!("{}@{}", r.familiar_repository(), rec.manifest))
        .collect();
    Ok(serde_json::json!({
        "Id": rec.config.to_string(),
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Created": cfg.created,
        "Architecture": cfg.architecture,
        "Os": cfg.os,
        "Variant": cfg.variant,
        "Config": cfg.config,
        "RootFS": {"Type": cfg.rootfs.kind, "Layers": cfg.rootfs.diff_ids},
        "Size": rec.size(),
        "Metadata": {"Manifest": rec.manifest.to_string(), "StoredAt": rec.stored_at},
    }))
}

/// Pull progress: a bar per layer on a terminal, plain lines otherwise.
struct Printer {
    quiet: bool,
    bars: Option<indicatif::MultiProgress>,
    layers: std::sync::Mutex<std::collections::HashMap<String, indicatif::ProgressBar>>,
}

impl Printer {
    fn new(quiet: bool) -> Printer {
        use std::io::IsTerminal;
        let bars = (!quiet && std::io::stderr().is_terminal()).then(indicatif::MultiProgress::new);
        Printer {
            quiet,
            bars,
            layers: Default::default(),
        }
    }

    fn line(&self, s: String) {
        match &self.bars {
            Some(m) => {
                let _ = m.println(s);
            }
            None => eprintln!("{s}"),
        }
    }

    fn event(&self, p: Progress) {
        if self.quiet {
            return;
        }
        match p {
            Progress::Resolved { image, manifest } => self.line(format!(" {image} Pulling ({manifest})")),
            Progress::LayerExists { layer } => self.line(format!(" {} Already exists", layer.short())),
            Progress::LayerProgress { layer, done, total } => {
                let Some(m) = &self.bars else { return };
                let mut bars = self.layers.lock().unwrap_or_else(|p| p.into_inner());
                let bar = bars.entry(layer.to_string()).or_insert_with(|| {
                    let b = m.add(indicatif::ProgressBar::new(total));
                    let style = indicatif::ProgressStyle::with_template(
                        " {prefix} Downloading [{bar:30}] {bytes}/{total_bytes}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
                    b.set_style(style.progress_chars("=> "));
                    b.set_prefix(layer.short().to_string());
                    b
                });
                bar.set_position(done);
            }
            Progress::LayerDownloaded { layer, size } => {
                if let Some(b) = self
                    .layers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(layer.as_str())
                {
                    b.finish_and_clear();
                }
                self.line(format!(" {} Pull complete ({})", layer.short(), human_size(size)));
            }
            Progress::Done { image, .. } => self.line(format!(" {image} Pulled")),
        }
    }
}

pub(crate) fn progress_printer(quiet: bool) -> impl Fn(Progress) + Sync {
    let p = Printer::new(quiet);
    move |e| p.event(e)
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn run(cmd: ImageCommand) -> Result<ExitCode> {
    let store = open_store()?;
    match cmd {
        ImageCommand::Load { input, quiet } => {
            let lines = archive::load(&store, &input).with_context(|| format!("loading {}", input.display()))?;
            if !quiet {
                for l in lines {
                    println!("{l}");
                }
            }
        }
        ImageCommand::Import { changes, source, name } => {
            let tag = name.as_deref().map(ImageRef::parse).transpose()?;
            let rec = import::import(&store, &source, tag.as_ref(), &changes)
                .with_context(|| format!("importing {}", source.display()))?;
            println!("{}", rec.config);
        }
        ImageCommand::Ls { quiet, format } => {
            let list = store.list()?;
            if quiet {
                for (rec, _) in &list {
                    println!("{}", rec.config.short());
                }
                return Ok(ExitCode::SUCCESS);
            }
            let mut rows = vec![vec![
                "REPOSITORY".to_string(),
                "TAG".into(),
                "IMAGE ID".into(),
                "CREATED".into(),
                "SIZE".into(),
            ]];
            let mut json = Vec::new();
            for (rec, tags) in &list {
                let created = store
                    .config(rec)
                    .ok()
                    .and_then(|c| c.created)
                    .and_then(|c| parse_rfc3339(&c))
                    .unwrap_or(rec.stored_at);
                let names: Vec<(String, String)> = if tags.is_empty() {
                    vec![("<none>".into(), "<none>".into())]
                } else {
                    tags.iter().map(|t| split_tag(t)).collect()
                };
                for (repo, tag) in names {
                    json.push(serde_json::json!({"Repository": repo, "Tag": tag, "ID": rec.config.short(), "CreatedSince": ago(created), "Size": human_size(rec.size())}));
                    rows.push(vec![
                        repo,
                        tag,
                        rec.config.short().to_string(),
                        ago(created),
                        human_size(rec.size()),
                    ]);
                }
            }
            match format {
                TableFormat::Table => print!("{}", table(&rows)),
                TableFormat::Json => {
                    for j in json {
                        println!("{j}");
                    }
                }
            }
        }
        ImageCommand::Rm { images } => {
            let _lock = store.lock()?;
            let mut failed = false;
            for i in images {
                match store.remove(&i) {
                    Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
                    Err(e) => {
                        eprintln!("Error response from daemon: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                return Ok(ExitCode::from(1));
            }
        }
        ImageCommand::Inspect { images } => {
            let list = store.list()?;
            let mut out = Vec::new();
            let mut missing = Vec::new();
            for i in &images {
                match store.resolve(i) {
                    Ok(rec) => {
                        let tags = list
                            .iter()
                            .find(|(r, _)| r.manifest == rec.manifest)
                            .map(|(_, t)| t.clone())
                            .unwrap_or_default();
                        out.push(inspect_json(&store, &rec, &tags)?);
                    }
                    Err(e) => missing.push(e.to_string()),
                }
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            if !missing.is_empty() {
                for m in missing {
                    eprintln!("Error: {m}");
                }
                return Ok(ExitCode::from(1));
            }
        }
        ImageCommand::Prune { all, force: _ } => {
            let _lock = store.lock()?;
            let lines = store.prune(all)?;
            if !lines.is_empty() {
                println!("Deleted Images:");
                lines.iter().for_each(|l| println!("{l}"));
            }
        }
        ImageCommand::Pull { name, quiet } => {
            let r = ImageRef::parse(&name)?;
            let _lock = store.lock()?;
            let store = Arc::new(store);
            let auth = registry::docker_auth(r.registry(), None);
            let print = progress_printer(quiet);
            let rec = runtime()?.block_on(registry::pull(store, &r, auth, &print))?;
            if !quiet {
                println!(
                    "Digest: {}\nStatus: Downloaded image for {}",
                    rec.manifest,
                    display_name(&r)
                );
            }
            println!("{}", r.full());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `rcompose pull`: the project's service images, in parallel, each once.
pub fn pull(g: &Global, a: PullArgs) -> Result<ExitCode> {
    let mut opts = crate::load_options(g)?;
    opts.services = a.services.clone();
    let loaded = compose::load(&opts)?;
    for w in &loaded.warnings {
        eprintln!("WARN[0000] {w}");
    }
    let p = &loaded.project;
    let mut names: Vec<String> = if a.services.is_empty() {
        p.services.keys().cloned().collect()
    } else {
        a.services.clone()
    };
    for n in &names {
        if !p.services.contains_key(n) {
            bail!("no such service: {n}");
        }
    }
    if a.include_deps {
        names = compose::Graph::new(p)?.with_dependencies(&names);
    }
    let forced = a
        .policy
        .as_deref()
        .map(PullPolicy::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if forced.is_some_and(|f| !matches!(f, PullPolicy::Missing | PullPolicy::Always)) {
        bail!("invalid --policy {:?}: missing or always", a.policy.unwrap_or_default());
    }
    let store = open_store()?;
    let _lock = store.lock()?;
    let mut wanted: Vec<ImageRef> = Vec::new();
    for n in &names {
        let s = &p.services[n];
        let Some(image) = &s.image else { continue };
        let own = PullPolicy::parse(s.pull_policy.as_deref().unwrap_or("")).map_err(anyhow::Error::msg)?;
        if matches!(own, PullPolicy::Never | PullPolicy::Build) {
            if !a.quiet {
                eprintln!(
                    " {n} Skipped - pull_policy is {}",
                    s.pull_policy.as_deref().unwrap_or_default()
                );
            }
            continue;
        }
        let r = ImageRef::parse(image).with_context(|| format!("service {n:?}"))?;
        let present = store.resolve(&r.full()).ok().map(|rec| rec.stored_at);
        if !forced.unwrap_or(PullPolicy::Always).needs_pull(present, now()) {
            continue;
        }
        if !wanted.contains(&r) {
            wanted.push(r);
        }
    }
    let store = Arc::new(store);
    let print = progress_printer(a.quiet);
    let results = runtime()?.block_on(async {
        let jobs = wanted.iter().map(|r| {
            let auth = registry::docker_auth(r.registry(), None);
            registry::pull(store.clone(), r, auth, &print)
        });
        futures_util::future::join_all(jobs).await
    });
    let mut failed = false;
    for res in results {
        if let Err(e) = res {
            eprintln!("Error {e}");
            failed = true;
        }
    }
    Ok(if failed && !a.ignore_pull_failures {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Before `up`/`create`: pulls what the services need under `--pull` or each service's
/// `pull_policy` (`missing` by default). A missing image with `never` is an error.
pub fn pull_for_up(p: &compose::Project, names: &[String], flag: Option<&str>, quiet: bool) -> Result<()> {
    let forced = flag.map(PullPolicy::parse).transpose().map_err(anyhow::Error::msg)?;
    let store = open_store()?;
    let mut wanted: Vec<ImageRef> = Vec::new();
    for n in names {
        let s = &p.services[n];
        let Some(image) = &s.image else { continue };
        let policy = match forced {
            Some(f) => f,
            None => PullPolicy::parse(s.pull_policy.as_deref().unwrap_or("missing")).map_err(anyhow::Error::msg)?,
        };
        let r = ImageRef::parse(image).with_context(|| format!("service {n:?}"))?;
        let present = store.resolve(&r.full()).ok().map(|rec| rec.stored_at);
        if matches!(policy, PullPolicy::Never | PullPolicy::Build) {
            if present.is_none() {
                bail!("service {n:?}: image {image} not found locally and pull_policy is never");
            }
            continue;
        }
        if policy.needs_pull(present, now()) && !wanted.contains(&r) {
            wanted.push(r);
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let _lock = store.lock()?;
    let store = Arc::new(store);
    let print = progress_printer(quiet);
    let results = runtime()?.block_on(async {
        let jobs = wanted.iter().map(|r| {
            let auth = registry::docker_auth(r.registry(), None);
            registry::pull(store.clone(), r, auth, &print)
        });
        futures_util::future::join_all(jobs).await
    });
    for res in results {
        res?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_260_000), "4.26MB");
        assert_eq!(human_size(1_000_000), "1MB");
        assert_eq!(parse_rfc3339("1970-01-02T00:00:01Z"), Some(86_401));
        assert_eq!(parse_rfc3339("2024-02-29T12:00:00.5Z"), Some(1_709_208_000));
    }
}
