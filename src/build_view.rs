//! BuildKit's live terminal view of a build: a `[+] Building 3.2s (5/8)` header and a
//! line per step with its time, `CACHED` and `ERROR` marks, and the last lines of
//! each running step's output under it; redrawn in place, and left on screen as it
//! ended.

use engine::api::BuildEvent;
use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, Instant};

/// How many of a running step's last output lines are shown.
const LOG_LINES: usize = 6;

#[derive(Debug, Clone, PartialEq)]
enum State {
    Running,
    Cached,
    Done(f64),
    Error,
}

struct Step {
    id: u32,
    name: String,
    start: Instant,
    state: State,
    logs: VecDeque<String>,
}

pub struct View {
    start: Instant,
    steps: Vec<Step>,
    /// Lines on screen, to move back over.
    drawn: usize,
    width: usize,
    height: usize,
    finished: bool,
    /// `Image` lines, printed after the view.
    after: Vec<String>,
}

impl View {
    pub fn new(width: usize, height: usize) -> View {
        View {
            start: Instant::now(),
            steps: Vec::new(),
            drawn: 0,
            width: width.max(40),
            height: height.max(5),
            finished: false,
            after: Vec::new(),
        }
    }

    fn step(&mut self, id: u32) -> Option<&mut Step> {
        self.steps.iter_mut().find(|s| s.id == id)
    }

    pub fn event(&mut self, e: &BuildEvent, out: &mut dyn Write) {
        match e {
            BuildEvent::Step { id, name } => self.steps.push(Step {
                id: *id,
                name: name.clone(),
                start: Instant::now(),
                state: State::Running,
                logs: VecDeque::new(),
            }),
            BuildEvent::Cached { id } => {
                if let Some(s) = self.step(*id) {
                    s.state = State::Cached;
                }
            }
            BuildEvent::Log { id, line, .. } => {
                if let Some(s) = self.step(*id) {
                    if s.logs.len() == LOG_LINES {
                        s.logs.pop_front();
                    }
                    s.logs.push_back(line.clone());
                }
            }
            BuildEvent::Done { id, secs } => {
                if let Some(s) = self.step(*id) {
                    s.state = State::Done(*secs);
                }
            }
            BuildEvent::Error { id, message } => {
                if let Some(s) = self.step(*id) {
                    s.state = State::Error;
                    s.logs.push_back(message.clone());
                }
            }
            BuildEvent::Image { service, id, .. } => self.after.push(format!(" Image {service} Built ({id})")),
        }
        self.draw(out, Instant::now());
    }

    pub fn tick(&mut self, out: &mut dyn Write) {
        if !self.steps.is_empty() && !self.finished {
            self.draw(out, Instant::now());
        }
    }

    /// The last drawing, marked finished, then what waited for it.
    pub fn finish(&mut self, out: &mut dyn Write) {
        if !self.steps.is_empty() && !self.finished {
            self.finished = true;
            self.draw(out, Instant::now());
        }
        for a in self.after.drain(..) {
            let _ = writeln!(out, "{a}");
        }
    }

    /// The lines of the view at `now`.
    fn render(&self, now: Instant) -> Vec<String> {
        let done = self.steps.iter().filter(|s| s.state != State::Running).count();
        let elapsed = now.saturating_duration_since(self.start).as_secs_f64();
        let mut header = format!("[+] Building {elapsed:.1}s ({done}/{})", self.steps.len());
        if self.finished {
            header.push_str(" FINISHED");
        }
        let mut body = Vec::new();
        for s in &self.steps {
            let (mark, secs) = match &s.state {
                State::Running => ("", now.saturating_duration_since(s.start).as_secs_f64()),
                State::Cached => ("CACHED ", 0.0),
                State::Done(t) => ("", *t),
                State::Error => ("ERROR ", now.saturating_duration_since(s.start).as_secs_f64()),
            };
            body.push(self.fit(&format!(" => {mark}{}", s.name), &format!("{secs:.1}s")));
            if matches!(s.state, State::Running | State::Error) {
                for l in &s.logs {
                    body.push(self.fit(&format!(" => => # {l}"), ""));
                }
            }
        }
        // What fits the terminal: the latest lines.
        let room = self.height.saturating_sub(2);
        let skip = body.len().saturating_sub(room);
        std::iter::once(header).chain(body.into_iter().skip(skip)).collect()
    }

