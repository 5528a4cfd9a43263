//! The Dockerfile language as BuildKit's frontend defines it: [`lex`] reads the text
//! (directives, continuations, heredocs), [`instruction`] types each instruction,
//! [`expand`] is its variable expansion, and [`Dockerfile`] groups the steps into
//! stages and says which stages a target needs.

pub mod expand;
pub mod instruction;
pub mod lex;

pub use instruction::{CopyArgs, Form, Health, Instruction, Step};
pub use lex::{Directives, Heredoc};

use std::collections::BTreeSet;

/// The most instructions a Dockerfile may have (real ones have hundreds at most): each
/// stage and step costs the builder work and memory that a hostile file could
/// otherwise multiply without end.
pub const MAX_INSTRUCTIONS: usize = 10_000;

/// Why a Dockerfile cannot be built; the line is the instruction's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DockerfileError {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("line {line}: unknown instruction: {keyword}")]
    Unknown { line: usize, keyword: String },
    #[error("the Dockerfile has no FROM instruction (file with no instructions?)")]
    NoFrom,
    #[error("line {line}: {keyword} before the first FROM: only ARG may come before it")]
    BeforeFrom { line: usize, keyword: String },
    #[error("line {line}: duplicate stage name {name:?}")]
    DuplicateStage { line: usize, name: String },
    #[error("target stage {0:?} could not be found")]
    NoTarget(String),
    #[error("more than {MAX_INSTRUCTIONS} instructions")]
    TooMany,
    #[error("line {line}: {source}")]
    Expand {
        line: usize,
        #[source]
        source: expand::ExpandError,
    },
}

impl DockerfileError {
    pub fn line(&self) -> Option<usize> {
        match self {
            DockerfileError::Syntax { line, .. }
            | DockerfileError::Unknown { line, .. }
            | DockerfileError::BeforeFrom { line, .. }
            | DockerfileError::DuplicateStage { line, .. }
            | DockerfileError::Expand { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// One `FROM` and the steps up to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub index: usize,
    /// Lower case, as stage names are compared.
    pub name: Option<String>,
    /// The base as written (expanded with the global args when built).
    pub base: String,
    pub platform: Option<String>,
    pub line: usize,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    pub directives: Directives,
    /// The `ARG`s before the first `FROM`.
    pub global_args: Vec<Step>,
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    pub fn parse(text: &str) -> Result<Dockerfile, DockerfileError> {
        let (directives, raws) = lex::lex(text)?;
        if raws.len() > MAX_INSTRUCTIONS {
            return Err(DockerfileError::TooMany);
        }
        let mut global_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for raw in &raws {
            let step = instruction::step(raw, directives.escape)?;
            match &step.instruction {
                Instruction::From { image, name, platform } => {
                    if let Some(n) = name {
                        if stages.iter().any(|s| s.name.as_deref() == Some(n)) {
                            return Err(DockerfileError::DuplicateStage {
                                line: step.line,
                                name: n.clone(),
                            });
                        }
                    }
                    stages.push(Stage {
                        index: stages.len(),
                        name: name.clone(),
                        base: image.clone(),
                        platform: platform.clone(),
                        line: step.line,
                        steps: Vec::new(),
                    });
                }
                _ => match stages.last_mut() {
                    Some(s) => s.steps.push(step),
                    None if matches!(step.instruction, Instruction::Arg(_)) => global_args.push(step),
                    None => {
                        return Err(DockerfileError::BeforeFrom {
                            line: step.line,
                            keyword: step.keyword,
                        })
                    }
                },
            }
        }
        if stages.is_empty() {
            return Err(DockerfileError::NoFrom);
        }
        Ok(Dockerfile {
            directives,
            global_args,
            stages,
        })
    }

    /// The stage a name (or index) refers to, among those before `before`.
    pub fn stage_named(&self, name: &str, before: usize) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        self.stages[..before.min(self.stages.len())]
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .map(|s| s.index)
            .or_else(|| name.parse::<usize>().ok().filter(|i| *i < before))
    }

    /// The target stage: the named one, else the last.
    pub fn target(&self, target: Option<&str>) -> Result<usize, DockerfileError> {
        match target.filter(|t| !t.is_empty()) {
            None => Ok(self.stages.len() - 1),
            Some(t) => self
                .stage_named(t, self.stages.len())
                .ok_or_else(|| DockerfileError::NoTarget(t.to_string())),
        }
    }

    /// The stages one stage uses directly: its base and the `--from`s of its `COPY`s
    /// and `RUN --mount`s that name earlier stages. `resolve` expands a word as the
    /// build sees it (with the global args).
    pub fn uses(&self, index: usize, resolve: &dyn Fn(&str) -> String) -> BTreeSet<usize> {
        let s = &self.stages[index];
        let mut out = BTreeSet::new();
        let mut add = |word: &str| {
            if let Some(i) = self.stage_named(&resolve(word), index) {
                out.insert(i);
            }
        };
        add(&s.base);
        for step in &s.steps {
            match &step.instruction {
                Instruction::Copy(c) => {
                    if let Some(f) = &c.from {
                        add(f);
                    }
                }
                Instruction::Run { mounts, .. } => {
                    for m in mounts {
                        for kv in m.split(',') {
                            if let Some(f) = kv.strip_prefix("from=") {
                                add(f);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Every stage the target needs, the target included.
    pub fn needed(&self, target: usize, resolve: &dyn Fn(&str) -> String) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if seen.insert(i) {
                todo.extend(self.uses(i, resolve));
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_and_what_a_target_needs() {
        let d = Dockerfile::parse(
            "ARG BASE=busybox\nFROM $BASE AS deps\nRUN a\nFROM busybox AS unused\nRUN false\nFROM deps AS build\nCOPY --from=0 /x /y\nFROM busybox\nCOPY --from=build /y /z\nRUN --mount=type=bind,from=deps,target=/d true\n",
        )
        .unwrap();
        assert_eq!(d.global_args.len(), 1);
        assert_eq!(d.stages.len(), 4);
        let id = |w: &str| w.to_string();
        let last = d.target(None).unwrap();
        assert_eq!(d.needed(last, &id), BTreeSet::from([0, 2, 3]));
        assert_eq!(d.needed(d.target(Some("unused")).unwrap(), &id), BTreeSet::from([1]));
        assert_eq!(
            d.target(Some("nope")).unwrap_err().to_string(),
            "target stage \"nope\" could not be found"
        );
        assert_eq!(
            Dockerfile::parse("RUN x").unwrap_err().to_string(),
            "line 1: RUN before the first FROM: only ARG may come before it"
        );
        assert!(matches!(
            Dockerfile::parse("FROM a AS x\nFROM b AS X"),
            Err(DockerfileError::DuplicateStage { line: 2, .. })
        ));
        assert_eq!(
            Dockerfile::parse("# only a comment\n").unwrap_err(),
            DockerfileError::NoFrom
        );
    }
}
