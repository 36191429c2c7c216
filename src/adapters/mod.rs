//! Adapters: each port implemented on an AWS SDK client. The only modules that name an SDK
//! crate; tested against the local stack and, for edge cases, with `aws-smithy-mocks`.

pub mod cache_table;
pub mod deployment;
pub mod detective;
pub mod eventbridge;
pub mod jobs_table;
pub mod organizations;
pub mod redrive;
pub mod sdk;
pub mod securityhub;
pub mod stack;
