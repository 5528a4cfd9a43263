//! How an operation's progress is shown on standard error, as Compose shows it
//! (`--progress auto|tty|plain|json|quiet`, `--ansi`): on a terminal, one line per
//! object with a spinner, its status and a timer, redrawn in place under a
//! `[+] Running N/M` header; plain ` Container p-web-1  Started` lines otherwise; one
//! JSON object per event for programs; nothing with `quiet`.
//!
//! The redrawing is written here (a few ANSI sequences): indicatif draws bars of its
//! own, not Compose's table of objects whose lines change order-stably in place.

use crate::global::{Ansi, Global, Progress};
use anyhow::{bail, Result};
use engine::api::StreamMsg;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Tty { color: bool },
    Plain,
    Json,
    Quiet,
}

static MODE: OnceLock<Mode> = OnceLock::new();

/// The mode from the global flags (once, at start).
pub fn configure(g: &Global) {
    let _ = MODE.set(choose(g.progress, g.ansi, std::io::stderr().is_terminal()));
}

fn choose(progress: Progress, ansi: Ansi, terminal: bool) -> Mode {
    let color = match ansi {
        Ansi::Always => true,
        Ansi::Never => false,
        Ansi::Auto => terminal,
    };
    match progress {
        Progress::Quiet => Mode::Quiet,
        Progress::Json => Mode::Json,
        Progress::Plain => Mode::Plain,
        // Without ANSI sequences a table cannot be redrawn: plain lines, as Compose does.
        Progress::Tty if ansi == Ansi::Never => Mode::Plain,
        Progress::Tty => Mode::Tty { color },
        Progress::Auto if terminal && ansi != Ansi::Never => Mode::Tty { color },
        Progress::Auto => Mode::Plain,
    }
}

pub fn mode() -> Mode {
    *MODE.get().unwrap_or(&Mode::Plain)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Working,
    Done,
    Error,
}

/// `Creating` is under way, `Created` is done; Compose's words.
fn state_of(status: &str) -> State {
    if status.starts_with("Error") || status == "Unhealthy" {
        State::Error
    } else if status.ends_with("ing") || status == "Recreate" {
        State::Working
    } else {
        State::Done
    }
}

struct Line {
    id: String,
    status: String,
    state: State,
    start: Instant,
    end: Option<Instant>,
}

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// The display of one operation.
pub struct Display {
    mode: Mode,
    lines: Vec<Line>,
    /// Lines of the table on screen (the header included), to move back over.
    drawn: usize,
    /// Warnings kept until the table is final (they would be drawn over).
    tail: Vec<String>,
    width: usize,
    frame: usize,
}

