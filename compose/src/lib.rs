//! The Compose model: load, interpolate, merge, validate and graph Compose files.
//!
//! Pure: no root, no daemon, nothing Linux-specific. The pipeline follows the Compose
//! Specification (and compose-go's loader stages): discover files and environment ->
//! parse YAML -> interpolate -> include -> extends -> merge -> typed model -> normalize
//! -> validate -> dependency graph.

mod aliases;
mod context;
pub mod discovery;
pub mod dotenv;
pub mod environment;
pub mod error;
mod extends;
pub mod graph;
pub mod hash;
mod include;
pub mod interpolate;
pub mod loader;
pub mod locate;
pub mod merge;
pub mod model;
pub mod names;
mod normalize;
pub mod paths;
pub mod read;
pub mod source;
mod validate;
pub use validate::container_name_unique;

pub use error::{Error, Result};
pub use graph::Graph;
pub use hash::service_hash;
pub use loader::{decode, load, Loaded, Options};
pub use model::Project;
