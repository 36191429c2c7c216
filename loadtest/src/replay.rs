//! Puts EventBridge events on a Kinesis stream the way the EventBridge rule does (partition key
//! = the first finding's account), within PutRecords' limits, retrying failed entries, at a
//! target rate: the load-test harness's replay into a real stream, and the local pipe's writer.

use std::time::Duration;

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use serde::Serialize;
use serde_json::Value;

/// PutRecords takes at most 500 entries ...
pub const MAX_ENTRIES_PER_REQUEST: usize = 500;
/// ... and 5 MiB, partition keys included ...
pub const MAX_BYTES_PER_REQUEST: usize = 5 * 1024 * 1024;
/// ... of records of at most 1 MiB each.
pub const MAX_BYTES_PER_RECORD: usize = 1024 * 1024;

/// One record as the EventBridge rule would put it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub partition_key: String,
    pub data: Vec<u8>,
}

impl StreamEntry {
    /// Keyed as the template's rules key them: `$.detail.findings[0].AwsAccountId` (CSPM), or
    /// `$.detail.findings[0].cloud.account.uid` (the new hub's OCSF findings).
    pub fn for_event(event: &Value) -> Self {
        let first = &event["detail"]["findings"][0];
        let partition_key = first["AwsAccountId"]
            .as_str()
            .or_else(|| first["cloud"]["account"]["uid"].as_str())
            .filter(|k| !k.is_empty())
            .unwrap_or("unknown")
            .to_owned();
        StreamEntry { partition_key, data: serde_json::to_vec(event).expect("JSON values serialize") }
    }

    fn size(&self) -> usize {
        self.partition_key.len() + self.data.len()
    }
}

/// Cuts entries, in order, into requests within PutRecords' limits. Entries too large for
/// Kinesis are left out of every request and returned by index.
pub fn plan_requests(entries: &[StreamEntry]) -> (Vec<Vec<usize>>, Vec<usize>) {
    let mut requests = Vec::new();
    let mut too_large = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for (i, entry) in entries.iter().enumerate() {
        let size = entry.size();
        if size > MAX_BYTES_PER_RECORD {
            too_large.push(i);
            continue;
        }
        if current.len() == MAX_ENTRIES_PER_REQUEST || bytes + size > MAX_BYTES_PER_REQUEST {
            requests.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(i);
        bytes += size;
    }
    if !current.is_empty() {
        requests.push(current);
    }
    (requests, too_large)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayStats {
    pub events: usize,
    /// Entries Kinesis accepted.
    pub put: usize,
    /// Entries over 1 MiB, which Kinesis cannot take (EventBridge never emits them).
    pub too_large: usize,
    pub requests: usize,
    /// Entries Kinesis failed within a successful request, and that were sent again.
    pub entries_retried: usize,
    /// Whole requests that failed and were sent again.
    pub requests_retried: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("PutRecords to stream {stream} failed")]
    Request {
        stream: String,
        #[source]
        source: Box<aws_sdk_kinesis::Error>,
    },
    #[error("{count} entries were still failing after {attempts} attempts (last error: {last_code})")]
    GaveUp { count: usize, attempts: u32, last_code: String },
}

/// Writes entries to one stream.
pub struct Replayer {
    client: aws_sdk_kinesis::Client,
    stream: String,
    /// Entries per second; `None` puts them as fast as Kinesis takes them.
    rate: Option<f64>,
    max_attempts: u32,
    base_backoff: Duration,
}

impl Replayer {
    pub fn new(client: aws_sdk_kinesis::Client, stream: impl Into<String>) -> Self {
        Replayer {
            client,
            stream: stream.into(),
            rate: None,
            max_attempts: 10,
            base_backoff: Duration::from_millis(100),
        }
    }

    pub fn at_rate(mut self, entries_per_second: f64) -> Self {
        self.rate = Some(entries_per_second).filter(|r| r.is_finite() && *r > 0.0);
        self
    }

    /// Puts every entry; `progress` gets the count accepted so far.
    pub async fn put(&self, entries: &[StreamEntry], progress: impl Fn(usize)) -> Result<ReplayStats, ReplayError> {
        let (requests, too_large) = plan_requests(entries);
        if !too_large.is_empty() {
            tracing::warn!(count = too_large.len(), first = too_large[0], "entries over 1 MiB left out");
        }
        let mut stats = ReplayStats { events: entries.len(), too_large: too_large.len(), ..Default::default() };
        let started = tokio::time::Instant::now();
        let mut offered = 0;
        for request in requests {
            if let Some(rate) = self.rate {
                tokio::time::sleep_until(started + Duration::from_secs_f64(offered as f64 / rate)).await;
            }
            offered += request.len();
            self.put_request(entries, request, &mut stats).await?;
            progress(stats.put);
        }
        Ok(stats)
    }

    /// One planned request, then its failed entries again (a subset stays within the limits),
    /// with backoff, until all are in or the attempts run out.
    async fn put_request(
        &self,
        entries: &[StreamEntry],
        mut pending: Vec<usize>,
        stats: &mut ReplayStats,
    ) -> Result<(), ReplayError> {
        let mut last_code = String::new();
        for attempt in 0..self.max_attempts {
            if attempt > 0 {
                tokio::time::sleep(securityhub_enricher::limits::backoff(self.base_backoff, attempt)).await;
            }
            let records = pending
                .iter()
                .map(|&i| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(&entries[i].partition_key)
                        .data(Blob::new(entries[i].data.clone()))
                        .build()
                        .expect("data and partition key are set")
                })
                .collect();
            stats.requests += 1;
            match self.client.put_records().stream_name(&self.stream).set_records(Some(records)).send().await {
                Ok(out) => {
                    let before = pending.len();
                    let mut failed = Vec::new();
                    for (&i, result) in pending.iter().zip(&out.records) {
                        if let Some(code) = &result.error_code {
                            last_code.clone_from(code);
                            failed.push(i);
                        }
                    }
                    // Fewer results than entries would be a broken answer: resend the rest.
                    failed.extend(pending.iter().skip(out.records.len()));
                    stats.put += before - failed.len();
                    stats.entries_retried += failed.len();
                    pending = failed;
                    if pending.is_empty() {
                        return Ok(());
                    }
                }
                Err(error) if is_retryable(&error) => {
                    last_code = error.code().unwrap_or("network error").to_owned();
                    stats.requests_retried += 1;
                }
                Err(error) => {
                    return Err(ReplayError::Request { stream: self.stream.clone(), source: Box::new(error.into()) });
                }
            }
        }
        Err(ReplayError::GaveUp { count: pending.len(), attempts: self.max_attempts, last_code })
    }
}

