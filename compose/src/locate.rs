//! Maps key paths (`services.web.ports[0]`) to their line and column in a file.
//!
//! serde_yaml_ng gives values without positions, so the positions come from a second,
//! cheap pass over the parser's events (yaml-rust2). It only indexes; it never decides
//! what the document means, so any disagreement between the two parsers costs at most a
//! less precise location.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

#[derive(Debug, Default, Clone)]
pub struct Locator {
    index: HashMap<String, (usize, usize)>,
}

enum Frame {
    /// `key` is `Some` while the next node is the value of that key.
    Map {
        path: String,
        key: Option<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

#[derive(Default)]
struct Builder {
    frames: Vec<Frame>,
    index: HashMap<String, (usize, usize)>,
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl Builder {
    /// Called at the start of every node; returns its path, or `None` for a mapping key.
    fn node(&mut self, scalar: Option<&str>, mark: Marker) -> Option<String> {
        let pos = (mark.line(), mark.col() + 1);
        match self.frames.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key }) => match key.take() {
                None => {
                    let k = scalar.unwrap_or("?").to_string();
                    self.index.entry(join(path, &k)).or_insert(pos);
                    // A mapping's own position is that of its first key (the parser marks
                    // the start of a block mapping further right).
                    self.index.entry(path.clone()).or_insert(pos);
                    *key = Some(k);
                    // A container used as a key still opens a frame; give it a throwaway path.
                    scalar.is_none().then(|| "?".to_string())
                }
                Some(k) => Some(join(path, &k)),
            },
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                if scalar.is_some() {
                    self.index.entry(p.clone()).or_insert(pos);
                }
                Some(p)
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(s, ..) => {
                self.node(Some(&s), mark);
            }
            Event::Alias(_) => {
                self.node(Some("*"), mark);
            }
            Event::MappingStart(..) => {
                if let Some(path) = self.node(None, mark) {
                    self.frames.push(Frame::Map { path, key: None });
                }
            }
            Event::SequenceStart(..) => {
                if let Some(path) = self.node(None, mark) {
                    self.frames.push(Frame::Seq { path, next: 0 });
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.frames.pop();
            }
            _ => {}
        }
    }
}

impl Locator {
    pub fn new(text: &str) -> Self {
        let mut b = Builder::default();
        let mut parser = Parser::new_from_str(text);
        // A syntax error is reported by the real parser; keep what was indexed so far.
        let _ = parser.load(&mut b, false);
        Locator { index: b.index }
    }

    /// The position of `path`, or of its nearest ancestor that is in the file.
    pub fn find(&self, path: &str) -> Option<(usize, usize)> {
        let mut p = path;
        loop {
            if let Some(pos) = self.index.get(p) {
                return Some(*pos);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    /// Whether the exact path is written in this file.
    pub fn has(&self, path: &str) -> bool {
        self.index.contains_key(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_items() {
        let l = Locator::new("services:\n  web:\n    image: x\n    ports:\n      - 80\n      - target: 81\n");
        assert_eq!(l.find("services"), Some((1, 1)));
        assert_eq!(l.find("services.web.image"), Some((3, 5)));
        assert_eq!(l.find("services.web.ports[1]"), Some((6, 9)));
        assert_eq!(l.find("services.web.ports[1].target"), Some((6, 9)));
        assert_eq!(l.find("services.web.nope.deeper"), Some((2, 3)));
    }
}
