//! `build`: the services' images built by the engine, its progress printed as
//! BuildKit's plain progress (`#5 [2/4] RUN make`, the step's output, `#5 DONE 0.3s`,
//! `#4 CACHED`), as BuildKit's live view on a terminal (`build_view`), as JSON events
//! with `--progress json`, or only the image IDs with `-q`.

use crate::args::BuildArgs;
use crate::client::{connect, runtime};
use crate::global::Global;
use crate::progress::code;
use crate::project::{auths, file_values, load};
use anyhow::{bail, Result};
use engine::api::{BuildEvent, BuildRequest, StreamMsg};
use hyper::Method;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

/// How build progress is shown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Plain,
    Json,
    Quiet,
    Tty,
}

/// Prints build events as they come.
pub struct Printer {
    mode: Mode,
    view: Option<crate::build_view::View>,
}

impl Printer {
    pub fn new(mode: Mode) -> Printer {
        let view = (mode == Mode::Tty).then(|| {
            let (rows, cols) = crate::session::term_size().unwrap_or((24, 80));
            crate::build_view::View::new(cols as usize, rows as usize)
        });
        Printer { mode, view }
    }

    /// The mode `--progress` and the terminal choose, as for the other commands.
    pub fn from_global(_g: &Global) -> Printer {
        Printer::new(match crate::progress::mode() {
            crate::progress::Mode::Json => Mode::Json,
            crate::progress::Mode::Quiet => Mode::Quiet,
            crate::progress::Mode::Tty { .. } => Mode::Tty,
            crate::progress::Mode::Plain => Mode::Plain,
        })
    }

    /// Whether it wants [`Printer::tick`] called every [`crate::build_view::TICK`].
    pub fn animated(&self) -> bool {
        self.view.is_some()
    }

    pub fn tick(&mut self) {
        if let Some(v) = &mut self.view {
            v.tick(&mut std::io::stderr());
        }
    }

    /// The view's last drawing (it stays on screen).
    pub fn finish(&mut self) {
        if let Some(v) = &mut self.view {
            v.finish(&mut std::io::stderr());
        }
    }

    pub fn event(&mut self, e: &BuildEvent) {
        let err = &mut std::io::stderr();
        if let Some(v) = &mut self.view {
            v.event(e, err);
            return;
        }
        match (self.mode, e) {
            (Mode::Json, e) => {
                let _ = writeln!(err, "{}", serde_json::to_string(e).unwrap_or_default());
            }
            (Mode::Quiet, BuildEvent::Image { id, .. }) => println!("{id}"),
            (Mode::Quiet, _) => {}
            (Mode::Plain | Mode::Tty, e) => {
                let _ = writeln!(err, "{}", plain(e));
            }
        }
    }
}

/// One event as BuildKit's plain progress prints it.
pub fn plain(e: &BuildEvent) -> String {
    match e {
        BuildEvent::Step { id, name } => format!("#{id} {name}"),
        BuildEvent::Cached { id } => format!("#{id} CACHED"),
        BuildEvent::Log { id, elapsed, line } => format!("#{id} {elapsed:.3} {line}"),
        BuildEvent::Done { id, secs } => format!("#{id} DONE {secs:.1}s"),
        BuildEvent::Error { id, message } => format!("#{id} ERROR: {message}"),
        BuildEvent::Image { service, id, .. } => format!(" Image {service} Built ({id})"),
    }
}

fn build_args(list: &[String], env: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in list {
        match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            Some(_) => bail!("invalid --build-arg {a:?}: expected KEY=VALUE or KEY"),
            // A bare name takes the environment's value, and is left out without one.
            None => {
                if let Some(v) = env.get(a).cloned().or_else(|| std::env::var(a).ok()) {
                    out.insert(a.clone(), v);
                }
            }
        }
    }
    Ok(out)
}

