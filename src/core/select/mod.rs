//! Which findings get a Detective investigation, of which IAM entities, and how findings that
//! share an actor join one job. Pure; each job in its own file, re-exported here so callers
//! name `core::select::X`.

mod iam;
mod jobs;
mod policy;
mod sequence;
#[cfg(test)]
mod test_support;

pub use iam::{Entity, Unresolvable, entities};
pub use jobs::{Selection, plan_jobs, scope_start};
pub use policy::{Asks, Criteria, Trigger, asks, may_investigate, priority, trigger};
pub use sequence::{AttackSequence, attack_sequence};
