//! A budget for YAML alias expansion, as go-yaml has one ("excessive aliasing"): a few
//! kilobytes of nested anchors and aliases can stand for billions of nodes, which every
//! later stage of the loader would copy. Before the document is parsed into values, its
//! events are weighed with every alias expanded (each anchor's weight known once its
//! node ends: a node counts one, a scalar one more per byte, so that a long string
//! repeated by aliases weighs what it expands to); past a budget proportional to the
//! input's size it is refused, in one pass over the events, with the position where the
//! budget ran out.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// The weight any input may expand to, plus [`PER_BYTE`] per byte of it (a document
/// without aliases weighs about twice its size).
const BASE: u64 = 1 << 20;
const PER_BYTE: u64 = 10;

struct Counter {
    /// (anchor, expanded size so far) of each open collection.
    open: Vec<(usize, u64)>,
    sizes: HashMap<usize, u64>,
    expanded: u64,
    limit: u64,
    over: Option<Marker>,
}

impl Counter {
    fn add(&mut self, n: u64, mark: Marker) {
        self.expanded = self.expanded.saturating_add(n);
        if let Some(top) = self.open.last_mut() {
            top.1 = top.1.saturating_add(n);
        }
        if self.expanded > self.limit && self.over.is_none() {
            self.over = Some(mark);
        }
    }
}

impl MarkedEventReceiver for Counter {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.over.is_some() {
            return;
        }
        match ev {
            Event::Scalar(value, _, anchor, _) => {
                let weight = 1 + value.len() as u64;
                if anchor > 0 {
                    self.sizes.insert(anchor, weight);
                }
                self.add(weight, mark);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                self.add(1, mark);
                self.open.push((anchor, 1));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, size)) = self.open.pop() {
                    if anchor > 0 {
                        self.sizes.insert(anchor, size);
                    }
                    // The collection's own count went to its parent as it grew.
                    if let Some(top) = self.open.last_mut() {
                        top.1 = top.1.saturating_add(size.saturating_sub(1));
                    }
                }
            }
            Event::Alias(id) => {
                let n = self.sizes.get(&id).copied().unwrap_or(1);
                self.add(n, mark);
            }
            _ => {}
        }
    }
}

/// Where expanding `text`'s aliases passes the budget (line, column), with the budget.
/// A syntax error is not this check's to report: the parser proper reports it.
pub(crate) fn excessive(text: &str) -> Option<(usize, usize, u64)> {
    let limit = BASE.saturating_add(PER_BYTE.saturating_mul(text.len() as u64));
    let mut c = Counter {
        open: Vec::new(),
        sizes: HashMap::new(),
        expanded: 0,
        limit,
        over: None,
    };
    let mut parser = Parser::new_from_str(text);
    let _ = parser.load(&mut c, true);
    c.over.map(|m| (m.line(), m.col() + 1, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bomb(width: usize, levels: u8) -> String {
        let items = vec!["x"; width].join(", ");
        let mut s = format!("a: &a [{items}]\n");
        for n in 1..levels {
            let (me, prev) = ((b'a' + n) as char, (b'a' + n - 1) as char);
            let refs = vec![format!("*{prev}"); width].join(", ");
            s.push_str(&format!("{me}: &{me} [{refs}]\n"));
        }
        s
    }

    #[test]
    fn a_bomb_is_refused_fast_and_ordinary_reuse_is_not() {
        // 100 wide, 4 deep: 10^8 nodes from 2 KB.
        let b = bomb(100, 4);
        assert!(b.len() < 2500);
        let t = std::time::Instant::now();
        let (line, _, _) = excessive(&b).expect("refused");
        assert!(line >= 3, "{line}");
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        let ordinary = "x-env: &env {A: 1, B: 2}\nservices:\n  a: {image: x, environment: *env}\n  b: {image: x, environment: *env}\n";
        assert_eq!(excessive(ordinary), None);
        // Anchored collections count as what they expand to, nested or not.
        assert_eq!(excessive(&bomb(10, 3)), None);
        // One long string, repeated by aliases: few nodes, but its bytes each time.
        let mut long = format!("a: &a \"{}\"\nb: [", "x".repeat(1 << 20));
        long.push_str(&vec!["*a"; 200].join(", "));
        long.push_str("]\n");
        assert!(excessive(&long).is_some());
    }
}
