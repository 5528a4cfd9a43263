//! Errors of the loader. One enum, each variant carrying where the problem is when we
//! know it, so that the CLI can print one line a person can act on:
//! `compose.yaml:12:5: services.web.depnds_on: unknown key, did you mean `depends_on`?`

use std::fmt;
use std::path::PathBuf;

/// A place in a Compose file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based; 0 when only the file is known.
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
        }
    }
}

/// Where an error is: optional location, optional dotted key path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct At {
    pub location: Option<Location>,
    pub key: Option<String>,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.location {
            write!(f, "{l}: ")?;
        }
        if let Some(k) = &self.key {
            if !k.is_empty() {
                write!(f, "{k}: ")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no configuration file provided: not found")]
    NoConfigFile,
    #[error("{at}{message}")]
    Yaml { at: At, message: String },
    #[error("{at}{message}")]
    Interpolation { at: At, message: String },
    #[error("{at}{message}")]
    Invalid { at: At, message: String },
    #[error("{file}:{line}: {message}")]
    DotEnv {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("invalid project name {name:?}: must contain only characters from [a-z0-9_-] and start with [a-z0-9]")]
    ProjectName { name: String },
    #[error("dependency cycle detected: {0}")]
    Cycle(String),
    #[error("{0}")]
    Reference(String),
}

impl Error {
    pub(crate) fn invalid(at: At, message: impl Into<String>) -> Self {
        Error::Invalid {
            at,
            message: message.into(),
        }
    }
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
