//! The one clock: wall-clock time since the epoch, Lambda's deadline as a monotonic instant,
//! and the ASFF timestamps findings carry.

use std::time::Duration;

/// Wall-clock time since the Unix epoch (zero if the clock is set before it).
pub fn since_epoch() -> Duration {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}

/// Whole seconds since the epoch, as cache entries and jobs record time.
pub fn now_epoch_seconds() -> i64 {
    since_epoch().as_secs() as i64
}

/// Converts Lambda's deadline (milliseconds since the epoch) to a monotonic instant.
pub fn lambda_deadline(deadline_epoch_ms: u64) -> tokio::time::Instant {
    let now_ms = since_epoch().as_millis() as u64;
    tokio::time::Instant::now() + Duration::from_millis(deadline_epoch_ms.saturating_sub(now_ms))
}

/// Parses an RFC 3339 timestamp as ASFF uses them (any fractional precision), in milliseconds
/// since the epoch. ASFF timestamps come with varying precision, so string order is not time
/// order.
pub fn parse_timestamp_millis(value: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(value).ok().map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_of_different_precision_compare_as_time() {
        let coarse = parse_timestamp_millis("2026-01-01T00:00:01Z").unwrap();
        let fine = parse_timestamp_millis("2026-01-01T00:00:00.999Z").unwrap();
        assert!(coarse > fine);
        assert_eq!(parse_timestamp_millis("2026-01-01T02:00:00+02:00"), parse_timestamp_millis("2026-01-01T00:00:00Z"));
        assert_eq!(parse_timestamp_millis("yesterday"), None);
    }
}
