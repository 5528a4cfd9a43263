//! `attach SERVICE`: the terminal joined to a service container's main process, as
//! `docker compose attach` joins it: its output from now on, standard input when the
//! service has `stdin_open` (`--no-stdin` to leave it), a terminal in raw mode when it
//! has `tty`, the detach keys (`ctrl-p,ctrl-q`) to leave it running, and signals passed
//! on (`--sig-proxy`) otherwise. The container's exit code is ours if it stops first.

use crate::args::AttachArgs;
use crate::client::runtime;
use crate::client::{connect, Client};
use crate::global::Global;
use crate::project::load_or_name;
use crate::session::{parse_detach_keys, proxy_signals, pump, End, Opts, RawMode};
use anyhow::{bail, Result};
use engine::api::{ContainerSummary, ErrorKind};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

/// How a session with a container's main process runs.
pub struct Attachment {
    /// Its terminal is ours: raw mode, resizes, detach keys.
    pub tty: bool,
    /// Our standard input is sent.
    pub input: bool,
    pub detach_keys: Vec<u8>,
    /// Our signals go to the container (without a terminal).
    pub sig_proxy: bool,
}

/// Attaches to `container` until it stops (`Some(exit code)`) or the detach keys are
/// typed (`Ok(End::Detached)`); `Err(the engine's error)` inside when it does not run
/// any more.
pub async fn attach_to(c: &Client, container: &str, how: &Attachment) -> Result<Result<End, anyhow::Error>> {
    let path = format!("/v1/containers/{container}/attach");
    let io = match c.upgrade(&path, &serde_json::json!({})).await {
        Ok(io) => io,
        Err(e) if crate::client::error_kind(&e) == Some(ErrorKind::NotRunning) => return Ok(Err(e)),
        Err(e) => return Err(e),
    };
    let _raw = if how.tty && how.input {
        Some(RawMode::enable()?)
    } else {
        None
    };
    let proxy = (how.sig_proxy && !how.tty).then(|| proxy_signals(container.to_string()));
    let opts = Opts {
        tty: how.tty,
        input: how.input,
        detach_keys: how.tty.then(|| how.detach_keys.clone()),
    };
    let end = pump(io, opts).await;
    if let Some(p) = proxy {
        p.abort();
    }
    Ok(Ok(end?))
}

pub fn attach(g: &Global, a: AttachArgs) -> Result<ExitCode> {
    let detach_keys = parse_detach_keys(&a.detach_keys)?;
    let (name, _) = load_or_name(g, std::slice::from_ref(&a.service))?;
    let rt = runtime()?;
    let end = rt.block_on(async {
        let c = connect().await?;
        let all: Vec<ContainerSummary> = c.get(&format!("/v1/containers?project={name}&all=1")).await?;
        let mine: Vec<&ContainerSummary> = all.iter().filter(|s| s.service == a.service && !is_oneoff(s)).collect();
        let Some(target) = mine.iter().find(|s| s.number == a.index) else {
            if mine.is_empty() {
                bail!("service \"{}\" is not running", a.service);
            }
            bail!("service \"{}\" is not running container #{}", a.service, a.index);
        };
        let how = Attachment {
            tty: target.tty && std::io::stdin().is_terminal(),
            input: !a.no_stdin,
            detach_keys,
            sig_proxy: a.sig_proxy,
        };
        attach_to(&c, &target.id, &how).await?
    });
    // Standard input may still be read by a blocking thread: leave without waiting for it.
    rt.shutdown_background();
    let _ = std::io::stdout().flush();
    match end? {
        End::Exited(code) => std::process::exit(code.clamp(0, 255)),
        End::Detached => Ok(ExitCode::SUCCESS),
    }
}

fn is_oneoff(s: &ContainerSummary) -> bool {
    s.labels
        .get(conventions::labels::LABEL_ONEOFF)
        .is_some_and(|v| v == "True")
}
