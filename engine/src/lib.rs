//! The rcompose engine: API server, supervisor, container runtime, images, volumes and
//! logs (see DESIGN.md). Nothing is built here yet; the CLI answers "not implemented yet"
//! for every command that needs the engine.
