//! `exec`: a command in a running service container, as `docker compose exec` runs it:
//! a terminal when standard input is one (raw mode, window size, resizes followed),
//! `-T` for plain streams, `-d` to leave it running; the command's exit code is ours.

use crate::args::ExecArgs;
use crate::client::{connect, runtime};
use crate::global::Global;
use crate::project::load_or_name;
use crate::session::{pump, term_size, End, Opts, RawMode};
use anyhow::{bail, Result};
use engine::api::{ContainerSummary, ExecRequest};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

pub fn exec(g: &Global, a: ExecArgs) -> Result<ExitCode> {
    let (name, _) = load_or_name(g, std::slice::from_ref(&a.service))?;
    let tty = !a.no_tty && !a.detach && std::io::stdin().is_terminal();
    let rt = runtime()?;
    let code = rt.block_on(async {
        let c = connect().await?;
        let all: Vec<ContainerSummary> = c.get(&format!("/v1/containers?project={name}&all=1")).await?;
        let mine: Vec<&ContainerSummary> = all.iter().filter(|s| s.service == a.service).collect();
        let Some(target) = mine.iter().find(|s| s.number == a.index) else {
            if mine.is_empty() {
                bail!("service \"{}\" is not running", a.service);
            }
            bail!("service \"{}\" is not running container #{}", a.service, a.index);
        };
        if target.state != "running" {
            bail!("service \"{}\" is not running", a.service);
        }
        let (rows, cols) = if tty { term_size().unwrap_or((24, 80)) } else { (0, 0) };
        let req = ExecRequest {
            cmd: a.command.clone(),
            env: a.env.clone(),
            user: a.user.clone(),
            workdir: a.workdir.clone(),
            tty,
            privileged: a.privileged,
            detach: a.detach,
            rows,
            cols,
        };
        let path = format!("/v1/containers/{}/exec", target.id);
        if a.detach {
            c.post_json::<serde_json::Value>(&path, &req).await?;
            return Ok(0);
        }
        let io = c.upgrade(&path, &req).await?;
        let _raw = if tty { Some(RawMode::enable()?) } else { None };
        let opts = Opts {
            tty,
            input: a.interactive,
            detach_keys: None,
        };
        match pump(io, opts).await? {
            End::Exited(code) => Ok(code),
            End::Detached => Ok(0),
        }
    });
    // Standard input may still be read by a blocking thread: leave without waiting for it.
    rt.shutdown_background();
    let code = code?;
    let _ = std::io::stdout().flush();
    std::process::exit(code.clamp(0, 255));
}
