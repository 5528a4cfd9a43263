//! `logs`, printed as Docker Compose prints it: `api-1  | line` with a colour per
//! container on a terminal.

use crate::args::LogsArgs;
use crate::client::{connect, runtime};
use crate::global::Global;
use crate::project::load_or_name;
use anyhow::{bail, Context, Result};
use engine::api::{ContainerSummary, LogLine};
use hyper::Method;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

/// Compose's colours for log prefixes, in the order it hands them out.
const COLORS: [&str; 12] = ["36", "33", "32", "35", "34", "96", "93", "92", "95", "94", "31", "91"];

#[derive(Clone)]
pub struct Printer {
    inner: Arc<Mutex<PrinterState>>,
    color: bool,
    prefix: bool,
    timestamps: bool,
}

struct PrinterState {
    width: usize,
    colors: std::collections::BTreeMap<String, &'static str>,
}

impl Printer {
    pub fn new(color: bool, prefix: bool, timestamps: bool) -> Printer {
        let color = color && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Printer {
            inner: Arc::new(Mutex::new(PrinterState {
                width: 0,
                colors: Default::default(),
            })),
            color,
            prefix,
            timestamps,
        }
    }

    /// The prefix column fits the longest `service-N` of these containers, plus one.
    pub fn set_width(&self, cs: &[ContainerSummary]) {
        let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for c in cs {
            let n = prefix_name(&c.name, &c.service, c.number);
            // Compose pads to the longest name plus one: `web-1  | `.
            st.width = st.width.max(n.chars().count() + 1);
            let next = COLORS[st.colors.len() % COLORS.len()];
            st.colors.entry(c.name.clone()).or_insert(next);
        }
    }

    pub fn line(&self, l: &LogLine) {
        let name = prefix_name(&l.container, &l.service, l.number);
        let st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        if self.prefix {
            let padded = format!("{name:<w$} | ", w = st.width);
            match (self.color, st.colors.get(&l.container)) {
                (true, Some(c)) => out.push_str(&format!("\x1b[{c}m{padded}\x1b[0m")),
                _ => out.push_str(&padded),
            }
        }
        if self.timestamps {
            out.push_str(&l.time);
            out.push(' ');
        }
        out.push_str(l.log.strip_suffix('\n').unwrap_or(&l.log));
        out.push('\n');
        let mut so = std::io::stdout().lock();
        let _ = so.write_all(out.as_bytes());
        let _ = so.flush();
    }

    pub fn line_raw(&self, s: &str) {
        let mut so = std::io::stdout().lock();
        let _ = writeln!(so, "{s}");
        let _ = so.flush();
    }
}

/// `service-N` for containers Compose names, else the container's own name.
fn prefix_name(container: &str, service: &str, number: u32) -> String {
    let short = format!("{service}-{number}");
    if container.ends_with(&format!("-{short}")) {
        short
    } else {
        container.to_string()
    }
}

#[derive(Debug, Clone, Default)]
pub struct LogOpts {
    pub follow: bool,
    pub tail: Option<usize>,
    pub since: Option<String>,
    pub until: Option<String>,
}

/// Streams one container's logs to the printer.
pub async fn follow_one(container: String, printer: Printer, o: LogOpts) -> Result<()> {
    let c = connect().await?;
    let mut q = format!("/v1/containers/{container}/logs?follow={}", o.follow as u8);
    if let Some(t) = o.tail {
        q.push_str(&format!("&tail={t}"));
    }
    if let Some(s) = &o.since {
        q.push_str(&format!("&since={s}"));
    }
    if let Some(u) = &o.until {
        q.push_str(&format!("&until={u}"));
    }
    let mut lines = c.stream(Method::GET, &q, None::<&()>).await?;
    while let Some(l) = lines.next::<LogLine>().await? {
        printer.line(&l);
    }
    Ok(())
}

/// `--since`/`--until`: an RFC 3339 time, a Unix time, or a duration back from now
/// (`42m`, `1h30m`), as the nine-digit-nanosecond stamp the engine compares.
fn time_arg(flag: &str, s: &str) -> Result<String> {
    let bad = || format!("invalid {flag} {s:?}: expected e.g. 2013-01-02T13:23:37Z or 42m");
    if s.contains('T') && s.len() >= 19 {
        // Normalize to nine fractional digits.
        let body = s.trim_end_matches('Z');
        let (main, frac) = body.split_once('.').unwrap_or((body, ""));
        if main.len() != 19 || !frac.chars().all(|c| c.is_ascii_digit()) || frac.len() > 9 {
            bail!(bad());
        }
        return Ok(format!("{main}.{frac:0<9}Z"));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(conventions::timefmt::at(secs, Some(0)));
    }
    let d = compose::model::units::parse_duration(s).map_err(|_| anyhow::anyhow!(bad()))?;
    let then = now.saturating_sub(d.as_std());
    Ok(conventions::timefmt::at(
        then.as_secs() as i64,
        Some(then.subsec_nanos()),
    ))
}

pub fn logs(g: &Global, a: LogsArgs) -> Result<ExitCode> {
    let (name, _) = load_or_name(g, &a.services)?;
    let tail = match a.tail.as_deref() {
        None | Some("all") => None,
        Some(t) => Some(t.parse::<usize>().with_context(|| format!("invalid --tail {t:?}"))?),
    };
    let o = LogOpts {
        follow: a.follow,
        tail,
        since: a.since.as_deref().map(|s| time_arg("--since", s)).transpose()?,
        until: a.until.as_deref().map(|s| time_arg("--until", s)).transpose()?,
    };
    runtime()?.block_on(async {
        let c = connect().await?;
        let all: Vec<ContainerSummary> = c.get(&format!("/v1/containers?project={name}&all=1")).await?;
        let chosen: Vec<ContainerSummary> = all
            .into_iter()
            .filter(|s| a.services.is_empty() || a.services.contains(&s.service))
            .filter(|s| a.index.is_none_or(|i| s.number == i))
            .collect();
        let printer = Printer::new(!a.no_color, !a.no_log_prefix, a.timestamps);
        printer.set_width(&chosen);
        let tasks: Vec<_> = chosen
            .iter()
            .map(|s| tokio::spawn(follow_one(s.name.clone(), printer.clone(), o.clone())))
            .collect();
        let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let all = futures_util::future::join_all(tasks);
        tokio::select! {
            r = all => {
                for t in r {
                    t??;
                }
            }
            _ = sigint.recv() => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_times() {
        assert_eq!(prefix_name("p-api-1", "api", 1), "api-1");
        assert_eq!(prefix_name("custom", "api", 1), "custom");
        assert_eq!(
            time_arg("--since", "2013-01-02T13:23:37Z").unwrap(),
            "2013-01-02T13:23:37.000000000Z"
        );
        assert_eq!(
            time_arg("--since", "2013-01-02T13:23:37.5Z").unwrap(),
            "2013-01-02T13:23:37.500000000Z"
        );
        assert!(time_arg("--since", "42m").unwrap().ends_with('Z'));
        assert!(time_arg("--since", "yesterday").is_err());
    }
}
