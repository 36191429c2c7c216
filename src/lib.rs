//! securityhub-enricher: enriches AWS Security Hub findings with AWS Organizations account
//! metadata, one Kinesis batch at a time.

pub mod enrich;
pub mod event;
pub mod finding;
pub mod metadata;
pub mod outcome;
pub mod plan;
