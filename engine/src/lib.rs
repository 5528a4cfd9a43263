//! The rcompose engine: API server, supervisor, container runtime, images, volumes and
//! logs (see DESIGN.md).

pub mod api;
pub mod daemon;
pub mod images;
pub mod runtime;
pub mod timefmt;