fn terminal_width() -> usize {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into `ws`.
    if unsafe { libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0 {
        ws.ws_col as usize
    } else {
        80
    }
}

impl Display {
    pub fn new() -> Display {
        Display::with(mode(), terminal_width())
    }

    fn with(mode: Mode, width: usize) -> Display {
        Display {
            mode,
            lines: Vec::new(),
            drawn: 0,
            tail: Vec::new(),
            width,
            frame: 0,
        }
    }

    /// Whether it wants [`Display::tick`] called every 100 ms.
    pub fn animated(&self) -> bool {
        matches!(self.mode, Mode::Tty { .. })
    }

    pub fn event(&mut self, out: &mut dyn Write, kind: &str, name: &str, status: &str) {
        let id = format!("{kind} {name}");
        match self.mode {
            Mode::Quiet => {}
            Mode::Plain => {
                let _ = writeln!(out, " {id}  {status}");
            }
            Mode::Json => {
                let _ = writeln!(out, "{}", serde_json::json!({ "id": id, "text": status }));
            }
            Mode::Tty { .. } => {
                let now = Instant::now();
                let state = state_of(status);
                match self.lines.iter_mut().find(|l| l.id == id) {
                    Some(l) => {
                        if state == State::Working && l.state != State::Working {
                            // Under way again (Recreate after Running): a new timer.
                            l.start = now;
                            l.end = None;
                        } else if state != State::Working && l.end.is_none() {
                            l.end = Some(now);
                        }
                        l.state = state;
                        l.status = status.to_string();
                    }
                    None => self.lines.push(Line {
                        id,
                        status: status.to_string(),
                        state,
                        start: now,
                        end: (state != State::Working).then_some(now),
                    }),
                }
                self.draw(out, now);
            }
        }
    }

    pub fn warn(&mut self, out: &mut dyn Write, message: &str) {
        match self.mode {
            Mode::Tty { .. } => self.tail.push(format!("WARN[0000] {message}")),
            Mode::Json => {
                let _ = writeln!(out, "{}", serde_json::json!({ "tail": true, "text": message }));
            }
            _ => {
                let _ = writeln!(out, "WARN[0000] {message}");
            }
        }
    }

    /// Redraws the spinners and timers.
    pub fn tick(&mut self, out: &mut dyn Write) {
        if self.animated() && !self.lines.is_empty() {
            self.frame += 1;
            self.draw(out, Instant::now());
        }
    }

    /// The last drawing, then what was kept back.
    pub fn finish(&mut self, out: &mut dyn Write) {
        if self.animated() && !self.lines.is_empty() {
            self.draw(out, Instant::now());
        }
        for t in self.tail.drain(..) {
            let _ = writeln!(out, "{t}");
        }
        let _ = out.flush();
    }

    fn draw(&mut self, out: &mut dyn Write, now: Instant) {
        let Mode::Tty { color } = self.mode else { return };
        let mut text = String::new();
        if self.drawn > 0 {
            text.push_str(&format!("\x1b[{}A", self.drawn));
        }
        text.push_str("\r\x1b[?25l");
        let done = self.lines.iter().filter(|l| l.state == State::Done).count();
        let header = format!("[+] Running {done}/{}", self.lines.len());
        let all_done = done == self.lines.len();
        text.push_str(&paint(&header, if all_done && color { Some(34) } else { None }));
        text.push_str("\x1b[K\n");
        let pad = self.lines.iter().map(|l| l.id.chars().count()).max().unwrap_or(0);
        for l in &self.lines {
            let mark = match l.state {
                State::Working => SPINNER[self.frame % SPINNER.len()],
                State::Done => "✔",
                State::Error => "✘",
            };
            let elapsed = l.end.unwrap_or(now).saturating_duration_since(l.start);
            let left = format!(" {mark} {:<pad$} {}", l.id, l.status);
            let timer = format!("{:.1}s", elapsed.as_secs_f64());
            let room = self.width.saturating_sub(timer.len() + 1);
            let left: String = left.chars().take(room).collect();
            let gap = room.saturating_sub(left.chars().count());
            let line = format!("{left}{} {timer}", " ".repeat(gap));
            let code = match (color, l.state) {
                (false, _) | (true, State::Working) => None,
                (true, State::Done) => Some(34),
                (true, State::Error) => Some(31),
            };
            text.push_str(&paint(&line, code));
            text.push_str("\x1b[K\n");
        }
        text.push_str("\x1b[?25h");
        self.drawn = self.lines.len() + 1;
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

fn paint(s: &str, code: Option<u8>) -> String {
    match code {
        Some(c) => format!("\x1b[{c}m{s}\x1b[0m"),
        None => s.to_string(),
    }
}

/// How often the table is redrawn.
pub const TICK: Duration = Duration::from_millis(100);

/// An exit code from an operation's.
/// Prints an operation's stream; returns its exit code.
pub async fn follow_operation(lines: crate::client::Lines) -> Result<i32> {
    Ok(follow_operation_outcome(lines).await?.exit_code)
}

/// How an operation ended, with what the engine said of it on the way.
#[derive(Debug, Default)]
pub struct Outcome {
    pub exit_code: i32,
    /// `run`: the one-off container made.
    pub created: Option<String>,
    /// `up`: the services it acted on.
    pub services: Vec<String>,
}

/// As [`follow_operation`], with the whole [`Outcome`].
pub async fn follow_operation_outcome(mut lines: crate::client::Lines) -> Result<Outcome> {
    let mut created = None;
    let mut services = Vec::new();
    // The engine sends no pull progress when it was asked for none (`--quiet-pull`).
    let mut pulls = crate::image_cmd::Printer::new(false);
    let mut builds = crate::build_cmd::Printer::new(crate::build_cmd::Mode::Plain);
    let mut display = Display::new();
    let mut ticks = tokio::time::interval(TICK);
    let err = &mut std::io::stderr();
    loop {
        let m = tokio::select! {
            m = lines.next::<StreamMsg>() => m,
            _ = ticks.tick(), if display.animated() => {
                display.tick(err);
                continue;
            }
        };
        let Some(m) = m? else { break };
        match m {
            StreamMsg::Progress(p) => display.event(err, &p.kind, &p.name, &p.status),
            StreamMsg::Warning(w) => display.warn(err, &w),
            StreamMsg::Created(name) => created = Some(name),
            StreamMsg::Services(s) => services = s,
            StreamMsg::Pull(e) => pulls.event(&e),
            StreamMsg::Build(e) => builds.event(&e),
            StreamMsg::Error { message, exit_code } => {
                display.finish(err);
                eprintln!("{message}");
                return Ok(Outcome {
                    exit_code,
                    created,
                    services,
                });
            }
            StreamMsg::Done { exit_code } => {
                display.finish(err);
                return Ok(Outcome {
                    exit_code,
                    created,
                    services,
                });
            }
        }
    }
    display.finish(err);
    bail!("the engine closed the connection before the operation ended (see its log)")
}

pub fn code(c: i32) -> ExitCode {
    ExitCode::from(c.clamp(0, 255) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(d: &mut Display, f: impl FnOnce(&mut Display, &mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(d, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_mode_follows_the_flags_and_the_terminal() {
        assert_eq!(choose(Progress::Auto, Ansi::Auto, true), Mode::Tty { color: true });
        assert_eq!(choose(Progress::Auto, Ansi::Auto, false), Mode::Plain);
        assert_eq!(choose(Progress::Tty, Ansi::Auto, false), Mode::Tty { color: false });
        assert_eq!(choose(Progress::Tty, Ansi::Never, true), Mode::Plain);
        assert_eq!(choose(Progress::Auto, Ansi::Never, true), Mode::Plain);
        assert_eq!(choose(Progress::Json, Ansi::Always, true), Mode::Json);
        assert_eq!(choose(Progress::Quiet, Ansi::Auto, true), Mode::Quiet);
    }

    #[test]
    fn plain_json_and_quiet_lines() {
        let mut d = Display::with(Mode::Plain, 80);
        let s = shown(&mut d, |d, o| d.event(o, "Container", "p-web-1", "Started"));
        assert_eq!(s, " Container p-web-1  Started\n");
        let mut d = Display::with(Mode::Json, 80);
        let s = shown(&mut d, |d, o| {
            d.event(o, "Network", "p_default", "Created");
            d.warn(o, "careful");
        });
        let v: Vec<serde_json::Value> = s.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(v[0], serde_json::json!({"id": "Network p_default", "text": "Created"}));
        assert_eq!(v[1], serde_json::json!({"tail": true, "text": "careful"}));
        let mut d = Display::with(Mode::Quiet, 80);
        assert_eq!(shown(&mut d, |d, o| d.event(o, "Container", "x", "Started")), "");
    }

    #[test]
    fn the_table_is_redrawn_in_place_with_spinners_and_timers() {
        let mut d = Display::with(Mode::Tty { color: false }, 60);
        let first = shown(&mut d, |d, o| {
            d.event(o, "Network", "p_default", "Created");
            d.event(o, "Container", "p-web-1", "Starting");
        });
        // The second drawing goes back over the first (header and one line).
        assert!(first.contains("\x1b[2A"), "{first:?}");
        let last = first.rsplit("\x1b[2A").next().unwrap();
        assert!(last.contains("[+] Running 1/2"), "{last:?}");
        assert!(last.contains(" ✔ Network p_default Created"), "{last:?}");
        assert!(last.contains(" ⠋ Container p-web-1 Starting"), "{last:?}");
        let ticked = shown(&mut d, |d, o| d.tick(o));
        assert!(
            ticked.starts_with("\x1b[3A") && ticked.contains(" ⠙ Container"),
            "{ticked:?}"
        );
        let done = shown(&mut d, |d, o| {
            d.warn(o, "kept for the end");
            d.event(o, "Container", "p-web-1", "Started");
            d.finish(o);
        });
        assert!(done.contains("[+] Running 2/2"), "{done:?}");
        assert!(done.contains(" ✔ Container p-web-1 Started"), "{done:?}");
        assert!(done.trim_end().ends_with("WARN[0000] kept for the end"), "{done:?}");
        // Every line fits the terminal, its timer at the right edge.
        for l in done.split('\n').filter(|l| l.contains('✔')) {
            let visible = l.replace("\x1b[K", "");
            let visible = visible.rsplit('\r').next().unwrap_or(&visible);
            let visible = visible.trim_start_matches("\x1b[?25l");
            assert_eq!(visible.chars().count(), 60, "{visible:?}");
            assert!(visible.ends_with('s'), "{visible:?}");
        }
    }
}
