//! The rcompose engine: API server, supervisor, container runtime, images, volumes and
//! logs (see DESIGN.md). Built so far: the image store and the container runtime.

pub mod images;
pub mod runtime;
mod timefmt;
