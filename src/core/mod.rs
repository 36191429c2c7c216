//! The pure core: what a finding, an event, an account and an update are, and every rule the
//! enricher applies to them. No SDK crate, no network, no sleeping: plain functions over plain
//! data, unit- and property-tested.

pub mod account;
pub mod account_change;
pub mod cache_entry;
pub mod comment;
pub mod enrich;
pub mod enriched_event;
pub mod error;
pub mod event;
pub mod fields;
pub mod finding;
pub mod investigation;
pub mod ocsf;
pub mod outcome;
pub mod pending;
pub mod plan;
pub mod posture;
pub mod quotas;
pub mod rate;
pub mod redrive;
pub mod role_calls;
pub mod routing;
pub mod select;
pub mod time;
