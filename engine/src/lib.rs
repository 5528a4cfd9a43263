//! The rcompose engine (see DESIGN.md): the API server, the supervisor, the one
//! translation of a service into a container spec, volumes, networks' use, logs,
//! health and restart policies. Its only door is the API ([`api`]), which the CLI and
//! any other client speak over a Unix socket; [`serve`] runs it.

pub mod api;
mod daemon;

/// The cgroup directory (under the engine's own) of a state root's containers: what a
/// test that ran an engine removes when it is done.
pub use daemon::cgroup_parent;
pub use daemon::run as serve;