/// Throttling, server errors and network trouble are worth another try; a missing stream,
/// a bad argument or a denied KMS key are not.
fn is_retryable<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    match error {
        SdkError::ServiceError(_) => error.code().is_some_and(|code| {
            securityhub_enricher::adapters::sdk::is_throttling_code(code)
                || matches!(
                    code,
                    "KMSThrottlingException"
                        | "InternalFailure"
                        | "InternalFailureException"
                        | "ServiceUnavailable"
                        | "ServiceUnavailableException"
                )
        }),
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn entry(bytes: usize) -> StreamEntry {
        StreamEntry { partition_key: "111122223333".into(), data: vec![b'x'; bytes] }
    }

    #[test]
    fn the_partition_key_is_the_first_findings_account() {
        let event =
            json!({"detail": {"findings": [{"AwsAccountId": "111122223333"}, {"AwsAccountId": "444455556666"}]}});
        assert_eq!(StreamEntry::for_event(&event).partition_key, "111122223333");
        assert_eq!(StreamEntry::for_event(&json!({"detail": {}})).partition_key, "unknown");
    }

    #[test]
    fn oversized_entries_are_reported_not_sent() {
        let entries = vec![entry(10), entry(MAX_BYTES_PER_RECORD), entry(10)];
        let (requests, too_large) = plan_requests(&entries);
        assert_eq!(requests, vec![vec![0, 2]]);
        assert_eq!(too_large, vec![1]);
    }

    proptest! {
        /// Every entry is in exactly one request or reported too large, in order, and every
        /// request is within the count and size limits.
        #[test]
        fn requests_respect_the_limits(sizes in prop::collection::vec(
            prop_oneof![8 => 1usize..20_000, 1 => 200_000usize..1_100_000], 0..1500)) {
            let entries: Vec<StreamEntry> = sizes.iter().map(|&s| entry(s)).collect();
            let (requests, too_large) = plan_requests(&entries);
            let mut seen: Vec<usize> = requests.iter().flatten().copied().chain(too_large.iter().copied()).collect();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..entries.len()).collect::<Vec<_>>());
            for request in &requests {
                prop_assert!(!request.is_empty() && request.len() <= MAX_ENTRIES_PER_REQUEST);
                prop_assert!(request.iter().map(|&i| entries[i].size()).sum::<usize>() <= MAX_BYTES_PER_REQUEST);
                prop_assert!(request.windows(2).all(|w| w[0] < w[1]));
            }
            for &i in &too_large {
                prop_assert!(entries[i].size() > MAX_BYTES_PER_RECORD);
            }
        }
    }
}
