//! `rcompose image ...` and `rcompose pull`, as clients of the engine's image routes: the
//! engine is the one writer of its store. A directory to `load` (an OCI layout) or to
//! `import` (a root filesystem) is sent as the tar of it; a file is sent as it is.

use crate::args::{ImageCommand, PullArgs, TableFormat};
use crate::client::{connect, query_escape, runtime, Client};
use crate::global::Global;
use crate::table::{ago, human_size, table};
use anyhow::{bail, Context, Result};
use engine::api::{ImageSummary, Lines, PullEvent, PullRequest, StreamMsg};
use hyper::Method;
use std::path::Path;
use std::process::ExitCode;

/// The 12 hex digits Docker shows of a digest.
fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map(|(_, h)| h).unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// (repository, tag) of a reference as Docker shows them: `redis`, `latest` for
/// `docker.io/library/redis`; `<none>` as the tag of one by digest.
pub fn familiar(image: &str) -> (String, String) {
    let (name, tag) = match image.split_once('@') {
        Some((n, _)) => (n, "<none>".to_string()),
        None => match image.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
            Some((n, t)) => (n, t.to_string()),
            None => (image, "latest".to_string()),
        },
    };
    let repo = name.strip_prefix("docker.io/").unwrap_or(name);
    let repo = repo
        .strip_prefix("library/")
        .filter(|r| !r.contains('/'))
        .unwrap_or(repo);
    (repo.to_string(), tag)
}

/// Pull progress: a bar per layer on a terminal, plain lines otherwise.
pub struct Printer {
    quiet: bool,
    bars: Option<indicatif::MultiProgress>,
    layers: std::collections::HashMap<String, indicatif::ProgressBar>,
}

