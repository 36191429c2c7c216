//! securityhub-enricher: enriches AWS Security Hub findings with AWS Organizations account
//! metadata, one Kinesis batch at a time.

pub mod aws;
pub mod config;
pub mod enrich;
pub mod event;
pub mod finding;
pub mod handler;
pub mod limits;
pub mod loadgen;
pub mod metadata;
pub mod outcome;
pub mod pipeline;
pub mod plan;
pub mod quota;
pub mod replay;
pub mod report;
pub mod securityhub;
pub mod simulate;
pub mod telemetry;
pub mod wiring;

/// Wall-clock time since the Unix epoch (zero if the clock is set before it).
pub fn since_epoch() -> std::time::Duration {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}

/// Converts Lambda's deadline (milliseconds since the epoch) to a monotonic instant.
pub fn lambda_deadline(deadline_epoch_ms: u64) -> tokio::time::Instant {
    let now_ms = since_epoch().as_millis() as u64;
    tokio::time::Instant::now() + std::time::Duration::from_millis(deadline_epoch_ms.saturating_sub(now_ms))
}
pub mod investigate;
pub mod local;
