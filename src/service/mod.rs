//! The orchestration: the enricher's batch, the directory's cache tiers, pacing and retrying
//! updates, sharing the quota, fanning investigations out and running them. Works through the
//! ports only, so every piece runs in tests on in-memory fakes.

pub mod account_events;
pub mod batch_report;
pub mod directory;
pub mod doctor;
pub mod fanout;
pub mod handler;
pub mod investigator;
pub mod pending;
pub mod pipeline;
pub mod posture_report;
pub mod publisher;
pub mod quota_share;
pub mod redrive;
pub mod refresh;
pub mod sweep;
pub mod updater;
