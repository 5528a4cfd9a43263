//! What the CLI and the engine both follow of Docker's ways, so that the two sides of
//! the API agree without one reaching into the other: signal names, the labels Compose
//! puts on containers, and Docker's texts for times and durations.

pub mod durations;
pub mod labels;
pub mod signals;
pub mod timefmt;
