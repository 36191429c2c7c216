//! In-memory fakes of the product's ports, side by side, for handler tests and the simulator,
//! and `EnricherBuilder`, which wires an enricher to them.

pub mod bus;
pub mod directory;
pub mod enricher;
pub mod hub;
pub mod jobs;
pub mod ledger;
pub mod pending;
pub mod posture;
pub mod sweep_state;