impl Printer {
    pub fn new(quiet: bool) -> Printer {
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

    pub fn event(&mut self, p: &PullEvent) {
        if self.quiet {
            return;
        }
        match p {
            PullEvent::Resolved { image, manifest } => self.line(format!(" {image} Pulling ({manifest})")),
            PullEvent::LayerExists { layer } => self.line(format!(" {} Already exists", short(layer))),
            PullEvent::LayerProgress { layer, done, total } => {
                let Some(m) = &self.bars else { return };
                let bar = self.layers.entry(layer.clone()).or_insert_with(|| {
                    let b = m.add(indicatif::ProgressBar::new(*total));
                    let style = indicatif::ProgressStyle::with_template(
                        " {prefix} Downloading [{bar:30}] {bytes}/{total_bytes}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
                    b.set_style(style.progress_chars("=> "));
                    b.set_prefix(short(layer).to_string());
                    b
                });
                bar.set_position(*done);
            }
            PullEvent::LayerDownloaded { layer, size } => {
                if let Some(b) = self.layers.remove(layer.as_str()) {
                    b.finish_and_clear();
                }
                self.line(format!(" {} Pull complete ({})", short(layer), human_size(*size)));
            }
            PullEvent::Done { image, .. } => self.line(format!(" {image} Pulled")),
            PullEvent::Present { .. } => {}
        }
    }
}

/// A stream's archive body: the tar of a directory, or a file as it is.
fn archive_of(path: &Path) -> Result<crate::tarstream::Stream> {
    if path.is_dir() {
        let dir = path.to_path_buf();
        Ok(crate::tarstream::spawn(move |b| {
            b.follow_symlinks(false);
            b.mode(tar::HeaderMode::Complete);
            b.append_dir_all(".", &dir)
        }))
    } else {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(crate::tarstream::spawn_copy(f))
    }
}

/// Sends `path` as the body of a POST to `route`; the engine's JSON answer.
async fn upload<T: serde::de::DeserializeOwned>(c: &Client, route: &str, path: &Path) -> Result<T> {
    let (chunks, worker) = archive_of(path)?;
    let answer = c.upload(Method::POST, route, chunks).await;
    let made = crate::tarstream::finish(worker).await;
    let answer = answer?;
    made?;
    Ok(answer)
}

/// What a finished pull says: the image in full, as Docker shows it, and its manifest.
#[derive(Default)]
pub struct Pulled {
    pub image: String,
    pub display: String,
    pub manifest: String,
}

/// Pulls one image with its progress printed.
pub async fn pull_one(c: &Client, req: &PullRequest, printer: &mut Printer) -> Result<Pulled> {
    let mut lines = c.stream(Method::POST, "/v1/images/pull", Some(req)).await?;
    let mut pulled = Pulled::default();
    while let Some(m) = lines.next::<StreamMsg>().await? {
        match m {
            StreamMsg::Pull(e) => {
                if let PullEvent::Done {
                    image,
                    display,
                    manifest,
                } = &e
                {
                    pulled = Pulled {
                        image: image.clone(),
                        display: display.clone(),
                        manifest: manifest.clone(),
                    };
                }
                printer.event(&e);
            }
            StreamMsg::Error { message, .. } => bail!("{message}"),
            StreamMsg::Done { .. } => return Ok(pulled),
            _ => {}
        }
    }
    bail!("the engine closed the connection before the pull ended (see its log)")
}

fn ls(list: &[ImageSummary], quiet: bool, format: TableFormat) {
    if quiet {
        for i in list {
            println!("{}", short(&i.id));
        }
        return;
    }
    let mut rows = vec![vec![
        "REPOSITORY".to_string(),
        "TAG".into(),
        "IMAGE ID".into(),
        "CREATED".into(),
        "SIZE".into(),
    ]];
    let mut json = Vec::new();
    for i in list {
        let names = if i.names.is_empty() {
            vec![("<none>".to_string(), "<none>".to_string())]
        } else {
            i.names.clone()
        };
        for (repo, tag) in names {
            json.push(serde_json::json!({"Repository": repo, "Tag": tag, "ID": short(&i.id), "CreatedSince": ago(i.created), "Size": human_size(i.size)}));
            rows.push(vec![
                repo,
                tag,
                short(&i.id).to_string(),
                ago(i.created),
                human_size(i.size),
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

pub fn run(cmd: ImageCommand) -> Result<ExitCode> {
    runtime()?.block_on(async move {
        let c = connect().await?;
        match cmd {
            ImageCommand::Load { input, quiet } => {
                let out: Lines = upload(&c, "/v1/images/load", &input)
                    .await
                    .with_context(|| format!("loading {}", input.display()))?;
                if !quiet {
                    out.lines.iter().for_each(|l| println!("{l}"));
                }
            }
            ImageCommand::Import { changes, source, name } => {
                let mut route = String::from("/v1/images/import?");
                if let Some(n) = &name {
                    route.push_str(&format!("tag={}&", query_escape(n)));
                }
                for ch in &changes {
                    route.push_str(&format!("change={}&", query_escape(ch)));
                }
                let out: serde_json::Value = upload(&c, &route, &source)
                    .await
                    .with_context(|| format!("importing {}", source.display()))?;
                println!("{}", out["id"].as_str().unwrap_or_default());
            }
            ImageCommand::Ls { quiet, format } => {
                let list: Vec<ImageSummary> = c.get("/v1/images").await?;
                ls(&list, quiet, format);
            }
            ImageCommand::Rm { images } => {
                let mut failed = false;
                for i in images {
                    match c.delete::<Lines>(&format!("/v1/images/{}", query_escape(&i))).await {
                        Ok(out) => out.lines.iter().for_each(|l| println!("{l}")),
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
                let mut out = Vec::new();
                let mut missing = Vec::new();
                for i in &images {
                    match c
                        .get::<serde_json::Value>(&format!("/v1/images/{}/json", query_escape(i)))
                        .await
                    {
                        Ok(v) => out.push(v),
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
            ImageCommand::Prune { build_cache: true, .. } => {
                let out: Lines = c
                    .post_json("/v1/images/prune?build_cache=1", &serde_json::json!({}))
                    .await?;
                out.lines.iter().for_each(|l| println!("{l}"));
            }
            ImageCommand::Prune { all, .. } => {
                let route = if all {
                    "/v1/images/prune?all=1"
                } else {
                    "/v1/images/prune"
                };
                let out: Lines = c.post_json(route, &serde_json::json!({})).await?;
                if !out.lines.is_empty() {
                    println!("Deleted Images:");
                    out.lines.iter().for_each(|l| println!("{l}"));
                }
            }
            ImageCommand::Pull { name, quiet } => {
                let req = PullRequest {
                    reference: name.clone(),
                    policy: None,
                    auth: crate::credentials::for_registry(&crate::credentials::registry_of(&name)),
                };
                let p = pull_one(&c, &req, &mut Printer::new(quiet)).await?;
                if !quiet {
                    println!("Digest: {}\nStatus: Downloaded image for {}", p.manifest, p.display);
                }
                println!("{}", p.image);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `rcompose pull`: the project's service images, in parallel, each once.
pub fn pull(g: &Global, a: PullArgs) -> Result<ExitCode> {
    let mut opts = crate::project::load_options(g)?;
    opts.services = a.services.clone();
    let loaded = compose::load(&opts)?;
    for w in &loaded.warnings {
        eprintln!("WARN[0000] {w}");
    }
    let p = &loaded.project;
    for n in &a.services {
        if !p.services.contains_key(n) {
            bail!("no such service: {n}");
        }
    }
    let names = compose::Graph::new(p)?.selection(p, &a.services, !a.include_deps);
    if let Some(f) = a.policy.as_deref().filter(|f| !matches!(*f, "missing" | "always")) {
        bail!("invalid --policy {f:?}: missing or always");
    }
    let mut wanted: Vec<String> = Vec::new();
    for n in &names {
        let s = &p.services[n];
        let Some(image) = &s.image else { continue };
        if let Some(own @ ("never" | "build")) = s.pull_policy.as_deref() {
            if !a.quiet {
                eprintln!(" {n} Skipped - pull_policy is {own}");
            }
            continue;
        }
        if !wanted.contains(image) {
            wanted.push(image.clone());
        }
    }
    let results = runtime()?.block_on(async {
        let c = connect().await?;
        let jobs = wanted.iter().map(|image| {
            let c = &c;
            let req = PullRequest {
                reference: image.clone(),
                policy: Some(a.policy.clone().unwrap_or_else(|| "always".into())),
                auth: crate::credentials::for_registry(&crate::credentials::registry_of(image)),
            };
            async move { pull_one(c, &req, &mut Printer::new(a.quiet)).await }
        });
        Ok::<_, anyhow::Error>(futures_util::future::join_all(jobs).await)
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_as_docker_shows_them() {
        assert_eq!(familiar("busybox"), ("busybox".into(), "latest".into()));
        assert_eq!(familiar("docker.io/library/redis:7"), ("redis".into(), "7".into()));
        assert_eq!(
            familiar("127.0.0.1:5000/t/x"),
            ("127.0.0.1:5000/t/x".into(), "latest".into())
        );
        assert_eq!(familiar("x@sha256:ab"), ("x".into(), "<none>".into()));
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
    }
}