    /// `left` cut to the width, with `right` at the end of the line.
    fn fit(&self, left: &str, right: &str) -> String {
        let room = self.width.saturating_sub(right.len() + 1);
        let left: String = left.chars().take(room).collect();
        if right.is_empty() {
            return left;
        }
        let gap = room.saturating_sub(left.chars().count());
        format!("{left}{} {right}", " ".repeat(gap))
    }

    fn draw(&mut self, out: &mut dyn Write, now: Instant) {
        let lines = self.render(now);
        let mut text = String::new();
        if self.drawn > 0 {
            text.push_str(&format!("\x1b[{}A", self.drawn));
        }
        text.push_str("\r\x1b[?25l");
        for l in &lines {
            text.push_str(l);
            text.push_str("\x1b[K\n");
        }
        // Lines left over from a longer drawing.
        for _ in lines.len()..self.drawn {
            text.push_str("\x1b[K\n");
        }
        let total = lines.len().max(self.drawn);
        if total > lines.len() {
            text.push_str(&format!("\x1b[{}A", total - lines.len()));
        }
        text.push_str("\x1b[?25h");
        self.drawn = lines.len();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

/// How often the view is redrawn while nothing happens (its timers move).
pub const TICK: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_marks_timers_and_a_running_steps_last_lines() {
        let mut v = View::new(60, 20);
        let mut out = Vec::new();
        for e in [
            BuildEvent::Step {
                id: 1,
                name: "[internal] load build definition from Dockerfile".into(),
            },
            BuildEvent::Done { id: 1, secs: 0.0 },
            BuildEvent::Step {
                id: 2,
                name: "[2/3] COPY a.txt ./".into(),
            },
            BuildEvent::Cached { id: 2 },
            BuildEvent::Step {
                id: 3,
                name: "[3/3] RUN make".into(),
            },
        ] {
            v.event(&e, &mut out);
        }
        for i in 0..8 {
            v.event(
                &BuildEvent::Log {
                    id: 3,
                    elapsed: 0.1,
                    line: format!("line {i}"),
                },
                &mut out,
            );
        }
        let now = v.start;
        let lines = v.render(now);
        assert_eq!(lines[0], "[+] Building 0.0s (2/3)");
        assert!(
            lines[1].starts_with(" => [internal] load build definition from Do"),
            "{lines:?}"
        );
        assert!(
            lines[1].ends_with(" 0.0s") && lines[1].chars().count() == 60,
            "{lines:?}"
        );
        assert!(lines[2].starts_with(" => CACHED [2/3] COPY a.txt ./ "), "{lines:?}");
        assert!(lines[3].starts_with(" => [3/3] RUN make "), "{lines:?}");
        // The last six lines of the running step, the oldest gone.
        assert_eq!(lines[4], " => => # line 2");
        assert_eq!(lines[9], " => => # line 7");
        assert_eq!(lines.len(), 10);
        // Done: its output folds away, and the view says it finished.
        v.event(&BuildEvent::Done { id: 3, secs: 2.5 }, &mut out);
        v.finish(&mut out);
        let lines = v.render(now);
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[0].ends_with("(3/3) FINISHED"), "{lines:?}");
        assert!(lines[3].ends_with(" 2.5s"), "{lines:?}");
        // Redrawn in place: the cursor goes back over what was drawn.
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\x1b[10A"), "{text:?}");
    }

    #[test]
    fn a_short_terminal_shows_the_latest_lines() {
        let mut v = View::new(80, 5);
        let mut out = Vec::new();
        for id in 1..=10 {
            v.event(
                &BuildEvent::Step {
                    id,
                    name: format!("step {id}"),
                },
                &mut out,
            );
        }
        let lines = v.render(v.start);
        assert_eq!(lines.len(), 4);
        assert!(lines[3].starts_with(" => step 10"), "{lines:?}");
    }
}
