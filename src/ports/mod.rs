//! Ports: the traits between the core's orchestration (`service`) and the AWS adapters, one
//! per capability, each with the error type its callers match on. No SDK crate appears here,
//! so the orchestration and its in-memory test doubles never see one.

pub mod deployment;
pub mod detective;
pub mod events;
pub mod findings;
pub mod jobs;
pub mod ledger;
pub mod metadata;
pub mod pending;
pub mod posture;
pub mod redrive;
pub mod sweep_state;
