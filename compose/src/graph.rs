//! The dependency graph of a project's services (petgraph): edges from `depends_on`,
//! `links`, `volumes_from` and `service:` namespace joins. A cycle is an error that
//! prints it; start order comes in levels of services that can start together.

use crate::error::{Error, Result};
use crate::model::{DependencyKind, Project};
use indexmap::IndexMap;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

#[derive(Debug, Clone)]
pub struct Graph {
    graph: DiGraph<String, DependencyKind>,
    nodes: IndexMap<String, NodeIndex>,
}

impl Graph {
    /// Builds the graph of the enabled services; edges to services that are not in the
    /// project (optional dependencies disabled by profiles) are left out.
    pub fn new(p: &Project) -> Result<Self> {
        let mut graph = DiGraph::new();
        let mut names: Vec<&String> = p.services.keys().collect();
        names.sort();
        let nodes: IndexMap<String, NodeIndex> = names
            .iter()
            .map(|n| ((*n).clone(), graph.add_node((*n).clone())))
            .collect();
        for n in &names {
            for (dep, kind) in p.services[*n].dependencies() {
                if let Some(&to) = nodes.get(&dep) {
                    graph.add_edge(nodes[*n], to, kind);
                }
            }
        }
        let g = Graph { graph, nodes };
        if let Some(cycle) = g.find_cycle() {
            return Err(Error::Cycle(cycle.join(" -> ")));
        }
        Ok(g)
    }

    /// A cycle as a list of names whose last equals its first, if there is one.
    fn find_cycle(&self) -> Option<Vec<String>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Open,
            Done,
        }
        let mut mark = vec![Mark::New; self.graph.node_count()];
        for &start in self.nodes.values() {
            if mark[start.index()] != Mark::New {
                continue;
            }
            // Iterative DFS keeping the open path, so deep chains cannot overflow the stack.
            let mut path: Vec<NodeIndex> = vec![start];
            let mut iters = vec![self.sorted_deps(start).into_iter()];
            mark[start.index()] = Mark::Open;
            while let Some(it) = iters.last_mut() {
                match it.next() {
                    Some(next) => match mark[next.index()] {
                        Mark::Open => {
                            let pos = path.iter().position(|n| *n == next).unwrap_or(0);
                            let mut c: Vec<String> = path[pos..].iter().map(|n| self.graph[*n].clone()).collect();
                            c.push(self.graph[next].clone());
                            return Some(c);
                        }
                        Mark::New => {
                            mark[next.index()] = Mark::Open;
                            path.push(next);
                            iters.push(self.sorted_deps(next).into_iter());
                        }
                        Mark::Done => {}
                    },
                    None => {
                        if let Some(done) = path.pop() {
                            mark[done.index()] = Mark::Done;
                        }
                        iters.pop();
                    }
                }
            }
        }
        None
    }

    fn sorted_deps(&self, n: NodeIndex) -> Vec<NodeIndex> {
        let mut v: Vec<NodeIndex> = self.graph.neighbors_directed(n, Direction::Outgoing).collect();
        v.sort_by(|a, b| self.graph[*a].cmp(&self.graph[*b]));
        v.dedup();
        v
    }

    /// Services in start order: each level depends only on earlier levels.
    pub fn start_levels(&self) -> Vec<Vec<String>> {
        let mut level: IndexMap<NodeIndex, usize> = IndexMap::new();
        // Acyclic (checked in `new`), so repeated relaxation converges in at most N rounds.
        let order = petgraph::algo::toposort(&self.graph, None).unwrap_or_default();
        for n in order.into_iter().rev() {
            let l = self
                .graph
                .neighbors_directed(n, Direction::Outgoing)
                .map(|d| level.get(&d).copied().unwrap_or(0) + 1)
                .max()
                .unwrap_or(0);
            level.insert(n, l);
        }
        let depth = level.values().copied().max().map(|m| m + 1).unwrap_or(0);
        let mut out = vec![Vec::new(); depth];
        for (n, l) in level {
            out[l].push(self.graph[n].clone());
        }
        for l in &mut out {
            l.sort();
        }
        out
    }

    /// Services in stop order: dependents before what they depend on.
    pub fn stop_levels(&self) -> Vec<Vec<String>> {
        let mut l = self.start_levels();
        l.reverse();
        l
    }

    /// Direct dependencies of a service, with why.
    pub fn dependencies(&self, name: &str) -> Vec<(String, DependencyKind)> {
        let Some(&n) = self.nodes.get(name) else {
            return Vec::new();
        };
        self.graph
            .edges_directed(n, Direction::Outgoing)
            .map(|e| (self.graph[e.target()].clone(), e.weight().clone()))
            .collect()
    }

    /// Services that depend directly on `name`.
    pub fn dependents(&self, name: &str) -> Vec<String> {
        let Some(&n) = self.nodes.get(name) else {
            return Vec::new();
        };
        let mut v: Vec<String> = self
            .graph
            .neighbors_directed(n, Direction::Incoming)
            .map(|d| self.graph[d].clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The services a command acts on: all of them when `names` is empty, else `names`
    /// with what they need (only `names` with `--no-deps`).
    pub fn selection(&self, p: &Project, names: &[String], no_deps: bool) -> Vec<String> {
        if names.is_empty() {
            p.services.keys().cloned().collect()
        } else if no_deps {
            names.to_vec()
        } else {
            self.with_dependencies(names)
        }
    }

    /// `names` and everything they need, transitively.
    pub fn with_dependencies(&self, names: &[String]) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        let mut todo: Vec<String> = names.to_vec();
        while let Some(n) = todo.pop() {
            if seen.contains(&n) {
                continue;
            }
            todo.extend(self.dependencies(&n).into_iter().map(|(d, _)| d));
            seen.push(n);
        }
        seen.sort();
        seen
    }
}