pub fn build(g: &Global, a: BuildArgs) -> Result<ExitCode> {
    for (set, flag) in [(a.push, "--push"), (a.memory.is_some(), "--memory")] {
        if set {
            bail!("build {flag} is not implemented yet");
        }
    }
    let mut l = load(g, &a.services)?;
    let agent = l.loaded.environment.get("SSH_AUTH_SOCK").cloned();
    crate::project::set_ssh(
        &mut l.json,
        &a.services,
        &crate::project::ssh_flags(&a.ssh),
        agent.as_deref(),
    );
    if a.print {
        return print_definition(&l, &a.services);
    }
    let req = BuildRequest {
        project: l.json.clone(),
        working_dir: l.loaded.project_dir.display().to_string(),
        services: a.services.clone(),
        with_dependencies: a.with_dependencies,
        build_args: build_args(
            &a.build_arg,
            &l.loaded
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )?,
        no_cache: a.no_cache,
        pull: a.pull,
        file_values: file_values(&l.loaded)?,
        auths: auths(&l.loaded.project),
    };
    let mut printer = if a.quiet {
        Printer::new(Mode::Quiet)
    } else {
        Printer::from_global(g)
    };
    runtime()?.block_on(async {
        let c = connect().await?;
        let mut lines = c
            .stream(Method::POST, &format!("/v1/projects/{}/build", l.name), Some(&req))
            .await?;
        let mut pulls = crate::image_cmd::Printer::new(a.quiet);
        let mut ticks = tokio::time::interval(crate::build_view::TICK);
        let mut warnings = Vec::new();
        loop {
            let m = tokio::select! {
                m = lines.next::<StreamMsg>() => m,
                _ = ticks.tick(), if printer.animated() => {
                    printer.tick();
                    continue;
                }
            };
            let Some(m) = m? else { break };
            match m {
                StreamMsg::Build(e) => printer.event(&e),
                StreamMsg::Pull(e) => pulls.event(&e),
                // Drawn over by a live view: kept for after it.
                StreamMsg::Warning(w) if printer.animated() => warnings.push(w),
                StreamMsg::Warning(w) => eprintln!("WARN[0000] {w}"),
                StreamMsg::Error { message, exit_code } => {
                    printer.finish();
                    warnings.iter().for_each(|w| eprintln!("WARN[0000] {w}"));
                    eprintln!("{message}");
                    return Ok(code(exit_code.max(1)));
                }
                StreamMsg::Done { exit_code } => {
                    printer.finish();
                    warnings.iter().for_each(|w| eprintln!("WARN[0000] {w}"));
                    return Ok(code(exit_code));
                }
                _ => {}
            }
        }
        printer.finish();
        bail!("the engine closed the connection before the build ended (see its log)")
    })
}

/// `build --print`: the build definition as Compose prints it (a bake file's JSON).
fn print_definition(l: &crate::project::Loaded, services: &[String]) -> Result<ExitCode> {
    let p = &l.loaded.project;
    let mut targets = serde_json::Map::new();
    let mut names = Vec::new();
    for (name, s) in &p.services {
        let Some(b) = &s.build else { continue };
        if !services.is_empty() && !services.contains(name) {
            continue;
        }
        names.push(serde_json::Value::String(name.clone()));
        let image = s.image.clone().unwrap_or_else(|| format!("{}-{name}", l.name));
        let mut t = serde_json::json!({
            "context": b.context.clone().unwrap_or_else(|| ".".into()),
            "dockerfile": b.dockerfile.clone().unwrap_or_else(|| "Dockerfile".into()),
            "tags": std::iter::once(image).chain(b.tags.iter().flatten().cloned()).collect::<Vec<_>>(),
        });
        if let Some(args) = &b.args {
            let m: BTreeMap<String, String> = args
                .iter()
                .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
                .collect();
            t["args"] = serde_json::json!(m);
        }
        if let Some(target) = &b.target {
            t["target"] = serde_json::json!(target);
        }
        if let Some(inline) = &b.dockerfile_inline {
            t["dockerfile-inline"] = serde_json::json!(inline);
        }
        if b.no_cache == Some(true) {
            t["no-cache"] = serde_json::json!(true);
        }
        targets.insert(name.clone(), t);
    }
    let def = serde_json::json!({
        "group": {"default": {"targets": names}},
        "target": targets,
    });
    println!("{}", serde_json::to_string_pretty(&def)?);
    Ok(ExitCode::SUCCESS)
}

/// `builder prune`: the build cache freed, as Docker reports it.
pub fn builder(a: crate::args::BuilderArgs) -> Result<ExitCode> {
    let crate::args::BuilderCommand::Prune { force } = a.command;
    if !force {
        // Docker's question; anything but y or yes leaves the cache as it is.
        print!("WARNING! This will remove all build cache. Are you sure you want to continue? [y/N] ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    runtime()?.block_on(async {
        let c = connect().await?;
        let out: engine::api::Lines = c
            .post_json("/v1/images/prune?build_cache=1", &serde_json::json!({}))
            .await?;
        out.lines.iter().for_each(|l| println!("{l}"));
        Ok(ExitCode::SUCCESS)
    })
}
